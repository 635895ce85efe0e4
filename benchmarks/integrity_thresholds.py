"""The numbers the plausibility thresholds of harness/grading/integrity.py are calibrated on.

    HARNESS_DATA=<MNIST root> python benchmarks/integrity_thresholds.py [--profiles smoke]
        [--device auto] [--cache DIR]

Per profile, from its reference (built, or read from the cache): the real-vs-real FID, each
run's test MSE and sample FID, and the per-pixel MSE from each of the reference's decoded prior
samples to its nearest image of the profile's training images. Then, for the same training
images and for the whole training split, the nearest-image MSE of honest held-out test images
and of two near-copy attacks (a training image with uniform noise, one shifted by a pixel).
A threshold is sound when every honest number is well above it and the attacks well below.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.config.assignment import load_assignment  # noqa: E402
from harness.grading import integrity  # noqa: E402
from harness.grading.runs import eval_images, fixed_prior  # noqa: E402
from harness.ml.data import load_mnist, subset  # noqa: E402
from harness.ml.training import resolve_device  # noqa: E402
from harness.reference.beta_band import ensure_band  # noqa: E402
from harness.reference.build import build_reference, load_model  # noqa: E402
from harness.reference.cache import cache_root  # noqa: E402


def spread(name: str, d: torch.Tensor, under: float = integrity.COPY_MSE) -> str:
    q = torch.quantile(d.float(), torch.tensor([0.01, 0.5]))
    share = float((d < under).double().mean())
    return (
        f"  {name:<34} n={len(d):>5}  min {d.min():.4f}  p1 {q[0]:.4f}  median {q[1]:.4f}  under {under:g}: {share:.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="smoke")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--assignment", default="variant-a")
    parser.add_argument("--samples", type=int, default=1000, help="decoded prior samples per reference run")
    parser.add_argument(
        "--band",
        action="store_true",
        help="also the full-protocol search (harness reference --band): honest runs at their best",
    )
    args = parser.parse_args()
    a = load_assignment(args.assignment)
    data = load_mnist(None)
    device = resolve_device(args.device)
    cache = args.cache or cache_root()
    test = eval_images(a, data)
    z = fixed_prior(a)[: args.samples]
    g = torch.Generator().manual_seed(0)
    for name in args.profiles.split(","):
        profile = a.profile(name)
        ref = build_reference(a, profile, data, device, cache, quiet=True)
        train, _ = subset(data.train_images, data.train_labels, profile.train_images, a.training.seed)
        print(f"profile {name}: {len(train)} training images; real-vs-real FID {ref.real_fid:.3f}")
        for run in ref.runs:
            if run.search:
                continue
            print(f"  run {run.name:<8} test MSE {run.test_mse:.4f}  sample FID {run.sample_fid:.3f}")
        best = min((r for r in ref.runs if r.search), key=lambda r: r.sample_fid, default=None)
        if best is not None:
            print(
                f"  best search run (beta {best.beta:g}): "
                f"sample FID {best.sample_fid:.3f}, test MSE {best.test_mse:.4f}"
            )
        for run in ref.runs:
            if run.search:
                continue
            with torch.no_grad():
                samples = load_model(ref, run.name, a, device).decoder(z.to(device)).cpu().clamp(0, 1)
            samples = samples.mul(255).round().div(255)  # as the run artefacts store them
            print(spread(f"reference {run.name} samples", integrity.nearest_mse(samples, train)))
        print(spread("held-out test images", integrity.nearest_mse(test, train)))
        picks = train[torch.randperm(len(train), generator=g)[:500]]
        noisy = (picks + 0.1 * (torch.rand(picks.shape, generator=g) * 2 - 1)).clamp(0, 1)
        print(spread("training images + 10% noise", integrity.nearest_mse(noisy, train)))
        print(spread("training images shifted 1 pixel", integrity.nearest_mse(picks.roll(1, dims=-1), train)))
    print(f"all {len(data.train_images)} training images:")
    print(spread("held-out test images", integrity.nearest_mse(test, data.train_images)))
    if args.band:
        band = ensure_band(a, data, device, cache, quiet=True)
        print(f"full-protocol search (best beta {band.best:g}; measured on the whole test split):")
        for row in band.searched:
            print(f"  beta {row.beta:<8g} test MSE {row.test_mse:.4f}  sample FID {row.sample_fid:.3f}")


if __name__ == "__main__":
    main()
