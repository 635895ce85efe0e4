"""A trained model as data: exported in the training unit, run in the evaluation unit.

The training unit runs the student's code, so nothing it computes about its own model can be
trusted. It hands back the trained encoder and decoder as ``torch.export`` programs: graphs of
ATen operators with their weights, which need no student Python to run. The evaluation unit, a
fresh process that never imports the student's code, loads them with :func:`load_program` and
measures them; the architecture is read from the same graphs (:func:`graph_ops`), so a model
cannot be one thing when checked and another when measured (docs/sandbox.md#trusted-measurement).

Every part of a program crosses as a uint8 tensor, so the unit's observation file stays plain
data for ``torch.load(weights_only=True)``. ``torch.export.load`` is not used: it falls back to
``weights_only=False`` (pickle, that is code) when a file does not load as data.
"""

from __future__ import annotations

import io
import json
from typing import Any

import torch
from torch import Tensor, nn

from harness.ml.loss_convention import flatten_q

PARTS = ("exported_program", "state_dict", "constants", "example_inputs")  # SerializedArtifact's fields
MAX_BATCH = 1 << 16
# What an exported encoder or decoder may call: ATen operators and tuple indexing. Anything
# else (custom operators, higher-order operators, script objects) is refused before loading.
ALLOWED_PREFIXES = ("torch.ops.aten.",)
ALLOWED_TARGETS = ("_operator.getitem",)

CORE_OPS = {"conv2d": "conv", "conv_transpose2d": "conv_transpose", "linear": "linear"}
NORM_OPS = ("batch_norm", "native_batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit")
ACTIVATIONS = ("leaky_relu", "relu", "sigmoid", "tanh", "elu", "gelu", "silu", "softplus")


class GraphError(ValueError):
    """A program that does not load, or calls something other than ATen operators."""


def _blob(data: bytes) -> Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.zeros(0, dtype=torch.uint8)


def export_part(module: nn.Module, example: Tensor) -> dict[str, Tensor]:
    """``module`` (in eval mode) exported for any batch size, as uint8 tensors (raises what
    ``torch.export`` raises)."""
    from torch._export.serde.serialize import serialize
    from torch.export import Dim, export

    batch = Dim("batch", min=1, max=MAX_BATCH)
    program = export(module, (example,), dynamic_shapes=({0: batch},))
    art = serialize(program)
    return {name: _blob(getattr(art, name)) for name in PARTS}


def export_model(model: nn.Module, kind: str, nz: int, example: Tensor) -> dict[str, dict[str, Tensor]]:
    """The trained model's encoder and decoder as programs: the decoder is exported on the codes
    the encoder gives ``example`` (the AE's output, the VAE's mean: its first ``nz`` features)."""
    model.eval()
    encoder = model.encoder if kind == "ae" else FlatPosterior(model.encoder, nz)
    try:
        with torch.no_grad():
            q = encoder(example)
    except ValueError as e:  # a posterior in no form the harness reads
        raise GraphError(f"the trained encoder's output: {e}") from None
    if not isinstance(q, Tensor) or q.dim() != 2:
        shape = list(q.shape) if isinstance(q, Tensor) else []
        raise GraphError(f"the trained encoder returned {type(q).__name__} {shape}, not [B, features]")
    z = q if kind == "ae" else q[:, :nz]
    return {"encoder": export_part(encoder, example), "decoder": export_part(model.decoder, z.contiguous())}


class FlatPosterior(nn.Module):
    """A VAE encoder whose posterior, in whatever form the student returns it (a ``[B, 2, nz]``
    view, a pair, a dict), comes out as the ``[B, 2nz]`` tensor the evaluation unit reads."""

    def __init__(self, encoder: nn.Module, nz: int):
        super().__init__()
        self.encoder, self.nz = encoder, nz

    def forward(self, x: Tensor) -> Tensor:
        return flatten_q(self.encoder(x), self.nz)


def _check_program(text: bytes) -> None:
    try:
        doc = json.loads(text)
        nodes = doc["graph_module"]["graph"]["nodes"]
    except (ValueError, KeyError, TypeError) as e:
        raise GraphError(f"the exported program is not a graph ({type(e).__name__})") from None
    for node in nodes:
        target = str(node.get("target", ""))
        if not (target.startswith(ALLOWED_PREFIXES) or target in ALLOWED_TARGETS):
            raise GraphError(f"the exported program calls {target[:80]!r}, not an ATen operator")
        if "as_custom_obj" in json.dumps(node.get("inputs", [])):
            raise GraphError("the exported program takes a script object")


def _load_data(blob: Tensor) -> Any:
    if blob.numel() == 0:
        return {}
    value = torch.load(io.BytesIO(blob.numpy().tobytes()), weights_only=True, map_location="cpu")
    if not isinstance(value, (dict, tuple)):
        raise GraphError(f"an exported part is a {type(value).__name__}, not a dict")
    return value


def load_program(blobs: dict[str, Tensor], device: torch.device | str = "cpu") -> nn.Module:
    """The module of one exported part, its operators checked first and its weights read as
    data only (raises :class:`GraphError`)."""
    from torch._export.serde.serialize import SerializedArtifact, deserialize

    if not isinstance(blobs, dict) or not all(isinstance(blobs.get(p), Tensor) for p in PARTS):
        raise GraphError("the training unit's export is incomplete")
    text = blobs["exported_program"].numpy().tobytes()
    _check_program(text)
    try:
        parts = [_load_data(blobs[p]) for p in PARTS[1:]]
        program = deserialize(SerializedArtifact(text, *parts))
        return program.module().to(device)
    except GraphError:
        raise
    except Exception as e:  # noqa: BLE001  (a malformed program is the submission's problem)
        raise GraphError(f"the exported program does not load ({type(e).__name__}: {str(e)[:200]})") from None


def _name(target: Any) -> str:
    packet = getattr(target, "_overloadpacket", None)
    return str(getattr(packet, "__name__", "")).rstrip("_")


def _shape(x: Any) -> list[int]:
    return list(x.shape) if isinstance(x, Tensor) else []


def _core_op(kind: str, args: tuple, out: Any) -> dict:
    weight = args[1] if len(args) > 1 else None
    bias = args[2] if len(args) > 2 else None
    w = list(weight.shape) if isinstance(weight, Tensor) else []
    if kind == "linear":
        in_f, out_f = (w[1], w[0]) if len(w) == 2 else (0, 0)
        return {"op": kind, "in": in_f, "out": out_f, "kernel": 0, "bias": bias is not None, "out_shape": _shape(out)}
    out_ch, in_ch = (w[0], w[1]) if kind == "conv" else (w[1], w[0])
    kernel = w[2] if len(w) == 4 else 0
    return {
        "op": kind,
        "in": in_ch,
        "out": out_ch,
        "kernel": kernel,
        "bias": bias is not None,
        "out_shape": _shape(out),
    }


def _op_record(target: Any, args: tuple, kwargs: dict, out: Any) -> dict | None:
    """The architecture check's record of one operator (the same shape the in-process recorder
    of ``harness.sandbox.probes`` gives), None for operators it does not look at."""
    name = _name(target)
    if name == "convolution":  # the decomposed form: transposed is its 7th argument
        name = "conv_transpose2d" if len(args) > 6 and args[6] else "conv2d"
    if name in CORE_OPS:
        return _core_op(CORE_OPS[name], args, out)
    if name in NORM_OPS:
        return {"op": "batch_norm", "out_shape": _shape(out[0] if isinstance(out, (tuple, list)) else out)}
    if name in ACTIVATIONS:
        slope = kwargs.get("negative_slope", args[1] if len(args) > 1 and isinstance(args[1], float) else None)
        if name == "leaky_relu" and slope is None:
            slope = 0.01  # aten's default, which the graph leaves out
        return {"op": "activation", "kind": name, "slope": slope, "out_shape": _shape(out)}
    return None


def graph_ops(module: nn.Module, x: Tensor) -> tuple[Any, list[dict]]:
    """Run a loaded program on ``x``, recording its layer-level operators in order."""
    import torch.fx

    ops: list[dict] = []

    class Recording(torch.fx.Interpreter):
        def call_function(self, target, args, kwargs):
            out = super().call_function(target, args, kwargs)
            record = _op_record(target, args, kwargs, out)
            if record is not None:
                ops.append(record)
            return out

    with torch.no_grad():
        out = Recording(module).run(x)
    return out, ops
