"""Course throughput: submissions per hour of a batch, by how the batch uses the machine.

    HARNESS_DATA=<MNIST root> python benchmarks/batch.py [--profile quick] [--submissions 4]
        [--rounds 2] [--no-report] [--cache DIR]

One course of N copies of the example submission is graded in four ways, each time into a
fresh output folder, with the reference and grader built once before (not timed):

    1 worker  x 1 thread     one submission at a time, each training unit on 1 core
    1 worker  x 2 threads    one at a time, units on both cores
    2 workers x 1 thread     two at a time in this process (harness.course.batch's thread pool)
    Dask 2 x 1 thread        a 2-worker LocalCluster on loopback, started as `grade --dask`
                             starts it (harness.course.cluster.connect)

The ways are interleaved: each round runs all four, and every second round runs them in the
reverse order, so with an even number of rounds every way has the same mean position in the
run. A machine whose speed drifts during the run (this kind of virtual machine slows by 10-20 %
over a quarter of an hour) then favours none of them; each round's times are printed so the
drift can be seen. Figures are the mean over rounds. For Dask a fresh cluster is started
every round; its start and the workers' grader build are timed apart and reported on their
own line.

Targets on 2 cores: 2 workers >= 1.7x one single-thread worker (parallel efficiency >= 85 %),
2 workers never slower than 1 worker with 2 threads, the LocalCluster within 10 % of the local
pool. The points of every submission must agree across ways and rounds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.config.assignment import load_assignment  # noqa: E402
from harness.course.batch import BatchOptions, grade_batch  # noqa: E402
from harness.grading.grader import make_grader  # noqa: E402
from harness.grading.session import RunOptions  # noqa: E402
from harness.ml.data import load_mnist  # noqa: E402
from harness.reference.build import build_reference  # noqa: E402
from harness.reference.cache import cache_root  # noqa: E402


def course(tmp: Path, n: int) -> Path:
    root = tmp / "course"
    for i in range(n):
        shutil.copytree(ROOT / "submissions" / "example", root / f"student-{i:02d}")
    return root


def timed_batch(root: Path, grader, out: Path, options: BatchOptions, runner=None) -> tuple[float, pd.DataFrame]:
    started = time.perf_counter()
    summary = grade_batch(root, grader, out, options, runner)
    seconds = time.perf_counter() - started
    errors = [o for o in summary.outcomes if o.status == "error"]
    if errors:
        raise SystemExit(f"{out.name}: {errors[0].id}: {errors[0].error}")
    return seconds, pd.read_csv(out / "grades.csv")


def dask_batch(root: Path, grader, cache: Path, out: Path, options: BatchOptions) -> tuple[float, pd.DataFrame, float]:
    """The batch on a fresh LocalCluster, as ``grade --dask`` runs it; also returns the seconds
    spent starting the cluster and building the workers' graders."""
    from harness.course.cluster import DaskRunner, connect, grading_kit

    started = time.perf_counter()
    client, cluster = connect(None, options.workers)
    with cluster, client:
        runner = DaskRunner(client, grading_kit(grader, cache, "cpu"), out, options)
        start_up = time.perf_counter() - started
        seconds, table = timed_batch(root, grader, out, options, runner)
    return seconds, table, start_up


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="quick")
    p.add_argument("--submissions", type=int, default=4, help="copies of the example in the course (default 4)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of the four ways, in alternating order (default 2)")
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
    print(
        f"{args.submissions} copies of the example, profile {profile.name}, {cores} cores, reports "
        f"{'off' if args.no_report else 'on'}"
    )

    def options(workers: int, threads: int) -> BatchOptions:
        return BatchOptions(
            workers=workers,
            render=not args.no_report,
            quiet=True,
            run=RunOptions(threads=threads, quiet=True),
        )

    ways = [
        ("1 worker x 1 thread", 1, 1),
        ("1 worker x 2 threads", 1, 2),
        ("2 workers x 1 thread", 2, 1),
        ("Dask 2 x 1 thread", 2, 1),
    ]
    times: dict[str, list[float]] = {label: [] for label, _, _ in ways}
    totals: dict[str, list[list[float]]] = {label: [] for label, _, _ in ways}
    start_ups: list[float] = []
    with tempfile.TemporaryDirectory(prefix="harness-bench-batch-") as tmp:
        root = course(Path(tmp), args.submissions)
        for r in range(args.rounds):
            print(f"round {r + 1} of {args.rounds}", flush=True)
            for label, workers, threads in ways if r % 2 == 0 else ways[::-1]:
                out = Path(tmp) / f"{r}-{label.replace(' ', '')}"
                torch.set_num_threads(threads)  # the batch process's own measurements, like its units
                if label.startswith("Dask"):
                    seconds, table, start_up = dask_batch(root, grader, cache, out, options(workers, threads))
                    start_ups.append(start_up)
                    print(
                        f"  {label}: {seconds:.1f} s (+ {start_up:.1f} s to start the cluster and build the "
                        f"workers' graders)",
                        flush=True,
                    )
                else:
                    seconds, table = timed_batch(root, grader, out, options(workers, threads))
                    print(f"  {label}: {seconds:.1f} s", flush=True)
                times[label].append(seconds)
                totals[label].append(list(table["total"]))

    mean = {label: statistics.fmean(t) for label, t in times.items()}
    base = mean["1 worker x 1 thread"]
    print(f"\nmean of {args.rounds} round(s)\n{'way':<24}{'seconds':>10}{'subs/hour':>11}{'vs 1x1':>9}")
    for label, seconds in mean.items():
        print(f"{label:<24}{seconds:>10.1f}{3600 * args.submissions / seconds:>11.1f}{base / seconds:>8.2f}x")
    print(f"Dask cluster start and grader build: {statistics.fmean(start_ups):.1f} s (not in the figures above)")
    pool, both, dask = (mean[k] for k in ("2 workers x 1 thread", "1 worker x 2 threads", "Dask 2 x 1 thread"))
    print(
        f"\n2 workers vs 1 worker x 1 thread: {base / pool:.2f}x (target >= 1.7; parallel efficiency "
        f"{base / pool / 2:.0%}, target >= 85%)"
    )
    print(f"2 workers vs 1 worker x 2 threads: {both / pool:.2f}x (target >= 1.0)")
    print(
        f"Dask LocalCluster vs local pool: {dask / pool:.2f}x the time (target within 10%: 0.90-1.10); "
        "by round: "
        + ", ".join(
            f"{d / p:.2f}x" for d, p in zip(times["Dask 2 x 1 thread"], times["2 workers x 1 thread"], strict=False)
        )
    )
    seen = {tuple(t) for runs in totals.values() for t in runs}
    print(f"totals agree across ways and rounds: {'yes' if len(seen) == 1 else 'NO'} {sorted(seen)[0]}")
    return 0 if len(seen) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
