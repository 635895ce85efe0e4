"""Integration: planted training bugs under `harness grade` (smoke profile, real digits, real
training in the sandbox). Each is a copy of the example with one defect; it must lose points
on exactly its own items, with evidence that names the cause.

Apart from test_grade.py so that the two files' tests can run in parallel (tox: --dist loadfile).
"""

from __future__ import annotations

import pytest

from tests.helpers import planted_copy

PLANTED = {  # name: (items it must cost, edits of submission.py, tuned_beta line, evidence it must show)
    "no-zero-grad": (
        ["ae_training"],
        [("            optimizer.zero_grad()\n            loss.backward()", "            loss.backward()")],
        None,
        "zero_grad?",
    ),
    "no-optimizer-step": (
        ["ae_training"],
        [("            optimizer.step()\n            losses.append", "            losses.append")],
        None,
        "the weights did not change",
    ),
    "learning-rate-ignored": (
        ["ae_training"],
        [
            (
                "torch.optim.Adam(model.parameters(), lr=learning_rate)\n    losses = []",
                "torch.optim.Adam(model.parameters())\n    losses = []",
            )
        ],
        None,
        "passed 0.00037, optimizer ran at 0.001",
    ),
    # the loop trains nothing, so the harness's loop trains the tuned VAE: its results (beta_tuning's
    # samples and reconstructions, interpolation's VAE path) are the reference's work and earn nothing
    "vae-loop-without-backward": (
        ["vae_training", "beta_tuning", "interpolation"],
        [("            total_loss.backward()\n", "")],
        None,
        "none after a backward pass",
    ),
    "tuned-beta-10": (["beta_tuning"], [], "tuned_beta = 10.0", "the posterior collapsed"),
    "tuned-beta-0": (["beta_tuning"], [], "tuned_beta = 0.0", "beta is too small"),
    # a correct sampler on a decoder that outputs 20x20: the decoder's own items, not ae_sampling
    "decoder-20x20": (
        ["ae_architecture", "ae_forward"],
        [
            (
                "nn.ConvTranspose2d(32, 1, kernel_size=4, stride=2, padding=1)",
                "nn.ConvTranspose2d(32, 1, kernel_size=7, stride=1, padding=0)",
            )
        ],
        None,
        "output 20x20, expected 28x28",
    ),
}


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_training_bug_costs_exactly_its_items_and_names_the_cause(name, tmp_path, run_grade):
    lost, edits, tuned, cause = PLANTED[name]
    result = run_grade(planted_copy(tmp_path / name, edits, tuned))
    short = {i.id: i.evidence for i in result.items if i.points < i.max_points}
    assert sorted(short) == sorted(lost), short
    assert any(cause in e for e in short[lost[0]]), short


def test_an_infinite_loop_in_a_training_loop_is_stopped_by_the_stall_watchdog(tmp_path, run_grade, grader):
    """Not by the 3,600 s ceiling: no optimizer step for [sandbox] stall_s ends the unit."""
    spin = (
        "            losses.append(loss.item())\n"
        "            if len(losses) == 12:\n                while True:\n                    pass\n"
    )
    folder = planted_copy(
        tmp_path / "spin", [("            losses.append(loss.item())\n    return losses", spin + "    return losses")]
    )
    result = run_grade(folder)
    item = next(i for i in result.items if i.id == "ae_training")
    stall = grader.a.sandbox.stall_s
    assert item.points == 0 and item.status == "timeout", item.evidence
    assert f"no optimizer step for {stall:.0f} s" in item.evidence[0]
    assert result.runs["ae"]["seconds"] < stall + 60
    assert result.runs["ae"]["time_limit_s"] < grader.a.sandbox.train_timeout_s


def test_beta_tuning_is_not_credited_for_the_reference_vae_s_work(tmp_path, run_grade):
    """A VAE that cannot run: the reference VAE trains at the student's (good) beta, so only the
    choice of beta earns points and the item waits for an instructor."""
    broken = [('        return {"q": q, "rec": self.decoder(z)}', '        raise RuntimeError("my VAE is broken")')]
    result = run_grade(planted_copy(tmp_path / "broken-vae", broken))
    item = next(i for i in result.items if i.id == "beta_tuning")
    assert item.status == "needs_review" and any("reference VAE" in e for e in item.evidence), item.evidence
    assert item.points < item.max_points
    assert sum("not credited: the reference VAE stood in" in e for e in item.evidence) == 2  # samples, reconstructions
