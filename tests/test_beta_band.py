"""The tuned beta is judged by two references: the full-protocol beta band ("is it a good beta?")
and the reference trained at the student's own beta under the grade's profile ("does the code
train as well as ours there?"). Unit tests on synthetic numbers, then real grades (smoke)."""

from __future__ import annotations

import math

import pytest

from harness.config.assignment import load_assignment
from harness.grading.items.training import BetaVerdict, score_beta_tuning
from harness.ml.loss_convention import LossConvention
from harness.reference.beta_band import judge_search
from harness.reference.measure import RunMeasure
from tests.helpers import planted_copy

A = load_assignment("variant-a")
G = A.grading

# (beta, test MSE, sample FID, KL, active units): the shape of a real search
ROWS = [
    (1e-5, 0.0075, 151.0, 140.0, 64),
    (1e-4, 0.0091, 117.0, 58.0, 64),
    (1e-3, 0.0120, 110.0, 13.0, 64),
    (1e-2, 0.0820, 506.0, 0.01, 0),
    (1e-1, 0.0810, 511.0, 0.01, 0),
]


def test_band_spans_the_passing_betas_around_the_pick_plus_half_a_step():
    band = judge_search(ROWS, 1e-3, G)
    assert [s.beta for s in band.searched if s.passes] == [1e-5, 1e-4, 1e-3]
    assert math.isclose(band.low, 1e-5 / 10**0.5) and math.isclose(band.high, 1e-3 * 10**0.5)
    assert band.contains(2.3e-3) and band.contains(8e-4) and not band.contains(5e-3)
    assert not band.contains(0.0) and not band.contains(10.0) and not band.contains(float("nan"))


def test_collapsed_and_too_blurry_betas_are_outside_the_band():
    band = judge_search(ROWS, 1e-4, G)
    verdict = {s.beta: s for s in band.searched}
    assert not verdict[1e-2].passes and verdict[1e-2].why.startswith("collapsed (KL per image <= 1")
    assert verdict[1e-3].passes
    # samples 3x the pick's FID: too blurry, whatever the MSE
    rows = [(b, m, f * (3 if b == 1e-3 else 1), k, a) for b, m, f, k, a in ROWS]
    assert not {s.beta: s for s in judge_search(rows, 1e-4, G).searched}[1e-3].passes


def test_a_beta_whose_samples_are_as_good_as_the_best_s_passes_though_its_reconstructions_are_worse():
    """Reconstruction error always grows with beta: the rule judges the samples and the collapse."""
    rows = [(b, m * (3 if b == 1e-3 else 1), f, k, a) for b, m, f, k, a in ROWS]
    verdict = {s.beta: s for s in judge_search(rows, 1e-4, G).searched}
    assert verdict[1e-3].passes and "shown, not judged" in verdict[1e-3].why


def test_the_search_pick_anchors_the_band_even_when_nothing_else_passes():
    rows = [(1e-4, 0.01, 100.0, 50.0, 64), (1e-3, 0.1, 1000.0, 0.0, 0)]
    band = judge_search(rows, 1e-4, G)
    assert band.contains(1e-4) and not band.contains(1e-3)


def _measure(fid: float, mse: float, kl: float = 20.0, active: int = 64) -> RunMeasure:
    return RunMeasure("tuned", mse, fid, 1.0, 0.9, kl, active)


def test_without_the_full_search_the_beta_is_provisional_and_needs_review():
    v = BetaVerdict(judge_search(ROWS, 1e-4, G), True, _measure(100.0, 0.01), "smoke")
    result = score_beta_tuning(A, 1e-4, _measure(100.0, 0.01), v, LossConvention())
    assert result.status == "needs_review" and result.points == result.max_points
    assert any("provisional" in e and "harness reference --band" in e for e in result.evidence)


def test_student_run_is_compared_with_the_reference_at_the_same_beta():
    v = BetaVerdict(judge_search(ROWS, 1e-4, G), False, _measure(100.0, 0.01), "smoke")
    good = score_beta_tuning(A, 1e-3, _measure(110.0, 0.011), v, LossConvention())
    assert good.status == "pass" and good.points == 5
    worse = score_beta_tuning(A, 1e-3, _measure(400.0, 0.04), v, LossConvention())
    assert worse.points == 3 and "reference trained at your beta" in " ".join(worse.evidence), worse.evidence


def test_beta_in_another_convention_is_judged_in_the_reference_convention():
    v = BetaVerdict(judge_search(ROWS, 1e-4, G), False, _measure(100.0, 0.01), "smoke")
    # KL averaged over dims: 64x smaller KL, so a 64x larger beta means the same
    result = score_beta_tuning(
        A, 64e-4, _measure(100.0, 0.01), v, LossConvention(kl_reduction="mean over all elements")
    )
    assert result.points == 5 and result.metrics["beta_reference_convention"] == pytest.approx(1e-4)


# --------------------------------------------------------------------------- real grades (smoke)


def test_a_correct_submission_keeps_full_points_at_every_searched_beta_in_the_band(tmp_path, run_grade, grader):
    """The example at each passing searched beta other than its own (its own is test_grade's)."""
    assert grader.band is not None and grader.band.source == "band"
    betas = [s.beta for s in grader.band.searched if s.passes and not math.isclose(s.beta, 1e-4)]
    assert betas, grader.band.describe()
    for beta in betas:
        result = run_grade(planted_copy(tmp_path / f"beta-{beta:g}", [], f"tuned_beta = {beta!r}"))
        items = {i.id: i for i in result.items}
        for item_id in ("beta_tuning", "interpolation"):
            item = items[item_id]
            assert item.points == item.max_points and item.status == "pass", (beta, item.evidence)
        assert result.reference["band"]["best"] == grader.band.best


def test_betas_outside_the_band_lose_beta_tuning_points_and_say_why(tmp_path, run_grade, grader):
    result = run_grade(planted_copy(tmp_path / "beta-10", [], "tuned_beta = 10.0"))
    tuning = next(i for i in result.items if i.id == "beta_tuning")
    assert tuning.points < tuning.max_points
    assert any("outside the band" in e and "too large" in e for e in tuning.evidence), tuning.evidence
    assert tuning.metrics["reference_at_beta"]["name"] == "tuned-at-10"


def test_on_the_stand_in_under_full_1e_3_passes_and_the_collapsed_1e_2_fails(grader):
    """The band the suite builds (tests/conftest.py: the full profile on the MNIST stand-in)."""
    band = grader.band
    assert band is not None and band.source == "band"
    verdict = {s.beta: s for s in band.searched}
    assert verdict[1e-3].passes and band.contains(1e-3), band.describe()
    assert not verdict[1e-2].passes and verdict[1e-2].why.startswith("collapsed"), verdict[1e-2]
    assert not band.contains(1e-2)


def test_the_band_s_build_time_is_estimated_from_the_reference_s_own_training_rate():
    from types import SimpleNamespace

    from harness.reference.beta_band import estimate_seconds

    # 10 s for 2 epochs of 1,000 images: 5 ms per image-epoch
    runs = [SimpleNamespace(seconds=10.0, epochs=2, train_images=1000)]
    full_epochs = A.training.ae.epochs + A.training.search.epochs * len(A.training.search.betas)
    assert estimate_seconds(A, runs, 8000) == pytest.approx(0.005 * 8000 * full_epochs)
    assert estimate_seconds(A, [], 8000) is None
