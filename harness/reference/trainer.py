"""Training and measuring reference runs, as the run plan (``harness.config.plan``) says.

A :class:`Trainer` holds what every run of one reference shares: the assignment, the data, the
profile's training subset, the device and the calibration (metrics classifier, real features,
real-vs-real FID). Each run starts from the assignment's seed, so every run sees the same initial
weights and batch order, and a rerun gives the same numbers.

Tuned-beta criterion (rewards reconstruction and samples equally, in log space):

    score(beta) = log(test MSE / AE test MSE) + log(sample FID / real-vs-real FID)

and the search keeps the beta with the lowest score. A beta too small scores badly on FID
(samples as bad as the AE's); a beta too large scores badly on MSE (posterior collapse: every
reconstruction is the mean digit). The tuned run is then trained afresh at that beta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from harness.config.assignment import Assignment, Profile
from harness.config.plan import RunPlan
from harness.ml import metrics
from harness.ml.data import Mnist, pair_images, subset
from harness.ml.models import VAE, AutoEncoder
from harness.ml.training import Curves, TrainConfig, train
from harness.progress import Progress
from harness.reference.classifier import Calibration, calibrate
from harness.reference.measure import PRIOR_SEED_OFFSET, RunRecord

CRITERION = "lowest log(test MSE / AE test MSE) + log(sample FID / real-vs-real FID) over the search"


@dataclass(frozen=True)
class Trainer:
    """Trains and measures the reference runs of one assignment, data set, training subset and device."""

    a: Assignment
    data: Mnist
    images: torch.Tensor  # the profile's training subset
    device: torch.device
    calibration: Calibration
    quiet: bool = False

    @classmethod
    def for_profile(
        cls, a: Assignment, profile: Profile, data: Mnist, device: torch.device, cache: Path, quiet: bool = False
    ) -> Trainer:
        """A trainer on ``profile``'s training subset; the metrics classifier is trained (and cached) on first use."""
        calibration = calibrate(a, data, cache, device, quiet)
        images, _ = subset(data.train_images, data.train_labels, profile.train_images, a.training.seed)
        return cls(a, data, images, device, calibration, quiet)

    def train(self, plan: RunPlan) -> tuple[nn.Module, Curves]:
        """A fresh model trained as ``plan`` says (a VAE's beta must be known)."""
        a = self.a
        torch.manual_seed(a.training.seed)
        model = AutoEncoder(a) if plan.kind == "ae" else VAE(a, beta=plan.beta)
        cfg = TrainConfig(plan.epochs, plan.learning_rate, a.training.batch_size, a.training.seed)
        return model, train(model, self.images, cfg, self.device, desc=progress_label(plan), quiet=self.quiet)

    def measure(self, plan: RunPlan, model: nn.Module, curves: Curves) -> RunRecord:
        """The trained model's measurements, with how it was trained (docs/reference.md#metrics)."""
        a, data, cal = self.a, self.data, self.calibration
        samples = metrics.decode_prior(
            model, a.metrics.fid_samples, a.model.nz, seed=PRIOR_SEED_OFFSET + a.training.seed
        )
        quality = metrics.sample_quality(cal.clf, samples, cal.real_features, a.metrics.coverage_share)
        record = RunRecord(
            name=plan.name,
            test_mse=metrics.test_mse(model, data.test_images),
            sample_fid=quality.fid,
            sample_coverage=quality.coverage,
            sample_confidence=quality.confidence,
            seconds=curves.seconds,
            model=plan.kind,
            beta=plan.beta,
            epochs=plan.epochs,
            learning_rate=plan.learning_rate,
            train_images=len(self.images),
            curves=curves,
            search=plan.role == "search",
        )
        ends = pair_images(data.test_images, data.test_labels, a.interpolation.pairs)
        for (first, last), (start_image, end_image) in zip(a.interpolation.pairs, ends, strict=False):
            frames = metrics.interpolate(model, start_image, end_image, a.interpolation.steps)
            path = metrics.path_quality(cal.clf, frames)
            record.paths.append({"start": first, "end": last, "confidence": path.confidence, "max_step": path.max_step})
        if plan.kind == "vae":
            stats = metrics.latent_stats(model, data.test_images, a.metrics.active_unit_threshold)
            record.kl, record.active_units, record.kl_per_dim = stats.kl_per_image, stats.active_units, stats.kl_per_dim
        return record

    def run(self, plan: RunPlan) -> tuple[RunRecord, nn.Module]:
        """Train ``plan``'s run and measure it."""
        model, curves = self.train(plan)
        return self.measure(plan, model, curves), model

    def run_all(
        self, plans: list[RunPlan], tuned: RunPlan | None = None, staging: Path | None = None
    ) -> list[RunRecord]:
        """Train and measure ``plans`` in order, then ``tuned`` at the search's pick (when given),
        with a progress bar; each model's state dict goes into ``staging`` (when given) as ``<name>.pt``."""
        records: list[RunRecord] = []
        total = len(plans) + (tuned is not None)
        with Progress(total=total, desc="reference runs", unit="run", disable=self.quiet) as bar:
            for plan in plans:
                records.append(self._run_and_keep(plan, staging, bar))
            if tuned is not None:
                pick = search_pick(records, self.calibration.real_fid)
                records.append(self._run_and_keep(tuned.at_beta(pick), staging, bar))
        return records

    def _run_and_keep(self, plan: RunPlan, staging: Path | None, bar: Progress) -> RunRecord:
        record, model = self.run(plan)
        if staging is not None:
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, staging / f"{plan.name}.pt")
        bar.update()
        if not self.quiet:
            numbers = f"test MSE {record.test_mse:.4f}, sample FID {record.sample_fid:.2f}"
            bar.write(f"  {plan.name}: {record.seconds:.1f} s, {numbers}")
        return record


def progress_label(plan: RunPlan) -> str:
    """The progress bar's name for a run: ``ae``, ``beta-0 (beta=0)``, ``search (beta=0.001)``."""
    if plan.beta is None:
        return plan.name
    return f"{'search' if plan.role == 'search' else plan.name} (beta={plan.beta:g})"


def tuned_score(run: RunRecord, ae: RunRecord, real_fid: float) -> float:
    """The search criterion (lower is better); see the module docstring."""
    tiny = 1e-12
    return math.log(max(run.test_mse, tiny) / max(ae.test_mse, tiny)) + math.log(
        max(run.sample_fid, tiny) / max(real_fid, tiny)
    )


def search_pick(runs: list[RunRecord], real_fid: float) -> float:
    """The searched beta with the lowest tuned-beta score; ties go to the earlier beta."""
    ae = next(r for r in runs if r.model == "ae")
    return min((r for r in runs if r.search), key=lambda r: tuned_score(r, ae, real_fid)).beta
