"""Integration: training loops that fake their work (smoke profile, real digits, real training in
the sandbox). The loop contract counts only optimizer steps that follow a backward pass reaching
the model, the curves must follow the losses the harness saw backpropagated, and the tuned run's
results earn points only from a model the student's own code trained (issue 27, item 3).

Unit tests of the observer and of the curve rule are in tests/test_loop_watch.py.
"""

from __future__ import annotations

from tests.helpers import copy_example

AE_STEP = (
    "            rec = model(images)\n"
    "            loss = F.mse_loss(rec, images)\n\n"
    "            optimizer.zero_grad()\n"
    "            loss.backward()\n"
    "            optimizer.step()\n"
    "            losses.append(loss.item())\n"
)
VAE_STEP = (
    "            outputs = model(images)\n"
    "            total_loss, losses = model.loss(images, outputs)\n\n"
    "            optimizer.zero_grad()\n"
    "            total_loss.backward()\n"
    "            optimizer.step()\n"
    '            rec_losses.append(losses["rec_loss"].item())\n'
    '            kl_losses.append(losses["kl_loss"].item())\n'
)
MADE_UP_GRADIENT = "                p.grad = torch.randn_like(p)\n"

# one optimizer step per batch on a made-up gradient, no backward pass, a made-up loss list
MADE_UP_GRADIENT_LOOPS = [
    (
        AE_STEP,
        "            optimizer.zero_grad()\n            for p in model.parameters():\n"
        + MADE_UP_GRADIENT
        + "            optimizer.step()\n            losses.append(0.2 * 0.97 ** len(losses))\n",
    ),
    (
        VAE_STEP,
        "            optimizer.zero_grad()\n            for p in model.parameters():\n"
        + MADE_UP_GRADIENT
        + "            optimizer.step()\n"
        "            rec_losses.append(0.1 * 0.97 ** len(rec_losses))\n            kl_losses.append(1.0)\n",
    ),
]

# training functions that return at once: no training, a plausible list of the right length
RETURN_AT_ONCE = [
    (
        "    model.to(device)\n    model.train()\n"
        "    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)\n    losses = []",
        "    return [0.2 * 0.97**i for i in range(epochs * len(data_loader))]",
    ),
    (
        "    model.to(device)\n    model.train()\n"
        "    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)\n    rec_losses, kl_losses = [], []",
        "    n = epochs * len(data_loader)\n"
        "    return [0.1 * 0.97**i for i in range(n)], [5.0 + 0.01 * i for i in range(n)]",
    ),
]

# honest training, made-up returned losses (the right length, smooth and dropping)
MADE_UP_CURVES = [
    (
        "            losses.append(loss.item())\n    return losses",
        "            losses.append(loss.item())\n    return [0.2 * 0.97**i for i in range(len(losses))]",
    ),
    (
        "    return rec_losses, kl_losses",
        "    return [0.1 * 0.97**i for i in range(len(rec_losses))], kl_losses",
    ),
]


def _items(result) -> dict:
    return {i.id: i for i in result.items}


def _part(item, prefix: str) -> str:
    """The evidence line of the part whose text starts with ``prefix`` (after its mark)."""
    return next(e for e in item.evidence if e[3:].startswith(prefix))


def test_a_loop_stepping_on_made_up_gradients_earns_no_loop_points(tmp_path, run_grade):
    result = run_grade(copy_example(tmp_path / "made-up-gradient", MADE_UP_GRADIENT_LOOPS))
    items = _items(result)
    for item_id, fn in (("ae_training", "train_autoencoder"), ("vae_training", "train_vae")):
        loop = next(e for e in items[item_id].evidence if fn in e and "optimizer step" in e)
        assert loop.startswith("x ") and "none after a backward pass" in loop, items[item_id].evidence
        assert "0 backward passes reached the model" in loop, loop
    # the loop parts earn nothing, and nothing the curves claim is credited
    assert items["ae_training"].points == 0, items["ae_training"].evidence
    assert items["vae_training"].points == 0, items["vae_training"].evidence
    tuning = items["beta_tuning"]
    assert tuning.points <= 3, tuning.evidence  # only the beta's own parts: not_collapsed, in_band
    assert sum("earns no points" in e for e in tuning.evidence) == 2, tuning.evidence
    assert items["interpolation"].points <= 2, items["interpolation"].evidence
    assert result.total <= 45 - 13, {i.id: i.points for i in result.items}
    flag = next(f for f in result.integrity if f["code"] == "steps-without-backward")
    assert any(e.startswith("ae: ") and "0 backward passes" in e for e in flag["evidence"]), flag


def test_training_functions_that_return_at_once_earn_no_result_points(tmp_path, run_grade):
    result = run_grade(copy_example(tmp_path / "return-at-once", RETURN_AT_ONCE))
    items = _items(result)
    assert items["ae_training"].points == 0, items["ae_training"].evidence
    assert items["vae_training"].points == 0, items["vae_training"].evidence
    tuning = items["beta_tuning"]
    assert result.runs["tuned"]["trainer"] == "harness"
    for part in ("sample FID", "test MSE"):
        line = next(e for e in tuning.evidence if part in e)
        assert line.startswith("x ") and "stood in" in line and "earns no points" in line, line
    assert tuning.points <= 3 and tuning.status == "needs_review", tuning.evidence
    paths = _part(items["interpolation"], "pairs")
    assert paths.startswith("x ") and "stood in" in paths and "earns no points" in paths, paths
    assert items["interpolation"].points <= 2
    assert result.total <= 45 - 13, {i.id: i.points for i in result.items}
    flag = next(f for f in result.integrity if f["code"] == "did-not-train")
    assert {e.split(":")[0] for e in flag["evidence"]} >= {"ae", "beta-0"}, flag


def test_made_up_returned_losses_of_an_honest_loop_are_charged_on_the_curves(tmp_path, run_grade):
    result = run_grade(copy_example(tmp_path / "made-up-curves", MADE_UP_CURVES))
    items = _items(result)
    short = {i.id: i.evidence for i in result.items if i.points < i.max_points}
    assert sorted(short) == ["ae_training", "vae_training"], short
    curve = _part(items["ae_training"], "loss curve")
    assert curve.startswith("x ") and "do not follow" in curve and "backpropagated" in curve, curve
    assert items["ae_training"].points == 5 and items["vae_training"].points == 3, short
    curves = _part(items["vae_training"], "beta-0")
    assert curves.startswith("x ") and "do not follow" in curves, curves
    assert result.runs["tuned"]["trainer"] == "student"  # the loop trains: the tuned run is its own
