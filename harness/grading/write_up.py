"""``harness report``: the student's write-up, trained with their own code.

The student's deliverable, in the order of the course's write-up: their AE's samples,
then for beta = 0, beta = 10 and their tuned beta the training curves, reconstructions
and samples, then the interpolation comparisons, each followed by their answers. The
four runs are the same sandboxed training units as ``harness grade`` (their own model,
data loader and loop; no reference, no classifier, no points), so a student sees the
figures their grade is based on. Output: ``write-up.json`` (a result of kind
``write-up``), ``write-up.npz`` (run artefacts) and, through ``harness.documents.render``,
``write-up.html`` and ``write-up.pdf``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.config.assignment import Assignment, Profile
from harness.grading import artifacts
from harness.grading.check import new_result, open_sandbox, score_answers
from harness.grading.grade import (
    eval_images,
    planned_runs,
    run_record,
    run_training_unit,
    skipped_record,
    training_inputs,
    training_limits,
    tuned_beta_missing,
    unit_name,
)
from harness.grading.result import Result
from harness.ml import metrics
from harness.ml.data import Mnist, subset
from harness.sandbox.host import Limits
from harness.submission.folder import load_submission

RESULT_NAME, ARTIFACTS_NAME = "write-up.json", "write-up.npz"


@dataclass(frozen=True)
class ReportOptions:
    device: str = "cpu"
    train_timeout_s: float | None = None
    memory_mb: int | None = None
    quiet: bool = False


def write_up_inputs(a: Assignment, profile: Profile, data: Mnist) -> dict[str, torch.Tensor]:
    """The same training subset, evaluation images, prior draws and path ends as ``grade``;
    only the prior draws the write-up shows are decoded."""
    images, labels = subset(data.train_images, data.train_labels, profile.train_images, a.training.seed)
    return training_inputs(a, data, images, labels, a.sampling.n)


def write_up(
    folder: Path, a: Assignment, profile: Profile, data: Mnist, out: Path, options: ReportOptions = ReportOptions()
) -> Result:
    """Train the submission's four runs with its own code and store the write-up's data in ``out``."""
    started = time.perf_counter()
    sub = load_submission(folder, a)
    t = a.training
    # No reference is built for a write-up, so no reference time: the assignment's ceiling and the stall watchdog.
    limits = training_limits(
        Limits(
            a.sandbox.train_timeout_s,
            options.memory_mb or a.sandbox.memory_mb,
            a.sandbox.output_cap_kb,
            torch.get_num_threads(),
        ),
        a,
        None,
        options.train_timeout_s,
        student_loop=True,
    )
    inputs = write_up_inputs(a, profile, data)
    batches = -(-len(inputs["train_u8"]) // t.batch_size)
    common = {
        "batch_size": t.batch_size,
        "num_workers": 0,
        "seed": t.seed,
        "device": options.device,
        "steps": a.interpolation.steps,
        "harness_loader": False,
        "contract": False,
        "reference_model": False,
        "substitute": [],
    }
    specs = {t.ae.name: t.ae, t.tuned.name: t.tuned, **{s.name: s for s in t.fixed}}
    plan = []  # (name, role, unit args) of each run; the tuned run trains at the submission's beta
    for name, role, kind, beta in planned_runs(a):
        spec = specs[name]
        beta = sub.tuned_beta if role == "tuned" else beta
        args = {"kind": kind, "epochs": profile.epochs(spec.epochs), "learning_rate": spec.learning_rate}
        plan.append((name, role, args if kind == "ae" else {**args, "beta": beta}))
    timings: dict[str, float] = {}
    runs: dict[str, dict] = {}
    test = eval_images(a, data)
    arrays = artifacts.test_arrays(test, data.test_labels[: len(test)], a.interpolation.pairs, a.sampling.grid)
    if sub.has_code:
        with open_sandbox(sub, a, inputs) as box:
            for name, role, args in plan:
                if role == "tuned" and sub.tuned_beta is None:
                    runs[name] = skipped_record(role, "vae", None, tuned_beta_missing(sub, a))
                    continue
                args = {**common, **args}
                o = run_training_unit(
                    box, sub.id, unit_name(name, role), args, limits, args["epochs"] * batches, options.quiet, timings
                )
                runs[name] = run_record(role, args, o)
                if o.ok:
                    try:
                        measure = {"test_mse": metrics.mse(o.value["reconstructions"], test)}
                        arrays.update(artifacts.run_arrays(name, o.value, args["kind"], a.model.nz, a.sampling.n))
                        runs[name]["measure"] = measure
                    except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError) as e:
                        runs[name].update(
                            status="error", error=f"its outputs could not be shown ({type(e).__name__}: {e})"
                        )
    else:
        runs = {n: skipped_record(r, k, b, f"{a.submission.module} is missing") for n, r, k, b in planned_runs(a)}
    _, answers = score_answers(a, sub)
    timings["total"] = round(time.perf_counter() - started, 2)
    result = new_result("write-up", sub, a, profile.name, [], [r.id for r in a.rubric], answers, timings)
    if not sub.has_code:
        result.problems.append(f"{a.submission.module} is missing: nothing to train")
    result.runs = runs
    artifacts.write_artifacts(out / ARTIFACTS_NAME, arrays)
    result.artifacts = ARTIFACTS_NAME
    return result
