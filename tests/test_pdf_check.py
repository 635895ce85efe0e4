"""The handed-in PDF write-up: reading it (harness.submission.handin_pdf) and checking it against
the notebook's figures, tuned beta, interpolation pair and answers (harness.grading.pdf_check).

Figures are drawn from real digits of the MNIST stand-in (HARNESS_DATA, else the shared
stand-in beside the checkout; skipped when neither is there), read straight from its IDX file
(torch's import would be most of this file's time). PDFs come from tests/handin_pdfs.py."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from harness.grading.pdf_check import (
    MATCH_THRESHOLD,
    Candidate,
    answer_coverage,
    check_pdf,
    similarity,
    stated_betas,
    stated_pairs,
)
from harness.submission.handin_pdf import GREY_SIDE, HandinPdf, read_pdf
from tests import handin_pdfs as make

ROOT = Path(__file__).resolve().parents[1]

ANSWERS = {
    "q1": "The KL term pulls every posterior towards the prior, so with a large beta the latent code "
    "carries little information about the input and the reconstructions become blurry averages.",
    "q2": "Sampling from the prior works only when the aggregate posterior covers it; with beta = 0 "
    "the encoder places codes anywhere, so decoded prior samples do not look like digits.",
}
TUNED_BETA, TUNED_CELL, PAIR = 0.075, 31, (4, 8)


def _test_digits() -> tuple[np.ndarray, np.ndarray]:
    root = Path(os.environ.get("HARNESS_DATA") or ROOT.parent / "shared" / "data" / "mnist-standin")
    raw = root / "MNIST" / "raw"
    images, labels = raw / "t10k-images-idx3-ubyte", raw / "t10k-labels-idx1-ubyte"
    if not (images.is_file() and labels.is_file()):
        pytest.skip(f"no MNIST stand-in at {raw} (set HARNESS_DATA to a torchvision MNIST root)")
    x = np.frombuffer(images.read_bytes(), dtype=np.uint8, offset=16).reshape(-1, 28, 28) / 255.0
    y = np.frombuffer(labels.read_bytes(), dtype=np.uint8, offset=8)
    return x, y


@pytest.fixture(scope="module")
def figures() -> dict[str, bytes]:
    """The notebook's stored figures (PNG), by name, and one of a run the notebook does not hold."""
    x, y = _test_digits()
    rng = np.random.default_rng(7)
    pick = [rng.choice(len(x), 16, replace=False) for _ in range(4)]
    four, eight = np.flatnonzero(y == 4)[0], np.flatnonzero(y == 8)[0]
    return {
        "beta-0/samples": make.samples_png(x[pick[0]], "beta = 0"),
        "tuned/samples": make.samples_png(x[pick[1]], "tuned beta"),
        "tuned/reconstruction": make.reconstruction_png(x[pick[2][:5]], make.blurred(x[pick[2][:5]], 1)),
        "interpolation/vae": make.interpolation_png(x[four], x[eight], "Interpolation from 4 to 8"),
        "tuned/curves": make.curves_png(3),
        "other-run/samples": make.samples_png(x[pick[3]], "tuned beta"),
    }


@pytest.fixture(scope="module")
def candidates(figures) -> list[Candidate]:
    cells = {"beta-0/samples": 25, "tuned/samples": 31, "tuned/reconstruction": 29, "interpolation/vae": 34}
    cells["tuned/curves"] = 30
    return [
        Candidate("notebook", f"cell-{cell}-0", cell, slot, make.grey_of(figures[slot])) for slot, cell in cells.items()
    ]


def write_up(tmp: Path, figures, beta: str = "My tuned β = 0.075.", pair: str = "from 4 to 8", answers=None) -> Path:
    """A write-up as a student makes it: screenshots of each figure (the browser's 2x drawing,
    one a JPEG, one cut tight, one shrunk), the tuned beta, and the answers; the interpolation on
    page 2 with its caption."""
    answers = ANSWERS if answers is None else answers
    screen = {k: make.rescaled(v, 2.0) for k, v in figures.items()}
    page1 = [
        (screen["beta-0/samples"], "Samples with beta = 0"),
        (make.as_jpeg(screen["tuned/samples"], 50), "Samples of the tuned VAE"),
        (make.rescaled(figures["tuned/reconstruction"], 0.7), "Reconstructions"),
        (make.with_margin(screen["tuned/curves"]), "Training curves"),
        ("PAGE", "PAGE"),
    ]
    text = [beta, *[f"Answer {q}: {a}" for q, a in answers.items()]]
    page2 = [(make.cropped_tight(screen["interpolation/vae"]), f"The interpolation {pair}.")]
    return make.figures_pdf(tmp / "write-up.pdf", page1 + page2, text, widths=[45, 45, 60, 90, 0, 80])


def check(path: Path, candidates, answers=None):
    return check_pdf(read_pdf(path), candidates, TUNED_BETA, TUNED_CELL, PAIR, ANSWERS if answers is None else answers)


# ---------------------------------------------------------------------------------------------
# matching figures


@pytest.fixture(scope="module")
def good(tmp_path_factory, figures, candidates):
    return check(write_up(tmp_path_factory.mktemp("good"), figures), candidates)


def test_a_faithful_write_up_matches_every_figure_to_its_cell_and_raises_no_flag(good):
    assert good.error == "" and good.pages >= 2
    assert good.flags == ()
    shown = [(f.matched, f.slot) for f in good.figures]
    assert shown == [
        ("notebook", "beta-0/samples"),
        ("notebook", "tuned/samples"),  # a JPEG
        ("notebook", "tuned/reconstruction"),  # shrunk
        ("notebook", "tuned/curves"),  # with margins and output text
        ("notebook", "interpolation/vae"),  # cut tight, on the last page
    ]
    assert good.figures[-1].page == good.pages
    assert all(f.similarity >= MATCH_THRESHOLD for f in good.figures)
    assert all(max(f.thumbnail.shape) <= 96 for f in good.figures)


def test_the_json_holds_no_arrays_and_names_each_figure(good):
    data = json.loads(json.dumps(good.to_json()))
    assert set(data) == {"file", "pages", "figures", "flags", "notes", "error"}
    assert data["figures"][0] == {
        "page": 1,
        "index": 0,
        "matched": "notebook",
        "cell": 25,
        "key": "cell-25-0",
        "slot": "beta-0/samples",
        "similarity": pytest.approx(good.figures[0].similarity, abs=1e-4),
    }


def test_samples_of_another_run_match_nothing_and_are_flagged(tmp_path, figures, candidates):
    path = make.figures_pdf(tmp_path / "w.pdf", [(make.rescaled(figures["other-run/samples"], 2.0), "Samples")], [])
    result = check(path, candidates, answers={})
    (figure,) = result.figures
    assert figure.matched == "none" and figure.similarity < MATCH_THRESHOLD
    assert len(result.flags) == 1
    assert result.flags[0].startswith("image 1 on page 1 matches no figure of the notebook or the re-run")
    assert "samples" in result.flags[0]  # what it came closest to


def test_a_rerun_figure_matches_when_the_notebook_has_none_like_it(tmp_path, figures, candidates):
    rerun = Candidate("rerun", "other/samples", None, "tuned/samples", make.grey_of(figures["other-run/samples"]))
    path = make.figures_pdf(tmp_path / "w.pdf", [(make.rescaled(figures["other-run/samples"], 2.0), "Samples")], [])
    (figure,) = check(path, [*candidates, rerun], answers={}).figures
    assert (figure.matched, figure.key, figure.cell) == ("rerun", "other/samples", None)


def test_similarity_tells_the_same_figure_from_another_and_a_grid_from_a_strip(figures):
    same = make.grey_of(figures["tuned/samples"])
    assert similarity(same, same) == pytest.approx(1.0)
    assert similarity(same, make.grey_of(make.as_jpeg(make.rescaled(figures["tuned/samples"], 1.6), 40))) > 0.9
    assert similarity(same, make.grey_of(figures["other-run/samples"])) < MATCH_THRESHOLD
    assert similarity(same, make.grey_of(figures["interpolation/vae"])) < 0.3
    blank = np.full((50, 50), 255, np.uint8)
    assert 0.0 <= similarity(blank, same) <= 1.0


def test_a_coloured_plot_pasted_unchanged_into_the_pdf_matches_its_notebook_figure_as_itself(tmp_path):
    """The notebook's candidate and the PDF's image go through one grey conversion and one
    resampling: a plot wider than GREY_SIDE, its lines blue, scores as itself (a second conversion
    cost this one 0.02, and a handout's curves 0.07 and their match)."""
    from harness.grading.handin import notebook_candidates
    from harness.submission.contents import NotebookFacts, StoredFigure, Submission

    png = make.curves_png(3, dpi=100)  # 900 pixels wide
    facts = NotebookFacts("n.ipynb", "variant-a", "4.5", figures=(StoredFigure(30, "vae", 0, png, "tuned/curves"),))
    (candidate,) = notebook_candidates(Submission("n", tmp_path, kind="notebook", notebook=facts))
    (image,) = read_pdf(make.figures_pdf(tmp_path / "w.pdf", [(png, "Training curves")], [])).images
    assert max(image.grey.shape) == GREY_SIDE
    assert similarity(image.grey, candidate.grey) > 0.999


# ---------------------------------------------------------------------------------------------
# what the text states: each mismatch raises its flag and only it


def test_a_wrong_tuned_beta_raises_exactly_its_flag(tmp_path, figures, candidates):
    result = check(write_up(tmp_path, figures, beta="My tuned beta = 1e-4."), candidates)
    assert result.flags == (
        "the PDF states a tuned beta of 0.0001 (page 1) but the notebook's code uses 0.075 (cell 31)",
    )


def test_no_stated_beta_is_a_note_not_a_flag(tmp_path, figures, candidates):
    result = check(write_up(tmp_path, figures, beta="I tried several values."), candidates)
    assert result.flags == () and "no tuned beta stated in the PDF" in result.notes


def test_a_wrong_digit_pair_beside_the_interpolation_raises_exactly_its_flag(tmp_path, figures, candidates):
    result = check(write_up(tmp_path, figures, pair="from 3 → 9"), candidates)
    assert result.flags == (
        f"page {result.pages} shows the interpolation of cell 34 between digits 3 and 9, "
        "but the notebook interpolates between 4 and 8",
    )


def test_an_edited_answer_raises_exactly_its_flag(tmp_path, figures, candidates):
    edited = dict(ANSWERS, q1=ANSWERS["q1"].replace("carries little information about", "ignores most of"))
    result = check(write_up(tmp_path, figures, answers=edited), candidates)
    assert len(result.flags) == 1
    assert result.flags[0].startswith("the answer to q1 in the PDF differs from the notebook's (")
    assert "% of its words match)" in result.flags[0]


def test_a_missing_answer_raises_exactly_its_flag(tmp_path, figures, candidates):
    result = check(write_up(tmp_path, figures, answers={"q1": ANSWERS["q1"]}), candidates)
    assert result.flags == ("the answer to q2 is not in the PDF",)


@pytest.mark.parametrize(
    "text, value",
    [
        ("tuned β = 0.075", 0.075),
        ("My tuned beta = 1e-4", 1e-4),
        ("The tuned value for β: 2", 2.0),
        ("β (tuned) = 3", 3.0),
        ("the chosen beta is 0.5.", 0.5),
        ("Tuned β = 5 × 10^-3", 5e-3),
    ],
)
def test_stated_betas_reads_the_usual_phrasings(text, value):
    assert stated_betas(text) == [pytest.approx(value)]


def test_stated_betas_ignores_betas_that_are_not_the_tuned_one():
    assert stated_betas("With beta = 10 the samples blur; beta = 0 is an auto-encoder.") == []


@pytest.mark.parametrize("text", ["from 4 to 8", "4 -> 8", "4 → 8", "4 to 8", "digits 4 and 8", "between 4 and 8"])
def test_stated_pairs_reads_the_usual_phrasings(text):
    assert stated_pairs(f"The interpolation {text}.") == [(4, 8)]


def test_stated_pairs_ignores_numbers_that_are_not_digits():
    assert stated_pairs("Trained 10 to 20 epochs at 0.5 to 1.5 seconds each.") == []


def test_answer_coverage_survives_line_breaks_hyphens_and_page_furniture():
    answer = ANSWERS["q1"]
    pdf = (
        "Question 1\n" + answer.replace("information", "infor-\nmation").replace("prior, so", "prior,\n3\nso") + "\nQ2"
    )
    assert answer_coverage(answer, pdf) == 1.0
    assert answer_coverage(answer, "An unrelated text about the decoder and the prior.") < 0.5


def test_answer_coverage_leaves_out_latex_math_the_pdf_shows_rendered():
    answer = (
        "Minimising $\\mathbb{E}[\\log p(x|z)] - \\beta D_{KL}(q(z|x) \\| p(z))$ trades reconstruction "
        "for a smooth latent space."
    )
    pdf = "Minimising E[log p(x|z)] − βDKL(q(z|x)‖p(z)) trades reconstruction for a smooth latent space."
    assert answer_coverage(answer, pdf) == 1.0


# ---------------------------------------------------------------------------------------------
# bad input: read_pdf never raises and says why


def test_a_text_file_named_pdf_is_not_a_pdf(tmp_path):
    pdf = read_pdf(make.not_a_pdf(tmp_path / "write-up.pdf"))
    assert pdf.pages == 0 and pdf.images == ()
    assert pdf.error.startswith("not a PDF (the file starts with 'My write-up")


def test_an_encrypted_pdf_asks_for_one_without_a_password(tmp_path):
    pdf = read_pdf(make.encrypted_pdf(tmp_path / "w.pdf"))
    assert pdf.error == "the PDF is encrypted: hand it in without a password"


def test_a_pdf_without_pages_says_so(tmp_path):
    assert read_pdf(make.empty_pdf(tmp_path / "w.pdf")).error == "the PDF has no pages"


def test_a_pdf_that_cannot_be_read_gives_one_flag(tmp_path, candidates):
    result = check(make.not_a_pdf(tmp_path / "w.pdf"), candidates)
    assert result.error and result.figures == ()
    assert result.flags == (f"the PDF could not be checked: {result.error}",)


def test_a_damaged_pdf_is_an_error_not_an_exception(tmp_path):
    path = tmp_path / "w.pdf"
    path.write_bytes(b"%PDF-1.7\n" + os.urandom(2000))
    pdf = read_pdf(path)
    assert isinstance(pdf, HandinPdf) and (pdf.error or pdf.pages >= 0)


def test_only_the_first_pages_of_a_long_pdf_are_read_in_bounded_time(tmp_path):
    path = make.many_pages_pdf(tmp_path / "w.pdf", 200)
    started = time.monotonic()
    pdf = read_pdf(path, max_pages=40)
    assert time.monotonic() - started < 10
    assert pdf.pages == 200 and len(pdf.page_texts) == 40
    assert "only the first 40 of 200 pages were read" in pdf.notes


def test_a_cmyk_image_is_read_in_grey(tmp_path, figures):
    grey = make.grey_of(figures["tuned/samples"])
    pdf = read_pdf(make.cmyk_pdf(tmp_path / "w.pdf", grey))
    (image,) = pdf.images
    assert image.grey.dtype == np.uint8 and max(image.grey.shape) <= GREY_SIDE
    assert similarity(image.grey, grey) > 0.95


def test_a_soft_masked_image_is_composited_on_white(tmp_path, figures):
    grey = make.grey_of(figures["tuned/samples"])
    pdf = read_pdf(make.soft_mask_pdf(tmp_path / "w.pdf", grey))
    (image,) = pdf.images
    assert image.grey[0, 0] > 245  # transparent: white, not the black of the colour channels
    assert similarity(image.grey, grey) > 0.95


def test_an_image_declaring_a_bomb_size_is_skipped_with_a_note(tmp_path):
    pdf = read_pdf(make.bomb_pdf(tmp_path / "w.pdf"))
    assert pdf.error == "" and pdf.images == ()
    assert any("skipped, it declares 100000 x 100000 pixels" in n for n in pdf.notes)


def test_tiny_images_are_skipped_and_the_image_cap_is_noted(tmp_path, figures):
    from PIL import Image

    tiny = io.BytesIO()
    Image.new("L", (12, 12), 0).save(tiny, "PNG")
    shots = [(tiny.getvalue(), "logo")] + [(figures[k], k) for k in ("tuned/samples", "tuned/curves", "beta-0/samples")]
    pdf = read_pdf(make.figures_pdf(tmp_path / "w.pdf", shots, []), max_images=2)
    assert [i.index for i in pdf.images] == [0, 1]
    assert similarity(pdf.images[0].grey, make.grey_of(figures["tuned/samples"])) > 0.95
    assert [n for n in pdf.notes if n.startswith("only the first 2 images were read: those after them, from page")]


def test_check_pdf_accepts_a_pdf_with_no_candidates_to_compare(tmp_path, figures):
    pdf = read_pdf(make.figures_pdf(tmp_path / "w.pdf", [(figures["tuned/samples"], "Samples")], []))
    result = check_pdf(pdf, [], None, None, None, {})
    assert result.flags == ()
    assert "no figures of the notebook or the re-run to compare the PDF's images with" in result.notes
    assert dataclasses.asdict(result)["figures"][0]["matched"] == "none"


@pytest.mark.parametrize("mode", ["1", "P", "LA", "RGB"])
def test_bilevel_palette_and_grey_alpha_images_are_read_in_grey(tmp_path, figures, mode):
    from PIL import Image

    grey = make.grey_of(figures["tuned/samples"])
    data = io.BytesIO()
    Image.fromarray(grey, "L").convert(mode).save(data, "PNG")
    (image,) = read_pdf(make.figures_pdf(tmp_path / "w.pdf", [(data.getvalue(), mode)], [])).images
    assert similarity(image.grey, grey) > 0.9


def test_a_16_bit_image_is_scaled_to_8_bits(tmp_path):
    grey = (np.indices((60, 80)).sum(axis=0) % 40 * 6).astype(np.uint8)
    data = (grey.astype(np.uint16) * 257).astype(">u2").tobytes()
    (image,) = read_pdf(make.raw_image_pdf(tmp_path / "w.pdf", 80, 60, data, bits=16)).images
    assert np.abs(image.grey.astype(int) - grey).max() <= 1


def test_an_image_nothing_can_decode_is_skipped_with_a_note(tmp_path):
    path = make.raw_image_pdf(tmp_path / "w.pdf", 80, 60, b"not jbig2" * 20, bits=1, filter_name="/JBIG2Decode")
    pdf = read_pdf(path)
    assert pdf.error == "" and pdf.images == ()
    assert len(pdf.notes) == 1 and pdf.notes[0].startswith("page 1 image 1: JBIG2 could not be decoded (")


def test_a_notebook_figure_is_preferred_to_an_equal_rerun_figure(tmp_path, figures, candidates):
    rerun = Candidate("rerun", "tuned/samples", None, "tuned/samples", make.grey_of(figures["tuned/samples"]))
    path = make.figures_pdf(tmp_path / "w.pdf", [(make.rescaled(figures["tuned/samples"], 2.0), "Samples")], [])
    (figure,) = check(path, [rerun, *candidates], answers={}).figures
    assert (figure.matched, figure.cell, figure.slot) == ("notebook", 31, "tuned/samples")


def test_a_pdf_that_inflates_past_the_memory_cap_costs_only_its_own_check(tmp_path):
    """A content stream of a few MB that inflates to 1 GB: reading it stops at pypdf's
    decompression limit or at the child process's address-space cap, with a note or an error
    saying so; the grading process's memory is untouched."""
    import resource

    from harness.grading.handin import read_pdf_isolated
    from tests.handin_pdfs import inflating_pdf

    path = inflating_pdf(tmp_path / "bomb.pdf", megabytes=1024)
    assert path.stat().st_size < 8 * 2**20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pdf = read_pdf_isolated(path, memory_mb=400)
    said = (pdf.error + " ".join(pdf.notes)).lower()
    assert "limit" in said or "memory" in said, (pdf.error, pdf.notes)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # this process: untouched


def test_a_plot_without_its_top_and_right_spines_still_matches_its_screenshot():
    """A restyled plot (seaborn-like: left and bottom spines only) crops to all its ink, not to
    the one spine that outweighs the curves."""
    import matplotlib

    from harness.grading.pdf_check import MATCH_THRESHOLD, similarity
    from tests.handin_pdfs import curves_png, grey_of, rescaled

    with matplotlib.rc_context({"axes.spines.top": False, "axes.spines.right": False}):
        styled = {k: v for k, v in matplotlib.rcParams.items() if k.startswith("axes.spines")}
        png = _styled_curves(styled)
    assert similarity(grey_of(rescaled(png, 0.7)), grey_of(png)) >= MATCH_THRESHOLD
    assert similarity(grey_of(png), grey_of(curves_png(seed=7))) < MATCH_THRESHOLD


def _styled_curves(style: dict) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(3)
    steps = np.arange(300)
    with matplotlib.rc_context(style):
        fig = plt.figure(figsize=(9.0, 3.2))
        for i in range(2):
            ax = fig.add_subplot(1, 2, i + 1)
            ax.plot(steps, 60 + 140 * np.exp(-steps / 50) + rng.normal(0, 3, steps.size))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
        plt.close(fig)
    return buffer.getvalue()
