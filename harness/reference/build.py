"""The reference: the harness trains its own AE and VAEs from the assignment and measures them.

Runs, in order: the AE; the fixed-beta VAEs (beta = 0 and beta = 10 in the
handout); a log-spaced beta search; and the tuned VAE, re-trained for the
handout's tuned epochs at the beta the search picked.

Tuned-beta criterion (rewards reconstruction and samples equally, in log space):

    score(beta) = log(test MSE / AE test MSE) + log(sample FID / real-vs-real FID)

and the search keeps the beta with the lowest score. A beta too small scores
badly on FID (samples as bad as the AE's); a beta too large scores badly on MSE
(posterior collapse: every reconstruction is the mean digit).

Everything is cached under ``<cache>/reference/<assignment>-<profile>-<key>/``,
keyed by a hash of the assignment's data, model, training, metrics and
interpolation sections, the profile, the data fingerprint, the
seed, the device type and library versions (``docs/reference.md``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from harness.config.assignment import Assignment, Profile, RunSpec
from harness.io import write_json_atomic
from harness.ml import metrics
from harness.ml.data import Mnist, pair_images, subset
from harness.ml.models import VAE, AutoEncoder
from harness.ml.training import Curves, TrainConfig, train
from harness.progress import Progress
from harness.reference import beta_band
from harness.reference.cache import building, make_key, publish, staging_dir, versions

SCHEMA_VERSION = (
    2  # 2: convolutions as matrix products (harness.ml.gemm_conv) and fused Adam change the trained numbers
)
PRIOR_SEED_OFFSET = 1  # sample FID decodes prior_draws(fid_samples, nz, seed + 1); grading uses the same codes


@dataclass
class RunRecord:
    """One trained reference model and its measurements."""

    name: str
    model: str  # "ae" or "vae"
    beta: float | None
    epochs: int
    learning_rate: float
    train_images: int
    seconds: float
    curves: Curves
    test_mse: float
    sample_fid: float
    sample_confidence: float
    sample_coverage: float
    kl: float | None = None
    active_units: int | None = None
    kl_per_dim: list[float] | None = None
    paths: list[dict] = field(default_factory=list)  # interpolation path metrics per configured pair
    search: bool = False


@dataclass
class ReferenceResult:
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


CRITERION = "lowest log(test MSE / AE test MSE) + log(sample FID / real-vs-real FID) over the search"


# --------------------------------------------------------------------------- classifier


def classifier_folder(data: Mnist, a: Assignment, cache: Path, device: torch.device) -> Path:
    """Where the metrics classifier for this data set, seed and libraries is cached."""
    parts = {
        "data": data.fingerprint,
        "epochs": a.metrics.classifier_epochs,
        "seed": a.training.seed,
        "device": device.type,
        **versions(),
    }
    return cache / "classifier" / make_key(parts)


def load_or_train_classifier(
    data: Mnist, a: Assignment, cache: Path, device: torch.device, quiet: bool = False
) -> tuple[metrics.Classifier, float]:
    """The metrics classifier for this data set, trained once and cached; returns it and its test accuracy."""
    folder = classifier_folder(data, a, cache, device)
    if not (folder / "classifier.json").exists():
        with building(folder, quiet):
            if not (folder / "classifier.json").exists():  # else built by the process this one waited for
                clf = metrics.train_classifier(
                    data.train_images, data.train_labels, a.metrics.classifier_epochs, device, a.training.seed, quiet
                )
                acc = metrics.accuracy(clf, data.test_images, data.test_labels)
                staging = staging_dir(folder)
                torch.save(clf.state_dict(), staging / "classifier.pt")
                write_json_atomic(staging / "classifier.json", {"test_accuracy": acc, "data": data.fingerprint})
                publish(staging, folder)
    clf = metrics.Classifier()
    clf.load_state_dict(torch.load(folder / "classifier.pt", map_location="cpu", weights_only=True))
    info = json.loads((folder / "classifier.json").read_text())
    return clf.to(device).eval(), info["test_accuracy"]


# --------------------------------------------------------------------------- runs


def _train_run(
    a: Assignment,
    spec: RunSpec,
    beta: float | None,
    epochs: int,
    images: torch.Tensor,
    device: torch.device,
    quiet: bool,
) -> tuple[nn.Module, Curves]:
    torch.manual_seed(a.training.seed)
    model = AutoEncoder(a) if beta is None else VAE(a, beta=beta)
    cfg = TrainConfig(epochs, spec.learning_rate, a.training.batch_size, a.training.seed)
    label = spec.name if beta is None else f"{spec.name} (beta={beta:g})"
    return model, train(model, images, cfg, device, desc=label, quiet=quiet)


def _measure(
    a: Assignment,
    name: str,
    model: nn.Module,
    beta: float | None,
    spec: RunSpec,
    epochs: int,
    curves: Curves,
    data: Mnist,
    n_train: int,
    clf: metrics.Classifier,
    real_features: torch.Tensor,
) -> RunRecord:
    samples = metrics.decode_prior(model, a.metrics.fid_samples, a.model.nz, seed=PRIOR_SEED_OFFSET + a.training.seed)
    quality = metrics.sample_quality(clf, samples, real_features, a.metrics.coverage_share)
    record = RunRecord(
        name=name,
        model="ae" if beta is None else "vae",
        beta=beta,
        epochs=epochs,
        learning_rate=spec.learning_rate,
        train_images=n_train,
        seconds=curves.seconds,
        curves=curves,
        test_mse=metrics.test_mse(model, data.test_images),
        sample_fid=quality.fid,
        sample_confidence=quality.confidence,
        sample_coverage=quality.coverage,
    )
    ends = pair_images(data.test_images, data.test_labels, a.interpolation.pairs)
    for (first, last), (start_image, end_image) in zip(a.interpolation.pairs, ends, strict=False):
        frames = metrics.interpolate(model, start_image, end_image, a.interpolation.steps)
        path = metrics.path_quality(clf, frames)
        record.paths.append({"start": first, "end": last, "confidence": path.confidence, "max_step": path.max_step})
    if beta is not None:
        stats = metrics.latent_stats(model, data.test_images, a.metrics.active_unit_threshold)
        record.kl, record.active_units, record.kl_per_dim = stats.kl_per_image, stats.active_units, stats.kl_per_dim
    return record


def tuned_score(run: RunRecord, ae: RunRecord, real_fid: float) -> float:
    """The search criterion (lower is better); see the module docstring."""
    tiny = 1e-12
    return math.log(max(run.test_mse, tiny) / max(ae.test_mse, tiny)) + math.log(
        max(run.sample_fid, tiny) / max(real_fid, tiny)
    )


def cache_key(a: Assignment, profile: Profile, data: Mnist, device: torch.device) -> str:
    return make_key(
        {
            "schema": SCHEMA_VERSION,
            "assignment": a.training_digest,
            "profile": dataclasses.asdict(profile),
            "data": data.fingerprint,
            "seed": a.training.seed,
            "device": device.type,
            **versions(),
        }
    )


def build_reference(
    a: Assignment,
    profile: Profile,
    data: Mnist,
    device: torch.device,
    cache: Path,
    force: bool = False,
    quiet: bool = False,
) -> ReferenceResult:
    """Train (or read from the cache) every reference run and measure it. A ``full`` reference
    also caches its search as the beta band (``harness.reference.beta_band``) when none is cached."""
    key = cache_key(a, profile, data, device)
    folder = cache / "reference" / f"{a.meta.id}-{profile.name}-{key}"
    if not force and (folder / "reference.json").exists():
        result = load_result(folder)
    else:
        with building(folder, quiet):
            if not force and (folder / "reference.json").exists():  # built by the process this one waited for
                result = load_result(folder)
            else:
                result = _build_reference(a, profile, data, device, cache, folder, key, quiet)
    if profile.name == beta_band.PROFILE and (force or beta_band.load_band(a, data.fingerprint, cache) is None):
        rows = beta_band.search_rows(result.runs)
        beta_band.save_search(a, data.fingerprint, cache, result.tuned_beta, rows, "reference full", 0.0)
    return result


def _build_reference(
    a: Assignment, profile: Profile, data: Mnist, device: torch.device, cache: Path, folder: Path, key: str, quiet: bool
) -> ReferenceResult:
    started = time.perf_counter()
    clf, clf_acc, real_features, real_fid = _calibration(a, data, cache, device, quiet)
    images, _ = subset(data.train_images, data.train_labels, profile.train_images, a.training.seed)

    staging = staging_dir(folder)
    try:
        runs = _train_runs(a, profile, data, images, device, clf, real_features, real_fid, staging, quiet)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # never leave a half entry behind
        raise
    result = ReferenceResult(
        key=key,
        directory=folder,
        assignment_id=a.meta.id,
        profile=profile.name,
        seed=a.training.seed,
        device=device.type,
        data_fingerprint=data.fingerprint,
        versions=versions(),
        classifier_accuracy=clf_acc,
        real_fid=real_fid,
        tuned_beta=float(runs[-1].beta),
        criterion=CRITERION,
        runs=runs,
    )
    payload = _to_json(result)
    payload["build_seconds"] = time.perf_counter() - started
    write_json_atomic(staging / "reference.json", payload)
    publish(staging, folder)
    return result


def _search_plan(a: Assignment, profile: Profile) -> list[tuple[str, RunSpec, float | None, int, bool]]:
    """(name, spec, beta, epochs, is_search) of the AE run and the search runs, in training order."""
    t = a.training
    search_spec = RunSpec("search", t.search.epochs, t.search.learning_rate)
    return [(t.ae.name, t.ae, None, profile.epochs(t.ae.epochs), False)] + [
        (f"search-{b:g}", search_spec, b, profile.epochs(t.search.epochs), True) for b in t.search.betas
    ]


def _train_runs(
    a: Assignment,
    profile: Profile,
    data: Mnist,
    images: torch.Tensor,
    device: torch.device,
    clf: metrics.Classifier,
    real_features: torch.Tensor,
    real_fid: float,
    staging: Path | None,
    quiet: bool,
    search_only: bool = False,
) -> list[RunRecord]:
    """Train and measure every run, saving state dicts into ``staging`` (when given); the tuned run
    comes last. ``search_only``: the AE and the search runs alone (what the beta band needs)."""
    t = a.training
    plan = _search_plan(a, profile)
    if not search_only:
        plan[1:1] = [(r.name, r, r.beta, profile.epochs(r.epochs), False) for r in t.fixed]
    runs: list[RunRecord] = []
    with Progress(total=len(plan) + (not search_only), desc="reference runs", unit="run", disable=quiet) as bar:

        def do(name: str, spec: RunSpec, beta: float | None, epochs: int, is_search: bool) -> None:
            model, curves = _train_run(a, spec, beta, epochs, images, device, quiet)
            rec = _measure(a, name, model, beta, spec, epochs, curves, data, len(images), clf, real_features)
            rec.search = is_search
            if staging is not None:
                torch.save({k: v.cpu() for k, v in model.state_dict().items()}, staging / f"{name}.pt")
            runs.append(rec)
            bar.update()
            if not quiet:
                bar.write(
                    f"  {name}: {curves.seconds:.1f} s, test MSE {rec.test_mse:.4f}, sample FID {rec.sample_fid:.2f}"
                )

        for item in plan:
            do(*item)
        if not search_only:
            do(t.tuned.name, t.tuned, search_pick(runs, real_fid), profile.epochs(t.tuned.epochs), False)
    return runs


def search_pick(runs: list[RunRecord], real_fid: float) -> float:
    """The searched beta with the lowest tuned-beta score (the first run is the AE)."""
    ae, searched = runs[0], [r for r in runs if r.search]
    return min(searched, key=lambda r: tuned_score(r, ae, real_fid)).beta


def _calibration(a: Assignment, data: Mnist, cache: Path, device: torch.device, quiet: bool):
    """The metrics classifier, its accuracy, the test set's features and the real-vs-real FID."""
    clf, clf_acc = load_or_train_classifier(data, a, cache, device, quiet)
    real_features = metrics.classify(clf, data.test_images)[0]
    real_fid = metrics.real_vs_real_fid(clf, data.train_images, real_features, a.metrics.fid_samples, a.training.seed)
    return clf, clf_acc, real_features, real_fid


def train_search(
    a: Assignment, profile: Profile, data: Mnist, device: torch.device, cache: Path, quiet: bool = False
) -> tuple[float, list[tuple]]:
    """Train the AE and the beta search alone (nothing cached but the classifier); returns the
    search's pick and (beta, test MSE, sample FID, KL, active units) per searched beta."""
    clf, _, real_features, real_fid = _calibration(a, data, cache, device, quiet)
    images, _ = subset(data.train_images, data.train_labels, profile.train_images, a.training.seed)
    runs = _train_runs(a, profile, data, images, device, clf, real_features, real_fid, None, quiet, search_only=True)
    return search_pick(runs, real_fid), beta_band.search_rows(runs)


def at_beta_folder(
    a: Assignment, profile: Profile, data: Mnist, device: torch.device, cache: Path, beta: float
) -> Path:
    return cache / "reference" / f"{a.meta.id}-{profile.name}-{cache_key(a, profile, data, device)}-beta-{beta:.6g}"


def reference_at_beta(
    a: Assignment, profile: Profile, data: Mnist, device: torch.device, cache: Path, beta: float, quiet: bool = True
) -> tuple[RunRecord, nn.Module]:
    """The reference VAE trained as the tuned run (its epochs and learning rate under ``profile``)
    at ``beta`` (reference convention): what a student's tuned run at that beta is compared with.
    Trained once per beta and cached beside the profile's reference, so a course batch shares it."""
    folder = at_beta_folder(a, profile, data, device, cache, beta)
    if not (folder / "run.json").exists():
        with building(folder, quiet):
            if not (folder / "run.json").exists():
                clf, _, real_features, real_fid = _calibration(a, data, cache, device, quiet)
                images, _ = subset(data.train_images, data.train_labels, profile.train_images, a.training.seed)
                spec, epochs = a.training.tuned, profile.epochs(a.training.tuned.epochs)
                model, curves = _train_run(a, spec, beta, epochs, images, device, quiet)
                rec = _measure(
                    a,
                    f"{spec.name}-at-{beta:.3g}",
                    model,
                    beta,
                    spec,
                    epochs,
                    curves,
                    data,
                    len(images),
                    clf,
                    real_features,
                )
                staging = staging_dir(folder)
                torch.save({k: v.cpu() for k, v in model.state_dict().items()}, staging / "model.pt")
                write_json_atomic(staging / "run.json", dataclasses.asdict(rec))
                publish(staging, folder)
    d = json.loads((folder / "run.json").read_text())
    rec = RunRecord(**{**d, "curves": Curves(**d["curves"])})
    model = VAE(a, beta=beta)
    model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    return rec, model.to(device).eval()


# --------------------------------------------------------------------------- storage


def _to_json(result: ReferenceResult) -> dict:
    d = dataclasses.asdict(result)
    d["directory"] = None  # where it lives is not part of the record
    d.pop("from_cache")
    d["schema"] = SCHEMA_VERSION
    return d


def load_result(folder: Path) -> ReferenceResult:
    """Read a cached reference (``reference.json``) without training anything."""
    d = json.loads((folder / "reference.json").read_text())
    runs = [RunRecord(**{**r, "curves": Curves(**r["curves"])}) for r in d.pop("runs")]
    for k in ("schema", "build_seconds", "directory"):
        d.pop(k, None)
    return ReferenceResult(**d, directory=folder, runs=runs, from_cache=True)


def load_model(result: ReferenceResult, name: str, a: Assignment, device: torch.device) -> nn.Module:
    """Rebuild a cached reference model from its state dict."""
    run = result.run(name)
    model = AutoEncoder(a) if run.model == "ae" else VAE(a, beta=run.beta)
    model.load_state_dict(torch.load(result.directory / f"{name}.pt", map_location="cpu", weights_only=True))
    return model.to(device).eval()


def table(result: ReferenceResult) -> str:
    """The reference as a plain-text table, one row per run."""

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    head = (
        f"{'run':<16}{'beta':>8}{'epochs':>8}{'test MSE':>10}{'KL':>9}{'active':>8}{'sample FID':>12}{'coverage':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in result.runs:
        beta = "-" if r.beta is None else f"{r.beta:g}"
        lines.append(
            f"{r.name:<16}{beta:>8}{r.epochs:>8}{r.test_mse:>10.4f}{num(r.kl, '.2f'):>9}"
            f"{num(r.active_units, 'd'):>8}{r.sample_fid:>12.2f}{r.sample_coverage:>10.0%}"
        )
    lines += [
        "",
        f"tuned beta: {result.tuned_beta:g} ({result.criterion})",
        f"real-vs-real FID (MNIST classifier): {result.real_fid:.2f}; "
        f"classifier test accuracy: {result.classifier_accuracy:.2%}",
        f"cache: {result.directory}{' (read from cache)' if result.from_cache else ''}",
    ]
    return "\n".join(lines)
