"""Correct VAEs written in conventions the handout never shows (issue 28, item 1): the harness
reads each through the student's own code, so a careful TA's points are the harness's.

Unit tests of the posterior forms, the loss convention and the one collapse rule first; then
notebooks built from the 2020 handout's completed solution (tests/notebooks.py), each changed to
one convention a real student used, checked by ``check`` (no training)."""

from __future__ import annotations

import pytest
import torch

from harness.config.assignment import load_assignment
from harness.grading.check import check_submission
from harness.grading.session import RunOptions
from harness.ml.loss_convention import LossConvention, collapsed, flatten_q, q_format, to_format
from tests import notebooks as nbs
from tests.helpers import notebook_in

NZ = 4


@pytest.mark.parametrize("fmt", ["flat", "stacked", "pair", "dict:mu,log_sigma"])
def test_every_posterior_form_is_read_back_as_mean_then_scale(fmt):
    flat = torch.arange(3 * 2 * NZ, dtype=torch.float32).reshape(3, 2 * NZ)
    q = to_format(flat, fmt, NZ)
    assert q_format(q, NZ) == fmt
    assert torch.equal(flatten_q(q, NZ), flat)


def test_dict_keys_are_read_by_their_names_in_any_order():
    mean, logvar = torch.zeros(2, NZ), torch.ones(2, NZ)
    q = {"logvar": logvar, "mean": mean}
    assert q_format(q, NZ) == "dict:mean,logvar"
    assert torch.equal(flatten_q(q, NZ)[:, NZ:], logvar)


@pytest.mark.parametrize("q", [torch.zeros(2, 3 * NZ), [torch.zeros(2, NZ)], {"a": torch.zeros(2, NZ)}, "q"])
def test_a_posterior_in_no_known_form_is_a_clear_error(q):
    assert q_format(q, NZ) is None
    with pytest.raises(ValueError, match="expected a"):
        flatten_q(q, NZ)


def test_the_reference_convention_keeps_beta_and_sums_rescale_it():
    assert LossConvention().to_reference(1e-3) == 1e-3
    summed = LossConvention(rec_reduction="sum over pixels, mean over batch")
    assert summed.to_reference(1.0) == pytest.approx(1 / 784)
    averaged_kl = LossConvention(kl_reduction="mean over all elements", nz=64)
    assert averaged_kl.to_reference(1.0) == pytest.approx(1 / 64)


def test_a_convention_survives_its_json_and_an_unread_one_is_the_handout_s_marked_as_assumed():
    conv = LossConvention(arguments=("outputs", "x"), q_format="pair", parameterisation="log_variance")
    assert LossConvention.from_json(conv.to_json()) == conv
    assumed = LossConvention.from_json(None)
    assert not assumed.detected and assumed.factor == 1.0
    assert "assumed" in assumed.describe()


def test_one_collapse_rule_decides_on_the_kl_then_the_active_units_else_unknown():
    assert collapsed(0.5, 10, 1.0) is True
    assert collapsed(5.0, 0, 1.0) is True
    assert collapsed(5.0, 10, 1.0) is False
    assert collapsed(None, 0, 1.0) is True
    assert collapsed(None, 3, 1.0) is False
    assert collapsed(None, None, 1.0) is None
    assert collapsed(float("nan"), None, 1.0) is None


# --------------------------------------------------------------------------- notebooks

needs_handouts = pytest.mark.skipif(
    not nbs.HANDOUTS.is_dir(),
    reason="../shared/handouts not found: the handout notebooks are needed to build completed notebooks",
)

# Each case: edits to the completed 2020 notebook (old, new), each replacing exactly one place.
LIST_Q = [
    ("    return {'q': q, ", "    return {'q': [mu, log_sigma], "),
    (
        "    mu, log_sigma = outputs['q'][:, :nz], outputs['q'][:, nz:]\n",
        "    mu, log_sigma = outputs['q']\n",
    ),
]
VIEWED_Q = [
    (
        "    q = self.encoder(x)       # output of encoder (concatenated mean and log_sigma)\n"
        "    mu, log_sigma = q[:, :nz], q[:, nz:]",
        "    q = self.encoder(x).view(-1, 2, nz)\n    mu, log_sigma = q[:, 0], q[:, 1]",
    ),
    (
        "    mu, log_sigma = outputs['q'][:, :nz], outputs['q'][:, nz:]\n",
        "    mu, log_sigma = outputs['q'][:, 0], outputs['q'][:, 1]\n",
    ),
]
# loss(self, x, outputs) whose body reads x as the outputs, because the student's loop calls loss(outputs, x)
SWAPPED_LOSS = [
    (
        "    rec_loss = nn.functional.mse_loss(outputs['rec'], x)\n",
        "    rec_loss = nn.functional.mse_loss(x['rec'], outputs)\n",
    ),
    (
        "    mu, log_sigma = outputs['q'][:, :nz], outputs['q'][:, nz:]\n",
        "    mu, log_sigma = x['q'][:, :nz], x['q'][:, nz:]\n",
    ),
    (
        "  total_loss, losses = vae_model.loss(sample_img, outputs)",
        "  total_loss, losses = vae_model.loss(outputs, sample_img)",
    ),
]
CASES = {"list q": LIST_Q, "viewed q": VIEWED_Q, "swapped loss arguments": SWAPPED_LOSS}


def _notebook(tmp_path, edits):
    nb = nbs.complete("2020")
    for old, new in edits:
        nbs.replace_once(nb, old, new)
    return notebook_in(tmp_path, nb)


@needs_handouts
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_correct_vae_in_the_student_s_own_convention_earns_every_vae_model_point(tmp_path, mnist, case):
    result = check_submission(_notebook(tmp_path, CASES[case]), load_assignment("variant-a"), mnist, RunOptions())
    items = {i.id: i for i in result.items}
    vae = items["vae_model"]
    assert (vae.points, vae.status) == (vae.max_points, "pass"), vae.evidence
    assert vae.metrics["convention"]["detected"] and vae.metrics["beta_factor"] == 1.0
    assert all(i.points == i.max_points for i in result.items if i.id.startswith("ae_")), result.items
    if case == "swapped loss arguments":
        assert any("calls loss(outputs, x)" in e for e in vae.evidence), vae.evidence


@needs_handouts
def test_a_vae_reading_the_notebook_s_globals_for_nz_and_device_earns_every_point(tmp_path, mnist):
    """The handout's own style: the class body reads the global ``nz``, the loop the global ``device``."""
    nb = nbs.complete("2020")
    vae = next(c.source for c in nb.cells if c.cell_type == "code" and "class VAE" in c.source)
    loop = next(c.source for c in nb.cells if c.cell_type == "code" and "vae_model = VAE(nz, beta)" in c.source)
    assert "outputs['q'][:, :nz]" in vae and "self.nz" not in vae and ".to(device)" in loop
    result = check_submission(notebook_in(tmp_path, nb), load_assignment("variant-a"), mnist, RunOptions())
    assert all(i.points == i.max_points for i in result.items), [(i.id, i.evidence) for i in result.items]


@needs_handouts
def test_an_exception_in_one_vae_test_costs_that_part_only(tmp_path, mnist):
    broken = [("    reconstruction = self.decoder(self.encoder(x)[:, :nz])\n", "    raise ValueError('not yet')\n")]
    result = check_submission(_notebook(tmp_path, broken), load_assignment("variant-a"), mnist, RunOptions())
    vae = next(i for i in result.items if i.id == "vae_model")
    lost = [e for e in vae.evidence if e.startswith("x ")]
    assert len(lost) == 1 and "reconstruct" in lost[0] and "not yet" in lost[0], vae.evidence
    assert vae.metrics["failed_parts"] == ["reconstruct"]
    assert 0 < vae.points < vae.max_points


@needs_handouts
def test_latents_decoded_by_a_global_model_are_followed_there(tmp_path, mnist):
    edits = [
        (
            "decoded_samples = model.decoder(sampled_embeddings)",
            "decoded_samples = ae_model.decoder(sampled_embeddings)",
        )
    ]
    result = check_submission(_notebook(tmp_path, edits), load_assignment("variant-a"), mnist, RunOptions())
    sampling = next(i for i in result.items if i.id == "ae_sampling")
    assert sampling.points == sampling.max_points, sampling.evidence
    assert not any("never called" in e for e in sampling.evidence)
    assert any("followed them there" in e for e in sampling.evidence), sampling.evidence


@needs_handouts
def test_a_notebook_whose_loop_calls_loss_the_other_way_round_grades_like_its_twin(tmp_path, grader):
    """Graded end to end: its own loop trains its own VAE, the beta is read in its convention."""
    from harness.grading.grade import grade_submission

    result = grade_submission(_notebook(tmp_path, SWAPPED_LOSS), grader, RunOptions(quiet=True))
    short = {i.id: (i.points, i.max_points, i.evidence[:3]) for i in result.items if i.points < i.max_points}
    assert not short, short
    assert result.runs["tuned"]["trainer"] == "student" and result.runs["tuned"]["model"] == "student"
    tuning = next(i for i in result.items if i.id == "beta_tuning")
    assert tuning.metrics["convention"]["arguments"] == ["outputs", "x"]


@needs_handouts
def test_a_vae_loop_that_hangs_before_its_loss_costs_the_convention_not_the_vae_check(tmp_path, mnist, monkeypatch):
    """The loop is watched for LOOP_WATCH_S at most; then the handout's convention is assumed."""
    line = "    outputs = vae_model(sample_img)\n"  # in the 2020 cell's epoch loop
    edits = [(line, line + "    while True:\n      pass\n")]
    result = check_submission(_notebook(tmp_path, edits), load_assignment("variant-a"), mnist, RunOptions())
    vae = next(i for i in result.items if i.id == "vae_model")
    assert vae.points == vae.max_points, vae.evidence
    assert any("could not be watched calling loss" in e for e in vae.evidence), vae.evidence
