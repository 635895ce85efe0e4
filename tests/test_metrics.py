import pytest
import torch

from harness.ml.metrics import active_units, coverage, frechet_distance, path_quality


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = torch.randn(2000, 8, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_grows_with_a_shift_and_matches_the_closed_form():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 4, generator=g)
    assert frechet_distance(x, x + 1.0) == pytest.approx(4.0, rel=1e-6)  # same covariance: |shift|^2
    a = torch.randn(20000, 3, generator=g) * torch.tensor([1.0, 2.0, 3.0])
    b = torch.randn(20000, 3, generator=g)
    # Diagonal covariances: FD = sum (sqrt(var_a) - sqrt(var_b))^2 = 0 + 1 + 4
    assert frechet_distance(a, b) == pytest.approx(5.0, rel=0.05)


def test_frechet_distance_survives_singular_covariances():
    x = torch.randn(500, 4, generator=torch.Generator().manual_seed(1))
    x[:, 3] = x[:, 0]  # rank-deficient
    value = frechet_distance(x, x * 1.5)
    assert value > 0 and value == value  # finite, not NaN


def test_frechet_distance_refuses_too_few_samples():
    with pytest.raises(ValueError, match="full-rank"):
        frechet_distance(torch.randn(10, 64), torch.randn(1000, 64))


def test_active_units_count_dims_whose_mean_varies_over_the_data():
    g = torch.Generator().manual_seed(0)
    mu = torch.zeros(1000, 6)
    mu[:, :3] = torch.randn(1000, 3, generator=g)  # active
    mu[:, 3] = 0.05 * torch.randn(1000, generator=g)  # variance 0.0025: inactive
    assert active_units(mu) == 3
    assert active_units(torch.zeros(100, 6)) == 0


def test_coverage_counts_classes_with_a_fair_share_of_samples():
    uniform = torch.eye(10).repeat(10, 1)
    assert coverage(uniform) == 1.0
    one_class = torch.zeros(100, 10)
    one_class[:, 3] = 1
    assert coverage(one_class) == 0.1


def test_path_quality_reports_the_largest_step():
    class Confident(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.head = torch.nn.Identity()

        def features(self, x):
            return torch.nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), 10).float() * 50

    frames = torch.zeros(5, 1, 2, 2)
    frames[3:] = 1.0
    q = path_quality(Confident(), frames)
    assert q.max_step == pytest.approx(1.0) and q.confidence == pytest.approx(1.0)
