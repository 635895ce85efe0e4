"""The one measurement type: what the harness measured of a trained run, a student's or the reference's.

``RunMeasure`` holds the numbers grading compares (test MSE, sample FID and coverage, KL,
active units, interpolation paths) and is what ``result.json`` stores of a run (``to_json``).
``RunRecord`` is a reference run: a ``RunMeasure`` plus how the run was trained and its loss
curves, stored as one entry of ``reference.json`` (``to_record_json`` / ``from_record_json``,
the same keys in the same order as ever, so cached references load unchanged);
``ReferenceResult`` is a profile's whole reference, what grading reads of it. Both are
computed in the harness's process with the metrics classifier (docs/reference.md#metrics).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from harness.ml.training import Curves

PRIOR_SEED_OFFSET = 1  # sample FID decodes prior_draws(fid_samples, nz, seed + 1); grading uses the same codes


@dataclass
class RunMeasure:
    """The harness's measurements of one trained run (a student's, or the reference's)."""

    name: str
    test_mse: float
    sample_fid: float
    sample_coverage: float
    sample_confidence: float
    kl: float | None = None  # per image; None for an AE
    active_units: int | None = None
    kl_per_dim: list[float] | None = None
    paths: list[dict] = field(default_factory=list)  # interpolation path metrics per configured pair
    seconds: float = 0.0  # training time
    source: str = "student"  # or "reference": a reference run, or a reference model standing in

    def to_json(self) -> dict:
        """The measurements alone, as ``result.json`` stores a run (a ``RunRecord``'s too)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(RunMeasure)}


# reference.json's keys per run, in their order on disk
_RECORD_KEYS = (
    "name",
    "model",
    "beta",
    "epochs",
    "learning_rate",
    "train_images",
    "seconds",
    "curves",
    "test_mse",
    "sample_fid",
    "sample_confidence",
    "sample_coverage",
    "kl",
    "active_units",
    "kl_per_dim",
    "paths",
    "search",
)


@dataclass(kw_only=True)
class RunRecord(RunMeasure):
    """One trained reference model: its measurements, how it was trained and its loss curves."""

    model: str  # "ae" or "vae"
    beta: float | None
    epochs: int
    learning_rate: float
    train_images: int
    curves: Curves
    search: bool = False  # a run of the beta search
    source: str = "reference"

    def to_record_json(self) -> dict:
        """The run as ``reference.json`` (and an at-beta entry's ``run.json``) stores it."""
        d = dataclasses.asdict(self)
        return {k: d[k] for k in _RECORD_KEYS}

    @classmethod
    def from_record_json(cls, d: dict) -> RunRecord:
        return cls(**{**d, "curves": Curves(**d["curves"])})


@dataclass
class ReferenceResult:
    """A profile's reference: its identity, calibration, runs and the search's pick (``reference.json``)."""

    key: str
    directory: Path
    assignment_id: str
    profile: str
    seed: int
    device: str
    data_fingerprint: str
    versions: dict[str, str]
    classifier_accuracy: float
    real_fid: float
    tuned_beta: float
    criterion: str
    runs: list[RunRecord] = field(default_factory=list)
    from_cache: bool = False

    def run(self, name: str) -> RunRecord:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(f"no reference run named {name!r}")
