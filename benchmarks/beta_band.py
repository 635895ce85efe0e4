"""Does a tuned beta earn the same points under every profile? Grades the example submission at
betas 1e-5 ... 1e-1 under each profile and prints beta_tuning, interpolation and the total
side by side, with the full-protocol band they are judged by.

    HARNESS_DATA=<MNIST root> python benchmarks/beta_band.py [--profiles smoke,quick]
        [--betas 1e-5,1e-4,1e-3,1e-2,1e-1] [--device auto] [--cache DIR]

The band is built first when it is not cached (``harness reference --band``: the AE and the
beta search under ``full``). Target: the same betas pass (full beta_tuning points) in every
profile, exactly those inside the band. Add ``full`` to --profiles on a GPU.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.config.assignment import load_assignment  # noqa: E402
from harness.grading.grade import grade_submission  # noqa: E402
from harness.grading.grader import make_grader  # noqa: E402
from harness.grading.session import RunOptions  # noqa: E402
from harness.ml.data import load_mnist  # noqa: E402
from harness.ml.training import resolve_device  # noqa: E402
from harness.reference.beta_band import ensure_band  # noqa: E402
from harness.reference.build import build_reference  # noqa: E402
from harness.reference.cache import cache_root  # noqa: E402


def with_beta(tmp: Path, beta: float) -> Path:
    """A copy of the example whose submission.toml states ``beta``."""
    folder = tmp / f"beta-{beta:g}"
    shutil.copytree(ROOT / "submissions" / "example", folder)
    toml = folder / "submission.toml"
    lines = [f"tuned_beta = {beta!r}" if ln.startswith("tuned_beta") else ln for ln in toml.read_text().splitlines()]
    toml.write_text("\n".join(lines) + "\n")
    return folder


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profiles", default="smoke,quick")
    p.add_argument("--betas", default="1e-5,1e-4,1e-3,1e-2,1e-1")
    p.add_argument("--assignment", default="variant-a")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache")
    args = p.parse_args()

    a, data = load_assignment(args.assignment), load_mnist()
    device, cache = resolve_device(args.device), cache_root(args.cache)
    betas = [float(b) for b in args.betas.split(",")]
    profiles = [n for n in args.profiles.split(",") if n]
    print(f"device {device}, {torch.get_num_threads()} torch threads, data {data.source.root}")
    t0 = time.perf_counter()
    band = ensure_band(a, data, device, cache, quiet=True)
    print(f"{band.describe()} ({band.source}; {time.perf_counter() - t0:.1f} s, cached after the first run)")
    points: dict[tuple[str, float], tuple[float, float, float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {b: with_beta(Path(tmp), b) for b in betas}
        for name in profiles:
            profile = a.profile(name)
            g = make_grader(
                a, profile, data, build_reference(a, profile, data, device, cache, quiet=True), cache, device
            )
            for b in betas:
                t0 = time.perf_counter()
                result = grade_submission(folders[b], g, RunOptions(device=str(device), quiet=True))
                items = {i.id: i.points for i in result.items}
                points[name, b] = (items["beta_tuning"], items["interpolation"], result.total, time.perf_counter() - t0)
    head = f"{'beta':>8} {'band':>5}" + "".join(f" | {n + ': tuning  interp  total  s':>34}" for n in profiles)
    print(head)
    print("-" * len(head))
    agree = True
    for b in betas:
        row = f"{b:>8g} {'in' if band.contains(b) else 'out':>5}"
        full_marks = set()
        for n in profiles:
            tuning, interp, total, secs = points[n, b]
            full_marks.add(tuning == a.item("beta_tuning").points)
            row += f" | {tuning:>13g}  {interp:>6g}  {total:>5g}  {secs:>3.0f}"
        agree &= len(full_marks) == 1 and full_marks == {band.contains(b)}
        print(row)
    print(f"same betas pass in every profile, exactly those in the band: {'yes' if agree else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
