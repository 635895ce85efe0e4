"""Run a notebook top to bottom, as a student does in Colab, and store its outputs in it.

    python -m tests.notebook_exec IN.ipynb OUT.ipynb --data MNIST_ROOT [--images 1500]

Tests need handed-in notebooks *with* stored outputs made by running their code. There is no
Jupyter kernel here, so this runs each code cell with ``exec`` in one namespace in a child
process (the caller's torch and matplotlib state stay clean), in order, like "Run all":

- figures: ``plt.show()`` stores every open figure as an ``image/png`` display output;
- printed text becomes a ``stream`` output, an exception an ``error`` output (and the next cell
  runs, as a student's notebook often shows);
- scale, for test speed only: every ``epochs = N`` line runs as ``epochs = 1``, ``nworkers`` as 0,
  and ``torchvision.datasets.MNIST`` reads the first ``--images`` digits of the local copy (never
  the network). The stored *source* is the notebook's own, unchanged;
- the 2020/2022 cells plot lists of loss tensors that require grad, which current torch refuses to
  turn into numpy (Colab's older versions did): the plot gets plain floats.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import re
import subprocess
import sys
import traceback
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
_EPOCHS = re.compile(r"^(\s*)epochs\s*=\s*[^#\n]*", re.M)
_WORKERS = re.compile(r"^(\s*)nworkers\s*=\s*[^#\n]*", re.M)


def execute(nb_in: Path, nb_out: Path, data: Path, images: int = 1500, timeout_s: float = 600) -> Path:
    """Run ``nb_in`` in a child process and write it with its outputs to ``nb_out``."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.notebook_exec", str(nb_in), str(nb_out), "--data", str(data)]
        + ["--images", str(images)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={"OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"executing {nb_in.name} failed:\n{proc.stderr[-3000:]}")
    return nb_out


def _scaled(source: str) -> str:
    return _WORKERS.sub(r"\1nworkers = 0", _EPOCHS.sub(r"\1epochs = 1", source))


def _patch(data: Path, images: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.axes
    import torch
    import torchvision

    real = torchvision.datasets.MNIST

    def local_mnist(root, train=True, transform=None, download=False, **kwargs):  # noqa: ARG001
        ds = real(str(data), train=train, transform=transform, download=False)
        return torch.utils.data.Subset(ds, range(min(images if train else 200, len(ds))))

    torchvision.datasets.MNIST = local_mnist
    plot = matplotlib.axes.Axes.plot

    def plain_plot(self, *args, **kwargs):
        args = tuple(
            [float(v) for v in a] if isinstance(a, list) and a and isinstance(a[0], torch.Tensor) else a for a in args
        )
        return plot(self, *args, **kwargs)

    matplotlib.axes.Axes.plot = plain_plot
    torch.set_num_threads(1)


def run(nb: nbformat.NotebookNode, data: Path, images: int) -> nbformat.NotebookNode:
    """Execute the notebook's code cells in order, storing outputs; returns the same notebook."""
    from harness.submission.notebook_code import runnable_source

    _patch(data, images)
    import matplotlib.pyplot as plt

    outputs: list = []

    def show(*args, **kwargs):  # noqa: ARG001
        for number in plt.get_fignums():
            buf = io.BytesIO()
            plt.figure(number).savefig(buf, format="png", dpi=72)  # Colab's default
            png = base64.b64encode(buf.getvalue()).decode("ascii")
            outputs.append(nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}))
        plt.close("all")

    plt.show = show
    namespace: dict = {"__name__": "__main__"}
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        count += 1
        outputs = []
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(
                    compile(_scaled(runnable_source(cell.source).text), f"<cell {count}>", "exec", dont_inherit=True),
                    namespace,
                )
        except BaseException as e:  # noqa: BLE001 - a student's cell may fail: recorded, the next one runs
            outputs.append(
                nbformat.v4.new_output(
                    "error", ename=type(e).__name__, evalue=str(e), traceback=traceback.format_exception(e)[-3:]
                )
            )
        show()
        text = out.getvalue()
        if text:
            outputs.insert(0, nbformat.v4.new_output("stream", name="stdout", text=text[-4000:]))
        cell.outputs = outputs
        cell.execution_count = count
    return nb


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebook", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--images", type=int, default=1500)
    args = p.parse_args()
    nb = nbformat.read(args.notebook, as_version=4)
    nbformat.write(run(nb, args.data, args.images), args.out)


if __name__ == "__main__":
    main()
