"""Training throughput: the handout's DataLoader loop vs. the harness's own loop.

What it measures
----------------
Both loops train the plain auto-encoder of the assignment
(``harness.ml.models.AutoEncoder``; loop (a) gets the copy with torch's own layers,
``harness.ml.gemm_conv.torch_layers``, as a student would write it) from the *same*
initial weights (``torch.manual_seed(seed)`` right before each model is built) on the
*same* training images, with Adam (lr 1e-3), MSE loss and mini-batches of 64:

(a) the handout's way: ``torchvision.datasets.MNIST(root, train=True,
    transform=ToTensor())`` read through ``DataLoader(batch_size=64, shuffle=True,
    num_workers=4)`` and the textbook step ``opt.zero_grad(); loss =
    F.mse_loss(model(x), x); loss.backward(); opt.step()``;
(b) the harness's loop: ``harness.ml.training.train(model, images, TrainConfig(...),
    device, quiet=True)`` on the in-memory tensors of ``harness.ml.data.load_mnist``.

Each loop gets a short untimed warm-up on a throwaway model first (first-call
kernel selection, allocator, page cache). The timed figure is the wall time of
the whole run, DataLoader worker start-up included (that is what the handout
really costs, every epoch, since its workers are not persistent).

It prints images/s of each loop and the ratio (b)/(a); the final training loss of
each (mean of the last 20 iteration losses) and the test-split MSE of each trained
model, so that the speed ratio is read at equal loss; and the share of the
machine's float32 matmul peak each loop reaches. The peak is the best of 3
timings of 10 products of 2048x2048 matrices, with the same thread count, taken
before and after the runs (a warning is printed when the two differ by > 20 %,
which means other jobs shared the cores). The FLOPs of one training step are
the forward + backward of the AE on a batch of 64 with the MSE loss, counted by
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls only; the
optimizer step and elementwise work are not counted). Targets are printed next to the figures: (b)/(a) >= 1.3 with the
losses within 5 %, and >= 50 % of the matmul peak.

A last line splits (b)'s step: the matrix products it calls, replayed back to back on
fresh tensors of the same layouts (``matmul_floor``), against everything else (BatchNorm,
LeakyReLU, im2col/col2im copies, Adam, Python and autograd, colder caches).

How to run it
-------------
From the repository root, without installing the package::

    python benchmarks/train_throughput.py [--data DIR] [--images N] [--epochs E]
                                          [--assignment variant-a]

The MNIST root (a torchvision MNIST root: ``DIR/MNIST/raw/``) comes from
``--data``, else the environment variable ``HARNESS_DATA``, else the harness's
per-user cache (see ``harness/ml/data.py``). ``--images N`` trains on a fixed
subset of N training images (default: all of them); the default is three epochs,
so that the two loops' losses are compared after the steep first epoch, where
the shuffle order alone moves the test MSE by about 5 %. It takes about a
minute on 2 CPU cores with the 8,000-image stand-in.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from pathlib import Path

try:
    import harness  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F
import torchvision
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, Subset
from torch.utils.flop_counter import FlopCounterMode

from harness.config.assignment import DEFAULT_ASSIGNMENT, load_assignment
from harness.ml.data import load_mnist, resolve_source
from harness.ml.gemm_conv import torch_layers
from harness.ml.metrics import test_mse
from harness.ml.models import AutoEncoder
from harness.ml.training import TrainConfig, resolve_device, train

TARGET_RATIO = 1.3
TARGET_LOSS_PCT = 5.0
TARGET_PEAK_PCT = 50.0
LAST = 20  # final loss = mean of the last LAST iteration losses


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data", default=None, help="MNIST root (torchvision layout); default: $HARNESS_DATA, else the user cache"
    )
    p.add_argument("--images", type=int, default=0, help="train on a fixed subset of N training images (0 = all)")
    p.add_argument("--epochs", type=int, default=3, help="epochs over those images (default 3)")
    p.add_argument("--assignment", default=DEFAULT_ASSIGNMENT, help="bundled assignment name or TOML path")
    p.add_argument("--seed", type=int, default=None, help="seed for the initial weights (default: the assignment's)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers of the handout loop (default 4)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--warmup-steps", type=int, default=5, help="untimed steps on a throwaway model before each loop")
    return p.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 10, trials: int = 3) -> float:
    """Best-of-``trials`` float32 FLOP/s of ``repeats`` back-to-back n x n @ n x n products."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    best = math.inf
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 * repeats / best


def step_flops(assignment, batch_size: int, device: torch.device) -> int:
    """FLOPs of one training step's forward + backward (MSE loss), on a throwaway model."""
    model = torch_layers(AutoEncoder(assignment)).to(device).train()
    x = torch.rand(batch_size, 1, assignment.data.image_size, assignment.data.image_size, device=device)
    with FlopCounterMode(display=False) as counter:
        F.mse_loss(model(x), x).backward()
    return counter.get_total_flops()


def matmul_floor(assignment, batch_size: int, device: torch.device, repeats: int = 20) -> float:
    """Seconds per step of the harness step's matrix products alone, replayed back to back.

    One forward + backward of the harness's AE records the operands (sizes and strides) of every
    ``mm``/``addmm`` it calls; the same products on fresh tensors are then timed, best of
    ``repeats`` steps. That is what a step would cost if its other work (BatchNorm, LeakyReLU,
    im2col/col2im copies, Adam, Python) took no time, with warm caches.
    """
    mm_ops = (torch.ops.aten.mm.default, torch.ops.aten.addmm.default)
    calls: list[tuple] = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in mm_ops:
                calls.append((func, [(a.shape, a.stride()) for a in args if isinstance(a, torch.Tensor)]))
            return func(*args, **(kwargs or {}))

    model = AutoEncoder(assignment).to(device=device, memory_format=torch.channels_last).train()
    x = torch.rand(batch_size, 1, assignment.data.image_size, assignment.data.image_size, device=device)
    with Record():
        F.mse_loss(model(x), x).backward()

    def like(size, stride):  # a fresh tensor with the recorded layout (transposed views stay transposed)
        span = 1 + sum((n - 1) * st for n, st in zip(size, stride, strict=False))
        return torch.randn(span, device=device).as_strided(size, stride)

    replay = [(f, [like(*operand) for operand in operands]) for f, operands in calls]
    best = math.inf
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for f, args in replay:
            f(*args)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def handout_loader(dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)


def handout_epochs(model, loader: DataLoader, epochs: int, lr: float, device: torch.device, max_steps: int = 0):
    """The handout's loop; returns the per-iteration losses and the number of images seen."""
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses, seen = [], 0
    for _ in range(epochs):
        for step, (x, _) in enumerate(loader):
            if max_steps and step >= max_steps:
                break
            x = x.to(device)
            opt.zero_grad()
            loss = F.mse_loss(model(x), x)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            seen += len(x)
    model.eval()
    return losses, seen


def pct(new: float, ref: float) -> float:
    return 100.0 * (new - ref) / ref


def mark(ok: bool) -> str:
    return "ok" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The handout's 4 workers on a small machine trigger torch's "suggested max number of worker" warning;
    # the header line reports the core count instead.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    load_before = os.getloadavg()[0]  # other jobs on the machine skew every figure below
    device = resolve_device(args.device)
    assignment = load_assignment(args.assignment)
    seed = assignment.training.seed if args.seed is None else args.seed
    bs = args.batch_size

    # ---- data: the same training images for both loops
    source = resolve_source(args.data)
    data = load_mnist(args.data)
    n_all = len(data.train_images)
    if 0 < args.images < n_all:
        keep = torch.randperm(n_all, generator=torch.Generator().manual_seed(seed))[: args.images].sort().values
    else:
        keep = torch.arange(n_all)
    images = data.train_images[keep]
    to_tensor = torchvision.transforms.ToTensor()
    mnist = torchvision.datasets.MNIST(str(source.root), train=True, transform=to_tensor, download=source.download)
    dataset = mnist if len(keep) == len(mnist) else Subset(mnist, keep.tolist())
    if len(dataset) != len(images):
        raise SystemExit(f"torchvision sees {len(dataset)} training images, load_mnist {len(images)}")
    n = len(images)

    # ---- machine figures
    peak = matmul_peak(device)
    flops = step_flops(assignment, bs, device)
    floor = matmul_floor(assignment, bs, device)

    # ---- identical initial weights
    torch.manual_seed(seed)
    model_a = torch_layers(AutoEncoder(assignment))  # the handout's model: torch.nn's own layers
    torch.manual_seed(seed)
    model_b = AutoEncoder(assignment)
    same_init = all(
        torch.equal(p, q) for p, q in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=False)
    )

    # ---- (a) the handout's loop: warm-up on a throwaway model, then one timed run
    warm_loader = handout_loader(dataset, bs, args.workers)
    handout_epochs(torch_layers(AutoEncoder(assignment)), warm_loader, 1, args.lr, device, args.warmup_steps)
    torch.manual_seed(seed)  # the loader's shuffle draws from the global generator
    loader = handout_loader(dataset, bs, args.workers)
    sync(device)
    start = time.perf_counter()
    losses_a, seen_a = handout_epochs(model_a, loader, args.epochs, args.lr, device)
    sync(device)
    secs_a = time.perf_counter() - start

    # ---- (b) the harness's loop: the same
    warm = images[: args.warmup_steps * bs]
    train(AutoEncoder(assignment), warm, TrainConfig(1, args.lr, bs, seed), device, quiet=True)
    sync(device)
    start = time.perf_counter()
    curves = train(model_b, images, TrainConfig(args.epochs, args.lr, bs, seed), device, quiet=True)
    sync(device)
    secs_b = time.perf_counter() - start
    losses_b, seen_b = curves.rec, curves.images

    # ---- the peak again: a drop means something else took the cores during the runs
    peak_after = matmul_peak(device)
    busy = min(peak, peak_after) < 0.8 * max(peak, peak_after)
    peak_first, peak = peak, max(peak, peak_after)

    # ---- figures
    ips_a, ips_b = seen_a / secs_a, seen_b / secs_b
    sps_a, sps_b = len(losses_a) / secs_a, len(losses_b) / secs_b
    final_a, final_b = sum(losses_a[-LAST:]) / len(losses_a[-LAST:]), sum(losses_b[-LAST:]) / len(losses_b[-LAST:])
    mse_a, mse_b = test_mse(model_a, data.test_images), test_mse(model_b, data.test_images)
    gf_a, gf_b = flops * sps_a / 1e9, flops * sps_b / 1e9
    peak_a, peak_b = 100 * flops * sps_a / peak, 100 * flops * sps_b / peak
    ratio = ips_b / ips_a
    d_loss, d_mse = pct(final_b, final_a), pct(mse_b, mse_a)
    equal_loss = abs(d_loss) <= TARGET_LOSS_PCT and abs(d_mse) <= TARGET_LOSS_PCT

    w = 78
    print("=" * w)
    print("Training throughput: (a) handout DataLoader loop vs (b) harness.ml.training.train")
    print("=" * w)
    print(
        f"torch {torch.__version__} | torchvision {torchvision.__version__} | device {device} | threads {threads} | "
        f"load avg (1 min) before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f}"
    )
    print(f"assignment {assignment.meta.id} ({args.assignment}) | AutoEncoder nz={assignment.model.nz} | seed {seed}")
    print(
        f"{n} train images x {args.epochs} epoch(s), batch {bs}, Adam lr {args.lr:g}, MSE | "
        f"(a) num_workers={args.workers} on {os.cpu_count()} cores"
    )
    print(f"same initial weights: {'yes' if same_init else 'NO'} | warm-up: {args.warmup_steps} steps each, untimed")
    print(
        f"FLOPs/step (fwd+bwd, batch {bs}): {flops / 1e6:.1f} MFLOP | "
        f"fp32 matmul peak (2048^3, best of 3x10, before/after): {peak / 1e9:.1f} GFLOP/s "
        f"({peak_first / 1e9:.0f}/{peak_after / 1e9:.0f})"
    )
    if busy:
        print(
            "WARNING: the matmul peak moved by > 20 % during the run: other jobs shared the cores, "
            "the timings below are not trustworthy"
        )
    print("-" * w)
    print(f"{'':24}{'(a) handout':>13}{'(b) harness':>13}{'(b) vs (a)':>12}   target")
    print(f"{'wall time [s]':24}{secs_a:13.2f}{secs_b:13.2f}")
    print(f"{'steps':24}{len(losses_a):13d}{len(losses_b):13d}")
    print(
        f"{'images/s':24}{ips_a:13.1f}{ips_b:13.1f}{ratio:11.2f}x   >= {TARGET_RATIO:.1f}x at equal loss "
        f"{mark(ratio >= TARGET_RATIO and equal_loss)}"
    )
    print(
        f"{f'final loss (last {LAST})':24}{final_a:13.5f}{final_b:13.5f}{d_loss:+11.2f}%   "
        f"|diff| <= {TARGET_LOSS_PCT:.0f}% {mark(abs(d_loss) <= TARGET_LOSS_PCT)}"
    )
    print(
        f"{'test MSE':24}{mse_a:13.5f}{mse_b:13.5f}{d_mse:+11.2f}%   "
        f"|diff| <= {TARGET_LOSS_PCT:.0f}% {mark(abs(d_mse) <= TARGET_LOSS_PCT)}"
    )
    print(f"{'achieved GFLOP/s':24}{gf_a:13.2f}{gf_b:13.2f}")
    print(
        f"{'% of matmul peak':24}{peak_a:12.1f}%{peak_b:12.1f}%{'':12}   >= {TARGET_PEAK_PCT:.0f}% "
        f"(a) {mark(peak_a >= TARGET_PEAK_PCT)}, (b) {mark(peak_b >= TARGET_PEAK_PCT)}"
    )
    print(
        f"{'matrix products alone':24}{'':13}{1e3 * floor:10.2f} ms/step = {100 * flops / floor / peak:.1f}% of peak "
        f"(the rest of (b)'s step: {1e3 * (1 / sps_b - floor):.2f} ms)"
    )
    print("-" * w)
    print(f"(b)'s own Curves.seconds: {curves.seconds:.2f} s; (a) wall time includes DataLoader worker start-up.")
    print("FLOPs count convolutions/matmuls of forward+backward only (not Adam, not elementwise ops).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
