"""What every submission of a course is graded with: the reference, re-measured on the grading
images, the metrics classifier, the beta band, and the reference's arrays the reports show.

Built once per course (``make_grader``) and shared by every submission, thread and Dask worker.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.config.assignment import Assignment, Profile
from harness.grading import artifacts
from harness.grading.items import training
from harness.grading.runs import eval_images, fixed_prior
from harness.ml import metrics
from harness.ml.data import Mnist, subset
from harness.reference import beta_band
from harness.reference.beta_band import BetaBand
from harness.reference.build import load_model, reference_at_beta
from harness.reference.classifier import load_or_train_classifier
from harness.reference.measure import ReferenceResult, RunRecord

MAX_REFERENCE_BETA = 1e3  # beyond this (reference convention) every run has long collapsed: none is trained


@dataclass(frozen=True)
class Grader:
    """What every submission of a course is graded with: built once, reused per submission."""

    a: Assignment
    profile: Profile
    data: Mnist
    reference: ReferenceResult
    judge: training.Judge
    train_images: torch.Tensor
    train_labels: torch.Tensor
    reference_arrays: dict[str, np.ndarray]  # what the reports show of the reference (harness.grading.artifacts)
    band: BetaBand | None  # the full-protocol beta band; None until `harness reference --band` built it
    cache: Path  # where the reference at each student's beta is trained once and kept
    device: torch.device


def make_grader(
    a: Assignment, profile: Profile, data: Mnist, reference: ReferenceResult, cache: Path, device: torch.device
) -> Grader:
    clf, _ = load_or_train_classifier(data, a, cache, device, quiet=True)
    clf = clf.cpu()
    real = metrics.classify(clf, data.test_images)[0]
    images, labels = subset(data.train_images, data.train_labels, profile.train_images, a.training.seed)
    judge = training.Judge(clf, eval_images(a, data), real, a)
    reference = on_eval_images(reference, a, judge.test_images, device)
    band = beta_band.load_band(a, data.fingerprint, cache)
    arrays = reference_arrays(reference, a, data, device)
    return Grader(a, profile, data, reference, judge, images, labels, arrays, band, cache, device)


def beta_verdict(g: Grader, beta_ref: float) -> training.BetaVerdict:
    """The two references a tuned beta (reference convention) is judged against: the full-protocol
    band (else, provisionally, this profile's own search) and the reference trained at that beta."""
    a = g.a
    band = g.band or beta_band.judge_search(
        beta_band.search_rows(g.reference.runs),
        g.reference.tuned_beta,
        a.grading,
        a.meta.id,
        g.data.fingerprint,
        f"reference {g.profile.name}",
    )
    if math.isfinite(beta_ref) and 0 < beta_ref <= MAX_REFERENCE_BETA:
        run, model = reference_at_beta(a, g.profile, g.data, g.device, g.cache, beta_ref)
        at_beta = remeasured(run, model, a, g.judge.test_images)
    else:  # no sensible model trains there: the profile's tuned run stands in, and the band fails the beta
        at_beta = g.reference.run(a.training.tuned.name)
    return training.BetaVerdict(band, g.band is None, at_beta, g.profile.name)


def reference_arrays(ref: ReferenceResult, a: Assignment, data: Mnist, device: torch.device) -> dict[str, np.ndarray]:
    """The reference's samples (the students' prior draws, decoded by each reference model) and
    per-dimension KL, for the reports; plus the shown test inputs and evaluation labels."""
    z = fixed_prior(a)[: a.sampling.n]
    test = eval_images(a, data)
    out = artifacts.test_arrays(test, data.test_labels[: len(test)], a.interpolation.pairs, a.sampling.grid)
    for run in ref.runs:
        if not run.search:
            with torch.no_grad():
                out[f"reference/{run.name}/samples"] = artifacts.to_u8(
                    load_model(ref, run.name, a, device).decoder(z.to(device))
                )
            if run.kl_per_dim is not None:
                out[f"reference/{run.name}/kl_per_dim"] = np.asarray(run.kl_per_dim, dtype=np.float32)
    return out


def on_eval_images(ref: ReferenceResult, a: Assignment, images: torch.Tensor, device: torch.device) -> ReferenceResult:
    """The reference with its non-search runs' test MSE, KL and active units re-measured on the
    grading evaluation images, so student and reference numbers come from the same images
    (sample FID and paths do not depend on them)."""
    runs = [run if run.search else remeasured(run, load_model(ref, run.name, a, device), a, images) for run in ref.runs]
    return dataclasses.replace(ref, runs=runs)


def remeasured(run: RunRecord, model: torch.nn.Module, a: Assignment, images: torch.Tensor) -> RunRecord:
    """A reference run with its test MSE (and a VAE's KL and active units) measured on ``images``."""
    run = dataclasses.replace(run, test_mse=metrics.test_mse(model, images))
    if run.model == "vae":
        stats = metrics.latent_stats(model, images, a.metrics.active_unit_threshold)
        run = dataclasses.replace(
            run, kl=stats.kl_per_image, active_units=stats.active_units, kl_per_dim=stats.kl_per_dim
        )
    return run
