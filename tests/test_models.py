import pytest
import torch
from torch import nn

from harness.config.assignment import load_assignment
from harness.ml.models import VAE, AutoEncoder, gaussian_kl, kl_to_prior


def _observed_resolutions(model: nn.Sequential, x: torch.Tensor, kind) -> list[tuple[int, int]]:
    seen = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: seen.append((o.shape[1], o.shape[-1])))
        for m in model
        if isinstance(m, kind)
    ]
    model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("name", ["variant-a", "variant-b"])
def test_built_models_show_the_configured_channels_and_resolutions(name):
    a = load_assignment(name)
    ae = AutoEncoder(a).eval()
    x = torch.rand(2, 1, 28, 28)
    enc = _observed_resolutions(ae.encoder, x, nn.Conv2d)
    assert enc == [(layer.out_channels, layer.out_resolution) for layer in a.model.encoder]
    z = ae.encoder(x)
    assert z.shape == (2, a.model.nz)
    dec = _observed_resolutions(ae.decoder, z, nn.ConvTranspose2d)
    assert dec == [(layer.out_channels, layer.out_resolution) for layer in a.model.decoder[1:]]
    out = ae.decoder(z)
    assert out.shape == (2, 1, 28, 28) and 0 <= out.min() and out.max() <= 1


def test_every_convolution_learns_a_bias_and_batch_norm_follows_the_config():
    a = load_assignment("variant-a")
    ae = AutoEncoder(a)
    convs = [m for m in ae.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 8 and all(c.bias is not None for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in ae.encoder) == 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in ae.decoder) == 4
    assert isinstance(ae.decoder[-1], nn.Sigmoid)


def test_kl_helper_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu1, mu2, ls1, ls2 = (torch.randn(100, generator=g) for _ in range(4))
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu1, ls1.exp()), torch.distributions.Normal(mu2, ls2.exp())
    )
    torch.testing.assert_close(gaussian_kl(mu1, ls1, mu2, ls2), expected, rtol=1e-5, atol=1e-5)
    assert torch.allclose(kl_to_prior(torch.zeros(3), torch.zeros(3)), torch.zeros(3))


def test_vae_encoder_emits_mean_and_log_sigma_and_loss_is_rec_plus_beta_kl():
    a = load_assignment("variant-a")
    torch.manual_seed(0)
    vae = VAE(a, beta=0.5).eval()
    x = torch.rand(4, 1, 28, 28)
    out = vae(x)
    assert out["q"].shape == (4, 2 * a.model.nz) and out["rec"].shape == x.shape
    total, parts = vae.loss(x, out)
    mu, log_sigma = out["q"].chunk(2, dim=1)
    kl = kl_to_prior(mu, log_sigma).sum(1).mean()
    torch.testing.assert_close(parts["kl_loss"], kl)
    torch.testing.assert_close(parts["rec_loss"], ((out["rec"] - x) ** 2).mean())
    torch.testing.assert_close(total, parts["rec_loss"] + 0.5 * kl)


def test_vae_sampling_is_reparameterised_and_reconstruct_decodes_the_mean():
    a = load_assignment("variant-a")
    torch.manual_seed(0)
    vae = VAE(a).eval()
    x = torch.rand(4, 1, 28, 28)
    assert not torch.equal(vae(x)["rec"], vae(x)["rec"])  # fresh noise per call
    torch.testing.assert_close(vae.reconstruct(x), vae.reconstruct(x))
    torch.testing.assert_close(vae.reconstruct(x), vae.decoder(vae.posterior(x)[0]))
    vae.train()
    out = vae(x)
    out["rec"].sum().backward()
    head = vae.encoder[-1]
    assert head.weight.grad[: a.model.nz].abs().sum() > 0 and head.weight.grad[a.model.nz :].abs().sum() > 0
