"""What the sandbox stops, and what its isolation costs per unit.

    HARNESS_DATA=<MNIST root> python benchmarks/isolation.py [--units 10] [--skip-cost]
        [--harness PATH]

**The hostile table.** Each hostile attempt is a copy of the example whose submission.py
tries one thing at import and then raises ``RESULT: <what happened>``; the table is read
back from the ``check.json`` that ``python -m harness check`` writes, so the same script
measures any version of the harness: ``--harness PATH`` runs the checkout at PATH (for
example a clone at an older commit) instead of this one. "blocked": the attempt failed
inside the sandbox; "contained": a write succeeded only into the unit's own /tmp, and
nothing changed outside.

**The cost.** The same submission's import unit run ``--units`` times, side by side in one
run: in the full sandbox (namespaces, the deny-by-default root, a fresh /tmp per unit,
leaving root) and with the supervisor told to skip the namespaces and the built root (what
a machine without ``unshare`` gets). It prints the start-up time and the mean seconds per
unit of each, and the difference per unit.

**The evaluation unit** (``--runs N``, 0 to skip): since trained models are measured in a unit
of their own (docs/sandbox.md#trusted-measurement), each training run costs an export at the
end of its training unit and a second, evaluation unit. The example's AE is trained N times
(``--images`` training images, one epoch, the handout's batch size) and measured on the
assignment's evaluation images and prior draws; it prints, side by side in one run, the
training unit's seconds (training and export), the export's share and the evaluation unit's
seconds and peak memory, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-of-another-student"

# name: (code run at import; it sets `got` to what the attempt reached, "" when it was stopped)
ATTEMPTS = {
    "read /etc/shadow": "got = open('/etc/shadow').read(40)",
    "list /root": "got = str([p for p in os.listdir('/root') if p != '.pyenv'])  # only the way to Python is expected",
    "read the checkout's .git/config": "got = open({checkout!r} + '/.git/config').read(40)",
    "read another submission": "got = open({other!r}).read(40)",
    "read the cache": "got = str(os.listdir({cache!r}))",
    "write .git/hooks/post-checkout": (
        "open({checkout!r} + '/.git/hooks/post-checkout', 'w').write('x'); got = 'written'"
    ),
    "write templates/": "open({checkout!r} + '/templates/planted.html', 'w').write('x'); got = 'written'",
    "write reports/ beside --out": "open({out!r} + '/../planted.json', 'w').write('x'); got = 'written'",
    "write the cache": "open({cache!r} + '/planted', 'w').write('x'); got = 'written'",
    "write the host's /tmp": "open({host_tmp!r}, 'w').write('x'); got = 'written'",
    "uid is 0": "got = 'uid 0' if os.getuid() == 0 else ''",
    # 2 GB, not the test suite's 10 GB: on a harness without a capped /tmp it lands on the host's disk
    "fill /tmp with 2 GB": (
        "n = 0\nf = open('/tmp/fill', 'wb')\nfor _ in range(32):\n    f.write(bytes(64 << 20)); n += 64\n"
        "got = f'{{n}} MB written'"
    ),
}
WRITES = {
    "write .git/hooks/post-checkout": "{checkout}/.git/hooks/post-checkout",
    "write templates/": "{checkout}/templates/planted.html",
    "write reports/ beside --out": "{out}/../planted.json",
    "write the cache": "{cache}/planted",
    "write the host's /tmp": "{host_tmp}",
}


def attempt_code(body: str) -> str:
    indented = "\n".join("    " + line for line in body.splitlines())
    return (
        "import os\ngot = ''\ntry:\n" + indented + "\nexcept Exception:\n    got = 'stopped'\n"
        "raise RuntimeError('RESULT: ' + got)\n"
    )


def hostile_table(harness: Path, work: Path, data: str) -> list[tuple[str, str]]:
    """(attempt, outcome) for each attempt, run through `harness check` of the checkout at ``harness``."""
    checkout, cache, other = harness, work / "cache", work / "other" / "answers.md"
    cache.mkdir()
    (cache / "entry.json").write_text("{}")
    other.parent.mkdir()
    other.write_text(SECRET)
    rows = []
    for name, body in ATTEMPTS.items():
        sub, out = work / "subs" / name.replace(" ", "-").replace("/", "_"), work / "out"
        host_tmp = f"/tmp/harness-bench-planted-{os.getpid()}"
        where = {
            "checkout": str(checkout),
            "other": str(other),
            "cache": str(cache),
            "out": str(out),
            "host_tmp": host_tmp,
        }
        shutil.copytree(ROOT / "submissions" / "example", sub)
        with open(sub / "submission.py", "a") as f:
            f.write("\n" + attempt_code(body.format(**where)))
        env = {**os.environ, "HARNESS_DATA": data, "HARNESS_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
        subprocess.run(
            [sys.executable, "-m", "harness", "check", str(sub), "--out", str(out)],
            cwd=harness,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        try:
            result = json.loads((out / sub.name / "check.json").read_text())
            evidence = next(i for i in result["items"] if i["id"] == "ae_architecture")["evidence"][0]
            got = evidence.split("RESULT: ", 1)[1].split("\n")[0] if "RESULT: " in evidence else evidence[:80]
        except (OSError, ValueError, StopIteration):
            got = "no result"
        planted = WRITES.get(name, "").format(**where)
        if planted and Path(planted).exists():
            outcome = "GOT THROUGH: written outside the sandbox"
            Path(planted).unlink()
        elif planted and got == "written":
            outcome = "contained: written only into the unit's own /tmp"
        elif got in ("stopped", "", "[]"):  # raised, nothing reached, or only the way to Python in /root
            outcome = "blocked"
        else:
            outcome = f"GOT THROUGH: {got[:70]}"
        rows.append((name, outcome))
    return rows


def cost(units: int) -> list[tuple[str, float, float]]:
    """(mode, first unit incl. start-up, mean per later unit) for the full sandbox and for none."""
    import torch

    from harness.config.assignment import load_assignment
    from harness.sandbox.host import Limits, Sandbox
    from harness.submission.detect import load

    a = load_assignment("variant-a")
    sub = load(ROOT / "submissions" / "example", a)
    rows = []
    for mode in ("full sandbox", "no namespaces"):
        box = Sandbox(sub, a, {"x": torch.zeros(1)})
        if mode == "no namespaces":
            box.config.update(mount_ns=False)
            box.prot = box.prot.__class__(False, box.prot.drop, box.prot.lines, box.prot.pdeathsig)
        with box:
            started = time.perf_counter()
            first = box.run("u0", "import", Limits(120, 4000))
            first_s = time.perf_counter() - started
            started = time.perf_counter()
            for i in range(units):
                assert box.run(f"u{i + 1}", "import", Limits(120, 4000)).ok
            rows.append((mode, first_s, (time.perf_counter() - started) / units))
        assert first.ok, first.error
    return rows


def evaluation_cost(runs: int, images: int) -> list[dict]:
    """Per run: the training unit's seconds, its export's, the evaluation unit's and its peak MB."""
    import dataclasses

    from harness.config.assignment import load_assignment
    from harness.config.plan import run_plan
    from harness.grading import runs as grading_runs
    from harness.grading.code import probe_inputs
    from harness.grading.session import evaluate_trained
    from harness.ml.data import load_mnist
    from harness.sandbox.graph import load_program
    from harness.sandbox.host import Limits, Sandbox
    from harness.sandbox.probes import evaluate
    from harness.submission.detect import load

    a = load_assignment("variant-a")
    data = load_mnist()
    sub = load(ROOT / "submissions" / "example", a)
    plan = run_plan(a, a.profile("smoke"))[0]
    request = dataclasses.replace(grading_runs.base_request(a, plan, "cpu"), epochs=1)
    shared = {
        **probe_inputs(data),
        **grading_runs.training_inputs(a, data.train_images[:images], data.train_labels[:images]),
    }
    evaluation = grading_runs.evaluation_inputs(a, data, a.metrics.fid_samples)
    limits = Limits(900, 6000, threads=int(os.environ.get("OMP_NUM_THREADS", "2")))
    rows = []
    with Sandbox(sub, a, shared) as box:
        for i in range(runs):
            trained = box.run(f"train-{i}", "train", limits, request.to_args())
            assert trained.ok, trained.error
            export_s = float(trained.value["model"]["seconds"])
            programs = trained.value["model"]["programs"]
            started = time.perf_counter()  # the measurement alone, in this process: what the unit adds is the rest
            encoder, decoder = load_program(programs["encoder"]), load_program(programs["decoder"])
            evaluate(request, a.model.nz, encoder, decoder, evaluation)
            compute_s = time.perf_counter() - started
            timings: dict = {}
            measured = evaluate_trained(box, trained, request, limits, evaluation, timings)
            assert measured.ok and measured.value["measured_in"] == "graph", measured.error
            rows.append(
                {
                    "train_s": trained.seconds,
                    "export_s": export_s,
                    "eval_s": timings[f"eval-train-{i}"],
                    "compute_s": compute_s,
                    "eval_peak_mb": timings[f"peak_mb:eval-train-{i}"],
                    "train_peak_mb": trained.peak_memory_mb,
                }
            )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--units", type=int, default=10)
    p.add_argument("--harness", default=str(ROOT), help="checkout whose `harness check` runs the hostile table")
    p.add_argument("--skip-cost", action="store_true")
    p.add_argument("--skip-hostile", action="store_true")
    p.add_argument("--runs", type=int, default=3, help="training runs for the evaluation unit's cost (0: skip)")
    p.add_argument("--images", type=int, default=2000, help="training images per run (smoke's 2,000)")
    args = p.parse_args()
    data = os.environ.get("HARNESS_DATA", "")
    if not args.skip_hostile:
        with tempfile.TemporaryDirectory() as tmp:
            rows = hostile_table(Path(args.harness).resolve(), Path(tmp), data)
        print(f"hostile attempts through `harness check` of {args.harness}:")
        print("| attempt | outcome |\n| --- | --- |")
        for name, outcome in rows:
            print(f"| {name} | {outcome} |")
        print(f"stopped: {sum(not o.startswith('GOT THROUGH') for _, o in rows)} of {len(rows)}")
    if not args.skip_cost:
        rows = cost(args.units)
        print(f"\nper-unit cost, {args.units} import units each, side by side:")
        print("| mode | first unit (with start-up) s | per later unit s |\n| --- | --- | --- |")
        for mode, first, per in rows:
            print(f"| {mode} | {first:.2f} | {per:.3f} |")
        print(
            f"isolation costs {rows[0][2] - rows[1][2]:+.3f} s per unit and {rows[0][1] - rows[1][1]:+.2f} s at start"
        )
    if args.runs:
        rows = evaluation_cost(args.runs, args.images)
        print(f"\nthe evaluation unit, {args.runs} AE runs of 1 epoch on {args.images} images, side by side:")
        print(
            "| run | training unit s | of which export s | evaluation unit s | same measurement in-process s |"
            " eval unit / training unit | eval peak MB |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for i, r in enumerate(rows):
            ratio = r["eval_s"] / r["train_s"]
            print(
                f"| {i} | {r['train_s']:.2f} | {r['export_s']:.2f} | {r['eval_s']:.2f} | {r['compute_s']:.2f} |"
                f" {ratio:.2f} | {r['eval_peak_mb']:.0f} |"
            )
        extra = sum(r["export_s"] + r["eval_s"] - r["compute_s"] for r in rows) / len(rows)
        print(f"mean cost of trusted measurement per run (export + evaluation unit - the measurement): {extra:.2f} s")


if __name__ == "__main__":
    main()
