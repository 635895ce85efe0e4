"""Pick stride and padding that take a (transposed) convolution to a stated resolution.

The handout fixes channels, kernel and output resolution only, so the reference
models need a rule that turns those into stride/padding. The rule, in one line:

    try stride 1, 2, ..., kernel; for each, padding 0, 1, ...; for transposed
    convolutions also output_padding 0 .. stride-1; take the first that fits.

Padding is capped at ``kernel // 2`` for convolutions (an output pixel should see
at least half a kernel of real input) and at ``kernel - 1`` for transposed ones
(PyTorch's own limit). The smallest stride keeps as much spatial detail as the
target allows; for the handout this yields the textbook choices
(28 -> 14 with k4 is stride 2, padding 1; 3 -> 1 with k3 is stride 1, padding 0).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConvGeometry:
    """Stride, padding and output padding of one (transposed) convolution."""

    stride: int
    padding: int
    output_padding: int = 0


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output size of ``nn.Conv2d`` along one axis (dilation 1)."""
    return (size + 2 * padding - kernel) // stride + 1


def conv_transpose_out(size: int, kernel: int, stride: int, padding: int, output_padding: int) -> int:
    """Output size of ``nn.ConvTranspose2d`` along one axis (dilation 1)."""
    return (size - 1) * stride - 2 * padding + kernel + output_padding


def solve_conv(size_in: int, size_out: int, kernel: int) -> ConvGeometry | None:
    """Smallest stride, then smallest padding, such that a conv maps size_in to size_out."""
    for stride in range(1, kernel + 1):
        for padding in range(0, kernel // 2 + 1):
            if conv_out(size_in, kernel, stride, padding) == size_out:
                return ConvGeometry(stride, padding)
    return None


def solve_conv_transpose(size_in: int, size_out: int, kernel: int) -> ConvGeometry | None:
    """Smallest stride, padding, then output_padding for a transposed conv from size_in to size_out."""
    for stride in range(1, kernel + 1):
        for padding in range(0, kernel):
            for output_padding in range(0, stride):
                if conv_transpose_out(size_in, kernel, stride, padding, output_padding) == size_out:
                    return ConvGeometry(stride, padding, output_padding)
    return None


def reachable(size_in: int, kernel: int, transposed: bool) -> list[int]:
    """Every output size some allowed geometry reaches; used to suggest a fix in config errors."""
    sizes: set[int] = set()
    for stride in range(1, kernel + 1):
        if transposed:
            for padding in range(0, kernel):
                for output_padding in range(0, stride):
                    sizes.add(conv_transpose_out(size_in, kernel, stride, padding, output_padding))
        else:
            for padding in range(0, kernel // 2 + 1):
                sizes.add(conv_out(size_in, kernel, stride, padding))
    return sorted(s for s in sizes if s >= 1)
