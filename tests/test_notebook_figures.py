"""Stored notebook figures: what their pixels show, and which write-up slot each one fills.

Fast tests on figures drawn the way the handout's cells draw them (matplotlib, Agg) and on
notebooks built from the handouts with outputs put in by hand; the write-ups made from notebooks
that really ran are in tests/test_stored_write_up.py.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from harness.config.assignment import load_assignment  # noqa: E402
from harness.submission.cells import map_roles  # noqa: E402
from harness.submission.contents import StoredFigure  # noqa: E402
from harness.submission.notebook import NotebookFile  # noqa: E402
from harness.submission.notebook_code import tuned_beta  # noqa: E402
from harness.submission.notebook_figures import checklist, place_figures, run_labels, shape_of, slot_names  # noqa: E402
from harness.submission.notebook_load import cells_of, stored_figures  # noqa: E402
from tests import notebooks  # noqa: E402

RNG = np.random.default_rng(0)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72)
    plt.close(fig)
    return buf.getvalue()


def _digits(n: int) -> np.ndarray:
    """Digit-like images: a bright blob on black, as MNIST shows."""
    x = np.zeros((n, 28, 28))
    for i in range(n):
        r, c = RNG.integers(8, 20, 2)
        x[i, r - 5 : r + 5, c - 3 : c + 3] = RNG.uniform(0.5, 1.0)
    return x


def _tiles(images: np.ndarray, cols: int, pad: int) -> np.ndarray:
    rows = -(-len(images) // cols)
    grid = np.ones((rows * (28 + pad) + pad, cols * (28 + pad) + pad))
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        grid[pad + r * (28 + pad) : pad + r * (28 + pad) + 28, pad + c * (28 + pad) : pad + c * (28 + pad) + 28] = im
    return grid


def samples_png() -> bytes:
    """vis_samples: make_grid(decoded[:16], nrow=4, pad_value=1.) on a 10x10 figure."""
    fig = plt.figure(figsize=(10, 10))
    plt.subplot(111).imshow(_tiles(_digits(16), 4, 2), cmap="gray")
    return _png(fig)


def reconstructions_png() -> bytes:
    """vis_reconstruction: five inputs above five reconstructions on a 20x50 figure."""
    fig = plt.figure(figsize=(20, 50))
    plt.subplot(111).imshow(np.concatenate([np.concatenate(list(_digits(5)), axis=1)] * 2, axis=0), cmap="gray")
    return _png(fig)


def strip_png(title: str = "Auto-Encoder") -> bytes:
    """interpolate_and_visualize: seven images in one row, padded, titled."""
    fig = plt.figure(figsize=(10, 10))
    plt.subplot(111).imshow(_tiles(_digits(7), 7, 2), cmap="gray")
    plt.title(title)
    return _png(fig)


def curves_png(panels: int = 2) -> bytes:
    """The VAE cell's two loss curves (subplots 121 and 122), or one plot, in matplotlib's default
    style as in Colab (the harness's own figures module restyles plots in this process)."""
    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        fig = plt.figure(figsize=(10, 5))
        for p in range(panels):
            ax = plt.subplot(1, panels, p + 1)
            ax.plot(np.exp(-np.linspace(0, 3, 80)) + RNG.uniform(0, 0.05, 80))
            ax.title.set_text(["Reconstruction Loss", "KL Loss"][p % 2])
        return _png(fig)


@pytest.mark.parametrize(
    ("make", "kind"),
    [(samples_png, "grid"), (reconstructions_png, "pairs"), (strip_png, "strip"), (curves_png, "curves")],
)
def test_the_shape_of_each_handout_figure_is_read_from_its_pixels(make, kind):
    assert shape_of(make()).kind == kind


def test_the_vae_curves_have_two_axes_and_a_single_plot_has_one():
    assert shape_of(curves_png(2)).panels == 2
    assert shape_of(curves_png(1)).panels == 1


def test_bytes_that_are_no_image_have_no_shape():
    assert shape_of(b"\x89PNG\r\n\x1a\n not really").kind == "other"
    assert shape_of(b"").kind == "other"


# --------------------------------------------------------------------------- slots


def _with_outputs(nb, outputs: dict[str, list[bytes]]):
    """``nb`` with image outputs put into the first code cell holding each anchor text."""
    for anchor, pngs in outputs.items():
        cell = next(c for c in nb.cells if c.cell_type == "code" and anchor in c.source)
        cell.outputs = [
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {"image/png": base64.b64encode(p).decode("ascii"), "text/plain": "<Figure>"},
            }
            for p in pngs
        ]
    return nb


def _place(nb, config: str):
    a = load_assignment(config)
    file = NotebookFile(path=Path("hw.ipynb"), notebook=nb, original_version="4.5")
    cells = cells_of(file)
    cell_map = map_roles(cells, a.notebook)
    figures, _ = stored_figures(file, cell_map)
    return a, place_figures(cells, cell_map, figures, a, tuned_beta(cells, cell_map))


def _viz_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip().startswith("# visualize VAE")]


@pytest.fixture(scope="module")
def figures() -> dict[str, bytes]:
    return {"grid": samples_png(), "pairs": reconstructions_png(), "strip": strip_png(), "curves": curves_png()}


def _full_2026(figures):
    nb = notebooks.complete("2026")
    _with_outputs(nb, {"def vis_samples(model):": [figures["grid"]]})
    runs = [c for c in nb.cells if c.cell_type == "code" and "vae_model = run_with_beta(" in c.source]
    for run, viz in zip(runs, _viz_cells(nb), strict=True):
        _set(run, [figures["curves"]])
        _set(viz, [figures["pairs"], figures["grid"]])
    _with_outputs(nb, {"def interpolate_and_visualize(": [figures["strip"], figures["strip"]]})
    return nb


def _set(cell, pngs: list[bytes]) -> None:
    cell.outputs = [
        {"output_type": "display_data", "metadata": {}, "data": {"image/png": base64.b64encode(p).decode("ascii")}}
        for p in pngs
    ]


@pytest.mark.skipif(not notebooks.HANDOUTS.is_dir(), reason=f"the handouts are not at {notebooks.HANDOUTS}")
def test_a_2026_notebook_with_every_output_fills_every_slot(figures):
    a, placement = _place(_full_2026(figures), "variant-b")
    assert placement.missing == {}
    assert set(placement.slots) == set(slot_names(a))
    assert placement.runs["beta-10"]["beta"] == 10.0 and placement.runs["tuned"]["epochs"] == 20.0
    assert placement.comparisons == [{"cell": placement.comparisons[0]["cell"], "start": 4, "end": 8}]


@pytest.mark.skipif(not notebooks.HANDOUTS.is_dir(), reason=f"the handouts are not at {notebooks.HANDOUTS}")
def test_figures_are_placed_by_what_they_show_not_by_their_order(figures):
    nb = _full_2026(figures)
    viz = _viz_cells(nb)[0]
    viz.outputs = list(reversed(viz.outputs))  # samples first, then reconstructions
    _, placement = _place(nb, "variant-b")
    assert placement.missing == {}
    assert placement.slots["beta-0/samples"].endswith("-0") and placement.slots["beta-0/reconstructions"].endswith("-1")


@pytest.mark.skipif(not notebooks.HANDOUTS.is_dir(), reason=f"the handouts are not at {notebooks.HANDOUTS}")
def test_two_sample_grids_for_one_run_leave_its_slot_empty_and_say_it_is_ambiguous(figures):
    nb = _full_2026(figures)
    _set(_viz_cells(nb)[0], [figures["pairs"], figures["grid"], figures["grid"]])
    _, placement = _place(nb, "variant-b")
    assert list(placement.missing) == ["beta-0/samples"]
    assert "does not guess" in placement.missing["beta-0/samples"]


@pytest.mark.skipif(not notebooks.HANDOUTS.is_dir(), reason=f"the handouts are not at {notebooks.HANDOUTS}")
def test_a_2020_notebook_holds_only_its_last_vae_run_and_the_others_are_reported_overwritten(figures):
    nb = notebooks.complete("2020")
    _with_outputs(
        nb,
        {
            "def vis_samples(model):": [figures["grid"]],
            "vae_model = VAE(nz, beta)": [figures["curves"]],
            "# visualize VAE": [figures["pairs"], figures["grid"]],
            "def interpolate_and_visualize(": [figures["strip"], figures["strip"]],
        },
    )
    a, placement = _place(nb, "variant-a")
    assert sorted(placement.missing) == sorted(
        f"{r}/{w}" for r in ("beta-0", "beta-10") for w in ("curves", "reconstructions", "samples")
    )
    lines = checklist(placement.missing, run_labels(a))
    assert len(lines) == 2
    assert lines[0].startswith("β = 0 training curves, reconstructions and samples: not in the notebook")
    assert "overwrote" in lines[0] and "without --stored" in lines[0] and "re-run cell" in lines[0]
    assert lines[1].startswith("β = 10 ")


@pytest.mark.skipif(not notebooks.HANDOUTS.is_dir(), reason=f"the handouts are not at {notebooks.HANDOUTS}")
def test_a_notebook_saved_without_outputs_says_so_for_every_slot():
    a, placement = _place(notebooks.stripped(notebooks.complete("2026")), "variant-b")
    assert set(placement.missing) == set(slot_names(a))
    assert all("saved without outputs" in why for why in placement.missing.values())


def test_a_stored_figure_key_names_its_cell_and_place():
    assert StoredFigure(29, "", 1, b"").key == "cell-29-1"
