"""Integration: the reference under the smoke profile on real digits (HARNESS_DATA)."""

import subprocess
import sys

import pytest
import torch

from harness.ml import metrics
from harness.ml.training import resolve_device
from harness.reference.build import _measure, _train_run, build_reference, load_model, table


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


def test_a_rerun_of_a_smoke_run_gives_identical_metrics(smoke, assignment, mnist, session_cache):
    from harness.ml.data import subset
    from harness.reference.build import load_or_train_classifier

    spec = assignment.training.fixed[1]
    recorded = smoke.run(spec.name)
    images, _ = subset(mnist.train_images, mnist.train_labels, 2000, assignment.training.seed)
    model, curves = _train_run(assignment, spec, spec.beta, recorded.epochs, images, torch.device("cpu"), True)
    clf, _ = load_or_train_classifier(mnist, assignment, session_cache, torch.device("cpu"), True)
    real = metrics.classify(clf, mnist.test_images)[0]
    again = _measure(assignment, spec.name, model, spec.beta, spec, recorded.epochs, curves, mnist, 2000, clf, real)
    assert again.curves.rec == recorded.curves.rec
    assert (again.test_mse, again.kl, again.sample_fid) == (recorded.test_mse, recorded.kl, recorded.sample_fid)


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
        [
            sys.executable,
            "-m",
            "harness",
            "reference",
            "--profile",
            "smoke",
            "--device",
            "cpu",
            "--cache",
            str(session_cache),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "(read from cache)" in out.stdout and "beta-10" in out.stdout and "tuned beta" in out.stdout
