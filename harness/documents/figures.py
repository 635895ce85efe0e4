"""The reports' figures, drawn with matplotlib from run artefacts and returned as PNG bytes.

Every function takes plain arrays (``harness.grading.artifacts``) and returns one PNG; the
documents embed them as ``data:`` URIs, so an HTML report is a single file. Image grids
are written pixel for pixel (each pixel a block, no smoothing) so a digit looks the same
on screen and in the PDF; their row labels (input / reconstruction, AE / VAE) are in the
documents' captions.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display; set before pyplot is imported
import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from harness.grading.artifacts import tile  # noqa: E402

DPI = 150
INK = "#1f2933"
ACCENT = "#c2410c"
SECOND = "#1d4ed8"
plt.rcParams.update(
    {
        "font.family": "DejaVu Sans",
        "font.size": 8,
        "axes.titlesize": 9,
        "axes.edgecolor": "#52606d",
        "axes.labelcolor": INK,
        "xtick.color": INK,
        "ytick.color": INK,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)


def to_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (tight bounding box); closes the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.04, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _show(ax, mosaic: np.ndarray, title: str = "") -> None:
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title)


def mosaic_png(mosaic: np.ndarray, scale: int = 4) -> bytes:
    """A grey mosaic as a PNG, each pixel a ``scale`` x ``scale`` block: sharp at any zoom, and
    no figure to lay out (an image grid costs milliseconds instead of a tenth of a second)."""
    big = mosaic.repeat(scale, axis=0).repeat(scale, axis=1)
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, big, cmap="gray", vmin=0, vmax=255, format="png")
    return buffer.getvalue()


def image_grid(images: np.ndarray, cols: int) -> bytes:
    """Samples as a ``cols``-wide grid (the handout's 4x4)."""
    return mosaic_png(tile(images, cols))


def reconstructions(inputs: np.ndarray, outputs: np.ndarray) -> bytes:
    """Test inputs in the top row, their reconstructions below."""
    return mosaic_png(tile(np.concatenate([inputs, outputs]), len(inputs)))


def training_curves(rec: np.ndarray | None, kl: np.ndarray | None) -> bytes:
    """Reconstruction loss and KL per iteration, two panels (raw values faint, a running mean on top)."""
    panels = [(v, t) for v, t in ((rec, "reconstruction loss"), (kl, "KL divergence")) if v is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 1.9), squeeze=False)
    for ax, (values, title) in zip(axes[0], panels, strict=False):
        it = np.arange(1, len(values) + 1)
        ax.plot(it, values, color=SECOND, alpha=0.25, linewidth=0.6)
        window = max(1, len(values) // 50)
        if window > 1:
            smooth = np.convolve(np.nan_to_num(values), np.ones(window) / window, mode="valid")
            ax.plot(it[window - 1 :], smooth, color=SECOND, linewidth=1.2)
        ax.set_title(title)
        ax.set_xlabel("iteration")
        finite = values[np.isfinite(values)]
        if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 50:
            ax.set_yscale("log")
    fig.tight_layout(w_pad=2.0)
    return to_png(fig)


def interpolation(ae: np.ndarray, vae: np.ndarray) -> bytes:
    """One comparison: the AE's path above the VAE's, same start and end images."""
    return mosaic_png(tile(np.concatenate([ae, vae]), len(ae)))


def side_by_side(left: np.ndarray, right: np.ndarray, cols: int, titles: tuple[str, str]) -> bytes:
    """Two sample grids next to each other (the student's and the reference's)."""
    fig, axes = plt.subplots(1, 2, figsize=(4.8, 2.55))
    for ax, images, title in zip(axes, (left, right), titles, strict=False):
        _show(ax, tile(images, cols), title)
    return to_png(fig)


def beta_search(
    betas: list[float], mse: list[float], fid: list[float], tuned: float | None, student: float | None
) -> bytes:
    """The reference's beta search: test MSE and sample FID against beta (log axis), with the
    reference's tuned beta and the student's (in the reference convention) marked."""
    fig, axes = plt.subplots(1, 2, figsize=(6.6, 2.1))
    for ax, values, title in zip(axes, (mse, fid), ("test MSE", "sample FID (MNIST classifier)"), strict=False):
        ax.plot(betas, values, "o-", color=SECOND, markersize=3, linewidth=1)
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("beta (reference convention)")
        # the student's line is wide and pale so the reference's dashed line stays visible on top of it
        if student is not None and student > 0:
            ax.axvline(student, color=ACCENT, linewidth=3.0, alpha=0.45, label=f"student {student:.3g}", zorder=1)
        if tuned is not None:
            ax.axvline(tuned, color=INK, linestyle="--", linewidth=0.9, label=f"reference tuned {tuned:.3g}", zorder=3)
    axes[0].legend(frameon=False, fontsize=7)
    fig.tight_layout(w_pad=2.0)
    return to_png(fig)


def kl_per_dimension(student: np.ndarray, reference: np.ndarray | None) -> bytes:
    """Mean KL of each latent dimension, sorted, the student's beside the reference's."""
    fig, ax = plt.subplots(figsize=(6.6, 1.9))
    x = np.arange(len(student))
    width = 0.42 if reference is not None else 0.8
    ax.bar(
        x - (width / 2 if reference is not None else 0), np.sort(student)[::-1], width, color=ACCENT, label="student"
    )
    if reference is not None:
        ax.bar(x + width / 2, np.sort(reference)[::-1], width, color="#9aa5b1", label="reference")
    ax.set_xlabel("latent dimension (sorted by KL)")
    ax.set_ylabel("KL (nats)")
    ax.legend(frameon=False, fontsize=7)
    return to_png(fig)


def embeddings(ae: np.ndarray | None, vae: np.ndarray | None, labels: np.ndarray) -> bytes:
    """AE codes and VAE posterior means of the test images, each on its first two principal
    components, coloured by digit."""
    panels = [(xy, t) for xy, t in ((ae, "AE codes"), (vae, "VAE posterior means")) if xy is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.0), squeeze=False)
    for ax, (xy, title) in zip(axes[0], panels, strict=False):
        n = min(len(xy), len(labels))
        points = ax.scatter(xy[:n, 0], xy[:n, 1], c=labels[:n], cmap="tab10", vmin=-0.5, vmax=9.5, s=3, linewidths=0)
        ax.set_title(title)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
    fig.colorbar(points, ax=axes[0].tolist(), ticks=range(10), label="digit", fraction=0.03)
    return to_png(fig)
