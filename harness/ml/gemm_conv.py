"""Convolutions as matrix products (im2col + GEMM): the CPU path of the reference models.

``Conv2d`` and ``ConvTranspose2d`` here are ``torch.nn``'s layers with the same parameters,
initialisation and state dict; only their CPU forward and backward differ. At the handout's
sizes (batch 64, maps of 1-14 pixels, 1-256 channels) oneDNN's convolution kernels run at
10-80 GFLOP/s on 2 cores, while the same arithmetic written as one matrix product per pass
runs at 100-170 GFLOP/s, close to the machine's matmul peak: a training step is about 1.3x
faster (``benchmarks/train_throughput.py`` prints the end-to-end effect). Everywhere else
(CUDA, other dtypes, groups, dilation, string padding, padding modes, an explicit
``output_size``) the layers are torch's own.

The lowering works in NHWC (channels-last) order, which is how ``harness.ml.training`` keeps
its tensors, so the patches of an image are one strided view of it:

    convolution     out[b, y, x, :] = cols[b, y, x] @ W       cols = im2col(input)
    transposed      out = col2im(input @ W)                   (the adjoint of im2col)

A convolution's input gradient is a transposed convolution of the output gradient and vice
versa, so two helpers, ``im2col`` and ``col2im``, serve all four passes. Results equal
torch's to float rounding (``tests/test_gemm_conv.py`` compares both in float64).
"""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from harness.config.geometry import conv_out, conv_transpose_out

Pair = tuple[int, int]


def _nhwc(x: Tensor) -> Tensor:
    """An NCHW tensor's NHWC view (contiguous when x is channels-last)."""
    return x.permute(0, 2, 3, 1)


def _nchw(x: Tensor) -> Tensor:
    """An NHWC tensor's NCHW view (a channels-last tensor, as torch's CPU convolutions return)."""
    return x.permute(0, 3, 1, 2)


def im2col(x: Tensor, kernel: Pair, stride: Pair, padding: Pair, out: Pair) -> Tensor:
    """Patches of ``x`` ([B, C, H, W], fastest channels-last) as rows: [B * out_h * out_w, kh * kw * C],
    in (kh, kw, C) order."""
    (kh, kw), (sh, sw), (ph, pw), (oh, ow) = kernel, stride, padding, out
    b, c = x.shape[:2]
    x = _nhwc(x)
    x = F.pad(x, (0, 0, pw, pw, ph, ph)) if ph or pw else x.contiguous()
    sb, sy, sx, sc = x.stride()
    patches = x.as_strided((b, oh, ow, kh, kw, c), (sb, sh * sy, sw * sx, sy, sx, sc))
    return patches.reshape(b * oh * ow, kh * kw * c)  # one copy (a view when the patches tile x)


def _taps(k: int, s: int, p: int, n_in: int, n_out: int) -> list[tuple[int, int, int, int]]:
    """For each kernel offset i along one axis: (i, first input index, first output index, count) of
    the input positions it links to output positions i - p + s * h, clipped to the output."""
    taps = []
    for i in range(k):
        first = max(0, -(-(p - i) // s))  # first input index whose output is >= 0
        last = min(n_in - 1, (n_out - 1 - i + p) // s)
        if first <= last:
            taps.append((i, first, i - p + s * first, last - first + 1))
    return taps


def _cover(taps: list[tuple[int, int, int, int]], s: int, n_out: int) -> set[int] | None:
    """Kernel offsets whose output positions partition 0..n_out-1 (each reached exactly once), or None."""
    reached: set[int] = set()
    chosen = set()
    for i, _, out0, n in sorted(taps, key=lambda t: -t[3]):  # the longest first
        positions = set(range(out0, out0 + s * n, s))
        if not positions & reached:
            reached |= positions
            chosen.add(i)
    return chosen if len(reached) == n_out else None


Strided = tuple[tuple[int, ...], tuple[int, ...], int]  # as_strided's size, stride, storage offset


@functools.lru_cache(maxsize=256)  # one entry per layer and batch size
def _col2im_plan(
    b: int, c: int, size: Pair, kernel: Pair, stride: Pair, padding: Pair, grid: Pair
) -> tuple[tuple[Strided, Strided, bool], ...]:
    """For each kernel offset, the (image, cols) views that ``col2im`` sums, as plain strided views
    (per-offset Python indexing costs as much as the additions at these sizes), and whether it
    writes rather than adds: when some offsets reach every pixel exactly once, they go first and
    write, which spares zero-filling the image."""
    (h, w), (kh, kw), (sh, sw), (ph, pw), (gh, gw) = size, kernel, stride, padding, grid
    taps_y, taps_x = _taps(kh, sh, ph, gh, h), _taps(kw, sw, pw, gw, w)
    cover_y, cover_x = _cover(taps_y, sh, h), _cover(taps_x, sw, w)
    row = kh * kw * c  # one row of cols
    views = []
    for i, in_y, out_y, ny in taps_y:
        for j, in_x, out_x, nx in taps_x:
            image = ((b, ny, nx, c), (h * w * c, sh * w * c, sw * c, 1), (out_y * w + out_x) * c)
            cols = ((b, ny, nx, c), (gh * gw * row, gw * row, row, 1), (in_y * gw + in_x) * row + (i * kw + j) * c)
            writes = cover_y is not None and cover_x is not None and i in cover_y and j in cover_x
            views.append((image, cols, writes))
    return tuple(sorted(views, key=lambda v: not v[2]))


def col2im(
    cols: Tensor, size: Pair, kernel: Pair, stride: Pair, padding: Pair, grid: Pair, init: Tensor | None = None
) -> Tensor:
    """The adjoint of ``im2col``: sums the rows of ``cols`` ([B * grid_h * grid_w, kh * kw * C]) back
    onto an image [B, C, H, W] (channels-last) of ``size``, plus ``init`` (a [C] bias, or None)."""
    (kh, kw), (gh, gw) = kernel, grid
    c = cols.shape[1] // (kh * kw)
    b = cols.shape[0] // (gh * gw)
    cols = cols.contiguous()
    plan = _col2im_plan(b, c, size, kernel, stride, padding, grid)
    first_writes = bool(plan) and plan[0][2]
    image = torch.empty((b, c, *size), dtype=cols.dtype, device=cols.device, memory_format=torch.channels_last)
    pixels = _nhwc(image)  # contiguous [B, H, W, C]: the layout the plan's views describe
    if not first_writes and init is None:
        pixels.zero_()
    elif not first_writes:
        pixels.copy_(init.expand(b, *size, c))
    for into, part, writes in plan:
        target, source = pixels.as_strided(*into), cols.as_strided(*part)
        if not writes:
            target.add_(source)
        elif init is None:
            target.copy_(source)
        else:
            torch.add(source, init, out=target)
    return image


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: Pair, padding: Pair) -> Tensor:
        b, c, h, w = x.shape
        co, _, kh, kw = weight.shape
        out = tuple(map(conv_out, (h, w), (kh, kw), stride, padding))
        cols = im2col(x, (kh, kw), stride, padding, out)
        wm = weight.permute(0, 2, 3, 1).reshape(co, kh * kw * c)  # a view when weight is channels-last
        # The product is written straight into a channels-last output: returning a view of it instead
        # would forbid in-place operations on the layer's output.
        y = torch.empty((b, co, *out), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
        rows = _nhwc(y).view(-1, co)
        if bias is None:
            torch.mm(cols, wm.t(), out=rows)
        else:
            torch.addmm(bias, cols, wm.t(), out=rows)
        ctx.save_for_backward(cols, wm)
        ctx.geometry = ((h, w), (kh, kw), stride, padding, out)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        cols, wm = ctx.saved_tensors
        size, kernel, stride, padding, out = ctx.geometry
        co = wm.shape[0]
        g = _nhwc(grad).reshape(-1, co)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = col2im(g @ wm, size, kernel, stride, padding, out)
        if ctx.needs_input_grad[1]:
            dw = _nchw((g.t() @ cols).view(co, *kernel, -1))
        if ctx.needs_input_grad[2]:
            db = g.sum(0)
        return dx, dw, db, None, None


class _ConvTranspose(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: Pair, padding: Pair, output_padding: Pair
    ) -> Tensor:
        b, ci, h, w = x.shape
        _, co, kh, kw = weight.shape
        size = tuple(map(conv_transpose_out, (h, w), (kh, kw), stride, padding, output_padding))
        xm = _nhwc(x).reshape(b * h * w, ci)
        wm = weight.permute(0, 2, 3, 1).reshape(ci, kh * kw * co)
        y = col2im(xm @ wm, size, (kh, kw), stride, padding, (h, w), init=bias)
        ctx.save_for_backward(xm, wm)
        ctx.geometry = ((h, w), (kh, kw), stride, padding)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        xm, wm = ctx.saved_tensors
        grid, kernel, stride, padding = ctx.geometry
        gcols = im2col(grad, kernel, stride, padding, grid)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _nchw((gcols @ wm.t()).view(-1, *grid, xm.shape[1]))
        if ctx.needs_input_grad[1]:
            dw = _nchw((xm.t() @ gcols).view(xm.shape[1], *kernel, -1))
        if ctx.needs_input_grad[2]:
            db = grad.sum((0, 2, 3))
        return dx, dw, db, None, None, None


def _lowered(layer: nn.modules.conv._ConvNd, x: Tensor) -> bool:
    """Whether the GEMM path covers this call; anything else goes to torch (so does an export:
    the graph of a model is torch's own convolutions, harness.sandbox.graph)."""
    return (
        not torch.compiler.is_exporting()
        and x.device.type == "cpu"
        and x.dim() == 4
        and x.dtype in (torch.float32, torch.float64)
        and layer.groups == 1
        and layer.dilation == (1, 1)
        and layer.padding_mode == "zeros"
        and not isinstance(layer.padding, str)
    )


class Conv2d(nn.Conv2d):
    """``torch.nn.Conv2d`` computed as one matrix product per pass on CPU (see the module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        if not _lowered(self, x):
            return super().forward(x)
        return _Conv.apply(x, self.weight, self.bias, self.stride, self.padding)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``torch.nn.ConvTranspose2d`` computed as one matrix product per pass on CPU (see the module docstring)."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if output_size is not None or not _lowered(self, x):
            return super().forward(x, output_size)
        return _ConvTranspose.apply(x, self.weight, self.bias, self.stride, self.padding, self.output_padding)


def torch_layers(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose lowered layers are torch's own classes again (same parameters):
    the model a student would write, for comparisons with the GEMM path."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, Conv2d):
            m.__class__ = nn.Conv2d  # the subclasses add no state, only a forward
        elif isinstance(m, ConvTranspose2d):
            m.__class__ = nn.ConvTranspose2d
    return model
