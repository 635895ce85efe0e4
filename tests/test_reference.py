"""Integration: the reference under the smoke profile on real digits (HARNESS_DATA)."""

import dataclasses
import subprocess

import pytest
import torch

from harness.config.plan import run_plan, search_plan
from harness.ml import metrics
from harness.ml.training import resolve_device
from harness.reference.build import build_reference, load_model, table
from harness.reference.measure import RunMeasure, RunRecord
from harness.reference.trainer import Trainer
from tests.helpers import SMOKE_CPU, harness_command


@pytest.fixture(scope="module")
def smoke(assignment, mnist, session_cache):
    return build_reference(
        assignment, assignment.profile("smoke"), mnist, torch.device("cpu"), session_cache, quiet=True
    )


def test_reference_shows_what_the_homework_teaches(smoke, assignment):
    beta0, beta10 = smoke.run("beta-0"), smoke.run("beta-10")
    assert beta10.kl < 1.0 and beta10.active_units == 0  # posterior collapse
    vaes = [r for r in smoke.runs if r.model == "vae"]
    assert beta0.kl == max(r.kl for r in vaes if r.epochs == beta0.epochs)  # no pressure on the posterior
    assert beta0.active_units == assignment.model.nz
    # Smoke is too short to rank the tuned VAE's samples against the AE's (quick and full do);
    # it still beats both fixed-beta VAEs.
    assert smoke.run("tuned").sample_fid < min(beta0.sample_fid, beta10.sample_fid)
    assert smoke.tuned_beta in assignment.training.search.betas
    assert smoke.run("tuned").beta == smoke.tuned_beta


def test_reference_records_curves_and_calibration(smoke, assignment):
    steps = -(-2000 // 64)
    ae = smoke.run("ae")
    assert ae.train_images == 2000 and len(ae.curves.rec) == ae.epochs * steps
    assert len(smoke.run("beta-10").curves.kl) == smoke.run("beta-10").epochs * steps
    assert smoke.classifier_accuracy >= assignment.metrics.classifier_min_accuracy
    assert 0 < smoke.real_fid < min(r.sample_fid for r in smoke.runs)
    assert len(smoke.run("tuned").kl_per_dim) == assignment.model.nz
    paths = smoke.run("tuned").paths
    assert [(p["start"], p["end"]) for p in paths] == [tuple(p) for p in assignment.interpolation.pairs]
    assert all(0 < p["confidence"] <= 1 and p["max_step"] > 0 for p in paths)
    assert "tuned beta" in table(smoke) and "sample FID" in table(smoke)


def test_reference_trains_the_run_plan_then_the_search_then_the_tuned_run(smoke, assignment):
    profile = assignment.profile("smoke")
    plans = run_plan(assignment, profile)
    expected = [p for p in plans if p.role != "tuned"] + search_plan(assignment, profile) + [plans[-1]]
    assert [r.name for r in smoke.runs] == [p.name for p in expected]
    assert [(r.epochs, r.learning_rate, r.search) for r in smoke.runs] == [
        (p.epochs, p.learning_rate, p.role == "search") for p in expected
    ]


def test_a_rerun_of_a_smoke_run_gives_identical_metrics(smoke, assignment, mnist, session_cache):
    profile = assignment.profile("smoke")
    plan = next(p for p in run_plan(assignment, profile) if p.name == assignment.training.fixed[1].name)
    recorded = smoke.run(plan.name)
    trainer = Trainer.for_profile(assignment, profile, mnist, torch.device("cpu"), session_cache, quiet=True)
    again, _ = trainer.run(plan)
    assert again.curves.rec == recorded.curves.rec

    def numbers(r: RunRecord) -> dict:
        return {k: v for k, v in r.to_json().items() if k != "seconds"}  # all but the training time

    assert numbers(again) == numbers(recorded)


def test_a_second_build_answers_from_the_cache_with_the_same_models(smoke, assignment, mnist, session_cache):
    again = build_reference(
        assignment, assignment.profile("smoke"), mnist, torch.device("cpu"), session_cache, quiet=True
    )
    assert again.from_cache
    assert again.key == smoke.key and again.tuned_beta == smoke.tuned_beta
    assert [r.test_mse for r in again.runs] == [r.test_mse for r in smoke.runs]
    tuned = load_model(again, "tuned", assignment, resolve_device("cpu"))
    assert metrics.test_mse(tuned, mnist.test_images) == pytest.approx(smoke.run("tuned").test_mse, rel=1e-6)


def test_cli_reference_reads_the_cache_and_prints_the_table(smoke, session_cache):
    out = subprocess.run(
        harness_command("reference", *SMOKE_CPU, "--cache", session_cache, "-q"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "(read from cache)" in out.stdout and "beta-10" in out.stdout and "tuned beta" in out.stdout


# --------------------------------------------------------------------------- one measurement type, on disk

STORED_RUN = {  # one run of a reference.json as the harness has always written it, keys in their order
    "name": "beta-0",
    "model": "vae",
    "beta": 0.0,
    "epochs": 1,
    "learning_rate": 0.001,
    "train_images": 2000,
    "seconds": 1.5,
    "curves": {"rec": [0.2, 0.1], "kl": [3.0, 2.0], "seconds": 1.5, "images": 2000},
    "test_mse": 0.04,
    "sample_fid": 400.0,
    "sample_confidence": 0.6,
    "sample_coverage": 0.4,
    "kl": 110.0,
    "active_units": 64,
    "kl_per_dim": [1.7] * 64,
    "paths": [{"start": 1, "end": 7, "confidence": 0.8, "max_step": 0.01}],
    "search": False,
}


def test_a_stored_reference_run_loads_and_is_written_back_unchanged():
    record = RunRecord.from_record_json(STORED_RUN)
    assert record.curves.kl == [3.0, 2.0] and record.source == "reference"
    assert list(record.to_record_json().items()) == list(STORED_RUN.items())


def test_a_reference_run_is_a_measure_and_results_store_only_its_measurements():
    record = RunRecord.from_record_json(STORED_RUN)
    measure_keys = [f.name for f in dataclasses.fields(RunMeasure)]
    assert isinstance(record, RunMeasure)
    assert list(record.to_json()) == measure_keys == list(RunMeasure("ae", 0.01, 100.0, 1.0, 0.9).to_json())
    assert record.to_json() == {k: STORED_RUN[k] for k in measure_keys if k != "source"} | {"source": "reference"}
