"""The harness's own training loop for the reference AE and VAE.

Same protocol as the handout (Adam with default settings, shuffled mini-batches
of the configured size, MSE reconstruction, the VAE's KL term), but fed from
in-memory tensors (no per-item PIL conversion, no DataLoader workers competing
with the model for the cores), in channels-last memory format (the layout the
reference models' CPU convolutions, ``harness.ml.gemm_conv``, work in) and with
torch's fused Adam kernel (one pass over the parameters instead of a dozen).
Losses stay on the device until the run ends (no host sync per step).
``benchmarks/train_throughput.py`` compares it with the handout's DataLoader loop."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from harness.ml.data import shuffled_batches
from harness.ml.models import VAE, reconstruction_mse
from harness.progress import Progress


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    learning_rate: float
    batch_size: int
    seed: int = 0


@dataclass
class Curves:
    """Per-iteration training losses (KL is empty for a plain auto-encoder)."""

    rec: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    seconds: float = 0.0
    images: int = 0


class DeviceError(ValueError):
    """A --device value this machine cannot honour."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise DeviceError(f"--device {name!r} is not one of auto, cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError("--device cuda was asked for, but torch sees no CUDA device (use --device cpu or auto)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed torch's global generators on every device (callers seed again before building a model)."""
    torch.manual_seed(seed)


def losses(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(total, reconstruction, KL) for one batch; KL is 0 for the plain auto-encoder. Any model
    with the handout's ``loss(x, outputs)`` trains as a VAE (the sandbox trains students' VAEs
    with this loop when their own loop is broken)."""
    if _is_vae(model):
        outputs = model(x)
        total, parts = model.loss(x, outputs)
        return total, parts["rec_loss"], parts["kl_loss"]
    rec = reconstruction_mse(model(x), x)
    return rec, rec, torch.zeros((), device=x.device)


def _is_vae(model: nn.Module) -> bool:
    return isinstance(model, VAE) or callable(getattr(model, "loss", None))


def train(
    model: nn.Module,
    images: Tensor,
    cfg: TrainConfig,
    device: torch.device,
    desc: str = "train",
    quiet: bool = False,
) -> Curves:
    """Train ``model`` in place on ``images`` ([N, C, H, W] in [0, 1]) and return its curves."""
    seed_everything(cfg.seed)
    order = torch.Generator().manual_seed(cfg.seed)
    model.to(device=device, memory_format=torch.channels_last).train()
    fused = True if device.type in ("cpu", "cuda") else None  # None: torch's default elsewhere
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, fused=fused)
    steps_per_epoch = -(-len(images) // cfg.batch_size)
    recs, kls = [], []
    start = time.perf_counter()
    with Progress(total=cfg.epochs * steps_per_epoch, desc=desc, unit="step", disable=quiet, leave=False) as bar:
        for _ in range(cfg.epochs):
            for x in shuffled_batches(images, cfg.batch_size, order):
                x = x.to(device).contiguous(memory_format=torch.channels_last)
                optimizer.zero_grad(set_to_none=True)
                total, rec, kl = losses(model, x)
                total.backward()
                optimizer.step()
                recs.append(rec.detach())
                kls.append(kl.detach())
                bar.update()
                if not quiet and len(recs) % 50 == 0:
                    bar.set_postfix(rec=f"{rec.item():.4f}", kl=f"{kl.item():.2f}")
    seconds = time.perf_counter() - start
    model.eval()
    return Curves(
        rec=torch.stack(recs).tolist(),
        kl=torch.stack(kls).tolist() if _is_vae(model) else [],
        seconds=seconds,
        images=cfg.epochs * len(images),
    )
