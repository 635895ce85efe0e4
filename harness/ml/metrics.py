"""Measurements of reconstructions, latents and samples (all computed by harness code).

* A small MNIST classifier, trained by the harness, gives features and labels.
* "FID (MNIST classifier)": the Frechet distance between Gaussians fitted to the
  classifier's 64-d penultimate activations (after the ReLU, as Inception FID uses
  its pool3 activations) of two image sets. It is not the Inception FID:
  numbers have a scale only next to the real-vs-real calibration
  (:func:`real_vs_real_fid`), which every reference result reports.
* Confidence (mean top-class probability) and class coverage of samples.
* Test reconstruction MSE; KL per image and per latent dimension; active units
  (Burda et al. 2016: a latent dimension is active when the variance over the
  data of its posterior mean exceeds 0.01).
* For an interpolation path: the classifier confidence of the decoded frames and
  the largest step-to-step change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.ml.models import kl_to_prior
from harness.progress import Progress

FEATURE_DIM = 64


class Classifier(nn.Module):
    """Two conv blocks and a 64-d feature layer; features are its activations after the ReLU."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, FEATURE_DIM),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(FEATURE_DIM, n_classes))

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def train_classifier(
    images: Tensor, labels: Tensor, epochs: int, device: torch.device, seed: int = 0, quiet: bool = False
) -> Classifier:
    """Train the feature classifier (Adam, batch 128, small random shifts as augmentation)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    clf = Classifier().to(device).train()
    opt = torch.optim.Adam(clf.parameters(), lr=1e-3)
    steps = -(-len(images) // 128)
    with Progress(total=epochs * steps, desc="classifier", unit="step", disable=quiet, leave=False) as bar:
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=gen)
            for start in range(0, len(images), 128):
                idx = order[start : start + 128]
                x = _shift(images[idx], gen).to(device)
                loss = nn.functional.cross_entropy(clf(x), labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.update()
    return clf.eval()


def _shift(x: Tensor, gen: torch.Generator, max_shift: int = 2) -> Tensor:
    """Shift the whole batch by a random whole-pixel offset (cheap augmentation)."""
    dx, dy = (torch.randint(-max_shift, max_shift + 1, (2,), generator=gen)).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@torch.no_grad()
def classify(clf: Classifier, images: Tensor, batch: int = 1000) -> tuple[Tensor, Tensor]:
    """Features [N, 64] and class probabilities [N, 10], on the CPU."""
    device = next(clf.parameters()).device
    feats, probs = [], []
    for start in range(0, len(images), batch):
        f = clf.features(images[start : start + batch].to(device))
        feats.append(f.cpu())
        probs.append(clf.head(f).softmax(dim=1).cpu())
    return torch.cat(feats), torch.cat(probs)


def accuracy(clf: Classifier, images: Tensor, labels: Tensor) -> float:
    return float((classify(clf, images)[1].argmax(dim=1) == labels).double().mean())


# --------------------------------------------------------------------------- Frechet distance


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, D].

    tr(sqrt(C_a C_b)) is computed as the sum of square roots of the eigenvalues
    of the symmetric PSD matrix sqrt(C_a) C_b sqrt(C_a), in float64, with tiny
    negative eigenvalues from round-off clipped to 0: no complex numbers, no
    iterative sqrtm that can fail to converge.
    """
    dim = a.shape[1]
    if min(len(a), len(b)) <= dim:
        raise ValueError(f"need more than {dim} samples per set for a full-rank covariance, got {len(a)} and {len(b)}")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    sqrt_a = _psd_sqrt(cov_a)
    middle = sqrt_a @ cov_b @ sqrt_a
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    value = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * tr_sqrt
    return max(float(value), 0.0)


def _psd_sqrt(m: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


# --------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class SampleQuality:
    fid: float
    confidence: float
    coverage: float


def coverage(probs: Tensor, share: float = 0.5) -> float:
    """Fraction of classes predicted for at least ``share`` of a uniform share of the samples."""
    n_classes = probs.shape[1]
    counts = torch.bincount(probs.argmax(dim=1), minlength=n_classes).double() / len(probs)
    return float((counts >= share / n_classes).double().mean())


def sample_quality(clf: Classifier, samples: Tensor, real_features: Tensor, share: float = 0.5) -> SampleQuality:
    """FID against the real set's features, mean confidence and class coverage of samples."""
    feats, probs = classify(clf, samples)
    return SampleQuality(
        fid=frechet_distance(feats, real_features),
        confidence=float(probs.max(dim=1).values.mean()),
        coverage=coverage(probs, share),
    )


def real_vs_real_fid(clf: Classifier, train_images: Tensor, real_features: Tensor, n: int, seed: int = 0) -> float:
    """FID of ``n`` real training images against the real set: the floor a perfect generator reaches."""
    pick = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(seed))[:n]
    return frechet_distance(classify(clf, train_images[pick])[0], real_features)


@torch.no_grad()
def decode_prior(model: nn.Module, n: int, nz: int, seed: int) -> Tensor:
    """Decode ``n`` draws z ~ N(0, I) made with a seeded generator; images on the CPU."""
    device = next(model.parameters()).device
    return model.eval().decoder(prior_draws(n, nz, seed).to(device)).cpu()


def prior_draws(n: int, nz: int, seed: int) -> Tensor:
    """``n`` draws z ~ N(0, I) from a seeded generator: the same codes for every model judged."""
    return torch.randn(n, nz, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- reconstructions and latents


@torch.no_grad()
def _batched(fn, images: Tensor, batch: int = 500) -> Tensor:
    return torch.cat([fn(images[s : s + batch]) for s in range(0, len(images), batch)])


@torch.no_grad()
def test_mse(model: nn.Module, images: Tensor) -> float:
    """Mean squared error over all pixels of ``model.reconstruct`` on ``images``."""
    device = next(model.parameters()).device
    model.eval()
    rec = _batched(lambda x: model.reconstruct(x.to(device)).cpu(), images)
    return mse(rec, images)


def mse(reconstructions: Tensor, images: Tensor) -> float:
    """Mean squared error over all pixels; NaN when the shapes differ or values are not finite."""
    if reconstructions.shape != images.shape:
        return float("nan")
    return float((reconstructions.float() - images).square().mean())


@dataclass(frozen=True)
class LatentStats:
    kl_per_image: float  # KL(q || N(0, I)) summed over dims, averaged over images
    kl_per_dim: list[float]  # averaged over images
    active_units: int
    mean_variance: list[float]  # variance over the data of each dim's posterior mean


@torch.no_grad()
def latent_stats(vae: nn.Module, images: Tensor, threshold: float = 0.01) -> LatentStats:
    """KL and active units of a VAE over ``images`` (posterior mean and log sigma)."""
    device = next(vae.parameters()).device
    vae.eval()
    q = _batched(lambda x: vae.encoder(x.to(device)).cpu(), images)
    return posterior_stats(*q.chunk(2, dim=1), threshold)


def posterior_stats(mu: Tensor, log_sigma: Tensor, threshold: float = 0.01) -> LatentStats:
    """KL and active units from posterior means and log sigmas ([N, nz] each)."""
    kl = kl_to_prior(mu, log_sigma)
    variance = mu.var(dim=0)
    return LatentStats(
        kl_per_image=float(kl.sum(dim=1).mean()),
        kl_per_dim=kl.mean(dim=0).tolist(),
        active_units=active_units(mu, threshold),
        mean_variance=variance.tolist(),
    )


def active_units(mu: Tensor, threshold: float = 0.01) -> int:
    """Burda et al.: number of dims whose posterior mean varies over the data by more than ``threshold``."""
    return int((mu.var(dim=0) > threshold).sum())


# --------------------------------------------------------------------------- interpolation


@torch.no_grad()
def interpolate(model: nn.Module, start: Tensor, end: Tensor, steps: int) -> Tensor:
    """The handout's path: decode z_start + i/steps (z_end - z_start) for i = 0..steps-1.

    ``model.encode`` gives the code (the posterior mean for a VAE). Returns [steps, C, H, W] on the CPU.
    """
    device = next(model.parameters()).device
    model.eval()
    z = model.encode(torch.stack([start, end]).to(device))
    return model.decoder(path_codes(z[0], z[1], steps)).cpu()


def path_codes(z_start: Tensor, z_end: Tensor, steps: int) -> Tensor:
    """The handout's codes ``z_start + i/steps (z_end - z_start)``, i = 0..steps-1: [steps, nz]."""
    t = torch.arange(steps, device=z_start.device, dtype=z_start.dtype).div(steps).unsqueeze(1)
    return z_start + t * (z_end - z_start)


@dataclass(frozen=True)
class PathQuality:
    confidence: float  # mean top-class probability of the decoded frames
    max_step: float  # largest mean squared change between consecutive frames


def path_quality(clf: Classifier, frames: Tensor) -> PathQuality:
    _, probs = classify(clf, frames)
    steps = (frames[1:] - frames[:-1]).square().flatten(1).mean(dim=1)
    return PathQuality(confidence=float(probs.max(dim=1).values.mean()), max_step=float(steps.max()))
