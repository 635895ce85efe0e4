"""MNIST, decoded once into in-memory tensors.

Where the data comes from, in order (see ``docs/data.md``):

1. ``--data DIR`` on the command line,
2. the environment variable ``HARNESS_DATA``,
3. a per-user cache folder (``$XDG_CACHE_HOME/harness/mnist``, else
   ``~/.cache/harness/mnist``), where torchvision downloads MNIST on first use.

Each is a torchvision MNIST root: ``DIR/MNIST/raw/`` holds the four IDX files.
Images are scaled to [0, 1] exactly as ``transforms.ToTensor`` does, once, so no
training loop pays for a per-item PIL conversion.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

ENV_DATA = "HARNESS_DATA"
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class DataNotFound(RuntimeError):
    """MNIST is neither where the user pointed nor downloadable."""


@dataclass(frozen=True)
class DataSource:
    """Where MNIST is read from, and why (for messages and result files)."""

    root: Path
    origin: str  # "--data", "HARNESS_DATA" or "user cache"
    download: bool


@dataclass(frozen=True)
class Mnist:
    """Both splits as tensors: images float32 [N, 1, 28, 28] in [0, 1], labels int64 [N]."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    source: DataSource
    fingerprint: str


def user_cache_dir() -> Path:
    """The harness's per-user cache folder (XDG convention)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "harness"


def resolve_source(data: str | os.PathLike | None = None, env: Mapping[str, str] = os.environ) -> DataSource:
    """Pick the MNIST root: the flag, else the environment, else the user cache (with download)."""
    if data:
        return DataSource(Path(data).expanduser(), "--data", download=False)
    if env.get(ENV_DATA):
        return DataSource(Path(env[ENV_DATA]).expanduser(), ENV_DATA, download=False)
    return DataSource(user_cache_dir() / "mnist", "user cache", download=True)


def _not_found(source: DataSource, reason: str) -> DataNotFound:
    raw = source.root / "MNIST" / "raw"
    return DataNotFound(
        f"MNIST not found: {reason}.\n"
        f"  Looked in: {raw} (from {source.origin}).\n"
        f"  Expected layout: <root>/MNIST/raw/ with {', '.join(RAW_FILES)} (uncompressed),\n"
        f"  as torchvision.datasets.MNIST(root, download=True) leaves them.\n"
        f"  Fix: pass --data <root> or set {ENV_DATA}=<root> to a folder with that layout,\n"
        f"  or run once with network access so the harness can download MNIST into {user_cache_dir() / 'mnist'}."
    )


def load_mnist(data: str | os.PathLike | None = None, env: Mapping[str, str] = os.environ) -> Mnist:
    """Load both MNIST splits through torchvision and decode them into tensors."""
    from torchvision.datasets import MNIST  # imported here: torchvision is slow to import

    source = resolve_source(data, env)
    if not source.download and not source.root.is_dir():
        raise _not_found(source, f"{source.root} is not a folder")
    splits = []
    for train in (True, False):
        try:
            ds = MNIST(str(source.root), train=train, download=source.download)
        except RuntimeError as e:  # torchvision: "Dataset not found" / "Error downloading ..."
            why = "the download failed (no network?)" if source.download else "the IDX files are missing or unreadable"
            raise _not_found(source, f"{why}: {e}") from None
        images = ds.data.to(torch.float32).div_(255.0).unsqueeze(1)
        splits += [images, ds.targets.to(torch.int64)]
    return Mnist(*splits, source=source, fingerprint=fingerprint(*splits))


def fingerprint(*tensors: Tensor) -> str:
    """A short content hash of tensors, for cache keys."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def subset(images: Tensor, labels: Tensor, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A deterministic subset of ``n`` examples (all of them when n is 0 or too large)."""
    if n <= 0 or n >= len(images):
        return images, labels
    keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return images[keep], labels[keep]


def shuffled_batches(images: Tensor, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """One epoch of shuffled mini-batches (the last one may be smaller, as DataLoader does)."""
    order = torch.randperm(len(images), generator=generator)
    for start in range(0, len(images), batch_size):
        yield images[order[start : start + batch_size]]


def first_of_each_label(labels: Tensor, wanted: list[int]) -> list[int]:
    """Index of the first example of each wanted label (deterministic picks for figures)."""
    picks = []
    for label in wanted:
        hits = (labels == label).nonzero()
        if len(hits) == 0:
            raise ValueError(f"no example with label {label}")
        picks.append(int(hits[0]))
    return picks


def pair_images(images: Tensor, labels: Tensor, pairs: list[tuple[int, int]]) -> Tensor:
    """The first image of each start and end label: [len(pairs), 2, C, H, W] (interpolation ends)."""
    starts = first_of_each_label(labels, [p[0] for p in pairs])
    ends = first_of_each_label(labels, [p[1] for p in pairs])
    return torch.stack([torch.stack([images[i], images[j]]) for i, j in zip(starts, ends, strict=False)])


class TensorMNIST(Dataset):
    """In-memory stand-in for ``torchvision.datasets.MNIST(transform=ToTensor())``:
    items are ``(image float32 [1, 28, 28] in [0, 1], int label)``."""

    def __init__(self, images: Tensor, labels: Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])
