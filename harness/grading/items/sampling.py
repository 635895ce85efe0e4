"""``ae_sampling``: what ``generate_samples`` feeds the decoder is [n, nz] and N(0, I).

The probe seeds torch, calls the student's function and records the decoder's
input. Four tests, each at a false-alarm rate of at most 1e-6 for true N(0, I)
draws (so at most 4e-6 together; with the fixed seed the verdict is
deterministic): the overall mean, the overall variance, a Kolmogorov-Smirnov
test of all values against N(0, 1), and the largest correlation between two
latent dimensions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from harness.config.assignment import Assignment
from harness.grading.rubric import ItemResult, PartScore, from_parts

Z_1E6 = 4.89  # two-sided normal quantile for a 1e-6 false-alarm rate
ALPHA = 1e-6


def normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def ks_statistic(values: Tensor) -> float:
    """Kolmogorov-Smirnov distance between the sample and N(0, 1)."""
    x, _ = values.double().flatten().sort()
    n = x.numel()
    cdf = normal_cdf(x)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return max((i / n - cdf).max().item(), (cdf - (i - 1) / n).max().item())


def prior_tests(z: Tensor) -> list[tuple[str, bool, str]]:
    """(name, passed, observed) for each test of z ~ N(0, I)."""
    z = z.double()
    n = z.numel()
    mean, var = z.mean().item(), z.var().item()
    mean_tol = Z_1E6 / math.sqrt(n)
    var_tol = Z_1E6 * math.sqrt(2 / n)
    ks, ks_crit = ks_statistic(z), math.sqrt(math.log(2 / ALPHA) / (2 * n))
    corr = torch.corrcoef(z.T) if z.shape[1] > 1 else torch.ones(1, 1)
    off = (corr - torch.eye(corr.shape[0], dtype=corr.dtype)).abs().nan_to_num(1.0).max().item()
    corr_tol = min(1.0, (Z_1E6 + 1.5) / math.sqrt(z.shape[0]))  # rough max over many pairs
    return [
        ("mean 0", abs(mean) < mean_tol, f"mean {mean:.4f} (|mean| < {mean_tol:.4f})"),
        ("variance 1", abs(var - 1) < var_tol, f"variance {var:.4f} (within 1 ± {var_tol:.4f})"),
        ("normal shape", ks < ks_crit, f"Kolmogorov-Smirnov distance {ks:.4f} (< {ks_crit:.4f})"),
        ("independent dims", off < corr_tol, f"largest correlation between dims {off:.3f} (< {corr_tol:.3f})"),
    ]


def score(a: Assignment, obs: dict, n: int, stand_in: str = "") -> ItemResult:
    """``stand_in``: why the reference auto-encoder ran instead of the student's ("" when it did not)."""
    item = a.item("ae_sampling")
    nz, c, s = a.model.nz, a.data.image_channels, a.data.image_size
    inputs, samples = obs.get("decoder_inputs") or [], obs.get("samples")
    z = inputs[0] if inputs and isinstance(inputs[0], Tensor) else None
    parts, metrics = [], {}
    problems = []
    if z is None:
        problems.append("the decoder was never called on the drawn latents")
    elif list(z.shape) != [n, nz]:
        problems.append(f"the decoder received {list(z.shape)}, expected [{n}, {nz}]")
    if not isinstance(samples, Tensor) or list(samples.shape) != [n, c, s, s]:
        got = list(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
        problems.append(f"returned {got}, expected [{n}, {c}, {s}, {s}]")
    if problems:
        parts.append(PartScore("latent_shape", 0.0, "; ".join(problems)))
    else:
        parts.append(PartScore("latent_shape", 1.0, f"decoder receives [{n}, {nz}], returns [{n}, {c}, {s}, {s}]"))
    if z is None or z.dim() != 2 or z.shape[0] < 2:
        parts.append(PartScore("prior", 0.0, "no latent draws to test against N(0, I)"))
    else:
        tests = prior_tests(z)
        metrics = {name: observed for name, _, observed in tests}
        failed = [observed for _, ok, observed in tests if not ok]
        if failed:
            parts.append(PartScore("prior", 0.0, "latents are not N(0, I): " + "; ".join(failed)))
        else:
            parts.append(PartScore("prior", 1.0, "latents pass N(0, I) tests: " + "; ".join(o for _, _, o in tests)))
    result = from_parts(item, parts, metrics)
    if obs.get("decoded_elsewhere"):
        result.evidence.append(
            "the drawn latents were decoded by a module other than the model's decoder passed in "
            "(a global model?): the test followed them there"
        )
    if stand_in:
        result.evidence.append(
            f"run on the reference auto-encoder because yours {stand_in} (charged under its own items)"
        )
    return result
