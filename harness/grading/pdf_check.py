"""The handed-in PDF write-up checked against the notebook and the harness's re-run.

Students make the PDF by hand from screenshots of their notebook's figures. :func:`check_pdf`
matches each image of the PDF (``harness.submission.handin_pdf``) to the figure it copies and
reads what the PDF's text states, then lists the mismatches as flags, one sentence each:

* ``image N on page P matches no figure of the notebook or the re-run (best similarity S, closest:
  ...)``: an image that is a copy of no candidate figure (N counts from 1 on its page). Not raised
  when there are no candidates at all (a note says so instead).
* ``the PDF states a tuned beta of X (page P) but the notebook's code uses Y (cell C)``: the
  text states a tuned beta (:data:`BETA_STATEMENT`) that is not the code's (each statement is
  compared; the first that differs is named). Not stated at all: a note, not a flag.
* ``page P shows the interpolation of cell C between digits A and B, but the notebook
  interpolates between X and Y``: on a page holding an image matched to a notebook
  interpolation figure, the text names digit pairs (:data:`DIGIT_PAIRS`), none of them the
  code's ``pair`` (in either order).
* ``the answer to Q in the PDF differs from the notebook's (N % of its words match)`` and
  ``the answer to Q is not in the PDF``: by word coverage (:func:`answer_coverage`) at
  :data:`ANSWER_SAME` and :data:`ANSWER_PRESENT`.
* ``the PDF could not be checked: ...``: the only flag when the PDF could not be read.

Similarity (:func:`similarity`) of two grey images (white = 255), in [0, 1]:

1. each is cropped to its content: the first to the last row (column) holding at least
   :data:`CONTENT_SHARE` of the fullest row's (column's) count of pixels darker than
   :data:`WHITE`; that is a figure's image grid or axes box, without its tick labels, title or
   the screenshot's margins;
2. both crops are resized (box filter) to one shape of about :data:`AREA` pixels in their mean
   aspect ratio, the shorter side at least :data:`MIN_SHORT`;
3. they are correlated tile by tile (:data:`TILE` pixels a side; Pearson's r per tile, the mean
   weighted by the tiles' contrast, tiles flat in both left out: SSIM's structure term), so the
   layout every figure of a kind shares (a grid's padding, a plot's frame) weighs less than the
   digits; the best over a few insets of either crop (:data:`INSETS`, vertical and horizontal
   apart) aligns a screenshot cut tighter or looser than the stored figure;
4. that, clipped at 0, is multiplied by the aspect term: the two crops' aspect ratios, the smaller
   over the larger, divided by :data:`ASPECT_TOLERANCE`, capped at 1; so a 4x4 grid never
   matches a 1x7 strip (a pair whose aspect term alone is under :data:`MATCH_THRESHOLD` is not
   aligned).

:data:`MATCH_THRESHOLD` is calibrated by ``benchmarks/pdf_similarity.py`` (its docstring records
the table): handout-style figures of real digits, screenshot as students do (the browser's 2x
drawing, shrunk, JPEG, cut tight, with margins), read back from a WeasyPrint PDF, the stored
figures read as the grader reads them. Over three seeds the same figure scored at least 0.950, a
different figure of the same kind at most 0.876 (another run's training curves; sample grids at
most 0.875, with the same digit classes in the same places, 0.79 with other digits): 0.91 lies
between. A notebook's figure and the PDF's images are read in grey by one function
(``handin_pdf.to_grey``), so a figure pasted unchanged scores 1. Reconstruction strips of the
same inputs by two models are not told apart (0.99): the best candidate wins.
"""

from __future__ import annotations

import difflib
import math
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from harness.submission.handin_pdf import HandinPdf

AREA = 48 * 48  # pixels two crops are compared at, in their mean aspect
MIN_SHORT = 24  # ... the shorter side at least this: a 1x7 strip's digits keep their shapes
WHITE = 230  # a grey level at or above this is background
MIN_CROP = 0.15  # a crop thinner than this share of the image is one line, not the content
CONTENT_SHARE = 0.5  # a row (column) is content when it holds this share of the fullest row's dark pixels
TILE = 16  # pixels a side of the tiles correlated
FLAT = 4.0  # a tile whose grey levels vary less than this (standard deviation) is flat
INSETS = (0.0, 0.0075, 0.015, 0.0225, 0.03, 0.045)  # shares of a crop's height (width) cut off each side when aligning
ASPECT_TOLERANCE = 0.8  # crops whose aspect ratios differ by less than 1/0.8 are not penalised
MATCH_THRESHOLD = 0.91  # calibrated by benchmarks/pdf_similarity.py
TIE_MARGIN = 0.01  # a notebook figure within this of the best re-run figure is preferred
THUMB_SIDE = 96
ANSWER_SAME = 0.97  # word coverage from which an answer is the notebook's
ANSWER_PRESENT = 0.5  # below this, the answer is not in the PDF

_NUMBER = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:\s*e\s*[-+]?\s*\d+)?(?:\s*[x×*·]\s*10\s*\^?\s*\(?[-+]?\d+\)?)?)"
_BETA = r"(?:β|beta)"
# "tuned β = 0.075", "my tuned beta = 1e-4", "tuned value for β: 2", "the chosen beta is 0.5",
# "β (tuned) = 3", "β_tuned = 3", "beta tuned: 3", over NFKC-normalised, lowercased text.
BETA_STATEMENT = re.compile(
    rf"(?:(?:tuned|chosen|selected|best|final)\b[^\n.=:]{{0,30}}?{_BETA}\b[^\n\d=:]{{0,12}}?"
    rf"|{_BETA}\s*(?:_\s*|\(\s*)?(?:tuned|chosen|best)\)?\s*)"
    rf"(?:=|:|≈|is|of|was|to be|to)\s*{_NUMBER}",
    re.IGNORECASE,
)
# "from 4 to 8", "4 -> 8", "4 → 8", "4 to 8", "digits 4 and 8", "between 4 and 8": single digits.
DIGIT_PAIRS = re.compile(
    r"(?<![\d.,])(\d)\s*(?:->|→|⟶|⇒|=>|–>|—>|to)\s*(\d)(?!\d|[.,]\d)"
    r"|(?:digits?|between)\s+(\d)\s*(?:and|&|,)\s*(\d)(?!\d|[.,]\d)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Candidate:
    """A figure an image of the PDF may be a copy of."""

    source: str  # "notebook" | "rerun"
    key: str  # "cell-29-1", "tuned/samples"
    cell: int | None  # the notebook cell (None for re-run figures)
    slot: str  # what it shows, "beta-0/samples", "interpolation/vae"; "" if unknown
    grey: np.ndarray = field(repr=False)  # uint8, white = 255

    def describe(self) -> str:
        """How a flag names it: "notebook cell 29 figure 2 (beta-0/samples)"."""
        if self.source == "notebook" and self.cell is not None:
            index = self.key.rsplit("-", 1)[-1]
            where = (
                f"notebook cell {self.cell} figure {int(index) + 1}"
                if index.isdigit()
                else f"notebook cell {self.cell}"
            )
        else:
            where = f"{self.source} figure {self.key}"
        return f"{where} ({self.slot})" if self.slot else where


@dataclass(frozen=True)
class PdfFigure:
    """One image of the PDF and the candidate it copies, if any."""

    page: int
    index: int
    matched: str  # "notebook" | "rerun" | "none"
    cell: int | None
    key: str  # the candidate's key, also the closest one when "none"
    slot: str
    similarity: float  # the best similarity found (also when "none")
    thumbnail: np.ndarray = field(repr=False)  # uint8 grey, longest side <= THUMB_SIDE


@dataclass(frozen=True)
class PdfCheck:
    """The PDF write-up against the notebook: its figures, mismatches (flags) and notes."""

    file: str
    pages: int
    figures: tuple[PdfFigure, ...] = ()
    flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    error: str = ""

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "pages": self.pages,
            "figures": [
                {
                    "page": f.page,
                    "index": f.index,
                    "matched": f.matched,
                    "cell": f.cell,
                    "key": f.key,
                    "slot": f.slot,
                    "similarity": round(f.similarity, 4),
                }
                for f in self.figures
            ],
            "flags": list(self.flags),
            "notes": list(self.notes),
            "error": self.error,
        }


# ---------------------------------------------------------------------------------------------
# similarity


@dataclass(frozen=True)
class _Signature:
    crop: np.ndarray  # the content crop, uint8
    aspect: float  # its width / height
    resized: dict = field(default_factory=dict, compare=False, repr=False)  # (inset, shape) -> pixels


def content_box(grey: np.ndarray) -> tuple[int, int, int, int]:
    """The crop (top, bottom, left, right; exclusive ends) holding the image's main content: the
    first to the last row (column) with at least CONTENT_SHARE of the fullest row's (column's)
    non-white pixels; every non-white row and column when that crop is thinner than MIN_CROP of
    the image (one spine outweighing a whole plot). The whole image when it is blank."""
    dark = np.asarray(grey) < WHITE
    rows, cols = dark.sum(axis=1), dark.sum(axis=0)
    if rows.max(initial=0) == 0:
        return 0, grey.shape[0], 0, grey.shape[1]
    r = np.flatnonzero(rows >= CONTENT_SHARE * rows.max())
    c = np.flatnonzero(cols >= CONTENT_SHARE * cols.max())
    h, w = grey.shape
    if r[-1] + 1 - r[0] < MIN_CROP * h or c[-1] + 1 - c[0] < MIN_CROP * w:
        # one line outweighs the rest (a plot with only its left and bottom spines): all the ink instead
        r, c = np.flatnonzero(rows), np.flatnonzero(cols)
    return int(r[0]), int(r[-1]) + 1, int(c[0]), int(c[-1]) + 1


def _signature(grey: np.ndarray) -> _Signature:
    grey = np.asarray(grey)
    if grey.ndim == 3:  # colour passed by mistake: its mean is grey enough
        grey = grey[..., :3].mean(axis=2)
    grey = np.clip(grey, 0, 255).astype(np.uint8) if grey.dtype != np.uint8 else grey
    if grey.ndim != 2 or grey.size == 0:  # nothing to compare: a white pixel matches nothing
        grey = np.full((1, 1), 255, np.uint8)
    top, bottom, left, right = content_box(grey)
    crop = np.ascontiguousarray(grey[top:bottom, left:right])
    return _Signature(crop, (right - left) / max(1, bottom - top))


def _pixels(sig: _Signature, inset: tuple[float, float], shape: tuple[int, int]) -> np.ndarray:
    """The crop, ``inset`` (of its height, of its width) cut off each side, resized to ``shape`` (h, w)."""
    key = (inset, shape)
    if key not in sig.resized:
        from PIL import Image

        h, w = sig.crop.shape
        dy, dx = round(h * inset[0]), round(w * inset[1])
        crop = sig.crop[dy : h - dy, dx : w - dx] if h - 2 * dy > 0 and w - 2 * dx > 0 else sig.crop
        small = Image.fromarray(np.ascontiguousarray(crop), "L").resize((shape[1], shape[0]), Image.Resampling.BOX)
        sig.resized[key] = np.asarray(small, dtype=np.float64)
    return sig.resized[key]


def _local_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """The mean Pearson correlation of TILE x TILE tiles, weighted by their contrast (SSIM's
    structure term, per tile): structure shared by every figure of a kind (a grid's padding,
    dark cells, a plot's frame) counts less than it would in one global correlation. Tiles flat
    in both images are left out; flat in one only, they count 0."""
    h, w = (x.shape[0] // TILE) * TILE, (x.shape[1] // TILE) * TILE
    tx = x[:h, :w].reshape(h // TILE, TILE, w // TILE, TILE).transpose(0, 2, 1, 3).reshape(-1, TILE * TILE)
    ty = y[:h, :w].reshape(h // TILE, TILE, w // TILE, TILE).transpose(0, 2, 1, 3).reshape(-1, TILE * TILE)
    tx = tx - tx.mean(axis=1, keepdims=True)
    ty = ty - ty.mean(axis=1, keepdims=True)
    sx, sy = np.sqrt((tx * tx).sum(axis=1)), np.sqrt((ty * ty).sum(axis=1))
    flat = FLAT * TILE
    weight = np.maximum(sx, sy)
    used = weight > flat
    if not used.any():
        return 1.0 if np.abs(x.mean() - y.mean()) < 8 else 0.0
    both = used & (sx > flat) & (sy > flat)
    r = np.zeros(len(tx))
    r[both] = (tx[both] * ty[both]).sum(axis=1) / (sx[both] * sy[both])
    return float((r[used] * weight[used]).sum() / weight[used].sum())


def _shape(aspect: float) -> tuple[int, int]:
    """The (h, w) two crops of mean ``aspect`` are compared at: about AREA pixels, the shorter
    side at least MIN_SHORT (a 1x7 strip keeps its digits' shapes)."""
    width = math.sqrt(AREA * aspect)
    height = AREA / width
    scale = max(1.0, MIN_SHORT / min(width, height))
    return max(TILE, round(height * scale)), max(TILE, round(width * scale))


def _compare(a: _Signature, b: _Signature) -> float:
    ratio = min(a.aspect, b.aspect) / max(a.aspect, b.aspect)
    shape_term = min(1.0, ratio / ASPECT_TOLERANCE)
    shape = _shape(math.sqrt(a.aspect * b.aspect))
    plain = (0.0, 0.0)
    if shape_term < MATCH_THRESHOLD:  # cannot match whatever the alignment: not worth aligning
        return max(0.0, _local_correlation(_pixels(a, plain, shape), _pixels(b, plain, shape))) * shape_term
    # One crop may hold a frame or padding the other lost (a screenshot cut tighter): the best of
    # a few insets of either one, vertical and horizontal apart.
    r = max(
        _local_correlation(_pixels(x, (iy, ix), shape), _pixels(y, plain, shape))
        for iy in INSETS
        for ix in INSETS
        for x, y in ((a, b), (b, a))
    )
    return max(0.0, min(1.0, r)) * shape_term


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """How alike two grey images look, in [0, 1] (see the module docstring): 1 for the same
    figure, whatever its resolution, margins or JPEG noise; low for another figure."""
    return _compare(_signature(a), _signature(b))


def thumbnail(grey: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """A small copy for the instructor report, longest side at most ``side``, cut to what is not
    white (a figure drawn on a tall canvas would otherwise shrink to a line)."""
    from PIL import Image

    ink = np.asarray(grey) < WHITE
    if ink.any():
        rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
        grey = np.asarray(grey)[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    image = Image.fromarray(np.ascontiguousarray(grey, dtype=np.uint8), "L")
    image.thumbnail((side, side), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.uint8).copy()


# ---------------------------------------------------------------------------------------------
# the check


def check_pdf(
    pdf: HandinPdf,
    candidates: list[Candidate],
    tuned_beta: float | None,
    tuned_cell: int | None,
    pair: tuple[int, int] | None,
    answers: dict[str, str],
) -> PdfCheck:
    """Check the read PDF against the notebook's and the re-run's figures (``candidates``), the
    code's tuned beta (from cell ``tuned_cell``), its interpolation digit ``pair`` and the
    notebook's answers (question id -> text)."""
    if pdf.error:
        return PdfCheck(
            file=pdf.file,
            pages=pdf.pages,
            notes=pdf.notes,
            flags=(f"the PDF could not be checked: {pdf.error}",),
            error=pdf.error,
        )
    flags: list[str] = []
    notes: list[str] = list(pdf.notes)
    found = _matches(pdf, candidates)
    figures = [figure for figure, _ in found]
    if pdf.images and not candidates:
        notes.append("no figures of the notebook or the re-run to compare the PDF's images with")
    for f, closest in found:
        if f.matched == "none" and closest is not None:
            flags.append(
                f"image {f.index + 1} on page {f.page} matches no figure of the notebook or the re-run "
                f"(best similarity {f.similarity:.2f}, closest: {closest.describe()})"
            )
    beta_flag, beta_note = _beta_finding(pdf, tuned_beta, tuned_cell)
    flags += beta_flag
    notes += beta_note
    flags += _pair_flags(pdf, found, pair)
    for qid, answer in answers.items():
        if not normalise_words(_MATH.sub(" ", answer)):
            continue
        coverage = answer_coverage(answer, pdf.text)
        if coverage < ANSWER_PRESENT:
            flags.append(f"the answer to {qid} is not in the PDF")
        elif coverage < ANSWER_SAME:
            flags.append(
                f"the answer to {qid} in the PDF differs from the notebook's "
                f"({math.floor(coverage * 100)} % of its words match)"
            )
    return PdfCheck(file=pdf.file, pages=pdf.pages, figures=tuple(figures), flags=tuple(flags), notes=tuple(notes))


def match_figures(pdf: HandinPdf, candidates: list[Candidate]) -> list[PdfFigure]:
    """Each PDF image with its best candidate: matched when at or above MATCH_THRESHOLD, a
    notebook figure preferred to a re-run one within TIE_MARGIN."""
    return [figure for figure, _ in _matches(pdf, candidates)]


def _matches(pdf: HandinPdf, candidates: list[Candidate]) -> list[tuple[PdfFigure, Candidate | None]]:
    """Each PDF image as a figure, with its best (or, unmatched, closest) candidate."""
    signed = [(c, _signature(c.grey)) for c in candidates]
    found = []
    for image in pdf.images:
        small = thumbnail(image.grey)
        if not signed:
            found.append((PdfFigure(image.page, image.index, "none", None, "", "", 0.0, small), None))
            continue
        sig = _signature(image.grey)
        scored = sorted(((_compare(sig, s), c) for c, s in signed), key=lambda t: -t[0])
        score, best = scored[0]
        notebook = next(((s, c) for s, c in scored if c.source == "notebook"), None)
        if notebook and best.source != "notebook" and notebook[0] >= score - TIE_MARGIN:
            score, best = notebook
        matched = best.source if score >= MATCH_THRESHOLD else "none"
        found.append((PdfFigure(image.page, image.index, matched, best.cell, best.key, best.slot, score, small), best))
    return found


# ---------------------------------------------------------------------------------------------
# what the text states


def normalise_text(text: str) -> str:
    """NFKC, lowercase, words broken by a hyphen at a line end joined, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"(\w)-\s*\n\s*(\w)", r"\1\2", text)
    return re.sub(r"\s+", " ", text).strip()


def normalise_words(text: str) -> list[str]:
    """The words of ``normalise_text(text)``, punctuation dropped; β and LaTeX's \\beta are "beta"."""
    text = normalise_text(text).replace("β", " beta ")
    return re.sub(r"[^\w]+|_", " ", text).split()


def stated_betas(text: str) -> list[float]:
    """The tuned betas ``text`` states (BETA_STATEMENT), in order."""
    values = []
    for m in BETA_STATEMENT.finditer(unicodedata.normalize("NFKC", text).replace("−", "-")):
        value = _number(m.group(1))
        if value is not None:
            values.append(value)
    return values


def _number(text: str) -> float | None:
    s = re.sub(r"\s+", "", text)
    m = re.fullmatch(r"(.+?)[x×*·]10\^?\(?([-+]?\d+)\)?", s)
    try:
        return float(m.group(1)) * 10.0 ** int(m.group(2)) if m else float(s)
    except (ValueError, OverflowError):
        return None


def stated_pairs(text: str) -> list[tuple[int, int]]:
    """The digit pairs ``text`` names (DIGIT_PAIRS), in order."""
    pairs = []
    for m in DIGIT_PAIRS.finditer(unicodedata.normalize("NFKC", text)):
        a, b = (m.group(1), m.group(2)) if m.group(1) is not None else (m.group(3), m.group(4))
        pairs.append((int(a), int(b)))
    return pairs


def _beta_finding(pdf: HandinPdf, tuned_beta: float | None, tuned_cell: int | None) -> tuple[list[str], list[str]]:
    stated: list[tuple[float, int]] = []
    for page, text in enumerate(pdf.page_texts, start=1):
        stated += [(v, page) for v in stated_betas(text)]
    if not stated:
        return [], ["no tuned beta stated in the PDF"]
    if tuned_beta is None:
        value, page = stated[0]
        return [], [f"the PDF states a tuned beta of {value:g} (page {page}); the notebook has none to compare"]
    # every statement is compared: a write-up naming 0.5 in its heading and 1e-4 in an answer contradicts itself
    wrong = [(v, page) for v, page in stated if not math.isclose(v, tuned_beta, rel_tol=1e-3, abs_tol=1e-12)]
    if not wrong:
        return [], []
    value, page = wrong[0]
    where = f" (cell {tuned_cell})" if tuned_cell is not None else ""
    return [
        f"the PDF states a tuned beta of {value:g} (page {page}) but the notebook's code uses {tuned_beta:g}{where}"
    ], []


def _pair_flags(
    pdf: HandinPdf, found: list[tuple[PdfFigure, Candidate | None]], pair: tuple[int, int] | None
) -> list[str]:
    """A flag per page showing a notebook interpolation whose text names digit pairs, none of
    them the code's ``pair`` (either order: "digits 4 and 8" gives none)."""
    if pair is None:
        return []
    flags = []
    shown: dict[int, PdfFigure] = {}
    for f, c in found:
        if f.matched == "notebook" and c is not None and c.slot.startswith("interpolation"):
            shown.setdefault(f.page, f)
    for page, figure in sorted(shown.items()):
        named = stated_pairs(pdf.page_texts[page - 1]) if page <= len(pdf.page_texts) else []
        if named and not any(sorted(p) == sorted(pair) for p in named):
            a, b = named[0]
            cell = f" of cell {figure.cell}" if figure.cell is not None else ""
            flags.append(
                f"page {page} shows the interpolation{cell} between digits {a} and {b}, "
                f"but the notebook interpolates between {pair[0]} and {pair[1]}"
            )
    return flags


_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$", re.DOTALL)


def answer_coverage(answer: str, pdf_text: str) -> float:
    """The share of the answer's words found, in order, in the PDF's text: difflib's matching
    blocks (autojunk off) between the answer's words and the PDF window that shares the most of
    its word trigrams (so common words scattered over a long PDF do not count). LaTeX math in the
    answer (``$...$``, ``$$...$$``) is left out: a PDF shows it rendered, its text garbled."""
    words = normalise_words(_MATH.sub(" ", answer))
    if not words:
        return 1.0
    text = normalise_words(pdf_text)
    if not text:
        return 0.0
    n = len(words)
    k = min(3, n)
    grams = {tuple(words[i : i + k]) for i in range(n - k + 1)}
    hits = np.array([tuple(text[i : i + k]) in grams for i in range(max(1, len(text) - k + 1))], dtype=np.int64)
    sums = np.convolve(hits, np.ones(n, dtype=np.int64), mode="valid") if len(hits) >= n else hits.sum(keepdims=True)
    start = int(np.argmax(sums))
    pad = max(16, n // 2)  # room for what the PDF adds: rendered math, page numbers, captions
    window = text[max(0, start - pad) : start + n + pad]
    blocks = difflib.SequenceMatcher(None, words, window, autojunk=False).get_matching_blocks()
    return sum(b.size for b in blocks) / n
