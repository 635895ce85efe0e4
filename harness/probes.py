"""Observations of student code, run inside the sandbox (``harness.sandbox_server``).

Each probe imports the student's module, calls it the way the handout does and
returns what it observed: tensors, shapes, recorded operations. Probes judge
nothing; the checks in ``harness.checks`` score these observations in the
harness's own process, where the student's monkeypatches do not exist.

The unit's phase ("import", "call generate_samples", ...) is written to a status
stream so that a crash or an ``os._exit`` is reported with where it happened.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, TextIO

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

CORE_OPS = {"conv2d": "conv", "conv_transpose2d": "conv_transpose", "linear": "linear"}
NORM_OPS = {"batch_norm": "batch_norm"}
ACTIVATIONS = {
    "leaky_relu": "leaky_relu", "leaky_relu_": "leaky_relu",
    "relu": "relu", "relu_": "relu",
    "sigmoid": "sigmoid", "sigmoid_": "sigmoid",
    "tanh": "tanh", "tanh_": "tanh",
    "elu": "elu", "gelu": "gelu", "silu": "silu", "softplus": "softplus",
}  # fmt: skip


class StudentError(Exception):
    """Student code raised, exited or misbehaved; carries a message for the evidence."""

    def __init__(self, message: str, tb: str = ""):
        super().__init__(message)
        self.tb = tb


# --------------------------------------------------------------------------- entry point


def run_unit(req: dict, scratch: Path, status: TextIO) -> None:
    """Run the probe named in ``req`` and save its observations to ``out/<unit>.pt``."""
    torch.set_num_threads(int(req.get("threads", 1)))
    ctx = Context(req, scratch, status)
    try:
        value = {"ok": True, **PROBES[req["probe"]](ctx)}
    except StudentError as e:
        value = {"ok": False, "error": str(e), "traceback": e.tb}
    ctx.phase("save")
    torch.save(value, scratch / "out" / f"{req['unit']}.pt")
    ctx.phase("done")


class Context:
    def __init__(self, req: dict, scratch: Path, status: TextIO):
        self.req, self.scratch, self.status = req, scratch, status
        self.args: dict = req.get("args", {})
        self.names: dict[str, str] = req["names"]
        self.nz: int = int(req["nz"])
        self._module = None

    def phase(self, text: str) -> None:
        self.status.write(text + "\n")

    def inputs(self) -> dict[str, Tensor]:
        return torch.load(self.scratch / "inputs.pt", weights_only=True)

    def module(self):
        if self._module is None:
            self._module = import_submission(Path(self.req["module"]), self.phase)
            for key in self.args.get("substitute", []):
                setattr(self._module, self.names[key], reference_part(key, self.req["assignment"]))
        return self._module

    def get(self, key: str) -> Callable:
        """The student's object for a config key (``encoder``, ``train_vae``, ...)."""
        name = self.names[key]
        obj = getattr(self.module(), name, None)
        if obj is None:
            raise StudentError(f"submission.py defines no `{name}`")
        if not callable(obj):
            raise StudentError(f"`{name}` in submission.py is not callable")
        return obj

    def call(self, what: str, fn: Callable, *args, **kwargs) -> Any:
        """Call student code, turning anything it raises (even SystemExit) into evidence."""
        self.phase(f"call {what}")
        try:
            return fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001  (student code may raise anything, even SystemExit)
            raise StudentError(f"{what} raised {_describe(e)}", _tail(traceback.format_exc())) from None


def _describe(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"SystemExit (sys.exit({e.code!r}))"
    return f"{type(e).__name__}: {e}"


def _tail(tb: str, lines: int = 12) -> str:
    return "\n".join(tb.rstrip().splitlines()[-lines:])


def import_submission(path: Path, phase: Callable[[str], None]):
    phase("import submission.py")
    spec = importlib.util.spec_from_file_location("submission", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["submission"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # noqa: BLE001
        raise StudentError(f"importing submission.py raised {_describe(e)}", _tail(traceback.format_exc())) from None
    return module


def reference_part(key: str, assignment_path: str) -> Callable:
    """A reference class with the student's constructor signature, to stand in for a broken part."""
    from harness.assignment import load_assignment
    from harness.models import build_decoder, build_encoder

    a = load_assignment(assignment_path)
    if key == "encoder":
        return lambda nz: build_encoder(a, nz)
    if key == "decoder":
        return lambda nz: build_decoder(a)
    raise ValueError(key)


def _detach(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach().cpu().clone()
    if isinstance(x, dict):
        return {str(k): _detach(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_detach(v) for v in x]
    if isinstance(x, (int, float, str, bool)) or x is None:
        return x
    return repr(x)[:200]


# --------------------------------------------------------------------------- tracing


class Recorder(TorchFunctionMode):
    """Record the layer-level operations a forward pass performs, whatever form the code takes."""

    def __init__(self):
        super().__init__()
        self.ops: list[dict] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in CORE_OPS:
            self.ops.append(_core_op(CORE_OPS[name], args, kwargs, out))
        elif name in NORM_OPS:
            self.ops.append({"op": "batch_norm", "out_shape": _shape(out)})
        elif name in ACTIVATIONS:
            slope = kwargs.get("negative_slope", args[1] if len(args) > 1 and isinstance(args[1], float) else None)
            self.ops.append({"op": "activation", "kind": ACTIVATIONS[name], "slope": slope, "out_shape": _shape(out)})
        return out


def _shape(x: Any) -> list[int]:
    return list(x.shape) if isinstance(x, Tensor) else []


def _core_op(kind: str, args: tuple, kwargs: dict, out: Any) -> dict:
    weight = args[1] if len(args) > 1 else kwargs.get("weight")
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    w = list(weight.shape) if isinstance(weight, Tensor) else []
    if kind == "linear":
        in_f, out_f = (w[1], w[0]) if len(w) == 2 else (0, 0)
        return {"op": kind, "in": in_f, "out": out_f, "kernel": 0, "bias": bias is not None, "out_shape": _shape(out)}
    out_ch, in_ch = (w[0], w[1]) if kind == "conv" else (w[1], w[0])
    return {
        "op": kind,
        "in": in_ch,
        "out": out_ch,
        "kernel": w[2] if len(w) == 4 else 0,
        "bias": bias is not None,
        "out_shape": _shape(out),
    }


def trace(fn: Callable[[], Any]) -> tuple[Any, list[dict]]:
    rec = Recorder()
    with rec:
        out = fn()
    return out, rec.ops


def capture_input(module: nn.Module) -> tuple[list[Tensor], Callable[[], None]]:
    """Record what reaches ``module`` (its first positional input) on each call."""
    seen: list[Tensor] = []
    handle = module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()) if args else None)
    return seen, handle.remove


# --------------------------------------------------------------------------- probes


def probe_import(ctx: Context) -> dict:
    module = ctx.module()
    found = {}
    for key, name in ctx.names.items():
        obj = getattr(module, name, None)
        found[key] = "missing" if obj is None else ("ok" if callable(obj) else "not callable")
    public = sorted(n for n in vars(module) if not n.startswith("_"))
    return {"names": found, "defined": public}


def _autoencoder(ctx: Context) -> nn.Module:
    model = ctx.call(f"{ctx.names['autoencoder']}({ctx.nz})", ctx.get("autoencoder"), ctx.nz)
    for attr in ("encoder", "decoder"):
        if not isinstance(getattr(model, attr, None), nn.Module):
            raise StudentError(f"{ctx.names['autoencoder']} has no module attribute `{attr}`")
    return model


def probe_architecture(ctx: Context) -> dict:
    x = ctx.inputs()["images"][:8]
    model = _autoencoder(ctx).eval()
    with torch.no_grad():
        z, enc_ops = ctx.call("encoder(x)", lambda: trace(lambda: model.encoder(x)))
        if not isinstance(z, Tensor):
            raise StudentError(f"the encoder returned {type(z).__name__}, not a tensor")
        _, dec_ops = ctx.call("decoder(z)", lambda: trace(lambda: model.decoder(z.reshape(z.shape[0], -1))))
    params = {k: list(v.shape) for k, v in model.named_parameters()}
    return {"encoder_ops": enc_ops, "decoder_ops": dec_ops, "parameters": params}


def probe_forward(ctx: Context) -> dict:
    inputs = ctx.inputs()
    images = inputs["images"]
    batch, workers = int(ctx.args["batch_size"]), int(ctx.args["num_workers"])
    dataset = IndexedImages(images)
    loader = ctx.call(
        f"{ctx.names['data_loader']}(dataset, {batch}, {workers})", ctx.get("data_loader"), dataset, batch, workers
    )
    loader_obs = {
        "batch_size": getattr(loader, "batch_size", None),
        "num_workers": getattr(loader, "num_workers", None),
        "epochs": [],
    }
    for _ in range(2):
        first = ctx.call("iterating the data loader", lambda: next(iter(loader)))
        if not isinstance(first, (list, tuple)) or len(first) < 2:
            raise StudentError("a batch from the data loader is not an (images, labels) pair")
        loader_obs["epochs"].append({"images_shape": _shape(first[0]), "labels": _detach(first[1])})
    model = _autoencoder(ctx).eval()
    x = images[:batch]
    with torch.no_grad():
        z = ctx.call("model.encoder(x)", model.encoder, x)
        rec = ctx.call("model.decoder(z)", model.decoder, z) if isinstance(z, Tensor) else None
        full = ctx.call("model(x)", model, x)
    return {"loader": loader_obs, "z": _detach(z), "rec": _detach(rec), "forward": _detach(full)}


def probe_sampling(ctx: Context) -> dict:
    n = int(ctx.args["n"])
    if ctx.args.get("reference_model"):
        from harness.assignment import load_assignment
        from harness.models import AutoEncoder

        model = AutoEncoder(load_assignment(ctx.req["assignment"]))
    else:
        model = _autoencoder(ctx)
    model.eval()
    seen, remove = capture_input(model.decoder)
    torch.manual_seed(int(ctx.args.get("seed", 0)))
    out = ctx.call(f"{ctx.names['generate_samples']}(model, {n}, {ctx.nz}, 'cpu')", ctx.get("generate_samples"), model, n, ctx.nz, "cpu")
    remove()
    return {"decoder_inputs": _detach(seen[:4]), "samples": _detach(out)}


class InjectedEncoder(nn.Module):
    """Stands in for the VAE's encoder and emits a fixed posterior, so the test knows mu and sigma."""

    def __init__(self, q: Tensor):
        super().__init__()
        self.q = q

    def forward(self, x: Tensor) -> Tensor:
        return self.q


def probe_vae(ctx: Context) -> dict:
    inputs = ctx.inputs()
    x = inputs["images"][:64]
    nz, vae_name = ctx.nz, ctx.names["vae"]
    make = lambda: ctx.call(f"{vae_name}({nz})", ctx.get("vae"), nz)  # noqa: E731
    obs: dict[str, Any] = {}

    vae = make().eval()
    if not isinstance(getattr(vae, "decoder", None), nn.Module) or not isinstance(getattr(vae, "encoder", None), nn.Module):
        raise StudentError(f"{vae_name} needs module attributes `encoder` and `decoder`")
    with torch.no_grad():
        out1 = ctx.call("vae(x)", vae, x)
        out2 = ctx.call("vae(x) again", vae, x)
    obs["forward"] = [_detach(out1), _detach(out2)]

    # Reparameterisation with a known posterior: mu = 2, log-scale = -1.5 everywhere.
    vae = make().eval()
    q_known = torch.cat([torch.full((512, nz), 2.0), torch.full((512, nz), -1.5)], dim=1)
    vae.encoder = InjectedEncoder(q_known)
    seen, remove = capture_input(vae.decoder)
    with torch.no_grad():
        ctx.call("vae(x) with a known posterior", vae, inputs["images"][:512])
    remove()
    obs["known_posterior_z"] = _detach(seen[:1])
    q_leaf = (torch.randn(16, 2 * nz) * 0.5).requires_grad_(True)
    vae.encoder = InjectedEncoder(q_leaf)
    out = ctx.call("vae(x) for gradients", vae, x[:16])
    rec = out.get("rec") if isinstance(out, dict) else None
    if isinstance(rec, Tensor) and rec.requires_grad:
        ctx.call("backward through the reconstruction", rec.sum().backward)
    grad = q_leaf.grad if q_leaf.grad is not None else torch.zeros_like(q_leaf)
    obs["grad_norms"] = [grad[:, :nz].norm().item(), grad[:, nz:].norm().item()]

    # The loss on injected outputs, for several betas.
    torch.manual_seed(1)
    vae = make()
    loss_obs = []
    for trial in range(2):
        q = torch.cat([torch.randn(32, nz), torch.rand(32, nz) * 2 - 1.5], dim=1)
        rec = torch.sigmoid(torch.randn(32, *x.shape[1:]))
        xs = inputs["images"][32 * trial : 32 * (trial + 1)]
        for beta in ctx.args["betas"]:
            vae.beta = beta
            with torch.no_grad():
                result = ctx.call(f"vae.loss(x, outputs) with beta = {beta:g}", vae.loss, xs, {"q": q, "rec": rec})
            loss_obs.append({"trial": trial, "beta": beta, "q": q, "rec": rec, "x": xs, "result": _detach(result)})
    obs["loss"] = loss_obs

    # reconstruct: deterministic and the decoded posterior mean.
    vae = make().eval()
    with torch.no_grad():
        r1 = ctx.call("vae.reconstruct(x)", vae.reconstruct, x)
        r2 = ctx.call("vae.reconstruct(x) again", vae.reconstruct, x)
        q = ctx.call("vae.encoder(x)", vae.encoder, x)
        mean_rec = ctx.call("vae.decoder(mu)", vae.decoder, q[:, :nz]) if isinstance(q, Tensor) else None
    obs["reconstruct"] = [_detach(r1), _detach(r2), _detach(mean_rec)]
    return obs


class IndexedImages(torch.utils.data.Dataset):
    """MNIST-like (image, label) pairs whose label is the item's index, so shuffling is visible."""

    def __init__(self, images: Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.images[i], i


PROBES: dict[str, Callable[[Context], dict]] = {
    "import": probe_import,
    "architecture": probe_architecture,
    "forward": probe_forward,
    "sampling": probe_sampling,
    "vae": probe_vae,
}
