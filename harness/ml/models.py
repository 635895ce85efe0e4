"""Reference AE and VAE, built from the assignment's layer lists.

Nothing here knows the handout's channel counts: each layer comes from
``ModelSpec`` and its stride/padding from ``harness.config.geometry`` (via
``assignment.plan_layers``).

The VAE's loss convention (it defines what the reference's beta means):

    rec_loss = mean over all pixels of (rec - x)^2            (F.mse_loss default)
    kl_loss  = KL(q(z|x) || N(0, I)) summed over latent dims, averaged over the batch
    total    = rec_loss + beta * kl_loss

The encoder emits ``2 * nz`` values per image: the posterior mean, then log sigma.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from harness.config.assignment import Assignment, LayerSpec, PlannedLayer, plan_layers
from harness.ml.gemm_conv import Conv2d, ConvTranspose2d


class Reshape(nn.Module):
    """Reshape a flat feature vector to (channels, height, width)."""

    def __init__(self, channels: int, resolution: int):
        super().__init__()
        self.shape = (channels, resolution, resolution)

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], *self.shape)


def _activation(name: str, slope: float) -> nn.Module | None:
    return {
        "leaky_relu": lambda: nn.LeakyReLU(slope),
        "relu": nn.ReLU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "none": lambda: None,
    }[name]()


def _layer(p: PlannedLayer, slope: float) -> list[nn.Module]:
    s: LayerSpec = p.spec
    if s.kind == "linear":
        features = p.in_channels * p.in_resolution**2
        core = [nn.Flatten(), nn.Linear(features, s.out_channels * s.out_resolution**2, bias=s.bias)]
        core.append(Reshape(s.out_channels, s.out_resolution))
    else:
        g = p.geometry
        if s.kind == "conv":
            core = [Conv2d(p.in_channels, s.out_channels, s.kernel, g.stride, g.padding, bias=s.bias)]
        else:
            core = [
                ConvTranspose2d(
                    p.in_channels, s.out_channels, s.kernel, g.stride, g.padding, g.output_padding, bias=s.bias
                )
            ]
    if s.batch_norm:
        core.append(nn.BatchNorm2d(s.out_channels))
    act = _activation(s.activation, slope)
    return core + ([act] if act is not None else [])


def build_encoder(a: Assignment, out_features: int) -> nn.Sequential:
    """The encoder body from the config, then the latent head Flatten + Linear(out_features)."""
    plan = plan_layers(a.model.encoder, a.data.image_channels, a.data.image_size, "model.encoder", a.source)
    modules = [m for p in plan for m in _layer(p, a.model.leaky_relu_slope)]
    last = a.model.encoder[-1]
    modules += [nn.Flatten(), nn.Linear(last.out_channels * last.out_resolution**2, out_features)]
    return nn.Sequential(*modules)


def build_decoder(a: Assignment) -> nn.Sequential:
    """The decoder from the config; its first (linear) layer reads the nz-dim latent."""
    plan = plan_layers(a.model.decoder, a.model.nz, 1, "model.decoder", a.source)
    return nn.Sequential(*[m for p in plan for m in _layer(p, a.model.leaky_relu_slope)])


def gaussian_kl(mu1: Tensor, log_s1: Tensor, mu2: Tensor, log_s2: Tensor) -> Tensor:
    """Elementwise KL(N(mu1, s1^2) || N(mu2, s2^2)) from log standard deviations (the handout's helper)."""
    return (log_s2 - log_s1) + (torch.exp(log_s1) ** 2 + (mu1 - mu2) ** 2) / (2 * torch.exp(log_s2) ** 2) - 0.5


def kl_to_prior(mu: Tensor, log_sigma: Tensor) -> Tensor:
    """Elementwise KL(q || N(0, 1)), shape [B, nz]."""
    zero = torch.zeros_like(mu)
    return gaussian_kl(mu, log_sigma, zero, zero)


def reconstruction_mse(rec: Tensor, x: Tensor) -> Tensor:
    """Mean squared error over all elements (the convention of ``F.mse_loss``)."""
    return ((rec - x) ** 2).mean()


class AutoEncoder(nn.Module):
    def __init__(self, a: Assignment):
        super().__init__()
        self.nz = a.model.nz
        self.encoder = build_encoder(a, self.nz)
        self.decoder = build_decoder(a)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.forward(x)


class VAE(nn.Module):
    def __init__(self, a: Assignment, beta: float = 1.0):
        super().__init__()
        self.nz, self.beta = a.model.nz, beta
        self.encoder = build_encoder(a, 2 * self.nz)
        self.decoder = build_decoder(a)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log sigma, each [B, nz]."""
        mu, log_sigma = self.encoder(x).chunk(2, dim=1)
        return mu, log_sigma

    def encode(self, x: Tensor) -> Tensor:
        return self.posterior(x)[0]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        q = self.encoder(x)
        mu, log_sigma = q.chunk(2, dim=1)
        z = mu + torch.exp(log_sigma) * torch.randn_like(mu)  # reparameterisation: gradients reach mu and sigma
        return {"q": q, "rec": self.decoder(z)}

    def loss(self, x: Tensor, outputs: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        mu, log_sigma = outputs["q"].chunk(2, dim=1)
        rec_loss = reconstruction_mse(outputs["rec"], x)
        kl_loss = kl_to_prior(mu, log_sigma).sum(dim=1).mean()
        return rec_loss + self.beta * kl_loss, {"rec_loss": rec_loss, "kl_loss": kl_loss}

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode the posterior mean: deterministic, no sampling."""
        return self.decoder(self.posterior(x)[0])
