"""``harness report``: the student's write-up, trained with their own code.

The student's deliverable, in the order of the course's write-up: their AE's samples,
then for beta = 0, beta = 10 and their tuned beta the training curves, reconstructions
and samples, then the interpolation comparisons, each followed by their answers. The
four runs are the same sandboxed training units as ``harness grade`` (their own model,
data loader and loop; no reference, no classifier, no points), so a student sees the
figures their grade is based on. A notebook's own stored figures are kept beside them
(``stored/<key>`` arrays; each placed in its write-up slot by
``harness.submission.notebook_figures``).

:mod:`harness.grading.stored_write_up` (``report --stored``) trains nothing.

Output: ``write-up.json`` (a result of kind ``write-up``), ``write-up.npz`` (run artefacts) and, through
``harness.documents.render``, ``write-up.html`` and ``write-up.pdf``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from harness.config.assignment import Assignment, Profile
from harness.config.plan import run_plan
from harness.grading import artifacts
from harness.grading.code import probe_inputs
from harness.grading.items.answers import score_answers
from harness.grading.result import Result
from harness.grading.runs import (
    base_request,
    eval_images,
    evaluation_inputs,
    run_record,
    skipped_record,
    total_steps,
    training_inputs,
    tuned_beta_missing,
    unit_name,
)
from harness.grading.session import RunOptions, new_result, open_sandbox, run_training_unit, training_limits
from harness.ml import metrics
from harness.ml.data import Mnist, subset
from harness.submission.detect import load

RESULT_NAME, ARTIFACTS_NAME = "write-up.json", "write-up.npz"


def write_up_inputs(a: Assignment, profile: Profile, data: Mnist) -> dict[str, torch.Tensor]:
    """The same check images and training subset as ``grade``."""
    images, labels = subset(data.train_images, data.train_labels, profile.train_images, a.training.seed)
    return {**probe_inputs(data), **training_inputs(a, images, labels)}


def write_up(folder: Path, a: Assignment, profile: Profile, data: Mnist, options: RunOptions = RunOptions()) -> Result:
    """Train the submission's four runs with its own code; with ``options.out``, store the
    write-up's arrays there (``write-up.npz``)."""
    started = time.perf_counter()
    sub = load(folder, a, options.name_pattern)
    # No reference is built for a write-up, so no reference time: the assignment's ceiling and the stall watchdog.
    limits = training_limits(a, options, None, student_loop=True)
    inputs = write_up_inputs(a, profile, data)
    evaluation = evaluation_inputs(a, data, a.sampling.n)  # only the prior draws the write-up shows
    timings: dict[str, float] = {}
    runs: dict[str, dict] = {}
    test = eval_images(a, data)
    arrays = artifacts.test_arrays(test, data.test_labels[: len(test)], a.interpolation.pairs, a.sampling.grid)
    plans = run_plan(a, profile)
    if sub.has_code:
        with open_sandbox(sub, a, inputs) as box:
            for plan in plans:
                if plan.role == "tuned" and sub.tuned_beta is None:
                    runs[plan.name] = skipped_record(plan, tuned_beta_missing(sub, a))
                    continue
                plan = plan.at_beta(sub.tuned_beta) if plan.role == "tuned" else plan
                request = base_request(a, plan, options.device)
                unit = unit_name(plan)
                steps = total_steps(request, len(inputs["train_u8"]))
                o = run_training_unit(box, unit, request, limits, steps, sub.id, options.quiet, timings, evaluation)
                runs[plan.name] = run_record(plan, request, o)
                if o.ok:
                    try:
                        measure = {"test_mse": metrics.mse(o.value["reconstructions"], test)}
                        arrays.update(artifacts.run_arrays(plan.name, o.value, plan.kind, a.model.nz, a.sampling.n))
                        runs[plan.name]["measure"] = measure
                    except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError) as e:
                        error = f"its outputs could not be shown ({type(e).__name__}: {e})"
                        runs[plan.name].update(status="error", error=error)
    else:
        runs = {p.name: skipped_record(p, f"{sub.label} is missing") for p in plans}
    if sub.notebook is not None:
        arrays.update(artifacts.stored_arrays(sub.notebook.figures))
    _, answers = score_answers(a, sub)
    timings["total"] = round(time.perf_counter() - started, 2)
    result = new_result("write-up", sub, a, profile.name, [], [r.id for r in a.rubric], answers, timings)
    if not sub.has_code:
        result.problems.append(f"{sub.label} is missing: nothing to train")
    result.runs = runs
    if options.out is not None:
        artifacts.write_artifacts(options.out / ARTIFACTS_NAME, arrays)
        result.artifacts = ARTIFACTS_NAME
    return result
