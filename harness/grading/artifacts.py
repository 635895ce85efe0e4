"""Run artefacts: the images and curves a report shows, stored beside ``result.json``.

A training unit returns far more than a report needs (every test reconstruction, a
thousand prior samples). This module keeps what the documents show, so a report can be
rendered again later without retraining (``harness render``): one ``.npz`` file of plain
arrays, read back with ``allow_pickle=False`` (no code runs when it is loaded).

Keys (docs/result-schema.md, "Run artefacts"):

    test/inputs               uint8 [k, 1, H, W]   the first k test images (k = 5)
    test/labels               int64 [n]            labels of the evaluation images
    test/pairs                int64 [pairs, 2]     start and end digit of each interpolation
    test/grid                 int64 []             columns of the sample grids ([sampling] grid)
    run/<name>/samples        uint8 [n, 1, H, W]   decoded prior draws (the harness's fixed z; n = [sampling] n)
    run/<name>/reconstructions uint8 [k, 1, H, W]  reconstructions of test/inputs
    run/<name>/paths          uint8 [pairs, steps, 1, H, W]  interpolation frames
    run/<name>/curve_rec      float32 [iterations] reconstruction loss per iteration
    run/<name>/curve_kl       float32 [iterations] KL per iteration (VAEs)
    run/<name>/kl_per_dim     float32 [nz]         mean KL per latent dimension (VAEs)
    run/<name>/embedding      float32 [n, 2]       codes (AE) or posterior means (VAE), projected
                                                   on their first two principal components
                                                   (grade only; the AE and the tuned run)
    reference/<name>/samples  uint8 [n, 1, H, W]   the reference model's decode of the same z
    reference/<name>/kl_per_dim float32 [nz]
    stored/<key>              uint8 [bytes]        a notebook's stored figure, the PNG file's bytes
                                                   (key: cell-<cell>-<index>; result notebook.stored_figures)
    pdf/<page>-<index>        uint8 [h, w]         a hand-in PDF image's grey thumbnail (grade; result pdf_check)
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.io import write_bytes_atomic

if TYPE_CHECKING:  # rendering reads artefacts without importing torch (seconds saved per document)
    from torch import Tensor

SHOWN_INPUTS = 5  # the seed's "five test inputs above their reconstructions"


def tile(images: np.ndarray, cols: int, gap: int = 2) -> np.ndarray:
    """uint8 [N, C, H, W] as one grey [rows*(H+gap)-gap, cols*(W+gap)-gap] mosaic on white: how
    the documents draw an image grid, and what a hand-in PDF's copy of one is compared with."""
    n, _, h, w = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = img.mean(axis=0)
    return out


def stored_arrays(figures) -> dict[str, np.ndarray]:
    """A notebook's stored figures (``StoredFigure``) as ``stored/<key>`` arrays of their PNG bytes."""
    return {f"stored/{f.key}": np.frombuffer(f.png, dtype=np.uint8) for f in figures}


def to_u8(images: Tensor) -> np.ndarray:
    """Images in [0, 1] (NaN and inf made 0) as uint8, the way they are shown."""
    import torch

    x = images.detach().float().cpu().nan_to_num(0.0, 0.0, 0.0).clamp(0, 1)
    return x.mul(255).round().to(torch.uint8).numpy()


def project_2d(codes: Tensor) -> np.ndarray:
    """Codes [n, d] on their first two principal components (sign fixed so reruns match)."""
    import torch

    x = codes.detach().double().nan_to_num(0.0, 0.0, 0.0)
    x = x - x.mean(dim=0, keepdim=True)
    if x.shape[1] < 2 or not torch.isfinite(x).all():
        return np.zeros((len(x), 2), dtype=np.float32)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    axes = vh[:2].T
    xy = x @ axes
    signs = torch.sign(xy[xy.abs().argmax(dim=0), torch.arange(2)])
    return (xy * signs.where(signs != 0, torch.ones_like(signs))).float().numpy()


def test_arrays(images: Tensor, labels: Tensor, pairs: list, grid: int) -> dict[str, np.ndarray]:
    """The shared arrays: shown test inputs, the evaluation images' labels, the path ends' digits,
    the sample grid's columns."""
    return {
        "test/inputs": to_u8(images[:SHOWN_INPUTS]),
        "test/labels": labels.numpy().astype(np.int64),
        "test/pairs": np.asarray(pairs, dtype=np.int64).reshape(-1, 2),
        "test/grid": np.asarray(grid, dtype=np.int64),
    }


def run_arrays(
    name: str,
    value: dict,
    kind: str,
    nz: int,
    n_samples: int,
    kl_per_dim: list[float] | None = None,
    embed: bool = False,
) -> dict[str, np.ndarray]:
    """What the documents show of one training unit's returned value (``probes.probe_train``);
    ``embed`` adds the 2-D projection of its test codes (the instructor report shows the AE's and the tuned VAE's)."""
    p = f"run/{name}/"
    out = {
        p + "samples": to_u8(value["samples"][:n_samples]),
        p + "reconstructions": to_u8(value["reconstructions"][:SHOWN_INPUTS]),
        p + "paths": to_u8(value["paths"]),
    }
    curves = (value.get("run") or {}).get("curves") or {}
    for key in ("rec", "kl"):
        if curves.get(key):
            out[p + f"curve_{key}"] = np.asarray(
                [v if math.isfinite(v) else np.nan for v in curves[key]], dtype=np.float32
            )
    q = value.get("q")
    if embed and hasattr(q, "dim") and q.dim() == 2 and len(q) > 2:
        out[p + "embedding"] = project_2d(q if kind == "ae" else q[:, :nz])
    if kl_per_dim is not None:
        out[p + "kl_per_dim"] = np.asarray(kl_per_dim, dtype=np.float32)
    return out


def write_artifacts(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic, like result.json: a crash leaves the old file or the new one."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def load_artifacts(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an artefacts file; no pickles, so loading one runs no code."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
