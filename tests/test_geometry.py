import itertools

import pytest
import torch
from torch import nn

from harness.config.geometry import reachable, solve_conv, solve_conv_transpose


def test_handout_layers_get_the_textbook_geometry():
    assert (solve_conv(28, 14, 4).stride, solve_conv(28, 14, 4).padding) == (2, 1)
    assert (solve_conv(3, 1, 3).stride, solve_conv(3, 1, 3).padding) == (1, 0)
    t = solve_conv_transpose(3, 7, 3)
    assert (t.stride, t.padding, t.output_padding) == (2, 0, 0)


@pytest.mark.parametrize("size_in,kernel", list(itertools.product([1, 2, 3, 6, 7, 13, 14, 28], [3, 4])))
def test_every_solved_geometry_reaches_its_size_in_real_pytorch_layers(size_in, kernel):
    x = torch.zeros(1, 1, size_in, size_in)
    for size_out in reachable(size_in, kernel, transposed=False):
        g = solve_conv(size_in, size_out, kernel)
        assert nn.Conv2d(1, 1, kernel, g.stride, g.padding)(x).shape[-1] == size_out
    for size_out in reachable(size_in, kernel, transposed=True):
        g = solve_conv_transpose(size_in, size_out, kernel)
        layer = nn.ConvTranspose2d(1, 1, kernel, g.stride, g.padding, g.output_padding)
        assert layer(x).shape[-1] == size_out


def test_unreachable_sizes_give_none():
    assert solve_conv(7, 6, 3) is None
    assert solve_conv_transpose(1, 20, 3) is None
