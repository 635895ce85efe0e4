"""The reference: the harness trains its own AE and VAEs from the assignment and measures them.

Runs, in the order of the run plan (``harness.config.plan``): the AE; the fixed-beta VAEs
(beta = 0 and beta = 10 in the handout); a log-spaced beta search; and the tuned VAE, trained
afresh for the handout's tuned epochs at the beta the search picked (the tuned-beta criterion,
``harness.reference.trainer``). Training and measuring one run is the
:class:`~harness.reference.trainer.Trainer`'s; this module caches what it trains.

Everything is cached under ``<cache>/reference/<assignment>-<profile>-<key>/``,
keyed by a hash of the assignment's data, model, training, metrics and
interpolation sections, the profile, the data fingerprint, the
seed, the device type and library versions (``docs/reference.md``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch
from torch import nn

from harness.config.assignment import Assignment, Profile
from harness.config.plan import run_plan, search_plan
from harness.io import write_json_atomic
from harness.ml.data import Mnist
from harness.ml.models import VAE, AutoEncoder
from harness.reference import beta_band
from harness.reference.cache import building, make_key, publish, staging_dir, versions
from harness.reference.measure import ReferenceResult, RunRecord
from harness.reference.trainer import CRITERION, Trainer, search_pick

SCHEMA_VERSION = (
    2  # 2: convolutions as matrix products (harness.ml.gemm_conv) and fused Adam change the trained numbers
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
                started = time.perf_counter()
                trainer = Trainer.for_profile(a, profile, data, device, cache, quiet)
                result = _train_reference(trainer, profile, key, folder, started)
    if profile.name == beta_band.PROFILE and (force or beta_band.load_band(a, data.fingerprint, cache) is None):
        rows = beta_band.search_rows(result.runs)
        beta_band.save_search(a, data.fingerprint, cache, result.tuned_beta, rows, "reference full", 0.0)
    return result


def _train_reference(trainer: Trainer, profile: Profile, key: str, folder: Path, started: float) -> ReferenceResult:
    """Train and measure the profile's runs and the search, the tuned run last at the search's
    pick, and publish them as the cache entry ``folder`` (its build time counted from ``started``)."""
    a = trainer.a
    plans = run_plan(a, profile)
    tuned = next(p for p in plans if p.role == "tuned")
    staging = staging_dir(folder)
    try:
        runs = trainer.run_all([*(p for p in plans if p.role != "tuned"), *search_plan(a, profile)], tuned, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # never leave a half entry behind
        raise
    result = ReferenceResult(
        key=key,
        directory=folder,
        assignment_id=a.meta.id,
        profile=profile.name,
        seed=a.training.seed,
        device=trainer.device.type,
        data_fingerprint=trainer.data.fingerprint,
        versions=versions(),
        classifier_accuracy=trainer.calibration.accuracy,
        real_fid=trainer.calibration.real_fid,
        tuned_beta=float(runs[-1].beta),
        criterion=CRITERION,
        runs=runs,
    )
    payload = _to_json(result)
    payload["build_seconds"] = time.perf_counter() - started
    write_json_atomic(staging / "reference.json", payload)
    publish(staging, folder)
    return result


def train_search(
    a: Assignment, profile: Profile, data: Mnist, device: torch.device, cache: Path, quiet: bool = False
) -> tuple[float, list[tuple]]:
    """Train the AE and the beta search alone (nothing cached but the classifier); returns the
    search's pick and (beta, test MSE, sample FID, KL, active units) per searched beta."""
    trainer = Trainer.for_profile(a, profile, data, device, cache, quiet)
    ae = next(p for p in run_plan(a, profile) if p.role == "ae")
    runs = trainer.run_all([ae, *search_plan(a, profile)])
    return search_pick(runs, trainer.calibration.real_fid), beta_band.search_rows(runs)


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
                tuned = next(p for p in run_plan(a, profile) if p.role == "tuned").at_beta(beta)
                record, model = Trainer.for_profile(a, profile, data, device, cache, quiet).run(tuned)
                record.name = f"{tuned.name}-at-{beta:.3g}"
                staging = staging_dir(folder)
                torch.save({k: v.cpu() for k, v in model.state_dict().items()}, staging / "model.pt")
                write_json_atomic(staging / "run.json", record.to_record_json())
                publish(staging, folder)
    record = RunRecord.from_record_json(json.loads((folder / "run.json").read_text()))
    model = VAE(a, beta=beta)
    model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    return record, model.to(device).eval()


# --------------------------------------------------------------------------- storage


def _to_json(result: ReferenceResult) -> dict:
    d = dataclasses.asdict(result)
    d["directory"] = None  # where it lives is not part of the record
    d.pop("from_cache")
    d["runs"] = [r.to_record_json() for r in result.runs]
    d["schema"] = SCHEMA_VERSION
    return d


def load_result(folder: Path) -> ReferenceResult:
    """Read a cached reference (``reference.json``) without training anything."""
    d = json.loads((folder / "reference.json").read_text())
    runs = [RunRecord.from_record_json(r) for r in d.pop("runs")]
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
