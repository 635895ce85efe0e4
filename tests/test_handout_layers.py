"""The decoder layer the handouts write as ``...`` (kernel and batch norm open) and variant B's
stated 96 @ 6x6 kernel 4: first on synthetic observed ops (fast, no sandbox), then on real code
run by ``harness check`` in the sandbox (no training).

Variant A's submissions are copies of the example with one layer edited; variant B's are the
example with its Encoder and Decoder redefined for the 2026 table (48/96/192/384 at 13/6/2/1).
"""

from __future__ import annotations

import dataclasses

import pytest

from harness.config.assignment import load_assignment, plan_layers
from harness.grading.items import architecture
from tests.helpers import copy_example

# --------------------------------------------------------------------------- synthetic observations


def _ops(layers, in_channels: int, in_resolution: int, edits: dict[int, dict] | None = None) -> list[dict]:
    """The probe's op records for a model built exactly as the config says, with per-layer edits:
    ``kernel``, ``batch_norm`` (False drops it, "after" puts it after the activation)."""
    ops = []
    for i, p in enumerate(plan_layers(layers, in_channels, in_resolution)):
        s, edit = p.spec, (edits or {}).get(i, {})
        out = (
            [2, s.out_channels * s.out_resolution**2]
            if s.kind == "linear"
            else [2, s.out_channels, s.out_resolution, s.out_resolution]
        )
        ops.append(
            {
                "op": s.kind,
                "in": p.in_channels,
                "out": out[1],
                "kernel": edit.get("kernel", s.kernel),
                "bias": s.bias,
                "out_shape": out,
            }
        )
        bn = edit.get("batch_norm", s.batch_norm)
        norm = {"op": "batch_norm", "out_shape": out}
        if bn is True:
            ops.append(norm)
        if s.activation != "none":
            ops.append({"op": "activation", "kind": s.activation, "out_shape": out})
        if bn == "after":
            ops.append(norm)
    return ops


def _observed(a, decoder_edits: dict[int, dict] | None = None) -> dict:
    head = dataclasses.replace(
        a.model.encoder[0],
        kind="linear",
        out_channels=a.model.nz,
        out_resolution=1,
        kernel=0,
        batch_norm=False,
        activation="none",
        open=(),
    )
    encoder = _ops((*a.model.encoder, head), a.data.image_channels, a.data.image_size)
    return {
        "encoder_ops": encoder,
        "decoder_ops": _ops(a.model.decoder, a.model.nz, 1, decoder_edits),
        "parameters": {"w": [10]},
    }


@pytest.mark.parametrize("name,res", [("variant-a", 14), ("variant-b", 13)])
@pytest.mark.parametrize("kernel", [3, 4, 5])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_any_kernel_and_either_batch_norm_on_the_open_layer_score_full(name, res, kernel, batch_norm):
    a = load_assignment(name)
    result = architecture.score(a, _observed(a, {3: {"kernel": kernel, "batch_norm": batch_norm}}), 10)
    assert result.points == result.max_points, result.evidence
    spec = a.model.decoder[3]
    bn = "batch-norm" if batch_norm else "no batch-norm"
    line = (
        f"decoder layer 4 (conv_transpose {spec.out_channels} @ {res}x{res}): kernel {kernel}, {bn}; the handout "
        f"leaves kernel and batch norm open, so any choice reaching {res}x{res} is accepted"
    )
    assert line in result.evidence


def test_batch_norm_after_the_activation_is_wrong_even_where_batch_norm_is_open():
    a = load_assignment("variant-a")
    result = architecture.score(a, _observed(a, {3: {"batch_norm": "after"}}), 10)
    assert result.points < result.max_points
    assert any(
        e.startswith("x  decoder layer 4") and "batch-norm comes after the activation" in e for e in result.evidence
    )


def test_a_stated_kernel_that_differs_names_the_handouts_kernel():
    a = load_assignment("variant-b")
    result = architecture.score(a, _observed(a, {2: {"kernel": 3}}), 10)
    assert result.points < result.max_points
    assert (
        "x  decoder layer 3 (conv_transpose 96 @ 6x6, kernel 4): kernel 3, the handout states kernel 4"
        in result.evidence
    )


def test_compare_ignores_open_fields_only():
    a = load_assignment("variant-a")
    spec = a.model.decoder[3]
    seen = architecture.ObservedLayer("conv_transpose", 64, 32, 3, True, (2, 32, 14, 14), activation="leaky_relu")
    assert architecture.compare(spec, seen) == []
    closed = dataclasses.replace(spec, open=())
    assert architecture.compare(closed, seen) == [
        "kernel 3, the handout states kernel 4",
        "has no batch-norm, expected one",
    ]
    assert architecture.describe(spec) == "conv_transpose 32 @ 14x14"
    assert architecture.describe(closed) == "conv_transpose 32 @ 14x14, kernel 4"
    wrong_size = dataclasses.replace(seen, out_shape=(2, 32, 13, 13))
    assert architecture.compare(spec, wrong_size) == ["output 13x13, expected 14x14"]
    assert architecture.open_choices(closed, seen) == "" and architecture.open_choices(spec, None) == ""


# --------------------------------------------------------------------------- real code in the sandbox

A_LAYER4 = "nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1),\n            nn.BatchNorm2d(32),\n"
A_CHOICES = {  # (kernel, batch norm) -> the example's decoder layer 4 written that way (7x7 -> 14x14)
    (
        3,
        True,
    ): (
        "nn.ConvTranspose2d(64, 32, kernel_size=3, stride=2, padding=1, output_padding=1),\n"
        "            nn.BatchNorm2d(32),\n"
    ),
    (3, False): "nn.ConvTranspose2d(64, 32, kernel_size=3, stride=2, padding=1, output_padding=1),\n",
    (4, False): "nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1),\n",
}

B_LAYER3 = {
    4: "nn.ConvTranspose2d(192, 96, 4, stride=2, padding=0)",
    3: "nn.ConvTranspose2d(192, 96, 3, stride=3, padding=0)",
}
B_LAYER4 = {
    4: "nn.ConvTranspose2d(96, 48, 4, stride=2, padding=1, output_padding=1)",
    3: "nn.ConvTranspose2d(96, 48, 3, stride=2)",
}


def variant_b_code(layer3_kernel: int = 4, layer4_kernel: int = 4, layer4_batch_norm: bool = True) -> str:
    """The 2026 table's Encoder and Decoder, appended to the example (they replace its classes)."""
    bn = "\n            nn.BatchNorm2d(48)," if layer4_batch_norm else ""
    return f"""
class Encoder(nn.Module):
    def __init__(self, nz):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 48, 4, stride=2, padding=0), nn.LeakyReLU(0.2),  # 28 -> 13
            nn.Conv2d(48, 96, 4, stride=2, padding=1), nn.BatchNorm2d(96), nn.LeakyReLU(0.2),  # 13 -> 6
            nn.Conv2d(96, 192, 3, stride=2, padding=0), nn.BatchNorm2d(192), nn.LeakyReLU(0.2),  # 6 -> 2
            nn.Conv2d(192, 384, 3, stride=2, padding=1), nn.BatchNorm2d(384), nn.LeakyReLU(0.2),  # 2 -> 1
            nn.Flatten(),
            nn.Linear(384, nz),
        )

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, nz):
        super().__init__()
        self.fc = nn.Linear(nz, 384)
        self.net = nn.Sequential(
            nn.BatchNorm2d(384), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(384, 192, 3, stride=2, padding=1, output_padding=1),  # 1 -> 2
            nn.BatchNorm2d(192), nn.LeakyReLU(0.2),
            {B_LAYER3[layer3_kernel]},  # 2 -> 6
            nn.BatchNorm2d(96), nn.LeakyReLU(0.2),
            {B_LAYER4[layer4_kernel]},  # 6 -> 13{bn}
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(48, 1, 4, stride=2, padding=0),  # 13 -> 28
            nn.Sigmoid(),
        )

    def forward(self, z):
        return self.net(self.fc(z).view(-1, 384, 1, 1))
"""


@pytest.fixture(scope="module")
def run_check_b(mnist):
    """`harness check` bound to the variant-b assignment."""
    from harness.grading.check import check_submission

    b = load_assignment("variant-b")
    return lambda folder: check_submission(folder, b, mnist)


@pytest.fixture(scope="module")
def b_points(run_check_b, tmp_path_factory):
    """Every item of the variant-b rewrite of the example, as the handout states it (kernel 4 twice, batch norm)."""
    result = run_check_b(copy_example(tmp_path_factory.mktemp("b") / "sub", append=variant_b_code()))
    points = {i.id: i.points for i in result.items}
    assert all(i.points == i.max_points for i in result.items), [i.evidence for i in result.items if i.status != "pass"]
    return points


def _architecture(result):
    return next(i for i in result.items if i.id == "ae_architecture")


@pytest.mark.parametrize("kernel,batch_norm", sorted(A_CHOICES))
def test_variant_a_open_layer_choices_keep_every_point(kernel, batch_norm, tmp_path, run_check, example_points):
    folder = copy_example(tmp_path / "sub", [(A_LAYER4, A_CHOICES[kernel, batch_norm])])
    result = run_check(folder)
    assert {i.id: i.points for i in result.items} == example_points, _architecture(result).evidence
    bn = "batch-norm" if batch_norm else "no batch-norm"
    assert (
        f"decoder layer 4 (conv_transpose 32 @ 14x14): kernel {kernel}, {bn}; the handout leaves kernel and "
        f"batch norm open, so any choice reaching 14x14 is accepted"
    ) in _architecture(result).evidence


@pytest.mark.parametrize("kernel,batch_norm", [(3, True), (3, False), (4, False)])
def test_variant_b_open_layer_choices_keep_every_point(kernel, batch_norm, tmp_path, run_check_b, b_points):
    folder = copy_example(tmp_path / "sub", append=variant_b_code(layer4_kernel=kernel, layer4_batch_norm=batch_norm))
    result = run_check_b(folder)
    assert {i.id: i.points for i in result.items} == b_points, _architecture(result).evidence
    bn = "batch-norm" if batch_norm else "no batch-norm"
    assert (
        f"decoder layer 4 (conv_transpose 48 @ 13x13): kernel {kernel}, {bn}; the handout leaves kernel and "
        f"batch norm open, so any choice reaching 13x13 is accepted"
    ) in _architecture(result).evidence


def test_variant_b_stated_kernel_4_at_6x6_is_required(tmp_path, run_check_b, b_points):
    assert b_points["ae_architecture"] == load_assignment("variant-b").item("ae_architecture").points
    result = run_check_b(copy_example(tmp_path / "sub", append=variant_b_code(layer3_kernel=3)))
    item = _architecture(result)
    assert item.points < item.max_points
    assert (
        "x  decoder layer 3 (conv_transpose 96 @ 6x6, kernel 4): kernel 3, the handout states kernel 4" in item.evidence
    )
    others = {i.id: i.points for i in result.items if i.id != "ae_architecture"}
    assert others == {k: v for k, v in b_points.items() if k != "ae_architecture"}
