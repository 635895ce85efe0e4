"""Unit tests of the trained items' rules and of the loop observer, on tiny models (no data)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from harness.grading.items.training import contract_part, credit, curve_drop
from harness.grading.result import Result, gradescope
from harness.grading.rubric import ItemResult
from harness.sandbox.probes import LoopWatch


def test_credit_is_full_up_to_the_first_ratio_then_linear_then_zero():
    assert credit(1.0, 1.5, 3.0) == 1.0 and credit(1.5, 1.5, 3.0) == 1.0
    assert credit(2.25, 1.5, 3.0) == pytest.approx(0.5)
    assert credit(3.0, 1.5, 3.0) == 0.0 and credit(float("nan"), 1.5, 3.0) == 0.0


def test_curve_must_be_finite_and_drop():
    assert curve_drop([1.0] * 10 + [0.5] * 10)[0]
    assert not curve_drop([1.0] * 20)[0]
    ok, text = curve_drop([1.0, float("nan"), 0.5])
    assert not ok and "non-finite" in text
    assert curve_drop([1.0] * 10 + [0.95] * 10, 0.0)[0] and not curve_drop([1.0] * 10 + [0.95] * 10, 0.1)[0]


def test_grading_decodes_the_reference_s_own_prior_draws():
    from harness.ml import metrics
    from harness.ml.data import pair_images

    class Identity(nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = nn.Identity()
            self.w = nn.Parameter(torch.zeros(1))

    assert torch.equal(metrics.decode_prior(Identity(), 5, 3, seed=7), metrics.prior_draws(5, 3, 7))
    images, labels = torch.arange(6.0).view(6, 1, 1, 1), torch.tensor([0, 1, 2, 1, 0, 2])
    assert pair_images(images, labels, [(1, 2), (0, 0)]).flatten(1).tolist() == [[1.0, 2.0], [0.0, 0.0]]


def _loop(model, steps=4, zero_grad=True, step=True, backward=True, lr=0.01):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        if zero_grad:
            opt.zero_grad()
        loss = model(torch.randn(8, 3)).square().mean()
        if backward:
            loss.backward()
        if step:
            opt.step()


@pytest.mark.parametrize(
    "kwargs, counters",
    [
        ({}, {"steps": 4, "steps_with_grad": 4, "carried": 0}),
        ({"zero_grad": False}, {"steps": 4, "steps_with_grad": 4, "carried": 3}),
        ({"step": False}, {"steps": 0, "carried": 0}),
        ({"backward": False}, {"steps": 4, "steps_with_grad": 0, "backwards": 0}),
    ],
)
def test_loop_watch_sees_steps_backward_passes_and_carried_gradients(kwargs, counters):
    model = nn.Linear(3, 2)
    with LoopWatch(model) as watch:
        _loop(model, **kwargs)
    summary = watch.summary()
    assert {k: summary[k] for k in counters} == counters
    if summary["steps"]:
        assert summary["lrs"] == [0.01] and summary["covered"] == 1.0


def test_loop_watch_hooks_are_removed_on_exit():
    model = nn.Linear(3, 2)
    with LoopWatch(model) as watch:
        pass
    _loop(model)
    assert watch.steps == 0 and watch.backwards == 0


def _contract(**over):
    c = {
        "iterations": 6,
        "steps": 6,
        "steps_with_grad": 6,
        "carried": 0,
        "lrs": [3.7e-4],
        "learning_rate": 3.7e-4,
        "covered": 1.0,
        "returned_lengths": [6],
    }
    return {**c, **over}


def test_contract_part_names_each_broken_rule():
    assert contract_part("loop", _contract(), "train").share == 1.0
    lr = contract_part("loop", _contract(lrs=[1e-3]), "train")
    assert lr.share < 1 and "passed 0.00037, optimizer ran at 0.001" in lr.evidence
    carried = contract_part("loop", _contract(carried=5), "train")
    assert "zero_grad" in carried.evidence
    nothing = contract_part("loop", _contract(steps=0, steps_with_grad=0, lrs=[]), "train")
    assert nothing.share <= 0.5 and "an optimizer step per batch" in nothing.evidence
    assert contract_part("loop", None, "train").share == 0.0


def test_gradescope_export_lists_each_item_with_its_evidence():
    items = [
        ItemResult("a", "Item A", 2.0, 2.0, "pass", ["ok fine"]),
        ItemResult("b", "Item B", 1.0, 3.0, "needs_review", ["covers x"]),
    ]
    r = Result("grade", {"id": "s"}, {"id": "x", "title": "T"}, "smoke", items)
    gs = gradescope(r)
    assert gs["score"] == 3.0 and [t["max_score"] for t in gs["tests"]] == [2.0, 3.0]
    assert gs["tests"][1]["output"].endswith("an instructor reviews it)") and gs["tests"][0]["visibility"] == "visible"
    assert math.isclose(sum(t["score"] for t in gs["tests"]), gs["score"])
