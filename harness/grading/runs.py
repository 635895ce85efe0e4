"""Training runs in the sandbox, as ``grade`` and the write-up both run them: the inputs a
training unit reads, the request it receives, and the record the result keeps of each run.

Both commands train the same runs (``harness.config.plan``) on the same inputs, so a student's
write-up shows the runs their grade is based on.
"""

from __future__ import annotations

import torch

from harness.config.assignment import Assignment
from harness.config.plan import RunPlan
from harness.grading.items.training import steps_after_backward
from harness.ml import metrics
from harness.ml.data import Mnist, pair_images
from harness.reference.measure import PRIOR_SEED_OFFSET
from harness.sandbox.host import UnitOutcome
from harness.sandbox.requests import TrainRequest
from harness.submission.contents import Submission


def fixed_prior(a: Assignment) -> torch.Tensor:
    """The prior draws every trained model decodes: the reference's sample-FID codes."""
    return metrics.prior_draws(a.metrics.fid_samples, a.model.nz, PRIOR_SEED_OFFSET + a.training.seed)


def eval_images(a: Assignment, data: Mnist) -> torch.Tensor:
    """The test images trained runs are measured on: the first ``[grading] eval_images``."""
    return data.test_images[: a.grading.eval_images or len(data.test_images)]


def training_inputs(a: Assignment, train_images: torch.Tensor, train_labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a training unit reads: the training subset as bytes (exactly MNIST's). Nothing it
    is measured on: those are the evaluation unit's own (:func:`evaluation_inputs`)."""
    return {"train_u8": train_images.mul(255).round().to(torch.uint8), "train_labels": train_labels}


def evaluation_inputs(a: Assignment, data: Mnist, n_prior: int) -> dict[str, torch.Tensor]:
    """What an evaluation unit measures a trained model on, and no training unit ever sees: the
    evaluation images as bytes, the first ``n_prior`` of the fixed prior draws (the reference's)
    and the interpolation ends."""
    return {
        "test_u8": eval_images(a, data).mul(255).round().to(torch.uint8),
        "prior_z": fixed_prior(a)[:n_prior],
        "pair_images": pair_images(data.test_images, data.test_labels, a.interpolation.pairs),
    }


def base_request(a: Assignment, plan: RunPlan, device: str) -> TrainRequest:
    """The request for ``plan`` with the handout's batch size, seed and interpolation steps;
    callers replace what differs (the beta, the model, the loop)."""
    t = a.training
    return TrainRequest(
        kind=plan.kind,
        epochs=plan.epochs,
        learning_rate=plan.learning_rate,
        batch_size=t.batch_size,
        seed=t.seed,
        device=device,
        steps=a.interpolation.steps,
        beta=plan.beta,
    )


def unit_name(plan: RunPlan) -> str:
    """A training run's sandbox unit: train-ae, train-<fixed run name>, train-tuned."""
    return f"train-{plan.role if plan.role in ('ae', 'tuned') else plan.name}"


def total_steps(request: TrainRequest, n_images: int) -> int:
    """Optimizer steps the run takes (its progress bar's length)."""
    return request.epochs * -(-n_images // request.batch_size)


def tuned_beta_missing(sub: Submission, a: Assignment) -> str:
    """Why a submission has no usable tuned_beta, in the loader's words (beta = 0 explained)."""
    if sub.kind == "notebook":
        why = next((p for p in sub.problems if p.startswith("tuned beta")), "tuned beta: not found in the notebook")
    else:
        why = next((p for p in sub.problems if "`tuned_beta`" in p), f"no tuned_beta in {a.submission.meta}")
    if why.endswith(("got 0", "got 0.0")):
        why += (
            ": beta = 0 switches the KL term off, which is the beta = 0 experiment, not a tuned VAE (beta is too small)"
        )
    return why


def run_record(plan: RunPlan, request: TrainRequest, o: UnitOutcome) -> dict:
    """A training run as the result's ``runs`` entry: its role (ae, fixed, tuned), what ran,
    how it ended (``measure`` is added once it is measured)."""
    return {
        "role": plan.role,
        "kind": request.kind,
        "beta": request.beta,
        "epochs": request.epochs,
        "learning_rate": request.learning_rate,
        "images": plan.images,  # training images (0: all of them)
        "unit": o.unit,
        "status": o.status,
        "error": "" if o.ok else o.describe(),
        "traceback": o.traceback,
        "seconds": round(o.seconds, 2),
        "trainer": request.trainer,
        "model": "reference" if request.reference_model else "student",
        "time_limit_s": o.limits.timeout_s if o.limits else None,
        "time_limit": o.limits.why if o.limits else "",
        # where the trained model was measured: "graph" (its exported programs, no student code),
        # "definitions" (the student's classes loaded with the trained weights), "" (not measured)
        "measured_in": o.value.get("measured_in", "") if o.ok and isinstance(o.value, dict) else "",
        "export_error": o.value.get("export_error", "") if o.ok and isinstance(o.value, dict) else "",
        # the largest pixel difference between the graph's reconstructions and the model's own in its
        # training unit (-1: not compared; flag model-mismatch)
        "mismatch": o.value.get("mismatch", -1.0) if o.ok and isinstance(o.value, dict) else -1.0,
        # the harness functions the unit's code rebound or rewrote (harness.sandbox.probes.tampered)
        "tampered": list(o.value.get("tampered", [])) if o.ok and isinstance(o.value, dict) else [],
        # what the harness saw the student's loop do (None: the harness's own loop trained it)
        "loop": loop_record(o.value) if o.ok and isinstance(o.value, dict) else None,
        # a notebook: the cells (or the VAE-run function) the harness ran for this run, as it saw them
        **({"cells": o.value["cells"]} if o.ok and isinstance(o.value, dict) and "cells" in o.value else {}),
    }


def loop_record(value: dict) -> dict | None:
    """The run's loop as the harness's observer saw it (``LoopWatch``): optimizer steps, those
    after a backward pass reaching the model, backward passes, and whether the weights changed.
    None when the harness's own loop trained the model (there is nothing of the student's to watch)."""
    run = value.get("run") or {}
    watch = run.get("watch")
    if watch is None:
        return None
    return {
        "steps": int(watch.get("steps", 0)),
        "steps_after_backward": steps_after_backward(watch),
        "backwards": int(watch.get("backwards", 0)),
        "params_changed": bool(run.get("params_changed")),
    }


def skipped_record(plan: RunPlan, why: str) -> dict:
    """A run that could not start (a missing function, no tuned_beta): the documents say why."""
    return {"role": plan.role, "kind": plan.kind, "beta": plan.beta, "status": "not run", "error": why, "traceback": ""}
