"""What every command's run of student code shares: its options, the sandbox it opens, the
limits of each unit, the runner of a training unit, and the result it builds.

``check``, ``grade`` and ``report`` (``harness.grading.check``, ``.grade``, ``.write_up``) are
siblings built on this module; none imports another.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.config.assignment import Assignment
from harness.grading.result import Result, run_versions, submission_result
from harness.grading.rubric import ItemResult
from harness.progress import Progress
from harness.sandbox.host import Limits, Sandbox, SandboxError, UnitOutcome, protections
from harness.sandbox.requests import TrainRequest
from harness.submission.contents import Submission
from harness.submission.identity import CANVAS_PATTERN


@dataclass(frozen=True)
class RunOptions:
    """What a command's run of student code can set: the CLI's ``--timeout``, ``--memory``,
    ``--train-timeout``, ``--device``, ``--out``, ``-q`` and ``--name-pattern``."""

    timeout_s: float | None = None  # per check unit; default the assignment's [sandbox] check_timeout_s
    memory_mb: int | None = None  # per unit; default the assignment's [sandbox] memory_mb
    train_timeout_s: float | None = None  # per training unit, outright; default from the reference's time
    device: str = "cpu"  # a resolved device name, passed to the student's loops
    threads: int = 0  # torch threads per training unit; 0: as many as this process uses
    out: Path | None = None  # the submission's output folder: its artefacts go there (None: not written)
    quiet: bool = False
    name_pattern: str = CANVAS_PATTERN  # reads a notebook's student from its file name (--name-pattern)


def check_limits(a: Assignment, options: RunOptions) -> Limits:
    """The limits of a check unit (import, architecture, forward pass, sampling, VAE)."""
    s = a.sandbox
    return Limits(options.timeout_s or s.check_timeout_s, options.memory_mb or s.memory_mb, s.output_cap_kb)


def training_limits(a: Assignment, options: RunOptions, reference_s: float | None, student_loop: bool) -> Limits:
    """A training unit's limits: ``[sandbox] train_time_multiple`` x the reference's own time for
    the same run (``reference_s``), at least ``train_floor_s`` and at most ``train_timeout_s``;
    ``--train-timeout`` wins. The stall watchdog watches the student's loop only: the harness's
    loop reports no steps."""
    s = a.sandbox
    threads = options.threads or torch.get_num_threads()
    base = Limits(s.train_timeout_s, options.memory_mb or s.memory_mb, s.output_cap_kb, threads)
    stall = s.stall_s if student_loop else 0.0
    if options.train_timeout_s:
        return dataclasses.replace(base, timeout_s=options.train_timeout_s, stall_s=stall, why="set by --train-timeout")
    if not reference_s:
        return dataclasses.replace(base, stall_s=stall, why="the assignment's train_timeout_s")
    limit = min(s.train_timeout_s, max(s.train_floor_s, s.train_time_multiple * reference_s))
    why = (
        f"{s.train_time_multiple:g} x the reference's {reference_s:.0f} s for this run, "
        f"at least {s.train_floor_s:.0f} s"
    )
    return dataclasses.replace(base, timeout_s=round(limit), stall_s=stall, why=why)


class _NoSandbox:
    """Stands in for a sandbox that could not start: every unit reports that, nothing runs."""

    def __init__(self, error: str, submission: Submission):
        self.error, self.submission = error, submission
        self.foreign_status: dict[str, int] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def run(self, unit: str, probe: str, limits: Limits, args: dict | None = None, **_) -> UnitOutcome:
        return UnitOutcome(unit, "crashed", error=f"could not set up the sandbox: {self.error}")

    def progress(self, unit: str) -> int:
        return 0

    def skip_cells(self, numbers: list[int]) -> None:
        pass


def open_sandbox(sub: Submission, a: Assignment, inputs: dict[str, torch.Tensor]):
    """A sandbox for this submission (a context manager), or a stand-in whose units all fail
    with the reason when the machine cannot start one."""
    try:
        return Sandbox(sub, a, inputs)
    except (SandboxError, OSError) as e:
        return _NoSandbox(str(e), sub)


def run_training_unit(
    box,
    unit: str,
    request: TrainRequest,
    limits: Limits,
    total_steps: int,
    label: str,
    quiet: bool,
    timings: dict,
    evaluation: dict[str, torch.Tensor],
) -> UnitOutcome:
    """One training unit in the sandbox, with a progress bar (``label``) fed by the steps the unit
    reports, then the trained model measured on ``evaluation`` in a unit of its own
    (:func:`evaluate_trained`); each unit's seconds and peak memory go into ``timings``."""
    with Progress(total=total_steps, desc=f"{label} {unit}", unit="step", disable=quiet, leave=False) as bar:
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.5):
                bar.update(max(0, min(box.progress(unit), total_steps) - bar.n))

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        outcome = box.run(unit, "train", limits, request.to_args())
        done.set()
        poller.join()
    timings[unit] = outcome.seconds
    timings[f"peak_mb:{unit}"] = round(outcome.peak_memory_mb, 1)
    return evaluate_trained(box, outcome, request, limits, evaluation, timings) if outcome.ok else outcome


def evaluate_trained(
    box, trained: UnitOutcome, request: TrainRequest, limits: Limits, evaluation: dict, timings: dict
) -> UnitOutcome:
    """The training unit's outcome with the trained model's outputs, measured in a fresh
    evaluation unit on inputs the training unit never received: its exported programs where
    there are some (no code of the submission's runs in that unit), else the submission's class
    definitions with the trained weights (docs/sandbox.md#trusted-measurement)."""
    value = trained.value or {}
    model = value.pop("model", None)
    if not isinstance(model, dict) or not isinstance(model.get("state_dict"), dict):
        trained.status, trained.error = "error", "the training unit handed back no trained model"
        return trained
    exported = isinstance(model.get("programs"), dict)
    test = evaluation["test_u8"]
    inputs = {
        **evaluation,
        "model": model,
        "arch_images": test[:8].float().div(255.0),
        "images": test[:64].float().div(255.0),  # a notebook's definition pass reads a test set
        "labels": torch.zeros(min(64, len(test)), dtype=torch.long),
    }
    unit = f"eval-{trained.unit}"
    limits = dataclasses.replace(limits, stall_s=0.0)
    o = box.run(unit, "evaluate", limits, {"request": request.to_args()}, inputs=inputs, trusted=exported)
    timings[unit] = o.seconds
    timings[f"peak_mb:{unit}"] = round(o.peak_memory_mb, 1)
    if not o.ok:
        where = "its exported graph" if exported else "your model's definitions with the trained weights"
        trained.status, trained.error = o.status, f"measuring the trained model ({where}): {o.describe()}"
        trained.traceback = o.traceback
        return trained
    tampered = sorted({*value.get("tampered", []), *o.value.get("tampered", [])})
    trained.value = {**value, **o.value, "export_error": str(model.get("export_error", "")), "tampered": tampered}
    return trained


def new_result(
    kind: str,
    sub: Submission,
    a: Assignment,
    profile: str,
    items: list[ItemResult],
    pending: list[str],
    answers: dict,
    timings: dict,
    reference: dict | None = None,
    cells: list[dict] | None = None,
) -> Result:
    """A result with this run's provenance: protections in force, versions, time; for a notebook,
    what reading it found and how its cells ran (``cells``)."""
    return submission_result(
        kind,
        sub,
        a,
        profile,
        items,
        pending,
        answers,
        timings,
        list(protections().lines),
        run_versions(),
        reference,
        cells,
    )
