"""``ae_architecture``: the auto-encoder's layers as observed on a dummy batch, against the config.

The probe records the operations a forward pass performs (convolutions, linear
layers, batch-norm, activations), so any way of writing the model is judged the
same: ``nn.Sequential`` or functional calls, ``nn.Unflatten`` or ``reshape``, any
LeakyReLU slope, any stride/padding that reaches the stated resolution. Layers
are compared one by one (kind, channels, kernel, output resolution, bias,
batch-norm before the activation, activation); the score is the item's points
times the share of correct layers, and the evidence names the first wrong one.
A field the handout leaves open (a ``...`` line; the layer's ``open`` in the
config) is not compared: any kernel that reaches the stated resolution, with or
without batch norm, is the handout's; the evidence records what the student chose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.config.assignment import Assignment, LayerSpec
from harness.grading.rubric import ItemResult, round_points, status_for

CORE = ("conv", "conv_transpose", "linear")


@dataclass(frozen=True)
class ObservedLayer:
    kind: str
    in_features: int
    out_channels: int
    kernel: int
    bias: bool
    out_shape: tuple[int, ...]
    batch_norm: bool = False
    bn_after_activation: bool = False
    activation: str = "none"
    extra: tuple[str, ...] = ()


def group_layers(ops: list[dict]) -> list[ObservedLayer]:
    """A core op (conv, transposed conv, linear) starts a layer; norms and activations attach to it."""
    layers: list[dict] = []
    for op in ops:
        if op["op"] in CORE:
            layers.append(
                {
                    "kind": op["op"],
                    "in_features": op["in"],
                    "out_channels": op["out"],
                    "kernel": op["kernel"],
                    "bias": op["bias"],
                    "out_shape": tuple(op["out_shape"]),
                    "batch_norm": False,
                    "bn_after_activation": False,
                    "activation": "none",
                    "extra": [],
                }
            )
        elif not layers:
            continue
        elif op["op"] == "batch_norm":
            cur = layers[-1]
            cur["bn_after_activation"] = cur["bn_after_activation"] or cur["activation"] != "none"
            cur["batch_norm"] = True
        elif op["op"] == "activation":
            cur = layers[-1]
            if cur["activation"] == "none":
                cur["activation"] = op["kind"]
            else:
                cur["extra"].append(op["kind"])
    return [ObservedLayer(**{**d, "extra": tuple(d["extra"])}) for d in layers]


def expected_layers(a: Assignment) -> tuple[list[tuple[str, LayerSpec]], list[tuple[str, LayerSpec]]]:
    """Config layers with display names; the encoder gains its implicit latent head."""
    head = LayerSpec(kind="linear", out_channels=a.model.nz, out_resolution=1)
    enc = [(f"encoder layer {i + 1}", s) for i, s in enumerate(a.model.encoder)]
    enc.append((f"encoder layer {len(enc) + 1} (latent head)", head))
    dec = [(f"decoder layer {i + 1}", s) for i, s in enumerate(a.model.decoder)]
    return enc, dec


OPEN_FIELD_NAMES = {"kernel": "kernel", "batch_norm": "batch norm"}


def describe(spec: LayerSpec) -> str:
    """The layer as the handout states it (an open kernel is not part of it)."""
    if spec.kind == "linear":
        return f"linear to {spec.out_channels * spec.out_resolution**2}"
    kernel = "" if "kernel" in spec.open else f", kernel {spec.kernel}"
    return f"{spec.kind} {spec.out_channels} @ {spec.out_resolution}x{spec.out_resolution}{kernel}"


def open_choices(spec: LayerSpec, seen: ObservedLayer | None) -> str:
    """What the student chose for the fields the handout leaves open ("" when none are open or
    the layer is missing), e.g. "kernel 3, no batch-norm; the handout leaves kernel and batch
    norm open, so any choice reaching 14x14 is accepted"."""
    if not spec.open or seen is None or seen.kind != spec.kind:
        return ""
    choices = []
    if "kernel" in spec.open:
        choices.append(f"kernel {seen.kernel}")
    if "batch_norm" in spec.open:
        choices.append("batch-norm" if seen.batch_norm else "no batch-norm")
    fields = " and ".join(OPEN_FIELD_NAMES[f] for f in spec.open)
    accepted = "either choice is accepted"
    if spec.kind != "linear":
        accepted = f"any choice reaching {spec.out_resolution}x{spec.out_resolution} is accepted"
    return f"{', '.join(choices)}; the handout leaves {fields} open, so {accepted}"


def compare(spec: LayerSpec, seen: ObservedLayer | None) -> list[str]:
    """What differs between a config layer and the observed one (empty when it matches)."""
    if seen is None:
        return ["missing"]
    problems = []
    if seen.kind != spec.kind:
        return [f"expected a {spec.kind} layer, observed {seen.kind}"]
    if spec.kind == "linear":
        want = spec.out_channels * spec.out_resolution**2
        if seen.out_channels != want:
            problems.append(f"{seen.out_channels} output features, expected {want}")
    else:
        if seen.out_channels != spec.out_channels:
            problems.append(f"{seen.out_channels} output channels, expected {spec.out_channels}")
        if seen.kernel != spec.kernel and "kernel" not in spec.open:
            problems.append(f"kernel {seen.kernel}, the handout states kernel {spec.kernel}")
        res = seen.out_shape[-2:] if len(seen.out_shape) == 4 else ()
        if tuple(res) != (spec.out_resolution, spec.out_resolution):
            got = "x".join(map(str, res)) or "?"
            problems.append(f"output {got}, expected {spec.out_resolution}x{spec.out_resolution}")
    if seen.bias != spec.bias:
        problems.append("learns a bias, expected none" if seen.bias else "has no bias, expected one")
    if seen.batch_norm != spec.batch_norm and "batch_norm" not in spec.open:
        problems.append("has batch-norm, expected none" if seen.batch_norm else "has no batch-norm, expected one")
    elif seen.batch_norm and seen.bn_after_activation:  # wrong even where batch norm is open
        problems.append("batch-norm comes after the activation, expected before")
    if seen.activation != spec.activation:
        problems.append(f"activation {seen.activation}, expected {spec.activation}")
    if seen.extra:
        problems.append(f"extra activation(s) {', '.join(seen.extra)}")
    return problems


def parameter_count(shapes: dict[str, list[int]]) -> int:
    return sum(math.prod(shape) for shape in shapes.values())


def reference_parameters(a: Assignment) -> int:
    """How many parameters the reference AutoEncoder of ``a`` has (what a student's count is held against)."""
    from harness.ml.models import AutoEncoder

    return sum(p.numel() for p in AutoEncoder(a).parameters())


def score(a: Assignment, observed: dict, reference_parameters: int) -> ItemResult:
    item = a.item("ae_architecture")
    enc_spec, dec_spec = expected_layers(a)
    enc_seen, dec_seen = group_layers(observed["encoder_ops"]), group_layers(observed["decoder_ops"])
    evidence, first_wrong, good = [], None, 0
    total = len(enc_spec) + len(dec_spec)
    extra = 0
    for specs, seen in ((enc_spec, enc_seen), (dec_spec, dec_seen)):
        for i, (name, spec) in enumerate(specs):
            layer = seen[i] if i < len(seen) else None
            problems = compare(spec, layer)
            if problems:
                line = f"{name} ({describe(spec)}): {'; '.join(problems)}"
                evidence.append("x  " + line)
                first_wrong = first_wrong or line
            else:
                good += 1
            if note := open_choices(spec, layer):
                evidence.append(f"{name} ({describe(spec)}): {note}")
        if len(seen) > len(specs):
            extra += len(seen) - len(specs)
            evidence.append(
                f"x  {len(seen) - len(specs)} layer(s) more than the handout's table in the "
                f"{'encoder' if specs is enc_spec else 'decoder'}"
            )
    share = good / (total + extra)
    points = round_points(item.points * share)
    params = parameter_count(observed["parameters"])
    head = f"{good} of {total} layers as specified"
    if first_wrong:
        head += f"; first difference: {first_wrong}"
    evidence.insert(0, head)
    evidence.append(f"parameters: {params:,} (reference {reference_parameters:,})")
    status = status_for(points, item.points)
    metrics = {
        "layers_correct": good,
        "layers_expected": total,
        "parameters": params,
        "reference_parameters": reference_parameters,
    }
    return ItemResult(item.id, item.title, points, item.points, status, evidence, metrics)
