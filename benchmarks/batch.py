"""Course throughput: submissions per hour of a batch, by how the batch uses the machine.

    HARNESS_DATA=<MNIST root> python benchmarks/batch.py [--profile quick] [--submissions 4]
        [--no-report] [--cache DIR]

One course of N copies of the example submission is graded four times, side by side in one
run, each time into a fresh output folder, with the reference and grader built once before
(not timed):

    1 worker  x 1 thread     one submission at a time, each training unit on 1 core
    1 worker  x 2 threads    one at a time, units on both cores
    2 workers x 1 thread     two at a time in this process (harness.batch's thread pool)
    Dask 2 x 1 thread        a 2-worker LocalCluster on loopback (harness.cluster)

For Dask the cluster's start and the workers' grader build are timed apart and reported on
their own line; the batch's time and rate cover only the grading. Targets on 2 cores:
2 workers >= 1.7x one single-thread worker (parallel efficiency >= 85 %), 2 workers never
slower than 1 worker with 2 threads, the LocalCluster within 10 % of the local pool. The
points of every submission must agree across the four ways.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.assignment import load_assignment  # noqa: E402
from harness.batch import BatchOptions, grade_batch  # noqa: E402
from harness.cache import cache_root  # noqa: E402
from harness.data import load_mnist  # noqa: E402
from harness.grade import GradeOptions, make_grader  # noqa: E402
from harness.reference import build_reference  # noqa: E402


def course(tmp: Path, n: int) -> Path:
    root = tmp / "course"
    for i in range(n):
        shutil.copytree(ROOT / "submissions" / "example", root / f"student-{i:02d}")
    return root


def timed_batch(root: Path, grader, out: Path, options: BatchOptions, runner=None) -> tuple[float, pd.DataFrame]:
    started = time.perf_counter()
    summary = grade_batch(root, grader, out, [], options, runner)
    seconds = time.perf_counter() - started
    errors = [o for o in summary.outcomes if o.status == "error"]
    if errors:
        raise SystemExit(f"{out.name}: {errors[0].id}: {errors[0].error}")
    return seconds, pd.read_csv(out / "grades.csv")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="quick")
    p.add_argument("--submissions", type=int, default=4, help="copies of the example in the course (default 4)")
    p.add_argument("--no-report", action="store_true", help="skip each submission's report (HTML and PDF)")
    p.add_argument("--assignment", default="variant-a")
    p.add_argument("--cache")
    args = p.parse_args()

    cores = len(os.sched_getaffinity(0))
    a = load_assignment(args.assignment)
    profile = a.profile(args.profile)
    data = load_mnist()
    cache = cache_root(args.cache)
    device = torch.device("cpu")
    ref = build_reference(a, profile, data, device, cache, quiet=True)
    grader = make_grader(a, profile, data, ref, cache, device)
    print(f"{args.submissions} copies of the example, profile {profile.name}, {cores} cores, reports "
          f"{'off' if args.no_report else 'on'}")  # fmt: skip

    def options(workers: int, threads: int) -> BatchOptions:
        return BatchOptions(workers=workers, render=not args.no_report, quiet=True,
                            grade=replace(GradeOptions(), threads=threads, quiet=True))  # fmt: skip

    results: dict[str, tuple[float, pd.DataFrame]] = {}
    with tempfile.TemporaryDirectory(prefix="harness-bench-batch-") as tmp:
        root = course(Path(tmp), args.submissions)
        for label, workers, threads in (("1 worker x 1 thread", 1, 1), ("1 worker x 2 threads", 1, 2),
                                        ("2 workers x 1 thread", 2, 1)):  # fmt: skip
            torch.set_num_threads(threads)  # the batch process's own measurements, like its units
            results[label] = timed_batch(root, grader, Path(tmp) / label.replace(" ", ""), options(workers, threads))
            print(f"  {label}: {results[label][0]:.1f} s", flush=True)

        from distributed import Client, LocalCluster

        from harness.cluster import DaskRunner, grading_kit

        torch.set_num_threads(1)
        started = time.perf_counter()
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:  # fmt: skip
            runner = DaskRunner(client, grading_kit(grader, cache, "cpu"), Path(tmp) / "dask", [], options(2, 1))
            start_up = time.perf_counter() - started
            results["Dask 2 x 1 thread"] = timed_batch(root, grader, Path(tmp) / "dask", options(2, 1), runner)
        print(f"  Dask 2 x 1 thread: {results['Dask 2 x 1 thread'][0]:.1f} s (+ {start_up:.1f} s to start the cluster and "
              f"build the workers' graders)")  # fmt: skip

    base = results["1 worker x 1 thread"][0]
    print(f"\n{'way':<24}{'seconds':>10}{'subs/hour':>11}{'vs 1x1':>9}")
    for label, (seconds, _) in results.items():
        print(f"{label:<24}{seconds:>10.1f}{3600 * args.submissions / seconds:>11.1f}{base / seconds:>8.2f}x")
    pool, both, dask = (results[k][0] for k in ("2 workers x 1 thread", "1 worker x 2 threads", "Dask 2 x 1 thread"))
    print(f"\n2 workers vs 1 worker x 1 thread: {base / pool:.2f}x (target >= 1.7; parallel efficiency "
          f"{base / pool / 2:.0%}, target >= 85%)")  # fmt: skip
    print(f"2 workers vs 1 worker x 2 threads: {both / pool:.2f}x (target >= 1.0)")
    print(f"Dask LocalCluster vs local pool: {dask / pool:.2f}x the time (target within 10%: 0.90-1.10)")
    points = {k: list(df["total"]) for k, (_, df) in results.items()}
    same = len({tuple(v) for v in points.values()}) == 1
    print(f"totals agree across the four ways: {'yes' if same else 'NO'} {points[next(iter(points))]}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
