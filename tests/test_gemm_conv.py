"""The GEMM-lowered layers equal torch's convolutions (forward and every gradient) in float64."""

import pytest
import torch
from torch import nn

from harness.ml.gemm_conv import Conv2d, ConvTranspose2d, col2im, im2col, torch_layers
from harness.ml.models import VAE, AutoEncoder

# (in_channels, out_channels, kernel, stride, padding, input size): the handout's layers and odd ones
CONVS = [
    (1, 32, 4, 2, 1, 28),
    (32, 64, 4, 2, 1, 14),
    (64, 128, 3, 2, 0, 7),
    (128, 16, 3, 1, 0, 3),
    (3, 5, (3, 2), (1, 2), (1, 0), 9),
    (2, 3, 5, 3, 2, 11),
    (4, 6, 1, 1, 0, 5),
]
# (in_channels, out_channels, kernel, stride, padding, output_padding, input size)
TRANSPOSED = [
    (256, 8, 3, 1, 0, 0, 1),
    (16, 8, 3, 2, 0, 0, 3),
    (8, 4, 4, 2, 1, 0, 7),
    (4, 1, 4, 2, 1, 0, 14),
    (3, 2, 3, 2, 1, 1, 5),
    (2, 3, (2, 4), (3, 2), (0, 1), (2, 0), 4),
    (3, 3, 5, 1, 2, 0, 6),
]


def _compare(ours: nn.Module, x: torch.Tensor, input_grad: bool = True) -> None:
    theirs = torch_layers(ours)
    assert type(theirs) in (nn.Conv2d, nn.ConvTranspose2d)
    xs = [x.clone().requires_grad_(input_grad) for _ in range(2)]
    ys = [ours(xs[0]), theirs(xs[1])]
    torch.testing.assert_close(ys[0], ys[1], rtol=1e-10, atol=1e-10)
    upstream = torch.randn_like(ys[1])
    for y in ys:
        (y * upstream).sum().backward()
    if input_grad:
        torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-10, atol=1e-10)
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, dict(theirs.named_parameters())[name].grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ci,co,k,s,p,n", CONVS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_lowered_conv_matches_torch_conv2d(ci, co, k, s, p, n, channels_last):
    torch.manual_seed(0)
    layer = Conv2d(ci, co, k, s, p).double()
    x = torch.randn(3, ci, n, n + 1, dtype=torch.float64)
    if channels_last:
        layer, x = layer.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    _compare(layer, x)


@pytest.mark.parametrize("ci,co,k,s,p,op,n", TRANSPOSED)
@pytest.mark.parametrize("channels_last", [False, True])
def test_lowered_conv_transpose_matches_torch(ci, co, k, s, p, op, n, channels_last):
    torch.manual_seed(0)
    layer = ConvTranspose2d(ci, co, k, s, p, op).double()
    x = torch.randn(3, ci, n, n, dtype=torch.float64)
    if channels_last:
        layer, x = layer.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    _compare(layer, x)


def test_lowered_layers_without_bias_or_input_gradient_match_torch():
    torch.manual_seed(0)
    _compare(Conv2d(2, 3, 3, 2, 1, bias=False).double(), torch.randn(2, 2, 8, 8, dtype=torch.float64), input_grad=False)
    _compare(ConvTranspose2d(3, 2, 4, 2, 1, bias=False).double(), torch.randn(2, 3, 5, 5, dtype=torch.float64))


def test_col2im_is_the_adjoint_of_im2col():
    """<im2col(x), c> == <x, col2im(c)> for every geometry: the property the backward passes rely on."""
    torch.manual_seed(0)
    for (kh, kw), (sh, sw), (ph, pw), (h, w) in [((4, 4), (2, 2), (1, 1), (14, 14)), ((3, 2), (1, 3), (2, 0), (5, 8))]:
        out = ((h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
        x = torch.randn(2, 3, h, w, dtype=torch.float64)
        c = torch.randn(2 * out[0] * out[1], kh * kw * 3, dtype=torch.float64)
        lhs = (im2col(x, (kh, kw), (sh, sw), (ph, pw), out) * c).sum()
        rhs = (x * col2im(c, (h, w), (kh, kw), (sh, sw), (ph, pw), out)).sum()
        torch.testing.assert_close(lhs, rhs)


def test_lowered_outputs_take_in_place_operations():
    """The outputs are tensors of their own, not views, so an in-place activation after them works."""
    torch.manual_seed(0)
    for layer in (Conv2d(2, 3, 4, 2, 1).double(), ConvTranspose2d(2, 3, 4, 2, 1).double()):
        x = torch.randn(2, 2, 6, 6, dtype=torch.float64)
        grads = []
        for model in (layer, torch_layers(layer)):
            model.zero_grad()
            torch.nn.functional.leaky_relu(model(x), 0.2, inplace=True).square().sum().backward()
            grads.append(model.weight.grad.clone())
        torch.testing.assert_close(grads[0], grads[1])


def test_unlowered_calls_fall_back_to_torch():
    """Groups, dilation, string padding and an explicit output_size take torch's own path."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 9)
    for layer in [Conv2d(4, 4, 3, groups=2), Conv2d(4, 2, 3, dilation=2), Conv2d(4, 2, 3, padding="same")]:
        torch.testing.assert_close(layer(x), torch_layers(layer)(x))
    up = ConvTranspose2d(4, 2, 3, stride=2)
    torch.testing.assert_close(up(x, output_size=[20, 20]), torch_layers(up)(x, output_size=[20, 20]))
    assert up(x, output_size=[20, 20]).shape[-2:] == (20, 20)


@pytest.mark.parametrize("variant", ["variant-a", "variant-b"])
def test_reference_models_train_like_their_torch_layer_twins(variant):
    """A whole AE and VAE step: same loss, same gradients as the torch-layer copy (float64)."""
    from harness.config.assignment import load_assignment

    a = load_assignment(variant)
    size = (4, a.data.image_channels, a.data.image_size, a.data.image_size)
    x = torch.rand(size, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    for build in (AutoEncoder, VAE):
        torch.manual_seed(0)
        ours = build(a).double().to(memory_format=torch.channels_last)
        theirs = torch_layers(ours)
        assert not any(isinstance(m, (Conv2d, ConvTranspose2d)) for m in theirs.modules())
        assert ours.state_dict().keys() == theirs.state_dict().keys()
        for model in (ours, theirs):
            torch.manual_seed(1)  # the VAE's sampling noise
            out = model(x)
            rec = out["rec"] if isinstance(out, dict) else out
            ((rec - x) ** 2).mean().backward()
        for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=False):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=name)


def test_torch_layers_leaves_the_original_model_lowered():
    layer = Conv2d(1, 2, 3)
    copy_ = torch_layers(layer)
    assert type(layer) is Conv2d and type(copy_) is nn.Conv2d
    assert copy_.weight is not layer.weight and torch.equal(copy_.weight, layer.weight)
