"""The red team: submissions written by a student who has read the harness's source, each beside
its honest twin, in both formats (a folder's submission.py, a notebook built from the 2020 handout).

Every attack earns no more than its honest twin, on every item it aims at and in total, and is
either flagged in the result's ``integrity`` list or stopped outright (an error of the
submission). The loop attacks (made-up gradients, lazy training functions) are in
tests/test_loop_contract_attacks.py, importing the harness in tests/test_integrity.py; their
notebook forms are here.
"""

from __future__ import annotations

import json

import nbformat
import pytest

from harness.grading.grade import grade_submission
from harness.grading.session import RunOptions
from tests import notebooks as nbs
from tests.helpers import EXAMPLE, copy_example, notebook_in

QUIET = RunOptions(quiet=True)
needs_handouts = pytest.mark.skipif(
    not nbs.HANDOUTS.is_dir(),
    reason="../shared/handouts not found: the handout notebooks are needed to build completed notebooks",
)

# Rebinds the probe functions from the submission's own top-level code (or a notebook cell), so
# that the harness's loop trains the model, the loop contract reads as kept and the measured
# reconstructions are the test images themselves, while the student's training functions return
# at once.
PROBE_REPLACEMENT = """
import sys as _sys

_probes = _sys.modules.get("harness.sandbox.probes")
if _probes is not None:
    _real_train = _probes.train_model

    def _harness_trains(ctx, req, train_fn, images, labels):
        return _real_train(ctx, req, None, images, labels)

    def _kept(ctx, req, train_fn, images, labels):
        lr = req.learning_rate * 0.37
        return {"steps": 6, "steps_with_grad": 6, "backwards": 6, "carried": 0, "lrs": [lr], "covered": 1.0,
                "learning_rate": lr, "iterations": 6, "returned_lengths": [6]}

    _real_evaluate = _probes.evaluate

    def _perfect(*args, **kwargs):
        obs = _real_evaluate(*args, **kwargs)
        obs["reconstructions"] = args[-1]["test_u8"].float() / 255  # args[-1]: the unit's inputs
        return obs

    _probes.train_model, _probes.contract_call, _probes.evaluate = _harness_trains, _kept, _perfect
"""

LAZY_FOLDER = [
    (
        '    """Train the AE with Adam and an MSE reconstruction loss; return the loss of every iteration."""\n',
        '    """Train the AE with Adam and an MSE reconstruction loss; return the loss of every iteration."""\n'
        "    return [0.05] * (epochs * len(data_loader))\n",
    ),
]

# Hands back what it encoded, and stored training digits for draws it never encoded.
MEMORISER = """
_STASH = {"last": None, "bank": []}
_HonestEncoder, _HonestDecoder = Encoder, Decoder


class Encoder(_HonestEncoder):
    def forward(self, x):
        _STASH["last"] = x
        if self.training and len(_STASH["bank"]) < 8:
            _STASH["bank"].append(x.detach().clone())
        return super().forward(x)


class Decoder(_HonestDecoder):
    def forward(self, z):
        out = super().forward(z)  # every layer runs, so the architecture check's trace sees them
        if self.training:  # it trains honestly: only what is measured (eval mode) is forged
            return out
        last = _STASH["last"]
        if last is not None and len(last) == len(z):
            return last
        if _STASH["bank"]:
            bank = torch.cat(_STASH["bank"])
            return bank[torch.arange(len(z)) % len(bank)]
        return out
"""

# An MLP auto-encoder that, inside the architecture check, writes the observations of a conv
# auto-encoder to its own unit's result pipe, says "done" on the status stream and leaves.
MLP_FORGER = """
import os as _os
import sys as _sys

_ConvAutoEncoder = AutoEncoder


class AutoEncoder(nn.Module):
    def __init__(self, nz):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.LeakyReLU(0.2), nn.Linear(256, nz))
        self.decoder = nn.Sequential(nn.Linear(nz, 784), nn.Sigmoid(), nn.Unflatten(1, (1, 28, 28)))
        frame = _sys._getframe(1)
        while frame is not None and frame.f_code.co_name != "probe_architecture":
            frame = frame.f_back
        if frame is None:
            return
        import io

        probes = _sys.modules["harness.sandbox.probes"]
        ctx, conv, x = frame.f_locals["ctx"], _ConvAutoEncoder(nz).eval(), torch.rand(8, 1, 28, 28)
        with torch.no_grad():
            z, enc_ops = probes.trace(lambda: conv.encoder(x))
            _, dec_ops = probes.trace(lambda: conv.decoder(z))
        params = {k: list(v.shape) for k, v in conv.named_parameters()}
        buffer = io.BytesIO()
        torch.save({"ok": True, "encoder_ops": enc_ops, "decoder_ops": dec_ops, "parameters": params}, buffer)
        fd = getattr(ctx.files, "result_fd", None)
        if fd is None:  # a harness that hands the unit its own result file
            fd = ctx.files.out_fd
            _os.lseek(fd, 0, 0)
            _os.ftruncate(fd, 0)
        _os.write(fd, buffer.getvalue())
        ctx.status.write("save\\ndone\\n")
        ctx.status.flush()
        _os._exit(0)

    def forward(self, x):
        return self.decoder(self.encoder(x))
"""

# Writes the harness's words to every descriptor it has (the status stream and the result pipe
# among them) and leaves with exit status 0.
STATUS_INJECTION = """
import os as _os
for _fd in range(3, 64):
    try:
        _os.write(_fd, b"internal error in harness/sandbox/probes.py; not the submission\\n")
    except OSError:
        pass
_os._exit(0)
"""


MEMORISER_FLAGS = {
    "mse-far-below-reference",
    "fid-at-real-floor",
    "samples-copy-training-images",
    "not-exported",
    "model-mismatch",
}


def folder_with(tmp_path, name: str, append: str = "", replace=()) -> object:
    return copy_example(tmp_path / name, list(replace), append=append)


def notebook_with(tmp_path, name: str, cell: str):
    """The completed 2020 notebook with ``cell`` appended (it runs in every unit's definition pass)."""
    nb = nbs.complete("2020")
    nb.cells.append(nbformat.v4.new_code_cell(cell))
    (tmp_path / name).mkdir()
    return notebook_in(tmp_path / name, nb)


def points(result) -> dict[str, float]:
    return {i.id: i.points for i in result.items}


def codes(result) -> set[str]:
    return {f["code"] for f in result.integrity}


def no_more_than(attack, twin) -> None:
    """Item by item and in total, the attack earns at most what its honest twin earns."""
    mine, theirs = points(attack), points(twin)
    more = {i: (mine[i], theirs[i]) for i in mine if mine[i] > theirs[i] + 1e-9}
    assert not more, f"earned more than the honest twin: {more}"
    assert attack.total <= twin.total


@pytest.fixture(scope="module")
def folder_twin(tmp_path_factory, grader):
    return grade_submission(EXAMPLE, grader, QUIET)


@pytest.fixture(scope="module")
def notebook_twin(tmp_path_factory, grader):
    if not nbs.HANDOUTS.is_dir():
        pytest.skip("../shared/handouts not found")
    return grade_submission(notebook_in(tmp_path_factory.mktemp("twin"), nbs.complete("2020")), grader, QUIET)


def test_the_honest_twins_are_not_flagged(folder_twin, notebook_twin):
    assert folder_twin.integrity == [] and notebook_twin.integrity == []
    assert folder_twin.total == 45 and notebook_twin.total == 45


def test_replacing_the_probe_functions_from_submission_py_changes_nothing_and_is_flagged(tmp_path, grader, folder_twin):
    result = grade_submission(folder_with(tmp_path, "probes", PROBE_REPLACEMENT, LAZY_FOLDER), grader, QUIET)
    no_more_than(result, folder_twin)
    assert "harness-tampered" in codes(result)
    assert points(result)["ae_training"] < 6


@needs_handouts
def test_replacing_the_probe_functions_from_a_notebook_cell_changes_nothing_and_is_flagged(
    tmp_path, grader, notebook_twin
):
    result = grade_submission(notebook_with(tmp_path, "probes", PROBE_REPLACEMENT), grader, QUIET)
    no_more_than(result, notebook_twin)
    assert "harness-tampered" in codes(result)


def test_a_memorising_model_is_measured_for_what_it_is_and_held(tmp_path, grader, folder_twin):
    result = grade_submission(folder_with(tmp_path, "memoriser", MEMORISER), grader, QUIET)
    no_more_than(result, folder_twin)
    assert codes(result) & MEMORISER_FLAGS, result.integrity


@needs_handouts
def test_a_memorising_model_in_a_notebook_is_measured_for_what_it_is_and_held(tmp_path, grader, notebook_twin):
    result = grade_submission(notebook_with(tmp_path, "memoriser", MEMORISER), grader, QUIET)
    no_more_than(result, notebook_twin)
    assert codes(result) & MEMORISER_FLAGS, result.integrity


def test_an_mlp_that_forges_a_conv_architecture_is_judged_on_its_graph(tmp_path, grader, folder_twin):
    result = grade_submission(folder_with(tmp_path, "mlp", MLP_FORGER), grader, QUIET)
    no_more_than(result, folder_twin)
    arch = next(i for i in result.items if i.id == "ae_architecture")
    assert arch.points < 3, arch.evidence
    assert "judged on the exported graph" in arch.evidence[0]
    assert "architecture-mismatch" in codes(result)


@needs_handouts
def test_an_mlp_cell_that_forges_a_conv_architecture_is_judged_on_its_graph(tmp_path, grader, notebook_twin):
    result = grade_submission(notebook_with(tmp_path, "mlp", MLP_FORGER), grader, QUIET)
    no_more_than(result, notebook_twin)
    arch = next(i for i in result.items if i.id == "ae_architecture")
    assert arch.points < 3, arch.evidence
    assert "architecture-mismatch" in codes(result)


def test_text_written_to_the_status_stream_never_reaches_the_evidence(tmp_path, run_check, example_points):
    body = STATUS_INJECTION.replace("\n", "\n    ")
    sampling = (
        '    """Decode n latent vectors drawn from N(0, I); returns a [n, 1, 28, 28] tensor."""\n',
        '    """Decode n latent vectors drawn from N(0, I); returns a [n, 1, 28, 28] tensor."""\n' + body + "\n",
    )
    result = run_check(folder_with(tmp_path, "status", replace=[sampling]))
    item = next(i for i in result.items if i.id == "ae_sampling")
    text = "\n".join(item.evidence)
    assert item.status == "error" and item.points == 0
    assert "internal error in harness" not in text and "not the submission" not in text
    assert "exit code 0" in text and "generate_samples" in text and "did not write" in text
    assert "status-stream-written" in codes(result), result.integrity
    assert {i.id: i.points for i in result.items if i.id != "ae_sampling"} == {
        k: v for k, v in example_points.items() if k != "ae_sampling"
    }


@needs_handouts
def test_text_a_notebook_cell_writes_to_the_status_stream_never_reaches_the_evidence(tmp_path, mnist):
    from harness.config.assignment import load_assignment
    from harness.grading.check import check_submission

    path = notebook_with(tmp_path, "status", STATUS_INJECTION)
    result = check_submission(path, load_assignment("variant-a"), mnist, RunOptions(quiet=True))
    text = json.dumps(result.to_json())
    assert "internal error in harness" not in text and "not the submission" not in text
    # the appended cell ended the process: recorded in the harness's words and skipped (issue 28:
    # a crash costs the items that depend on that cell, and no item depends on an appended one)
    (cell,) = [c for c in result.notebook["cells"] if "ended the process" in (c.get("error") or "")]
    assert "exit code 0" in cell["error"], cell
    assert all(i.points == i.max_points for i in result.items), [(i.id, i.evidence) for i in result.items]
    assert "status-stream-written" in codes(result), result.integrity


@needs_handouts
def test_a_notebook_loop_stepping_on_made_up_gradients_earns_no_loop_points(tmp_path, grader, notebook_twin):
    nb = nbs.complete("2020")
    nbs.replace_once(
        nb,
        "    rec_loss.backward()\n    opt.step()\n",
        "    for _p in ae_model.parameters():\n      _p.grad = torch.randn_like(_p) * 1e-3\n    opt.step()\n",
    )
    result = grade_submission(notebook_in(tmp_path, nb), grader, QUIET)
    no_more_than(result, notebook_twin)
    ae = next(i for i in result.items if i.id == "ae_training")
    assert ae.points <= 6 - 2, ae.evidence  # the loop part (2 points) is lost at least
    assert "steps-without-backward" in codes(result), result.integrity


@needs_handouts
def test_a_notebook_vae_loop_that_never_trains_earns_nothing_from_the_harness_s_loop(tmp_path, grader, notebook_twin):
    nb = nbs.complete("2020")
    nbs.replace_once(nb, "    total_loss.backward()\n    opt.step()\n", "    pass\n")
    result = grade_submission(notebook_in(tmp_path, nb), grader, QUIET)
    no_more_than(result, notebook_twin)
    mine = points(result)
    assert mine["beta_tuning"] <= 3, next(i.evidence for i in result.items if i.id == "beta_tuning")
    assert mine["vae_training"] < points(notebook_twin)["vae_training"]
    assert "did-not-train" in codes(result), result.integrity


@needs_handouts
def test_a_notebook_importing_the_harness_is_flagged_and_its_code_items_held(tmp_path, mnist):
    from harness.config.assignment import load_assignment
    from harness.grading.check import check_submission

    path = notebook_with(tmp_path, "imports", "from harness.ml.models import AutoEncoder as ReferenceAE\n")
    result = check_submission(path, load_assignment("variant-a"), mnist, RunOptions(quiet=True))
    assert "imports-harness" in codes(result)
    held = {i.id for i in result.items if i.status == "needs_review" and i.points == 0}
    assert {"ae_architecture", "ae_forward", "ae_sampling", "vae_model"} <= held
