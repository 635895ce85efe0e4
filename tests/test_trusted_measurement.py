"""Trusted measurement, piece by piece: a trained model crosses as data (exported programs and
weights), is loaded without the student's code and refused when it is anything but ATen
operators; the status stream's vocabulary keeps the student's words out of the evidence.
The red-team suite (tests/test_red_team.py) tests the whole path end to end."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

from harness.sandbox import graph
from harness.sandbox.host import is_phase, read_phase
from harness.sandbox.probes import trace
from tests.helpers import EXAMPLE


def example_module():
    spec = importlib.util.spec_from_file_location("example_submission", EXAMPLE / "submission.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported():
    torch.manual_seed(0)
    model = example_module().AutoEncoder(64).eval()
    x = torch.rand(8, 1, 28, 28)
    return model, graph.export_model(model, "ae", 64, x)


def test_an_exported_model_runs_in_a_process_that_never_saw_its_source(exported, tmp_path):
    model, blobs = exported
    torch.save(blobs, tmp_path / "model.pt")
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        torch.save({"x": x, "rec": model.decoder(model.encoder(x))}, tmp_path / "want.pt")
    code = (
        "import sys, torch\n"
        "from harness.sandbox.graph import load_program\n"
        f"b = torch.load({str(tmp_path / 'model.pt')!r}, weights_only=True)\n"
        f"w = torch.load({str(tmp_path / 'want.pt')!r}, weights_only=True)\n"
        "enc, dec = load_program(b['encoder']), load_program(b['decoder'])\n"
        "assert not any('example_submission' in m for m in sys.modules)\n"
        "print(float((dec(enc(w['x'])) - w['rec']).abs().max()))\n"
    )
    root = str(EXAMPLE.parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip()) < 1e-5


def test_the_graph_s_operators_are_those_the_in_process_trace_records(exported):
    model, blobs = exported
    x = torch.rand(3, 1, 28, 28)
    encoder, decoder = graph.load_program(blobs["encoder"]), graph.load_program(blobs["decoder"])
    z, enc_ops = graph.graph_ops(encoder, x)
    _, dec_ops = graph.graph_ops(decoder, z)
    with torch.no_grad():
        codes, traced_enc = trace(lambda: model.encoder(x))
        _, traced_dec = trace(lambda: model.decoder(codes))
    assert enc_ops == traced_enc and dec_ops == traced_dec
    assert [op["op"] for op in enc_ops if op["op"] != "activation"][:3] == ["conv", "conv", "batch_norm"]


def _with_program(blobs: dict, edit) -> dict:
    doc = json.loads(blobs["exported_program"].numpy().tobytes())
    edit(doc)
    return {**blobs, "exported_program": torch.frombuffer(bytearray(json.dumps(doc).encode()), dtype=torch.uint8)}


def test_a_program_calling_anything_but_aten_operators_is_refused(exported):
    _, blobs = exported

    def to_eval(doc):
        doc["graph_module"]["graph"]["nodes"][0]["target"] = "builtins.eval"

    with pytest.raises(graph.GraphError, match="not an ATen operator"):
        graph.load_program(_with_program(blobs["encoder"], to_eval))


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/harness-graph-should-not-exist",))


def test_weights_that_hold_pickled_code_are_refused_without_running_it(exported):
    _, blobs = exported
    evil = pickle.dumps({"net.0.weight": Evil()})
    tampered = {**blobs["encoder"], "state_dict": torch.frombuffer(bytearray(evil), dtype=torch.uint8)}
    with pytest.raises(graph.GraphError):
        graph.load_program(tampered)
    assert not os.path.exists("/tmp/harness-graph-should-not-exist")


def test_an_incomplete_export_is_refused(exported):
    _, blobs = exported
    with pytest.raises(graph.GraphError, match="incomplete"):
        graph.load_program({"state_dict": blobs["encoder"]["state_dict"]})


def test_a_program_crosses_as_plain_tensors_that_load_as_data_only(exported):
    _, blobs = exported
    buffer = io.BytesIO()
    torch.save(blobs, buffer)
    buffer.seek(0)
    back = torch.load(buffer, weights_only=True)
    assert all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for part in back.values() for t in part.values())


def test_an_encoder_that_does_not_give_codes_is_not_exported():
    class Bad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = torch.nn.Identity(), torch.nn.Identity()

    with pytest.raises(graph.GraphError, match="not \\[B, features\\]"):
        graph.export_model(Bad(), "ae", 4, torch.rand(2, 1, 28, 28))


@pytest.mark.parametrize(
    "line",
    [
        "call generate_samples(model, 512, 64, 'cpu')",
        "call train_vae(model, loader, 2, 0.00037, 'cuda:0')",
        "call vae.loss(x, outputs) with beta = 10",
        "call iterating the data loader",
        "cell 12",
        "import submission.py",
        "evaluate the trained model",
        "done",
    ],
)
def test_the_probes_phases_are_in_the_status_vocabulary(line):
    assert is_phase(line, "submission.py")


@pytest.mark.parametrize(
    "line",
    [
        "internal error in harness/sandbox/probes.py; not the submission",
        "call internal error in harness/probes.py; not the submission",
        "import other.py",
        "cell 12; the harness crashed",
        "\x00\x01binary",
    ],
)
def test_status_lines_the_harness_did_not_write_are_not_phases(line):
    assert not is_phase(line, "submission.py")


def test_the_last_phase_is_the_last_line_in_the_vocabulary_and_the_rest_are_counted():
    lines = ["import submission.py", "call generate_samples(model, 512, 64, 'cpu')", "harness internal error; ok"]
    assert read_phase(lines, "submission.py") == ("call generate_samples(model, 512, 64, 'cpu')", 1)


def test_how_the_models_were_measured_is_flagged_from_the_runs(assignment):
    from harness.grading.integrity import measurement_flags

    honest = {"measured_in": "graph", "mismatch": 6e-8, "tampered": [], "architecture_check": {}}
    assert measurement_flags({"ae": honest, "tuned": honest}, assignment) == []
    runs = {
        "ae": {**honest, "architecture_check": {"trace_points": 6.0, "graph_points": 1.5, "max_points": 6.0}},
        "beta-0": {**honest, "measured_in": "definitions", "export_error": "GuardOnDataDependentSymNode"},
        "beta-10": {**honest, "mismatch": 0.9},
        "tuned": {**honest, "tampered": ["train_model"]},
    }
    flags = {f.code: f for f in measurement_flags(runs, assignment)}
    assert set(flags) == {"harness-tampered", "not-exported", "model-mismatch", "architecture-mismatch"}
    assert (
        "ae_training" in flags["harness-tampered"].items and "ae_sampling_answer" not in flags["harness-tampered"].items
    )
    assert flags["not-exported"].items == flags["model-mismatch"].items == flags["architecture-mismatch"].items == ()
    assert "GuardOnDataDependentSymNode" in flags["not-exported"].evidence[0]
