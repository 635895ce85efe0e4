"""Unit tests of the loop observer's proof of training and of the rule that scores returned
curves against the losses it saw backpropagated (tiny models in this process, no data).
The same attacks graded end to end: tests/test_loop_contract_attacks.py."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from harness.config.assignment import load_assignment
from harness.grading.items.training import (
    contract_part,
    follows_observed,
    loop_trains,
    run_curve_part,
    untrained,
)
from harness.sandbox.probes import LoopWatch

G = load_assignment("variant-a").grading


def _honest(model, opt, steps=6, seen=None):
    for _ in range(steps):
        opt.zero_grad()
        loss = model(torch.randn(8, 3)).square().mean()
        loss.backward()
        opt.step()
        if seen is not None:
            seen.append(loss.item())


def test_a_step_on_a_made_up_gradient_without_a_backward_pass_counts_nothing():
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    with LoopWatch(model) as watch:
        for _ in range(5):
            for p in model.parameters():
                p.grad = torch.randn_like(p)
            opt.step()
    s = watch.summary()
    assert s["steps"] == 5 and s["steps_with_grad"] == 5  # gradients were present ...
    assert s["steps_after_backward"] == 0 and s["backwards"] == 0  # ... but no backward pass made them
    assert watch.observed_losses() == []


def test_a_backward_pass_that_does_not_reach_the_model_does_not_count():
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    with LoopWatch(model) as watch:
        for _ in range(3):
            torch.randn(4, requires_grad=True).square().sum().backward()  # some other tensor
            for p in model.parameters():
                p.grad = torch.randn_like(p)
            opt.step()
    assert watch.summary()["steps_after_backward"] == 0 and watch.observed_losses() == []


def test_the_watch_records_the_loss_each_step_was_backpropagated_from():
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    seen: list[float] = []
    with LoopWatch(model) as watch:
        _honest(model, opt, 4, seen)
        # two backward passes before one step (terms backpropagated apart): the step's loss is their sum
        opt.zero_grad()
        a, b = model(torch.randn(8, 3)).square().mean(), model(torch.randn(8, 3)).abs().mean()
        a.backward()
        torch.autograd.backward(b)
        opt.step()
        seen.append(a.item() + b.item())
        # torch.autograd.grad, and a non-scalar output with a gradient
        loss = model(torch.randn(8, 3)).square().mean()
        for p, g in zip(model.parameters(), torch.autograd.grad(loss, list(model.parameters())), strict=True):
            p.grad = g
        opt.step()
        seen.append(loss.item())
        out = model(torch.randn(8, 3))
        weights = torch.full_like(out, 0.5)
        opt.zero_grad()
        out.backward(weights)
        opt.step()
        seen.append((out * weights).sum().item())
    s = watch.summary()
    assert s["steps"] == s["steps_after_backward"] == s["observed_steps"] == 7
    assert watch.observed_losses() == pytest.approx(seen, rel=1e-5)


def test_the_watch_puts_torch_back_and_keeps_a_bounded_number_of_losses():
    originals = (torch.Tensor.backward, torch.autograd.backward, torch.autograd.grad)
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    with LoopWatch(model, max_losses=5) as watch:
        assert torch.Tensor.backward is not originals[0]
        _honest(model, opt, 12)
    assert (torch.Tensor.backward, torch.autograd.backward, torch.autograd.grad) == originals
    assert len(watch.observed_losses()) == 5 and watch.summary()["observed_steps"] == 12
    _honest(model, opt, 2)  # after the watch: nothing more is seen
    assert watch.steps == 12 and len(watch.observed_losses()) == 5


def test_two_optimizers_after_one_backward_pass_both_count_as_trained():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    opts = [torch.optim.Adam(model[0].parameters()), torch.optim.Adam(model[1].parameters())]
    with LoopWatch(model) as watch:
        for _ in range(3):
            for o in opts:
                o.zero_grad()
            model(torch.randn(8, 3)).square().mean().backward()
            for o in opts:
                o.step()
    s = watch.summary()
    assert s["steps"] == s["steps_after_backward"] == 6 and len(watch.observed_losses()) == 3


def _contract(**over):
    c = {
        "iterations": 6,
        "steps": 6,
        "steps_with_grad": 6,
        "steps_after_backward": 6,
        "backwards": 6,
        "carried": 0,
        "lrs": [3.7e-4],
        "learning_rate": 3.7e-4,
        "covered": 1.0,
        "returned_lengths": [6],
        "params_changed": True,
    }
    return {**c, **over}


def test_a_loop_none_of_whose_steps_follow_a_backward_pass_earns_no_contract_points():
    assert contract_part("loop", _contract(), "train").share == 1.0
    made_up = contract_part("loop", _contract(steps_after_backward=0, backwards=0), "train")
    assert made_up.share == 0.0
    assert "6 optimizer steps, none after a backward pass (0 backward passes reached the model)" in made_up.evidence
    at_once = contract_part("loop", _contract(steps=0, steps_with_grad=0, steps_after_backward=0, lrs=[]), "train")
    assert at_once.share == 0.0 and "an optimizer step per batch" in at_once.evidence
    some = contract_part("loop", _contract(steps_after_backward=3), "train")
    assert 0 < some.share < 1 and "3 of 6 steps followed a backward pass" in some.evidence


def test_weights_that_did_not_change_are_charged_in_the_contract_and_the_run():
    still = contract_part("loop", _contract(params_changed=False), "train")
    assert 0 < still.share < 1 and "change of the weights" in still.evidence
    run = {"params_changed": False, "watch": {"steps": 6, "steps_after_backward": 6, "backwards": 6}}
    assert "the weights did not change" in untrained({"run": run}, "train")
    moved = {"params_changed": True, "watch": {"steps": 6, "steps_after_backward": 0, "backwards": 0}}
    assert "moved without gradients" in untrained({"run": moved}, "train")
    trained = {"params_changed": True, "watch": {"steps": 6, "steps_after_backward": 6, "backwards": 6}}
    assert untrained({"run": trained}, "train") == ""
    assert loop_trains({"contract": _contract(), "run": trained}, "train")
    assert not loop_trains({"contract": _contract(steps_after_backward=0), "run": trained}, "train")
    assert not loop_trains({"contract": _contract(), "run": moved}, "train")


# --------------------------------------------------------------------------- returned curves vs observed


def _observed(n=64, seed=0) -> list[float]:
    """A real-looking loss: a fast drop, then a plateau, with batch noise."""
    g = torch.Generator().manual_seed(seed)
    trend = 0.02 + 0.1 * torch.exp(-torch.arange(n) / 8.0)
    return (trend * (1 + 0.08 * torch.randn(n, generator=g))).tolist()


def test_returned_losses_in_any_usual_convention_follow_the_observed_ones():
    obs = _observed()
    per_epoch = [sum(obs[i : i + 32]) / 32 for i in (0, 32)]
    conventions = {
        "per iteration": obs,
        "per-image sums (last batch of 16 of 64)": [v * (16 if i % 32 == 31 else 64) for i, v in enumerate(obs)],
        "per-epoch means": per_epoch,
        "per-epoch sums": [32 * v for v in per_epoch],
        "every 8th iteration": obs[7::8],
    }
    for name, values in conventions.items():
        ok, text = follows_observed({"rec": values}, obs)
        assert ok, (name, text)
        assert "follows the losses the harness saw backpropagated" in text


def test_a_vae_s_terms_follow_its_total_loss():
    rec = _observed(seed=1)
    kl = [5.0 + 0.1 * i for i in range(64)]
    total = [r + 10.0 * k for r, k in zip(rec, kl, strict=True)]
    assert follows_observed({"rec": rec, "kl": kl}, total, beta=10.0)[0]
    assert follows_observed({"rec": rec, "kl": kl}, rec, beta=0.0)[0]  # beta = 0: the total is rec
    scaled_kl = [10.0 * k for k in kl]  # the KL list already weighted by beta
    assert follows_observed({"rec": rec, "kl": scaled_kl}, total, beta=10.0)[0]
    # the terms reported in scales of their own: the MSE summed over pixels, the KL over the batch
    mixed = {"rec": [784 * r for r in rec], "kl": [64 * k for k in kl]}
    ok, text = follows_observed(mixed, total, beta=10.0)
    assert ok and "the two terms, each scaled" in text, text
    assert not follows_observed({"rec": [0.1 * 0.97**i for i in range(64)], "kl": kl}, rec, beta=0.0)[0]


@pytest.mark.parametrize(
    "made_up",
    [
        [0.05] * 64,  # constant
        [0.2 * 0.97**i for i in range(64)],  # smooth, dropping
        [0.12 - 0.1 * i / 63 for i in range(64)],  # linear
        torch.rand(64, generator=torch.Generator().manual_seed(3)).tolist(),
        _observed(seed=7),  # a real-looking curve of another run
    ],
)
def test_a_made_up_list_does_not_follow_the_observed_losses(made_up):
    ok, text = follows_observed({"rec": made_up}, _observed())
    assert not ok and "do not follow the losses the harness saw backpropagated" in text
    assert "returned" in text and "backpropagated 64 steps" in text  # quotes both


def test_no_curve_points_without_observed_losses():
    obs = _observed()
    run = {"curves": {"rec": obs}, "observed_losses": [], "watch": {"observed_steps": 0}}
    part = run_curve_part("curve", G, run)
    assert part.share == 0.0 and "no loss was seen backpropagated" in part.evidence
    assert run_curve_part("curve", G, {**run, "observed_losses": None}).share == 0.0
    honest = run_curve_part("curve", G, {**run, "observed_losses": obs, "watch": {"observed_steps": 64}})
    assert honest.share == 1.0 and "lower" in honest.evidence, honest.evidence
    # the watch kept only the first steps: the returned list is compared over the same ones
    capped = run_curve_part("curve", G, {**run, "observed_losses": obs[:40], "watch": {"observed_steps": 64}})
    assert capped.share == 1.0, capped.evidence


def test_a_curve_that_follows_but_does_not_drop_still_fails():
    flat = [0.05 * (1 + 0.01 * math.sin(i)) for i in range(64)]
    part = run_curve_part("curve", G, {"curves": {"rec": flat}, "observed_losses": flat, "watch": {}})
    assert part.share == 0.0 and "follows" in part.evidence
