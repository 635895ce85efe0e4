"""Render time and peak memory of the two documents, HTML and PDF, from a stored result.

    python benchmarks/render.py [--folder reports/<id>] [--repeat 3]
    HARNESS_DATA=<MNIST root> python benchmarks/render.py --notebook [--repeat 3]

``--notebook`` measures the notebook write-up paths instead (targets: ``report --stored`` of a
notebook with 15 stored figures in at most 5 s on 2 cores, PDF included; the hand-in PDF check
adds at most 5 s to a grade for a 10-page PDF). A completed 2026 notebook is built from the
handout (../shared/handouts) and run with its outputs stored (tests/notebook_exec.py). It prints:
the wall time of the whole ``python -m harness report NOTEBOOK --stored`` command (a fresh
process, as a student runs it) and its parts; and the time of the PDF check ``grade`` runs
(``harness.grading.handin.check_handin``: reading the PDF, matching its images against the
notebook's and the re-run's figures, the text checks) on a 10-page write-up made of the
notebook's figures, beside the time of rendering that write-up's own PDF for scale.

Default folder: the test fixture (the example graded and written up under smoke). Each
document is rendered --repeat times the way the CLI does it, in a child process, and the
median times and the child's peak memory are printed. For comparison in the same run, the
same renders are repeated inside this process, showing the resident memory that rendering
leaves behind in a long-lived process (matplotlib, fonts, WeasyPrint's caches): the memory a
batch run's parent saves by rendering in a child that exits.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.documents.render import documents_in, render_folder, render_here  # noqa: E402


def rss_mb() -> float:
    """This process's current resident memory."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", type=Path, default=ROOT / "tests" / "fixtures" / "example-smoke")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--notebook", action="store_true", help="time report --stored and the hand-in PDF check")
    args = p.parse_args()
    if args.notebook:
        notebook_paths(args.repeat)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "doc"
        shutil.copytree(args.folder, folder, ignore=shutil.ignore_patterns("*.html", "*.pdf"))
        documents = documents_in(folder)
        print(f"folder {args.folder}, documents {', '.join(documents)}, {args.repeat} renders each\n")
        print(
            f"{'document':<10}{'HTML s':>9}{'PDF s':>9}{'total s':>9}{'peak MB':>10}{'PDF/HTML':>10}"
            f"{'HTML KB':>9}{'PDF KB':>9}"
        )
        for document in documents:
            runs = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                (r,) = render_folder(folder, [document])
                if r.error:
                    raise SystemExit(f"{document}: {r.error}")
                runs.append((r.html_seconds, r.pdf_seconds, time.perf_counter() - started, r.peak_mb))
            html_s, pdf_s, total_s, peak = (statistics.median(c) for c in zip(*runs, strict=False))
            print(
                f"{document:<10}{html_s:>9.2f}{pdf_s:>9.2f}{total_s:>9.2f}{peak:>10.0f}{pdf_s / html_s:>10.2f}"
                f"{r.html.stat().st_size / 1024:>9.0f}{r.pdf.stat().st_size / 1024:>9.0f}"
            )
        print("\n(total: the child process's whole life, including Python start-up and imports)")

        print("\nin this process instead, rendering one after another (resident memory after each):")
        before = rss_mb()
        for i in range(args.repeat):
            for document in documents:
                render_here(folder, document)
            print(
                f"  round {i + 1}: {rss_mb():.0f} MB (+{rss_mb() - before:.0f} MB over this process before rendering)"
            )


def notebook_paths(repeat: int) -> None:
    """report --stored and the hand-in PDF check on a run 2026 notebook, timed."""
    import json
    import os
    import subprocess

    import nbformat
    import numpy as np

    from harness.config.assignment import load_assignment
    from harness.grading.handin import check_handin
    from harness.ml.data import resolve_source
    from harness.submission.notebook_load import load
    from tests import notebooks as nbs
    from tests.handin_pdfs import student_pdf
    from tests.notebook_exec import execute

    name = "doejane_12345_678901_vae.ipynb"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "hand-in"
        folder.mkdir()
        blank = nbs.write(nbs.complete("2026"), tmp / "blank.ipynb")
        nb_path = execute(blank, folder / name, resolve_source().root)
        nb = nbformat.read(nb_path, as_version=4)
        images = [
            c
            for c in nb.cells
            if c.cell_type == "code"
            for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})
        ]
        first = next(c for c in nb.cells if any("image/png" in o.get("data", {}) for o in c.get("outputs", [])))
        extra = next(o for o in first.outputs if "image/png" in o.get("data", {}))
        while len(images) < 15:  # the target's 15 figures: more copies of the first one
            first.outputs.append(extra)
            images.append(extra)
        nbformat.write(nb, nb_path)
        print(f"notebook: the 2026 handout, completed and run; {len(images)} stored figures\n")

        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        runs = []
        for i in range(repeat):
            out = tmp / f"out{i}"
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "harness", "report", str(nb_path), "--stored", "--out", str(out), "-q"],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
            )
            wall = time.perf_counter() - started
            if proc.returncode != 0:
                raise SystemExit(proc.stdout + proc.stderr)
            result = json.loads((out / nb_path.stem / "write-up.json").read_text())
            pdf = out / nb_path.stem / "write-up.pdf"
            runs.append((wall, result["timings"]["total"], pdf.stat().st_size / 1024))
        wall, build, size = (statistics.median(c) for c in zip(*runs, strict=False))
        print(f"{'report --stored':<28}{'wall s':>8}{'write-up.json s':>17}{'render + start s':>18}{'PDF KB':>8}")
        print(f"{'(median of ' + str(repeat) + ')':<28}{wall:>8.2f}{build:>17.2f}{wall - build:>18.2f}{size:>8.0f}")
        print(f"target: <= 5 s; ratio to target {wall / 5:.2f}\n")

        a = load_assignment("variant-b")
        sub0 = load(nb_path, a)
        figures = {f.slot: f.png for f in sub0.notebook.figures if f.slot}
        student_pdf(folder / "write-up.pdf", figures, nbs.example_answers(), "1e-4", "4 to 8", pages=10)
        sub = load(folder, a)
        rng = np.random.default_rng(0)
        arrays = {"test/grid": np.array(4), "test/inputs": rng.integers(0, 255, (5, 1, 28, 28), dtype=np.uint8)}
        runs_json = {}
        for run in ("ae", "beta-0", "beta-10", "tuned"):
            arrays[f"run/{run}/samples"] = rng.integers(0, 255, (16, 1, 28, 28), dtype=np.uint8)
            arrays[f"run/{run}/reconstructions"] = rng.integers(0, 255, (5, 1, 28, 28), dtype=np.uint8)
            runs_json[run] = {"role": "ae" if run == "ae" else "tuned" if run == "tuned" else "fixed"}
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            check, _ = check_handin(sub, a, arrays, runs_json)
            times.append(time.perf_counter() - started)
        added = statistics.median(times)
        matched = sum(f["matched"] == "notebook" for f in check["figures"])
        print(f"{'hand-in PDF check':<28}{'pages':>8}{'images':>8}{'matched':>9}{'flags':>7}{'added s':>9}")
        print(
            f"{'(median of ' + str(repeat) + ')':<28}{check['pages']:>8}{len(check['figures']):>8}{matched:>9}"
            f"{len(check['flags']):>7}{added:>9.2f}"
        )
        print(f"target: <= 5 s added to a grade; ratio to target {added / 5:.2f}")


if __name__ == "__main__":
    main()
