"""Observations of student code, run inside the sandbox (``harness.sandbox.supervisor``).

Each probe imports the student's module, calls it the way the handout does and
returns what it observed: tensors, shapes, recorded operations. Probes judge
nothing; the items in ``harness.grading.items`` score these observations in the
harness's own process, where the student's monkeypatches do not exist.

A check probe reads its arguments as a plain dict; the training probe reads a
:class:`~harness.sandbox.requests.TrainRequest`. Messages about the student's code
name it by the submission's label (``submission.py``), sent with every request.

The unit's phase ("import", "call generate_samples", ...) is written to a status
stream so that a crash or an ``os._exit`` is reported with where it happened.
"""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.overrides import TorchFunctionMode

from harness.sandbox.requests import TrainRequest

CORE_OPS = {"conv2d": "conv", "conv_transpose2d": "conv_transpose", "linear": "linear"}
NORM_OPS = {"batch_norm": "batch_norm"}
ACTIVATIONS = {
    "leaky_relu": "leaky_relu",
    "leaky_relu_": "leaky_relu",
    "relu": "relu",
    "relu_": "relu",
    "sigmoid": "sigmoid",
    "sigmoid_": "sigmoid",
    "tanh": "tanh",
    "tanh_": "tanh",
    "elu": "elu",
    "gelu": "gelu",
    "silu": "silu",
    "softplus": "softplus",
}


class StudentError(Exception):
    """Student code raised, exited or misbehaved; carries a message for the evidence."""

    def __init__(self, message: str, tb: str = ""):
        super().__init__(message)
        self.tb = tb


# --------------------------------------------------------------------------- entry point


@dataclass(frozen=True)
class UnitFiles:
    """What the supervisor hands a unit besides its request: where its inputs are, the pipe its
    observations go to (the supervisor writes them to the file the harness reads) and its
    progress file (the unit cannot create files of its own in the folder the harness reads)."""

    inputs: Path
    result_fd: int
    progress_fd: int


def run_unit(req: dict, files: UnitFiles, status: TextIO) -> None:
    """Run the probe named in ``req`` and save its observations to the unit's output file."""
    torch.set_num_threads(int(req.get("threads", 1)))
    ctx = Context(req, files, status)
    try:
        value = {"ok": True, **PROBES[req["probe"]](ctx)}
    except StudentError as e:
        value = {"ok": False, "error": str(e), "traceback": e.tb}
    ctx.phase("save")
    buffer = io.BytesIO()
    torch.save(value, buffer)
    with os.fdopen(files.result_fd, "wb") as out:
        out.write(buffer.getbuffer())
    ctx.phase("done")


class Context:
    """One unit's view of its request: the student's module and names, its arguments and inputs,
    and the status and progress streams."""

    def __init__(self, req: dict, files: UnitFiles, status: TextIO):
        self.req, self.files, self.status = req, files, status
        self.args: dict = req.get("args", {})
        self.names: dict[str, str] = req["names"]
        self.nz: int = int(req["nz"])
        self.label: str = req["label"]  # how messages name the student's code: "submission.py"
        self._module = None
        self.notebook = None  # a notebook's cells and their runs, once module() ran them

    def progress(self, steps: int | str) -> None:
        """Steps so far ("done" once the loop returned): the stall watchdog and the progress bar read it."""
        os.pwrite(self.files.progress_fd, str(steps).ljust(12).encode(), 0)

    def phase(self, text: str) -> None:
        self.status.write(text + "\n")

    def inputs(self) -> dict[str, Tensor]:
        # mmap: a unit reads only the tensors it uses (grading inputs hold the training images)
        return torch.load(self.files.inputs, weights_only=True, mmap=True)

    def module(self):
        if self._module is None:
            if self.req.get("kind") == "notebook":
                self._module = self._notebook_module()
            else:
                self._module = import_submission(Path(self.req["module"]), self.label, self.phase)
            # the reference's parts stand in for the student's broken ones (check args, a TrainRequest
            # and an evaluation unit's request alike)
            substitute = self.args.get("substitute") or self.args.get("request", {}).get("substitute", [])
            for key in substitute:
                setattr(self._module, self.names[key], reference_part(key, self.req["assignment"]))
        return self._module

    def _notebook_module(self):
        """A notebook's namespace after its definition pass, with the folder format's names bound
        to adapters that run its own cells (harness.sandbox.notebook_run)."""
        from harness.sandbox.notebook_run import Notebook, load_cells

        self.notebook = Notebook(
            load_cells(Path(self.req["module"])),
            self.inputs(),
            self.phase,
            float(self.req.get("cell_timeout_s") or 30.0),
        )
        self.notebook.define(frozenset(self.req.get("skip_cells", [])))
        return self.notebook.expose(self.names)

    def get(self, key: str) -> Callable:
        """The student's object for a config key (``encoder``, ``train_vae``, ...)."""
        name = self.names[key]
        obj = getattr(self.module(), name, None)
        if obj is None:
            raise StudentError(f"{self.label} defines no `{name}`")
        if not callable(obj):
            raise StudentError(f"`{name}` in {self.label} is not callable")
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


def import_submission(path: Path, label: str, phase: Callable[[str], None]):
    """The student's module at ``path``, imported as ``submission`` (``label`` names it in messages)."""
    phase(f"import {label}")
    spec = importlib.util.spec_from_file_location("submission", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["submission"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # noqa: BLE001
        raise StudentError(f"importing {label} raised {_describe(e)}", _tail(traceback.format_exc())) from None
    return module


def reference_part(key: str, assignment_path: str) -> Callable:
    """A reference class with the student's constructor signature, to stand in for a broken part."""
    from harness.config.assignment import load_assignment
    from harness.ml.models import build_decoder, build_encoder

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
    defined = set(vars(module)) | set(ctx.notebook.freed if ctx.notebook is not None else ())
    public = sorted(n for n in defined if not n.startswith("_"))
    obs = {"names": found, "defined": public}
    if ctx.notebook is not None:  # the definition pass, cell by cell: the result's per-cell diagnostics
        obs["cells"] = ctx.notebook.cell_runs()
    return obs


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
        # a notebook's loader runs with its workers capped; the check judges what the code asked for
        "num_workers": getattr(loader, "_harness_requested_workers", getattr(loader, "num_workers", None)),
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
        from harness.config.assignment import load_assignment
        from harness.ml.models import AutoEncoder

        model = AutoEncoder(load_assignment(ctx.req["assignment"]))
    else:
        model = _autoencoder(ctx)
    model.eval()
    seen, remove = capture_input(model.decoder)
    # whatever module decodes the drawn latents (the student may decode through a global model):
    # the first module called on a [*, nz] tensor, outermost first
    latents: list[Tensor] = []

    def any_module(module: nn.Module, args: tuple) -> None:
        if not latents and args and isinstance(args[0], Tensor) and args[0].dim() == 2 and args[0].shape[1] == ctx.nz:
            latents.append(args[0].detach().clone())

    handle = torch.nn.modules.module.register_module_forward_pre_hook(any_module)
    torch.manual_seed(int(ctx.args.get("seed", 0)))
    try:
        out = ctx.call(
            f"{ctx.names['generate_samples']}(model, {n}, {ctx.nz}, 'cpu')",
            ctx.get("generate_samples"),
            model,
            n,
            ctx.nz,
            "cpu",
        )
    finally:
        remove()
        handle.remove()
    obs = {"decoder_inputs": _detach(seen[:4]), "samples": _detach(out)}
    if not seen and latents:  # decoded by a module other than the model's decoder
        obs["decoder_inputs"], obs["decoded_elsewhere"] = latents, True
    return obs


class Injected(nn.Module):
    """Stands in for a part of the VAE and emits a fixed value whatever it is given: a known
    posterior from the encoder, known reconstructions from the decoder, so the test knows them."""

    def __init__(self, value: Any):
        super().__init__()
        self.value = value

    def forward(self, x: Tensor) -> Any:
        return self.value


class _LossSeen(BaseException):
    """Ends the student's loop at its first call of ``loss``: that call is all the probe needs."""


class _LoopTooLong(BaseException):
    """Ends the student's loop when it has not called ``loss`` within LOOP_WATCH_S."""


# The most the VAE check spends watching the student's loop for its first loss call: a loop that
# hangs costs the convention (the handout's is assumed), never the VAE check's unit
LOOP_WATCH_S = 15.0


def _role(arg: Any, x: Any, out: Any) -> str:
    """What a loss argument is, as the student's loop passed it: the batch (``x``), what forward
    returned (``outputs``, or one of its entries ``outputs[key]``), or something else."""
    if arg is out:
        return "outputs"
    if isinstance(out, dict):
        for k, v in out.items():
            if arg is v and isinstance(k, str):
                return f"outputs[{k}]"
    if (
        isinstance(arg, Tensor)
        and isinstance(x, Tensor)
        and arg.numel() == x.numel()
        and torch.equal(arg.detach().reshape(-1).cpu(), x.detach().reshape(-1).cpu())
    ):
        return "x"
    return "other"


def observe_loop(ctx: Context, make: Callable[[], nn.Module], images: Tensor, labels: Tensor) -> dict:
    """One call of the student's own VAE loop on one batch, stopped at its first ``loss`` call:
    what the encoder and forward returned (their posterior forms) and the roles of the arguments
    the loop passed to ``loss`` (harness.ml.loss_convention). ``{"error": ...}`` when the loop
    failed before it, ``loss_called`` False when it never called the model's ``loss``."""
    from harness.ml.data import TensorMNIST
    from harness.ml.loss_convention import q_format

    train_fn = ctx.get("train_vae")
    vae = make()
    seen: dict[str, Any] = {}

    def on_forward(module, args, out):
        seen.setdefault("x", args[0] if args else None)
        seen.setdefault("out", out)

    def on_encoder(module, args, out):
        seen.setdefault("encoded", out)

    def loss(*args, **kwargs):
        seen["call"] = (args, kwargs)
        raise _LossSeen

    handles = [vae.register_forward_hook(on_forward)]
    if isinstance(getattr(vae, "encoder", None), nn.Module):
        handles.append(vae.encoder.register_forward_hook(on_encoder))
    vae.loss = loss
    loader = torch.utils.data.DataLoader(TensorMNIST(images, labels), batch_size=len(images))
    name = ctx.names["train_vae"]
    ctx.phase(f"call {name}(model, loader, 1, 0.001, 'cpu') until its first loss call")
    obs: dict[str, Any] = {}

    def too_long(signum, frame):
        raise _LoopTooLong

    timed = signal.getitimer(signal.ITIMER_REAL)[0] == 0  # no alarm of the unit's own is running
    if timed:
        previous = signal.signal(signal.SIGALRM, too_long)
        signal.setitimer(signal.ITIMER_REAL, LOOP_WATCH_S)
    try:
        train_fn(vae, loader, 1, 1e-3, "cpu")
    except _LossSeen:
        pass
    except BaseException as e:  # noqa: BLE001  (student code may raise anything)
        if "call" not in seen:  # a notebook's cell runner wraps the stop in an error of its own
            why = f"did not call loss within {LOOP_WATCH_S:g} s" if isinstance(e, _LoopTooLong) else ""
            obs["error"] = f"{name}(model, loader, 1, 0.001, 'cpu') {why or 'raised ' + _describe(e)}"[:500]
    finally:
        if timed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        for h in handles:
            h.remove()
    out = seen.get("out")
    obs["encoder_format"] = q_format(seen.get("encoded"), ctx.nz)
    obs["q_format"] = q_format(out.get("q"), ctx.nz) if isinstance(out, dict) else None
    obs["loss_called"] = "call" in seen
    if "call" in seen:
        args, kwargs = seen["call"]
        obs["arguments"] = [_role(a, seen.get("x"), out) for a in args]
        obs["keywords"] = {k: _role(v, seen.get("x"), out) for k, v in kwargs.items()}
    return obs


def _loss_call(loop: dict, x: Tensor, outputs: Any) -> tuple[tuple, dict, list[str]]:
    """``vae.loss``'s arguments in the order and names the student's loop passes them (the
    handout's ``loss(x, outputs)`` when the loop was not seen calling it), and their roles."""

    def value(role: str) -> Any:
        if role == "x":
            return x
        if role == "outputs":
            return outputs
        return outputs[role[len("outputs[") : -1]]

    roles, keywords = list(loop.get("arguments") or []), dict(loop.get("keywords") or {})
    usable = (roles or keywords) and "other" not in roles and "other" not in keywords.values()
    if not usable:
        roles, keywords = ["x", "outputs"], {}
    args = tuple(value(r) for r in roles)
    kwargs = {k: value(r) for k, r in keywords.items()}
    return args, kwargs, [*roles, *(f"{k}={r}" for k, r in keywords.items())]


def _section(obs: dict, name: str, fn: Callable[[], Any]) -> None:
    """Run one test of the VAE probe: an exception costs that test only (its ``<name>_error``)."""
    try:
        obs[name] = fn()
    except StudentError as e:
        obs[f"{name}_error"] = str(e)


def probe_vae(ctx: Context) -> dict:
    """The VAE's tests, each on its own (an exception costs its own part), through the student's
    conventions: first one call of their own loop shows how forward returns the posterior and
    how ``loss`` is called (:func:`observe_loop`); the tests then feed known posteriors in the
    encoder's form and call ``loss`` the way the loop does."""
    from harness.ml.loss_convention import flatten_q, q_format, to_format

    inputs = ctx.inputs()
    x = inputs["images"][:64]
    nz, vae_name = ctx.nz, ctx.names["vae"]
    make = lambda: ctx.call(f"{vae_name}({nz})", ctx.get("vae"), nz)  # noqa: E731
    obs: dict[str, Any] = {}

    vae = make().eval()
    if not isinstance(getattr(vae, "decoder", None), nn.Module) or not isinstance(
        getattr(vae, "encoder", None), nn.Module
    ):
        raise StudentError(f"{vae_name} needs module attributes `encoder` and `decoder`")
    loop: dict[str, Any] = {}
    if ctx.args.get("observe_loop"):
        try:
            loop = observe_loop(ctx, make, inputs["images"][:16], torch.zeros(16, dtype=torch.long))
        except StudentError as e:
            loop = {"error": str(e)}
    obs["loop"] = loop

    def forward() -> list:
        with torch.no_grad():
            out1 = ctx.call("vae(x)", vae, x)
            out2 = ctx.call("vae(x) again", vae, x)
        return [_detach(out1), _detach(out2)]

    _section(obs, "forward", forward)
    first = (obs.get("forward") or [None])[0]
    q_fmt = loop.get("q_format") or (q_format(first["q"], nz) if isinstance(first, dict) and "q" in first else None)
    enc_fmt = loop.get("encoder_format") or q_fmt or "flat"
    obs["formats"] = {"encoder": enc_fmt, "q": q_fmt or "flat"}

    def reparameterisation() -> dict:
        # a known posterior: mu = 2, log-scale = -1.5 everywhere
        model = make().eval()
        q_known = torch.cat([torch.full((512, nz), 2.0), torch.full((512, nz), -1.5)], dim=1)
        model.encoder = Injected(to_format(q_known, enc_fmt, nz))
        seen, remove = capture_input(model.decoder)
        with torch.no_grad():
            ctx.call("vae(x) with a known posterior", model, inputs["images"][:512])
        remove()
        q_leaf = (torch.randn(16, 2 * nz) * 0.5).requires_grad_(True)
        model.encoder = Injected(to_format(q_leaf, enc_fmt, nz))
        out = ctx.call("vae(x) for gradients", model, x[:16])
        rec = out.get("rec") if isinstance(out, dict) else None
        if isinstance(rec, Tensor) and rec.requires_grad:
            ctx.call("backward through the reconstruction", rec.sum().backward)
        grad = q_leaf.grad if q_leaf.grad is not None else torch.zeros_like(q_leaf)
        return {"z": _detach(seen[:1]), "grad_norms": [grad[:, :nz].norm().item(), grad[:, nz:].norm().item()]}

    _section(obs, "reparameterisation", reparameterisation)

    def loss() -> list:
        # the loss on known outputs, for several betas: the outputs come from the student's own
        # forward with a known posterior and known reconstructions, so they have its form and keys
        torch.manual_seed(1)
        model = make()
        found = []
        for trial in range(2):
            q = torch.cat([torch.randn(32, nz), torch.rand(32, nz) * 2 - 1.5], dim=1)
            rec = torch.sigmoid(torch.randn(32, *x.shape[1:]))
            xs = inputs["images"][32 * trial : 32 * (trial + 1)]
            outputs = _known_outputs(ctx, model, xs, q, rec, enc_fmt, q_fmt)
            try:
                q_seen = flatten_q(outputs["q"], nz).detach()
            except (ValueError, KeyError, TypeError):
                q_seen = q
            rec_seen = outputs.get("rec") if isinstance(outputs.get("rec"), Tensor) else rec
            args, kwargs, roles = _loss_call(loop, xs, outputs)
            for beta in ctx.args["betas"]:
                model.beta = beta
                with torch.no_grad():
                    result = ctx.call(f"vae.loss({', '.join(roles)}) with beta = {beta:g}", model.loss, *args, **kwargs)
                found.append(
                    {"trial": trial, "beta": beta, "q": q_seen, "rec": _detach(rec_seen), "x": xs}
                    | {"result": _detach(result), "arguments": roles}
                )
        return found

    _section(obs, "loss", loss)

    def reconstruct() -> list:
        # deterministic, and the decoded posterior mean
        model = make().eval()
        with torch.no_grad():
            r1 = ctx.call("vae.reconstruct(x)", model.reconstruct, x)
            r2 = ctx.call("vae.reconstruct(x) again", model.reconstruct, x)
            q = ctx.call("vae.encoder(x)", model.encoder, x)
            try:
                mean = flatten_q(q, nz)[:, :nz]
            except ValueError:
                mean = None
            mean_rec = ctx.call("vae.decoder(mu)", model.decoder, mean) if mean is not None else None
        return [_detach(r1), _detach(r2), _detach(mean_rec)]

    _section(obs, "reconstruct", reconstruct)
    return obs


def _known_outputs(
    ctx: Context, model: nn.Module, xs: Tensor, q: Tensor, rec: Tensor, enc_fmt: str, q_fmt: str | None
) -> dict:
    """What the student's forward returns for a known posterior and known reconstructions (its
    form, its keys); the handout's ``{"q", "rec"}`` in the student's q form when it fails."""
    from harness.ml.loss_convention import to_format

    encoder, decoder = model.encoder, model.decoder
    model.encoder, model.decoder = Injected(to_format(q, enc_fmt, ctx.nz)), Injected(rec)
    try:
        with torch.no_grad():
            out = ctx.call("vae(x) with a known posterior and reconstruction", model, xs)
    except StudentError:
        out = None
    finally:
        model.encoder, model.decoder = encoder, decoder
    if isinstance(out, dict) and "q" in out:
        return out
    return {"q": to_format(q, q_fmt or "flat", ctx.nz), "rec": rec}


class IndexedImages(torch.utils.data.Dataset):
    """MNIST-like (image, label) pairs whose label is the item's index, so shuffling is visible."""

    def __init__(self, images: Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.images[i], i


# --------------------------------------------------------------------------- training (harness grade)

CONTRACT_LR_SCALE = 0.37  # the contract call uses an unusual learning rate, so a hard-coded one shows
CONTRACT_BATCHES, CONTRACT_EPOCHS = 3, 2
EVAL_BATCH = 500


class LoopWatch:
    """Watches the optimizer steps a training function takes on ``model``: how many, at which
    learning rates, over which share of the parameters, whether a backward pass reached the
    model before each, and whether gradients carried over from one step to the next backward
    pass (a missing ``zero_grad``). Global optimizer hooks see any optimizer the student builds.

    A step counts as trained (``steps_after_backward``) only when a backward pass reached the
    model's parameters (their gradient hook fired) since that optimizer's previous step: a
    ``.grad`` written by hand, with no backward pass, counts nothing. ``steps_with_grad`` (a
    non-zero gradient present at the step, however it got there) is kept beside it.

    While watching, ``torch.Tensor.backward``, ``torch.autograd.backward`` and
    ``torch.autograd.grad`` are wrapped (and put back on exit) to record the value of the loss
    each backward pass that reached the model starts from; the backward passes before one step
    add up to that step's loss (:meth:`observed_losses`, at most ``max_losses`` of them). These
    are the losses the harness saw computed: the curves a loop returns are scored against them."""

    MAX_LOSSES = 100_000  # the losses a watch keeps (one per step: every step of a full-protocol run)

    def __init__(
        self,
        model: nn.Module,
        progress: Callable[[int], None] | None = None,
        max_losses: int | None = None,
    ):
        self.progress = progress  # reports steps so far to the stall watchdog and the progress bar
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.steps = 0
        self.steps_with_grad = 0
        self.steps_after_backward = 0
        self.backwards = 0  # backward passes that reached the model's parameters
        self.carried = 0
        self.lrs: list[float] = []
        self.covered = 0.0
        self.observed_steps = 0  # steps whose loss was seen (kept or not: the cap)
        self.max_losses = self.MAX_LOSSES if max_losses is None else max_losses
        self._stepped = False
        self._used: dict[int, int] = {}  # optimizer id -> the backward count its last step followed
        self._pending: Tensor | None = None  # the loss of the backward passes since the last step
        self._losses: list[float] = []
        self._unconverted: list[Tensor] = []
        self._depth = 0  # inside a wrapped backward (Tensor.backward calls torch.autograd.backward)
        self._saved: list[tuple[Any, str, Any]] = []
        self._handles: list = []

    def __enter__(self) -> LoopWatch:
        from torch.autograd.graph import register_multi_grad_hook

        self._handles.append(register_optimizer_step_pre_hook(self._pre_step))
        if self.params:  # once per backward pass that reaches any parameter, before it accumulates
            self._handles.append(register_multi_grad_hook(self.params, self._on_backward, mode="any"))
        self._wrap(torch.Tensor, "backward")
        self._wrap(torch.autograd, "backward")
        self._wrap(torch.autograd, "grad")
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()

    def _wrap(self, owner: Any, name: str) -> None:
        original = getattr(owner, name)
        self._saved.append((owner, name, original))
        watch = self

        def watched(*args, **kwargs):
            if watch._depth:  # the inner call of a wrapped one: already being observed
                return original(*args, **kwargs)
            first, grads = LoopWatch._backward_args(name, args, kwargs)
            if first is not None and not isinstance(first, (Tensor, list, tuple)):
                try:  # a generator: read it once, for the call and the record
                    first = list(first)
                    args, kwargs = LoopWatch._with_first(name, args, kwargs, first)
                except TypeError:  # not iterable: torch says what is wrong with it
                    first = None
            before = watch.backwards
            watch._depth += 1
            try:
                out = original(*args, **kwargs)
            finally:
                watch._depth -= 1
            if watch.backwards > before:  # it reached the model: its loss trained it
                watch._add_loss(first, grads)
            return out

        watched.__name__ = getattr(original, "__name__", name)
        watched.__doc__ = getattr(original, "__doc__", None)
        setattr(owner, name, watched)

    def _add_loss(self, tensors: Any, grads: Any) -> None:
        try:
            value = LoopWatch._loss_value(tensors, grads)
        except Exception:  # noqa: BLE001  (whatever the student passed, the call itself succeeded)
            value = None
        if value is not None:
            self._pending = value if self._pending is None else self._pending + value

    def _has_grad(self) -> bool:
        g = self.params[-1].grad if self.params else None
        return g is not None and bool(g.detach().abs().sum() > 0)

    def _on_backward(self, grad: Any) -> None:
        # Called before the new gradients are added to .grad: a non-zero .grad after a step carried over.
        self.backwards += 1
        if self._stepped and self._has_grad():
            self.carried += 1
        self._stepped = False

    def _pre_step(self, optimizer, args, kwargs) -> None:
        self.steps += 1
        if self.steps == 1:
            stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
            self.covered = sum(id(p) in stepped for p in self.params) / max(1, len(self.params))
        for group in optimizer.param_groups:
            lr = float(group.get("lr", float("nan")))
            if lr not in self.lrs and len(self.lrs) < 8:
                self.lrs.append(lr)
        if self._has_grad():
            self.steps_with_grad += 1
        if self.backwards > self._used.get(id(optimizer), 0):  # a backward pass since this optimizer's last step
            self.steps_after_backward += 1
        self._used[id(optimizer)] = self.backwards
        if self._pending is not None:
            self.observed_steps += 1
            if len(self._losses) + len(self._unconverted) < self.max_losses:
                self._unconverted.append(self._pending)
                if len(self._unconverted) >= 256:
                    self._convert()
            self._pending = None
        self._stepped = True
        if self.progress is not None and self.steps % 5 == 0:
            self.progress(self.steps)

    def _convert(self) -> None:
        """The kept losses as floats, a batch at a time (one device sync per batch, not per step)."""
        pending, self._unconverted = self._unconverted, []
        try:
            self._losses.extend(torch.stack([t.reshape(()).float() for t in pending]).cpu().tolist())
        except Exception:  # noqa: BLE001  (a loss of an odd dtype or device: one at a time)
            for t in pending:
                try:
                    self._losses.append(float(t))
                except Exception:  # noqa: BLE001
                    self._losses.append(float("nan"))

    def observed_losses(self) -> list[float]:
        """The loss of each step that followed a backward pass the harness saw (the sum of the
        backward passes since the previous step), in order: at most ``max_losses``."""
        self._convert()
        return list(self._losses)

    def summary(self) -> dict:
        return {
            "steps": self.steps,
            "steps_with_grad": self.steps_with_grad,
            "steps_after_backward": self.steps_after_backward,
            "backwards": self.backwards,
            "carried": self.carried,
            "lrs": self.lrs,
            "covered": self.covered,
            "observed_steps": self.observed_steps,
        }

    @staticmethod
    def _backward_args(name: str, args: tuple, kwargs: dict) -> tuple[Any, Any]:
        """The tensors a backward call starts from and the gradients it weights them with."""
        if name == "grad":  # torch.autograd.grad(outputs, inputs, grad_outputs=None, ...)
            first = args[0] if args else kwargs.get("outputs")
            grads = args[2] if len(args) > 2 else kwargs.get("grad_outputs")
        else:  # Tensor.backward(self, gradient=None, ...), torch.autograd.backward(tensors, grad_tensors=None, ...)
            first = args[0] if args else kwargs.get("tensors", kwargs.get("self"))
            grads = args[1] if len(args) > 1 else kwargs.get("gradient", kwargs.get("grad_tensors"))
        return first, grads

    @staticmethod
    def _with_first(name: str, args: tuple, kwargs: dict, first: Any) -> tuple[tuple, dict]:
        if args:
            return (first, *args[1:]), kwargs
        return args, {**kwargs, ("outputs" if name == "grad" else "tensors"): first}

    @staticmethod
    def _loss_value(tensors: Any, grads: Any) -> Tensor | None:
        """The scalar a backward call differentiates: the loss itself, or sum(output * gradient)."""
        ts = [tensors] if isinstance(tensors, Tensor) else list(tensors or ())
        gs = [grads] if grads is None or isinstance(grads, Tensor) else list(grads)
        total = None
        for i, t in enumerate(ts):
            if not isinstance(t, Tensor):
                continue
            g = gs[i] if i < len(gs) else None
            v = t.detach()
            if isinstance(g, Tensor) and g.shape == t.shape:
                v = (v * g.detach()).sum()
            elif v.numel() == 1:
                v = v.reshape(())
            else:
                continue  # not a loss (torch raised, or the gradient did not fit)
            v = v.float()
            total = v if total is None else total + v
        return total

    @staticmethod
    def changed(before: list[Tensor], model: nn.Module) -> bool:
        """Did any of ``model``'s parameters change from ``before`` (their values at the start)?"""
        after = list(model.parameters())
        return len(after) != len(before) or any(
            not torch.equal(b, p.detach().cpu()) for b, p in zip(before, after, strict=False)
        )


def _floats(x: Any, what: str) -> list[float]:
    if isinstance(x, Tensor):
        x = x.detach().flatten().tolist()
    if not isinstance(x, (list, tuple)):
        raise StudentError(f"{what} is a {type(x).__name__}, not a list of floats")
    try:
        return [float(v.item() if isinstance(v, Tensor) else v) for v in x]
    except (TypeError, ValueError, RuntimeError):
        raise StudentError(f"{what} holds values that are not numbers") from None


def _curves(kind: str, returned: Any, fn_name: str) -> dict[str, list[float]]:
    if kind == "ae":
        return {"rec": _floats(returned, f"what {fn_name} returned")}
    if not isinstance(returned, (list, tuple)) or len(returned) != 2:
        raise StudentError(f"{fn_name} returned {type(returned).__name__}, not the pair (rec_losses, kl_losses)")
    return {"rec": _floats(returned[0], "rec_losses"), "kl": _floats(returned[1], "kl_losses")}


def _training_model(ctx: Context, kind: str, beta: float, reference: bool) -> nn.Module:
    """The model a training unit trains: the reference's (``reference``: the student's did not pass
    its checks) or the student's, with the reference's parts where theirs are broken (Context.module)."""
    if reference:
        from harness.config.assignment import load_assignment
        from harness.ml.models import VAE, AutoEncoder

        a = load_assignment(ctx.req["assignment"])
        return AutoEncoder(a) if kind == "ae" else VAE(a, beta=beta)
    if kind == "ae":
        return _autoencoder(ctx)
    model = ctx.call(f"{ctx.names['vae']}({ctx.nz}, beta={beta:g})", ctx.get("vae"), ctx.nz, beta=beta)
    for attr in ("encoder", "decoder"):
        if not isinstance(getattr(model, attr, None), nn.Module):
            raise StudentError(f"{ctx.names['vae']} has no module attribute `{attr}`")
    return model


def _student_loader(ctx: Context, dataset, batch: int, workers: int, harness: bool):
    """The loader that feeds the student's loop: theirs, or the harness's (``harness``: theirs did not pass)."""
    if harness:
        return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers)
    return ctx.call(
        f"{ctx.names['data_loader']}(dataset, {batch}, {workers})", ctx.get("data_loader"), dataset, batch, workers
    )


def warm_up(req: dict) -> None:
    """Two training steps and an evaluation batch of the reference VAE, run by the supervisor
    before it forks the first training unit: the CPU kernels a fresh process compiles on its
    first steps (seconds on 2 cores) are then inherited by every unit instead of rebuilt in each.
    Single-threaded on purpose: libgomp's thread pool does not survive a fork."""
    from harness.config.assignment import load_assignment
    from harness.ml.models import VAE

    a = load_assignment(req["assignment"])
    torch.manual_seed(0)
    torch.set_num_threads(1)  # a multi-threaded OpenMP pool in the parent would hang the forked units
    batch = int(req["args"].get("request", req["args"])["batch_size"])  # a training or an evaluation unit
    model = VAE(a)
    optimizer = torch.optim.Adam(model.parameters())
    x = torch.rand(batch, a.data.image_channels, a.data.image_size, a.data.image_size)
    for _ in range(2):
        loss = model.loss(x, model(x))[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        model.eval().reconstruct(torch.rand(EVAL_BATCH, *x.shape[1:]))
    # torch.export's first export and load take seconds (imports, lazy set-up): once here, not in every unit
    from harness.sandbox.graph import export_part, load_program

    load_program(export_part(nn.Linear(2, 2).eval(), torch.zeros(2, 2)))


def _train_key(kind: str) -> str:
    """The config key of the student's training function for a model kind."""
    return "train_autoencoder" if kind == "ae" else "train_vae"


def _beta(req: TrainRequest) -> float:
    return 0.0 if req.beta is None else float(req.beta)  # the AE's request has none


def contract_call(ctx: Context, req: TrainRequest, train_fn: Callable, images: Tensor, labels: Tensor) -> dict:
    """A short call with an unusual learning rate: does the loop step every batch after a
    backward pass, honour the learning rate and the epochs, reset gradients between steps, and
    change the weights?"""
    from harness.ml.data import TensorMNIST

    fn_name, batch, device = ctx.names[_train_key(req.kind)], int(req.batch_size), str(req.device)
    torch.manual_seed(int(req.seed))
    small = TensorMNIST(images[: batch * CONTRACT_BATCHES], labels[: batch * CONTRACT_BATCHES])
    model = _training_model(ctx, req.kind, _beta(req), req.reference_model)
    before = [p.detach().clone() for p in model.parameters()]
    lr = float(req.learning_rate) * CONTRACT_LR_SCALE
    loader = _student_loader(ctx, small, batch, 0, req.harness_loader)
    with LoopWatch(model) as watch:
        returned = ctx.call(
            f"{fn_name}(model, loader, {CONTRACT_EPOCHS}, {lr:g}, {device!r})",
            train_fn,
            model,
            loader,
            CONTRACT_EPOCHS,
            lr,
            device,
        )
    try:
        lengths = [len(c) for c in _curves(req.kind, returned, fn_name).values()]
    except StudentError:
        lengths = []
    return {
        **watch.summary(),
        "learning_rate": lr,
        "iterations": CONTRACT_EPOCHS * CONTRACT_BATCHES,
        "returned_lengths": lengths,
        "params_changed": LoopWatch.changed(before, model),
    }


def train_model(
    ctx: Context, req: TrainRequest, train_fn: Callable | None, images: Tensor, labels: Tensor
) -> tuple[nn.Module, dict]:
    """Train the model the request names with the student's loop (or the harness's, ``train_fn``
    None): the trained model and the run's record (curves, observed loop, time, whether it changed)."""
    from harness.ml.data import TensorMNIST

    # the student's loop gets exactly these types, whatever the request's JSON held
    kind, batch, device, seed = req.kind, int(req.batch_size), str(req.device), int(req.seed)
    epochs, lr = int(req.epochs), float(req.learning_rate)
    dataset = TensorMNIST(images, labels)
    torch.manual_seed(seed)
    model = _training_model(ctx, kind, _beta(req), req.reference_model)
    before = [p.detach().clone() for p in model.parameters()]
    started = time.perf_counter()
    if train_fn is None:
        from harness.ml.training import TrainConfig, train

        curves = train(model, images, TrainConfig(epochs, lr, batch, seed), torch.device(device), quiet=True)
        # the harness's own loop: its curves are the losses it backpropagated, nothing to watch
        run = {
            "curves": {"rec": curves.rec, **({"kl": curves.kl} if kind == "vae" else {})},
            "watch": None,
            "observed_losses": None,
        }
    else:
        fn_name = ctx.names[_train_key(kind)]
        loader = _student_loader(ctx, dataset, batch, int(req.num_workers), req.harness_loader)
        ctx.progress(0)  # the stall watchdog times the loop from here
        with LoopWatch(model, ctx.progress) as watch:
            returned = ctx.call(
                f"{fn_name}(model, loader, {epochs}, {lr:g}, {device!r})", train_fn, model, loader, epochs, lr, device
            )
        ctx.progress("done")
        batches = len(loader) if hasattr(loader, "__len__") else -(-len(dataset) // batch)
        run = {
            "curves": None,
            "curve_error": "",
            "watch": watch.summary(),
            "iterations": epochs * batches,
            "observed_losses": watch.observed_losses(),  # what the curves are scored against
        }
        try:
            run["curves"] = _curves(kind, returned, fn_name)
        except StudentError as e:  # the model may still have trained: measure it anyway
            run["curve_error"] = str(e)
    run["seconds"] = time.perf_counter() - started
    run["params_changed"] = LoopWatch.changed(before, model)
    return model, run


def evaluate(
    req: TrainRequest, nz: int, encode: Callable[[Tensor], Any], decode: Callable[[Tensor], Any], inputs: dict
) -> dict:
    """A trained model's outputs on the evaluation inputs: its test reconstructions and
    posterior parameters (``q``), its decoded prior draws and its interpolation frames."""
    from harness.ml.metrics import path_codes

    def code(q: Any) -> Tensor:
        if not isinstance(q, Tensor) or q.dim() != 2:
            raise StudentError(f"the trained encoder returned {type(q).__name__} {_shape(q)}, not [B, features]")
        return q if req.kind == "ae" else q[:, :nz]

    if req.kind == "vae":  # the student's posterior form, as the [B, 2nz] tensor the measures read
        from harness.ml.loss_convention import flatten_q

        student_encode = encode

        def encode(t: Tensor) -> Any:
            q = student_encode(t)
            try:
                return flatten_q(q, nz)
            except ValueError as e:
                raise StudentError(f"the trained encoder's output: {e}") from None

    obs: dict[str, Any] = {}
    with torch.no_grad():
        qs, recs = [], []
        test = inputs["test_u8"]
        for s in range(0, len(test), EVAL_BATCH):
            q = encode(test[s : s + EVAL_BATCH].float().div_(255.0))
            recs.append(decode(code(q)).float().cpu())
            qs.append(q.float().cpu())
        obs["q"], obs["reconstructions"] = torch.cat(qs), torch.cat(recs)
        z = inputs["prior_z"]
        obs["samples"] = torch.cat([decode(z[s : s + EVAL_BATCH]).float().cpu() for s in range(0, len(z), EVAL_BATCH)])
        paths = []
        for pair in inputs["pair_images"]:
            ends = code(encode(pair))
            paths.append(decode(path_codes(ends[0], ends[1], int(req.steps))).float().cpu())
        obs["paths"] = torch.stack(paths)
    return obs


ARCH_IMAGES = 8  # the images the evaluation unit traces the exported graphs on (the architecture check's)


def _exported(ctx: Context, req: TrainRequest, model: nn.Module, images: Tensor) -> dict:
    """The trained model handed back as data: its weights, and its encoder and decoder as
    exported programs (harness.sandbox.graph), or why they could not be exported."""
    from harness.ml.loss_convention import flatten_q
    from harness.sandbox.graph import export_model

    ctx.phase("export the trained model")
    started = time.perf_counter()
    out: dict[str, Any] = {"state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    device = next(model.parameters()).device
    x = images[:ARCH_IMAGES].to(device)
    try:  # the model's reconstructions in this process, which the evaluation unit compares with the graph's
        model.eval()
        with torch.no_grad():
            q = model.encoder(x)
            rec = model.decoder(q if req.kind == "ae" else flatten_q(q, ctx.nz)[:, : ctx.nz])
        if isinstance(rec, Tensor):
            out["here"] = {"x": x.detach().cpu().clone(), "rec": rec.detach().float().cpu().clone()}
    except BaseException:  # noqa: BLE001  (the export below says what is wrong with the model)
        pass
    try:
        out["programs"] = export_model(model, req.kind, ctx.nz, images[:ARCH_IMAGES].to(device))
    except BaseException as e:  # noqa: BLE001  (student code may raise anything while it is traced)
        out["export_error"] = (_describe(e).strip().splitlines() or ["no message"])[0][:300]
    out["seconds"] = time.perf_counter() - started
    return out


def probe_train(ctx: Context) -> dict:
    """Train one model the way the handout does and hand back what it became, as data: the
    contract call's observations (when asked), the run's (the loop's observed behaviour, its
    curves) and the trained model (:func:`_exported`). The unit never receives the evaluation
    inputs: :func:`probe_evaluate` measures the model in a unit of its own."""
    req = TrainRequest.from_args(ctx.args)
    inputs = ctx.inputs()
    train_fn = None if req.trainer == "harness" else ctx.get(_train_key(req.kind))
    images = inputs["train_u8"].float().div_(255.0)
    labels = inputs["train_labels"]
    obs: dict[str, Any] = {}
    bound = _BOUND  # the harness's functions as they were before the student's code loaded
    if req.contract and train_fn is not None:
        obs["contract"] = bound["contract_call"][0](ctx, req, train_fn, images, labels)
    model, obs["run"] = bound["train_model"][0](ctx, req, train_fn, images, labels)
    obs["model"] = bound["_exported"][0](ctx, req, model, images)
    obs["tampered"] = tampered()
    if ctx.notebook is not None:  # the cells this run executed beyond the definition pass
        obs["cells"] = ctx.notebook.cell_runs()[ctx.notebook.defined :]
    return obs


def _mismatch(model: dict, encoder: nn.Module, decoder: nn.Module, req: TrainRequest, nz: int, device) -> float:
    """The largest pixel difference between the graph's reconstructions of the training unit's
    images and the model's own in that unit (-1: none to compare): an honest model is its graph."""
    here = model.get("here")
    if not isinstance(here, dict) or not isinstance(here.get("rec"), Tensor):
        return -1.0
    try:
        with torch.no_grad():
            q = encoder(here["x"].to(device))
            rec = decoder(q if req.kind == "ae" else q[:, :nz]).float().cpu()
        return float((rec - here["rec"]).abs().max()) if rec.shape == here["rec"].shape else 1.0
    except Exception:  # noqa: BLE001  (shapes the graph refuses: as different as can be)
        return 1.0


def probe_evaluate(ctx: Context) -> dict:
    """Measure a trained model on inputs its training unit never received. With exported
    programs, no code of the submission's runs here: the graphs are loaded as data and run
    (``measured_in: "graph"``), and their operators are the architecture the grade judges.
    Without them, the student's class definitions are loaded (their module imported, or a
    notebook's definition pass) and the trained weights put in (``"definitions"``)."""
    from harness.sandbox.graph import GraphError, graph_ops, load_program

    req = TrainRequest.from_args(ctx.args["request"])
    inputs = ctx.inputs()
    model = inputs["model"]
    device = torch.device(req.device)
    if "programs" in model:
        ctx.phase("load the trained model")
        try:
            encoder = load_program(model["programs"]["encoder"], device)
            decoder = load_program(model["programs"]["decoder"], device)
        except (GraphError, KeyError, TypeError) as e:
            raise StudentError(f"the trained model's exported graph was refused: {e}") from None
        ctx.phase("evaluate the trained model")
        try:
            x = inputs["arch_images"][:ARCH_IMAGES].to(device)
            z, enc_ops = graph_ops(encoder, x)
            code = z if req.kind == "ae" else z[:, : ctx.nz]
            _, dec_ops = graph_ops(decoder, code.reshape(code.shape[0], -1))
            parameters = {
                f"{part}.{k}": list(v.shape)
                for part, m in (("encoder", encoder), ("decoder", decoder))
                for k, v in m.named_parameters()
            }
            obs = evaluate(req, ctx.nz, lambda t: encoder(t.to(device)), lambda t: decoder(t.to(device)), inputs)
        except StudentError:
            raise
        except Exception as e:  # noqa: BLE001  (the graph is the student's: it may fail on these inputs)
            raise StudentError(f"the trained model's graph failed on the evaluation inputs: {_describe(e)}") from None
        architecture = {"encoder_ops": enc_ops, "decoder_ops": dec_ops, "parameters": parameters}
        return {
            **obs,
            "architecture": architecture,
            "measured_in": "graph",
            "mismatch": _mismatch(model, encoder, decoder, req, ctx.nz, device),
        }
    measure = _BOUND["evaluate"][0]  # bound before the student's definitions load, just below
    trained = _training_model(ctx, req.kind, _beta(req), req.reference_model).to(device)
    ctx.phase("load the trained model")
    try:
        trained.load_state_dict(model["state_dict"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise StudentError(f"the trained weights do not fit the model: {str(e)[:300]}") from None
    ctx.phase("evaluate the trained model")
    trained.eval()
    encode = lambda t: ctx.call("encoder(x)", trained.encoder, t.to(device))  # noqa: E731
    decode = lambda t: ctx.call("decoder(z)", trained.decoder, t.to(device))  # noqa: E731
    return {**measure(req, ctx.nz, encode, decode, inputs), "measured_in": "definitions", "tampered": tampered()}


# The harness's functions a training unit calls after the student's code has loaded, bound when
# this module is imported (before any student code): rebinding them in the module changes nothing,
# and rebinding or rewriting one (its __code__) is reported by tampered().
GUARDED = ("contract_call", "train_model", "_exported", "evaluate", "LoopWatch", "Context", "run_unit")


def _code_of(obj: Any) -> tuple:
    if isinstance(obj, type):
        return tuple(getattr(f, "__code__", None) for f in vars(obj).values() if callable(f))
    return (getattr(obj, "__code__", None),)


def _bind() -> dict[str, tuple[Any, tuple]]:
    from harness.sandbox import graph

    bound = {name: (globals()[name], _code_of(globals()[name])) for name in GUARDED}
    for name in ("export_model", "export_part", "load_program", "graph_ops"):
        bound[f"graph.{name}"] = (getattr(graph, name), _code_of(getattr(graph, name)))
    return bound


def tampered() -> list[str]:
    """The guarded functions the unit's code rebound or rewrote since this module was imported."""
    from harness.sandbox import graph

    found = []
    for name, (obj, code) in _BOUND.items():
        module, attr = (graph, name[6:]) if name.startswith("graph.") else (_THIS, name)
        if getattr(module, attr, None) is not obj or _code_of(obj) != code:
            found.append(name)
    return found


PROBES: dict[str, Callable[[Context], dict]] = {
    "import": probe_import,
    "architecture": probe_architecture,
    "forward": probe_forward,
    "sampling": probe_sampling,
    "vae": probe_vae,
    "train": probe_train,
    "evaluate": probe_evaluate,
}

_THIS = sys.modules[__name__]
_BOUND = _bind()
