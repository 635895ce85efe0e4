"""Course-wide similarity: the pairs of hand-ins an instructor should look at side by side.

Every pair of a course's submissions (and each submission against the harness's own reference
implementation, one more member labelled ``reference``) is compared on three signals, each 0..1
(docs/batch.md#similarity):

- **code**: what the student wrote, i.e. a notebook's TODO regions (template placeholders left
  out; an untouched region is empty) and the code cells the student added, or the lines of a
  folder's ``submission.py`` that its starter does not hold. The handout's own lines are never
  compared: cells outside the TODO regions are the template's, and an added cell whose text most
  of the course's notebooks hold (the handout's imports and data display) is the template's too.
  The code is fingerprinted with copydetect (pygments tokens, identifiers, strings and comments
  normalised, winnowed k-grams), so renaming variables or rewording comments hides nothing;
  the value is the share of the smaller side's code that matches.
- **answers**: word 5-gram shingles of each question's answer, question by question; the share
  of the smaller side's shingles found in the other's answer to the same question.
- **figures**: perceptual hashes (imagehash's pHash, 256 bits) of the stored image outputs from the
  AE's training cell on (earlier cells show the data, the same for everyone); two figures match
  within :data:`FIGURE_MAX_DISTANCE` bits. The value is the share of the smaller side's figures
  matched. A training run pasted twice matches; two runs of the same code draw other digits.

A course of thousands is not compared pair by pair: candidate pairs come from MinHash LSH Ensemble
indexes (datasketch: containment, as the signals are) of the code fingerprints and the answer
shingles, and from a banded index of the figure hashes (two hashes within the distance share a
band exactly); only candidates are compared. Fingerprints, shingles and figures that many
members share (:func:`common_threshold`) are the course's idioms, not evidence, and are dropped.

A pair is ``flagged`` when a signal reaches its threshold (calibrated on cases built from the
three handouts: benchmarks/similarity.py --calibrate); flags are for review only and change no
points. Two uploads of one student are one submission (:func:`course_entries`, by which the batch
grades too), never a pair. Nothing here runs student code or loads torch: files are read under the
submission readers' caps, and a notebook over :data:`MAX_NOTEBOOK_BYTES` is skipped, by its size
on disk, before it is read.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.config.assignment import Assignment
from harness.course.entries import course_entries, entry_id
from harness.io import write_bytes_atomic
from harness.submission.cells import Cell, find_placeholder, map_roles, strip_comment, todo_regions
from harness.submission.identity import CANVAS_PATTERN
from harness.submission.notebook import MAX_NOTEBOOK_BYTES, NotebookError, read_notebook
from harness.submission.notebook_answers import notebook_answers
from harness.submission.notebook_load import NOTEBOOK_SUFFIX, cells_of, notebooks_in, stored_figures
from harness.submission.reading import human_size, size_over

CSV_NAME = "similarity.csv"
CSV_COLUMNS = ("a", "b", "code", "answers", "figures", "score", "flagged", "evidence")
REFERENCE_ID = "reference"
REFERENCE_FILES = ("ml/models.py", "ml/training.py")  # under the harness package

# --- thresholds (docs/batch.md#similarity; calibrated by benchmarks/similarity.py --calibrate)
FLOOR = 0.25  # similarity.csv lists the pairs whose score reaches this
CODE_FLAG = 0.4  # share of the smaller side's written code that matches (half the TODO cells copied: 0.44)
ANSWERS_FLAG = 0.5  # share of the smaller side's answer shingles found in the other's answers
FIGURES_FLAG = 0.5  # share of the smaller side's figures that match
MIN_CODE_MATCH = 150  # normalised characters matched, at least: a few common lines are no copy
MIN_ANSWER_SHINGLES = 12  # a member with fewer 5-grams in all its answers is not compared on answers
MIN_FIGURES_MATCHED = 2  # one matching figure is no pasted run
# --- fingerprints and hashes
CODE_K = 25  # copydetect's noise threshold: k-grams of normalised characters
CODE_WINDOW = 5  # winnowing window: every match of CODE_K + CODE_WINDOW - 1 characters is found
SHINGLE_WORDS = 5
FIGURE_HASH_SIZE = 16  # pHash of 16 x 16 = 256 bits
FIGURE_MAX_DISTANCE = 2  # bits: a pasted figure is 0 apart; independent runs of one notebook 4 and more
FIGURE_SIDE = 128  # figures are box-reduced towards this many pixels a side before hashing
MAX_FIGURE_PIXELS = 40_000_000  # a stored image larger than this (by its header) is not decoded
# --- candidate search
NUM_PERM = 128
CANDIDATE_CONTAINMENT = 0.3  # LSH Ensemble threshold, well under the flag thresholds
COMMON_SHARE = 0.1  # a fingerprint, shingle or figure in more than this share of the members...
COMMON_MIN = 10  # ...and in at least this many is an idiom of the course
TEMPLATE_SHARE = 0.5  # an added cell in at least half of a handout's notebooks (and two) is the handout's
MAX_EVIDENCE_CHARS = 300
MAX_REGION_LINES = 40  # a side-by-side region shows at most this many lines
MAX_SIDE_BY_SIDE = 6  # regions per flagged pair in the summary
PARALLEL_FROM = 16  # members read in worker processes only from this many on (start-up costs ~1 s)


class SimilarityError(RuntimeError):
    """The course cannot be compared at all (not a folder, nothing in it); the message says why."""


# --------------------------------------------------------------------------- members


@dataclass(frozen=True)
class Piece:
    """Code the student wrote: consecutive lines of one cell (or file), ``first`` its 1-based line."""

    unit: str  # "cell 8", "submission.py", "harness/ml/models.py"
    first: int
    lines: tuple[str, ...]
    added: bool = False  # a whole code cell outside the handout's roles (the template rule may drop it)

    @property
    def key(self) -> str:
        """The text with all whitespace removed: how the template rule compares added cells."""
        return re.sub(r"\s+", "", "".join(self.lines))


@dataclass(frozen=True)
class Figure:
    """One stored image output: where it is and its perceptual hash (FIGURE_HASH_SIZE**2 bits)."""

    cell: int
    index: int  # among the cell's images, from 0
    hash: int

    @property
    def label(self) -> str:
        return f"cell {self.cell} image {self.index + 1}"


@dataclass(frozen=True)
class Member:
    """What one submission (or the reference) offers for comparison."""

    id: str
    label: str  # the file or folder name, or the reference's files
    kind: str  # "notebook", "folder" or "reference"
    handout: str = ""  # the assignment its notebook follows (the template rule is per handout)
    pieces: tuple[Piece, ...] = ()
    answers: dict[str, str] = field(default_factory=dict)
    figures: tuple[Figure, ...] = ()


@dataclass(frozen=True)
class Skipped:
    """A course entry that was not compared, and why (for the terminal and summary.html)."""

    name: str
    why: str


def _code_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line, line) of the lines that hold code: no blank, comment-only or IPython line."""
    kept = []
    for number, line in enumerate(text.splitlines(), start=1):
        bare = strip_comment(line)
        if bare and not bare.startswith(("%", "!")):
            kept.append((number, line.rstrip()))
    return kept


def _runs(unit: str, numbered: list[tuple[int, str]], added: bool = False) -> list[Piece]:
    """Consecutive numbered lines as pieces."""
    pieces: list[Piece] = []
    run: list[tuple[int, str]] = []
    for number, line in numbered:
        if run and number != run[-1][0] + 1:
            pieces.append(Piece(unit, run[0][0], tuple(t for _, t in run), added))
            run = []
        run.append((number, line))
    if run:
        pieces.append(Piece(unit, run[0][0], tuple(t for _, t in run), added))
    return pieces


def region_pieces(cell: Cell) -> list[Piece]:
    """The code a student wrote in a cell's TODO regions: placeholders (``opt = None``, the empty
    ``nn.Sequential(...)``) left out, so an untouched region gives nothing."""
    lines = cell.source.splitlines()
    pieces = []
    for region in todo_regions(cell.source):
        end = region.end - 1 if region.closed else region.end  # 0-based index past the region's code
        start = end - (len(region.code.split("\n")) if region.code else 0)
        numbered = [
            (start + i + 1, line)
            for i, line in enumerate(lines[start:end])
            if strip_comment(line) and not find_placeholder(line)
        ]
        if not numbered or find_placeholder("\n".join(t for _, t in numbered)):
            continue  # nothing but the template's empty network
        pieces += _runs(f"cell {cell.number}", numbered)
    return pieces


def notebook_pieces(cells: Sequence[Cell], roles: dict[str, tuple[int, ...]]) -> list[Piece]:
    """A notebook's written code: every TODO region's, and each code cell that plays no role and
    holds no region (an added cell, unless the template rule finds it in most notebooks)."""
    with_role = {n for numbers in roles.values() for n in numbers}
    pieces = []
    for c in cells:
        if c.cell_type != "code":
            continue
        if todo_regions(c.source):
            pieces += region_pieces(c)
        elif c.number not in with_role:
            pieces += _runs(f"cell {c.number}", _code_lines(c.source), added=True)
    return pieces


def figure_hash(png: bytes) -> int | None:
    """The PNG's perceptual hash as an int: on white, in grey, box-reduced by a whole factor towards
    FIGURE_SIDE pixels a side before pHash's own resize; None when it cannot be decoded or its
    header announces more than MAX_FIGURE_PIXELS (never decoded then)."""
    import imagehash
    from PIL import Image, UnidentifiedImageError

    from harness.submission.images import on_white

    try:
        with Image.open(io.BytesIO(png)) as im:
            if im.width * im.height > MAX_FIGURE_PIXELS:
                return None
            grey = on_white(im).convert("L")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    factor = max(1, min(grey.size) // FIGURE_SIDE)
    if factor > 1:
        grey = grey.reduce(factor)
    bits = imagehash.phash(grey, hash_size=FIGURE_HASH_SIZE).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def notebook_member(path: Path, member_id: str, a: Assignment) -> Member:
    """A notebook file (or a folder holding one) as a member. Raises NotebookError for a file that
    is no notebook, too large (by its size on disk, before reading) or not of ``a``'s handout."""
    from harness.submission.cells import assignment_name, missing_markers

    path = Path(path)
    nb_path = path
    if path.is_dir():
        found = notebooks_in(path)
        if len(found) != 1:
            raise NotebookError(f"{path.name} holds {len(found)} notebooks; a notebook submission holds one")
        nb_path = found[0]
    size = nb_path.lstat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise NotebookError(
            f"{nb_path.name} is {size_over(size, MAX_NOTEBOOK_BYTES)}; notebooks over {human_size(MAX_NOTEBOOK_BYTES)} "
            "are not read (not compared)"
        )
    nb = read_notebook(nb_path)
    cells = cells_of(nb)
    if a.notebook is None or missing_markers(cells, a.notebook):
        raise NotebookError(f"{nb_path.name} is not a notebook of the {assignment_name(a)} handout (not compared)")
    cell_map = map_roles(cells, a.notebook)
    answers = notebook_answers(cells, cell_map, a).answers
    figures, _ = stored_figures(nb, cell_map)
    first = cell_map.cell("ae_training") or 0  # earlier cells show the data, not a training run
    hashed = []
    for f in figures:
        if f.cell >= first and (h := figure_hash(f.png)) is not None:
            hashed.append(Figure(f.cell, f.index, h))
    return Member(
        id=member_id,
        label=nb_path.name if not path.is_dir() else f"{path.name}/{nb_path.name}",
        kind="notebook",
        handout=assignment_name(a),
        pieces=tuple(notebook_pieces(cells, dict(cell_map.roles))),
        answers={k: v for k, v in answers.items() if v},
        figures=tuple(hashed),
    )


def folder_member(path: Path, member_id: str, a: Assignment) -> Member:
    """A submission folder as a member: the lines of its code module that the starter's does not
    hold, and its answers (the readers' caps and rules: harness.submission.folder)."""
    from harness.submission import folder
    from harness.submission.starter import render_starter

    sub = folder.load(path, a)
    starter = {line.strip() for line in render_starter(a)["module"].splitlines()}
    text = sub.code[0].text if sub.code else ""
    numbered = [(n, line) for n, line in _code_lines(text) if line.strip() not in starter]
    return Member(
        id=member_id,
        label=path.name,
        kind="folder",
        pieces=tuple(_runs(a.submission.module, numbered)),
        answers={k: v for k, v in sub.answers.items() if v},
    )


def reference_member() -> Member:
    """The harness's own reference implementation (REFERENCE_FILES), read as text: no torch."""
    root = Path(__file__).resolve().parents[1]
    pieces = []
    for rel in REFERENCE_FILES:
        text = (root / rel).read_text(encoding="utf-8")
        pieces += _runs(f"harness/{rel}", _code_lines(text))
    label = " + ".join(f"harness/{rel}" for rel in REFERENCE_FILES)
    return Member(REFERENCE_ID, label, "reference", pieces=tuple(pieces))


def read_member(path: Path, member_id: str, a: Assignment) -> Member | Skipped:
    """One course entry as a member, or why it is skipped (never raises for a student's file)."""
    path = Path(path)
    try:
        if path.is_dir() and (path / a.submission.module).exists():
            return folder_member(path, member_id, a)
        if (path.is_dir() and notebooks_in(path)) or path.suffix == NOTEBOOK_SUFFIX:
            return notebook_member(path, member_id, a)
        return Skipped(path.name, f"neither a notebook nor a folder with {a.submission.module}")
    except (NotebookError, OSError, ValueError) as e:
        return Skipped(path.name, str(e))
    except Exception as e:  # noqa: BLE001 - a student's file is hostile by assumption: skipped, never fatal
        return Skipped(path.name, f"could not be read ({type(e).__name__}: {e})")


def _read_member_args(args: tuple[Path, str, Assignment]) -> Member | Skipped:
    return read_member(*args)


Mapper = Callable[[Callable, Iterable], Iterable]
"""``map``, or a process pool's ``map``: how the readers and the tokenizer are run."""


def read_members(entries: Sequence[tuple[Path, str]], a: Assignment, mapper: Mapper = map) -> list[Member | Skipped]:
    """Every entry read, in order."""
    return list(mapper(_read_member_args, [(p, sid, a) for p, sid in entries]))


@contextmanager
def readers(workers: int, jobs: int) -> Iterator[Mapper]:
    """A mapper over ``workers`` processes when there are PARALLEL_FROM jobs or more, else ``map``.
    The processes are spawned (a grade batch may hold threads, which fork would copy mid-flight)."""
    if workers <= 1 or jobs < PARALLEL_FROM:
        yield map
        return
    import multiprocessing

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        chunk = max(1, jobs // (8 * workers))
        yield lambda fn, items: pool.map(fn, items, chunksize=chunk)


def drop_template_cells(members: Sequence[Member]) -> list[Member]:
    """Members without the added cells that are the handout's own: an added cell's text held by at
    least TEMPLATE_SHARE of the notebooks of its handout, and by two at least."""
    from dataclasses import replace

    by_handout: dict[str, list[Member]] = defaultdict(list)
    for m in members:
        if m.kind == "notebook":
            by_handout[m.handout].append(m)
    template: set[tuple[str, str]] = set()
    for handout, group in by_handout.items():
        counts = Counter(key for m in group for key in {p.key for p in m.pieces if p.added})
        need = max(2, math.ceil(TEMPLATE_SHARE * len(group)))
        template |= {(handout, key) for key, n in counts.items() if n >= need}
    return [
        replace(m, pieces=tuple(p for p in m.pieces if not (p.added and (m.handout, p.key) in template)))
        if m.kind == "notebook"
        else m
        for m in members
    ]


# --------------------------------------------------------------------------- signals


@dataclass
class Fingerprint:
    """copydetect's CodeFingerprint, built from its own pieces: the normalised code and offsets
    come from the readers (:func:`normalised`), the winnowed k-gram hashes are computed here, in
    the one process that compares them (copydetect hashes with Python's per-process ``hash``)."""

    k: int
    filtered_code: str
    offsets: np.ndarray
    hashes: set
    hash_idx: dict
    token_coverage: float


@dataclass
class Code:
    """A member's written code as one document, where each of its lines came from, and its
    fingerprint (None: too little code to fingerprint)."""

    text: str
    places: list[tuple[str, int]]  # per line of text: (unit, 1-based line there)
    line_starts: np.ndarray
    fingerprint: Fingerprint | None = None


def document(m: Member) -> tuple[str, list[tuple[str, int]]]:
    """The member's pieces joined into one document, and each line's place."""
    lines, places = [], []
    for p in m.pieces:
        lines += p.lines
        places += [(p.unit, p.first + i) for i in range(len(p.lines))]
    return "\n".join(lines), places


def normalised(text: str) -> tuple[str, np.ndarray]:
    """copydetect's tokenized and normalised code (names V, functions F, classes O, strings S;
    comments and whitespace dropped) and its offsets into ``text``: the costly, hash-free part."""
    from copydetect.utils import filter_code

    return filter_code(text, "code.py", "python")


def code_of(m: Member, filtered: tuple[str, np.ndarray] | None = None) -> Code:
    """The member's document, fingerprinted (``filtered``: its :func:`normalised` form, when a
    reader made it)."""
    from copydetect.utils import get_document_fingerprints, get_token_coverage

    text, places = document(m)
    lines = text.split("\n") if text else []
    starts = np.cumsum([0] + [len(line) + 1 for line in lines[:-1]]) if lines else np.zeros(0, dtype=int)
    code = Code(text, places, np.asarray(starts, dtype=int))
    tokens, offsets = filtered if filtered is not None else normalised(text)
    if len(tokens) >= CODE_K:
        hashes, idx = get_document_fingerprints(tokens, CODE_K, CODE_WINDOW)
        if hashes:
            coverage = get_token_coverage(idx, CODE_K, len(tokens))
            code.fingerprint = Fingerprint(CODE_K, tokens, offsets, hashes, idx, coverage)
    return code


def drop_common_hashes(codes: Sequence[Code], common: set) -> None:
    """Remove the course's idioms (fingerprints in ``common``) from each fingerprint, in place."""
    from copydetect.utils import get_token_coverage

    for c in codes:
        fp = c.fingerprint
        if fp is None or not (fp.hashes & common):
            continue
        fp.hashes = fp.hashes - common
        fp.hash_idx = {h: i for h, i in fp.hash_idx.items() if h not in common}
        fp.token_coverage = get_token_coverage(fp.hash_idx, fp.k, len(fp.filtered_code))
        if not fp.hashes or not fp.token_coverage:
            c.fingerprint = None


def common_threshold(n: int) -> int:
    """In how many members (of ``n``) something must be to count as the course's idiom."""
    return max(COMMON_MIN, math.ceil(COMMON_SHARE * n))


_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def shingles(answers: dict[str, str]) -> dict[str, set[str]]:
    """Question id -> the answer's word SHINGLE_WORDS-grams, lower-cased, markdown and punctuation
    ignored."""
    out = {}
    for qid, text in answers.items():
        words = _WORD.findall(text.lower())
        grams = {" ".join(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}
        if grams:
            out[qid] = grams
    return out


@dataclass
class Indexed:
    """A member with its signals computed."""

    member: Member
    code: Code
    shingles: dict[str, set[str]]

    @property
    def id(self) -> str:
        return self.member.id

    @property
    def shingle_count(self) -> int:
        return sum(len(s) for s in self.shingles.values())


def _code_tokens(ix: Indexed) -> list[bytes]:
    return [int(h).to_bytes(8, "little", signed=True) for h in ix.code.fingerprint.hashes]


def _answer_tokens(ix: Indexed) -> list[bytes]:
    return [f"{q}\x1f{s}".encode() for q, grams in ix.shingles.items() for s in grams]


def lsh_candidates(items: Sequence[Indexed], tokens, sizes: Sequence[int]) -> set[tuple[int, int]]:
    """Index pairs (i < j) whose token sets may contain one another (MinHash LSH Ensemble at
    CANDIDATE_CONTAINMENT): each item queries the index for the sets that contain it."""
    from datasketch import MinHash, MinHashLSHEnsemble

    if len(items) < 2:
        return set()
    hashes = MinHash.bulk([tokens(ix) for ix in items], num_perm=NUM_PERM)  # one set of permutations for all
    lsh = MinHashLSHEnsemble(threshold=CANDIDATE_CONTAINMENT, num_perm=NUM_PERM, num_part=8)
    lsh.index((i, h, size) for i, (h, size) in enumerate(zip(hashes, sizes, strict=True)))
    pairs = set()
    for i, (h, size) in enumerate(zip(hashes, sizes, strict=True)):
        for j in lsh.query(h, size):
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    return pairs


def figure_candidates(figures: Sequence[Sequence[Figure]], common: int) -> tuple[set[tuple[int, int]], set[int]]:
    """Index pairs of members with a figure each whose hashes may be within FIGURE_MAX_DISTANCE:
    the hashes are cut into FIGURE_MAX_DISTANCE + 1 bands, and two such hashes agree on one band
    at least. Also the hashes of a band bucket held by ``common`` members or more (a figure
    everyone shows): they are not evidence."""
    bits = FIGURE_HASH_SIZE**2
    bands = FIGURE_MAX_DISTANCE + 1
    width = -(-bits // bands)
    buckets: dict[tuple[int, int], set[int]] = defaultdict(set)
    for i, figs in enumerate(figures):
        for f in figs:
            for b in range(bands):
                buckets[(b, (f.hash >> (b * width)) & ((1 << width) - 1))].add(i)
    pairs, crowded = set(), set()
    for key, owners in buckets.items():
        if len(owners) >= common:
            crowded.add(key)
            continue
        ordered = sorted(owners)
        pairs |= {(x, y) for k, x in enumerate(ordered) for y in ordered[k + 1 :]}
    common_hashes = {
        f.hash
        for figs in figures
        for f in figs
        if sum((b, (f.hash >> (b * width)) & ((1 << width) - 1)) in crowded for b in range(bands)) == bands
    }
    return pairs, common_hashes


# --------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class Region:
    """A matching region of one side: where it is and its text (shortened)."""

    where: str
    text: str


@dataclass
class Pair:
    """Two members compared. ``flagged``: a signal reached its threshold (``signals`` says which)."""

    a: str
    b: str
    code: float = 0.0
    answers: float = 0.0
    figures: float = 0.0
    signals: list[str] = field(default_factory=list)
    evidence: str = ""
    code_regions: tuple[list[Region], list[Region]] = field(default_factory=lambda: ([], []))  # a's, b's
    answer_regions: list[tuple[str, str, str]] = field(default_factory=list)  # (question, a's text, b's text)
    figure_matches: list[tuple[str, str, int]] = field(default_factory=list)  # (a's figure, b's figure, distance)

    @property
    def score(self) -> float:
        """The strongest signal."""
        return max(self.code, self.answers, self.figures)

    @property
    def flagged(self) -> bool:
        return bool(self.signals)

    def entry(self, me: str) -> dict:
        """The pair as ``me``'s result records it (docs/result-schema.md#similarity)."""
        return {
            "with": self.b if me == self.a else self.a,
            "code": round(self.code, 3),
            "answers": round(self.answers, 3),
            "figures": round(self.figures, 3),
            "score": round(self.score, 3),
            "signals": list(self.signals),
            "evidence": self.evidence,
        }


def _ranges(places: Sequence[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """Document lines' places as (unit, first line, last line) runs."""
    runs: list[tuple[str, int, int]] = []
    for unit, line in places:
        if runs and runs[-1][0] == unit and line == runs[-1][2] + 1:
            runs[-1] = (unit, runs[-1][1], line)
        elif not runs or runs[-1][0] != unit or line != runs[-1][2]:
            runs.append((unit, line, line))
    return runs


def matched_regions(code: Code, slices: np.ndarray) -> list[Region]:
    """The document's character slices (copydetect's, in the raw text) as regions by cell and line."""
    regions = []
    lines = code.text.split("\n")
    for start, end in zip(slices[0], slices[1], strict=True):
        first = int(np.searchsorted(code.line_starts, start, side="right")) - 1
        last = int(np.searchsorted(code.line_starts, max(start, end - 1), side="right")) - 1
        for unit, lo, hi in _ranges(code.places[first : last + 1]):
            where = f"{unit}, line{'s' if hi > lo else ''} {lo}{f'-{hi}' if hi > lo else ''}"
            chosen = [i for i in range(first, last + 1) if code.places[i][0] == unit and lo <= code.places[i][1] <= hi]
            text = "\n".join(lines[i] for i in chosen[:MAX_REGION_LINES])
            if len(chosen) > MAX_REGION_LINES:
                text += f"\n... ({len(chosen) - MAX_REGION_LINES} more lines)"
            regions.append(Region(where, text))
    return regions


def _shorten(text: str, most: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= most else text[: most - 3] + "..."


def compare_code(x: Indexed, y: Indexed) -> tuple[float, list[Region], list[Region]]:
    """The code signal of a pair and each side's matching regions."""
    from copydetect import compare_files

    fx, fy = x.code.fingerprint, y.code.fingerprint
    if fx is None or fy is None or not (fx.hashes & fy.hashes):
        return 0.0, [], []
    overlap, (sx, sy), (slx, sly) = compare_files(fx, fy)
    if overlap < MIN_CODE_MATCH:
        return 0.0, [], []
    value = float(min(1.0, max(sx, sy)))
    return value, matched_regions(x.code, slx), matched_regions(y.code, sly)


def compare_answers(x: Indexed, y: Indexed) -> tuple[float, list[tuple[str, str, str]]]:
    """The answers signal of a pair and the questions whose answers match (with both texts)."""
    if min(x.shingle_count, y.shingle_count) < MIN_ANSWER_SHINGLES:
        return 0.0, []
    shared, matched = 0, []
    for qid in sorted(x.shingles.keys() & y.shingles.keys()):
        common = len(x.shingles[qid] & y.shingles[qid])
        shared += common
        if common and common >= 0.5 * min(len(x.shingles[qid]), len(y.shingles[qid])):
            matched.append((qid, x.member.answers[qid], y.member.answers[qid]))
    return shared / min(x.shingle_count, y.shingle_count), matched


def compare_figures(fx: Sequence[Figure], fy: Sequence[Figure]) -> tuple[float, int, list[tuple[str, str, int]]]:
    """The figures signal of a pair: the share of the smaller side's figures that have a match
    on the other side, the number matched and the matches."""
    if not fx or not fy:
        return 0.0, 0, []
    small, large, flipped = (fx, fy, False) if len(fx) <= len(fy) else (fy, fx, True)
    matches = []
    for f in small:
        best = min(large, key=lambda g: (f.hash ^ g.hash).bit_count())
        distance = (f.hash ^ best.hash).bit_count()
        if distance <= FIGURE_MAX_DISTANCE:
            matches.append((best.label, f.label, distance) if flipped else (f.label, best.label, distance))
    return len(matches) / len(small), len(matches), matches


def compare(x: Indexed, y: Indexed, figures: tuple[Sequence[Figure], Sequence[Figure]]) -> Pair:
    """Every signal of a pair, its flags and its evidence."""
    pair = Pair(x.id, y.id)
    pair.code, regions_x, regions_y = compare_code(x, y)
    pair.code_regions = (regions_x, regions_y)
    pair.answers, pair.answer_regions = compare_answers(x, y)
    pair.figures, matched, pair.figure_matches = compare_figures(*figures)
    if pair.code >= CODE_FLAG:
        pair.signals.append("code")
    if pair.answers >= ANSWERS_FLAG:
        pair.signals.append("answers")
    if pair.figures >= FIGURES_FLAG and matched >= MIN_FIGURES_MATCHED:
        pair.signals.append("figures")
    pair.evidence = evidence(pair)
    return pair


def _places(regions: Sequence[Region]) -> str:
    """Regions by unit: ``cell 8 (32-46, 82-97), cell 10 (13)``."""
    by_unit: dict[str, list[str]] = {}
    for r in regions:
        unit, _, lines = r.where.partition(", ")
        by_unit.setdefault(unit, []).append(lines.split(" ", 1)[-1])
    return ", ".join(f"{unit} ({', '.join(dict.fromkeys(lines))})" for unit, lines in by_unit.items())


def evidence(pair: Pair) -> str:
    """The matching regions by cell (line numbers in brackets), each side shortened:
    ``code: cell 8 (32-46, 82-97), cell 14 (20-21) ~ cell 8 (32-47); answers: beta-0, beta-10;
    figures: cell 14 image 1 = cell 14 image 1``."""
    parts = []
    rx, ry = pair.code_regions
    if rx:
        side = MAX_EVIDENCE_CHARS // 3
        parts.append(f"code: {_shorten(_places(rx), side)} ~ {_shorten(_places(ry), side)}")
    if pair.answer_regions:
        parts.append("answers: " + ", ".join(q for q, _, _ in pair.answer_regions))
    if pair.figure_matches:
        parts.append("figures: " + ", ".join(f"{fa} = {fb}" for fa, fb, _ in pair.figure_matches))
    return _shorten("; ".join(parts), MAX_EVIDENCE_CHARS)


# --------------------------------------------------------------------------- the course


@dataclass
class Comparison:
    """What comparing a course found: the members, what was skipped, the pairs at or above FLOOR
    (highest score first) and the counts the benchmark reports."""

    members: list[str] = field(default_factory=list)  # the submissions compared (not the reference)
    ids: list[str] = field(default_factory=list)  # every course entry's id, compared or skipped
    skipped: list[Skipped] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. two uploads of one student, the later compared
    candidates: int = 0  # candidate pairs from the LSH and figure indexes
    compared: int = 0  # pairs whose signals were computed (candidates and the reference's)

    @property
    def flagged(self) -> list[Pair]:
        return [p for p in self.pairs if p.flagged]

    def entries(self) -> dict[str, list[dict]]:
        """Member id -> the flagged pairs it is in, as its result records them."""
        out: dict[str, list[dict]] = defaultdict(list)
        for p in self.flagged:
            out[p.a].append(p.entry(p.a))
            out[p.b].append(p.entry(p.b))
        return dict(out)


def compare_members(members: Sequence[Member], reference: Member | None = None, mapper: Mapper = map) -> Comparison:
    """Compare the members pairwise through the candidate indexes, and each against ``reference``
    (on code only; always compared). ``mapper`` runs the tokenizer (:func:`normalised`)."""
    members = drop_template_cells(members)
    filtered = list(mapper(normalised, [document(m)[0] for m in members]))
    students = [Indexed(m, code_of(m, f), shingles(m.answers)) for m, f in zip(members, filtered, strict=True)]
    common = common_threshold(len(students))
    counts = Counter(h for ix in students if ix.code.fingerprint is not None for h in ix.code.fingerprint.hashes)
    drop_common_hashes([ix.code for ix in students], {h for h, n in counts.items() if n >= common})
    grams = Counter((q, s) for ix in students for q, g in ix.shingles.items() for s in g)
    crowded = {k for k, n in grams.items() if n >= common}
    for ix in students:
        ix.shingles = {q: {s for s in g if (q, s) not in crowded} for q, g in ix.shingles.items()}

    coded = [i for i, ix in enumerate(students) if ix.code.fingerprint is not None]
    answered = [i for i, ix in enumerate(students) if ix.shingle_count >= MIN_ANSWER_SHINGLES]
    pairs = set()
    found = lsh_candidates(
        [students[i] for i in coded], _code_tokens, [len(students[i].code.fingerprint.hashes) for i in coded]
    )
    pairs |= {(coded[i], coded[j]) for i, j in found}
    found = lsh_candidates(
        [students[i] for i in answered], _answer_tokens, [students[i].shingle_count for i in answered]
    )
    pairs |= {(answered[i], answered[j]) for i, j in found}
    figure_pairs, common_figures = figure_candidates([m.member.figures for m in students], common)
    pairs |= figure_pairs
    figures = [tuple(f for f in ix.member.figures if f.hash not in common_figures) for ix in students]

    result = Comparison(members=[m.id for m in members], candidates=len(pairs))
    for i, j in sorted(pairs):
        pair = compare(students[i], students[j], (figures[i], figures[j]))
        if pair.score >= FLOOR or pair.flagged:
            result.pairs.append(pair)
    result.compared = len(pairs)
    if reference is not None:
        ref = Indexed(reference, code_of(reference), {})
        for ix, mine in zip(students, figures, strict=True):
            pair = compare(ix, ref, (mine, ()))
            result.compared += 1
            if pair.score >= FLOOR or pair.flagged:
                result.pairs.append(pair)
    result.pairs.sort(key=lambda p: (-p.score, p.a, p.b))
    return result


def compare_course(
    root: Path, a: Assignment, out: Path | None = None, pattern: str = CANVAS_PATTERN, workers: int = 1
) -> Comparison:
    """Compare every submission under the course folder ``root`` (``out`` left out; of two uploads
    of one student, the later) with each other and with the reference. Raises SimilarityError for
    a ``root`` that is not a folder or holds no submission."""
    root = Path(root)
    if not root.is_dir():
        raise SimilarityError(f"{root} is not a folder of submissions (a course folder: notebooks and/or folders)")
    entries, notes = course_entries(root, Path(out) if out is not None else root / ".no-out", pattern)
    if not entries:
        held = sorted(p.name for p in root.iterdir())
        shown = ", ".join(held[:5]) + (f", ... ({len(held) - 5} more)" if len(held) > 5 else "")
        what = "it is empty" if not held else f"it holds {shown} and no notebook or submission folder"
        raise SimilarityError(f"no submission in {root}: {what}; nothing to compare")
    with readers(workers, len(entries)) as mapper:
        read = read_members([(p, entry_id(p, pattern)) for p in entries], a, mapper)
        members = [m for m in read if isinstance(m, Member)]
        result = compare_members(members, reference_member(), mapper)
    result.skipped = [s for s in read if isinstance(s, Skipped)]
    result.ids = [entry_id(p, pattern) for p in entries]
    result.notes = notes
    return result


# --------------------------------------------------------------------------- outputs


def _num(x: float) -> str:
    return f"{x:.3f}"


def write_csv(out: Path, comparison: Comparison) -> Path:
    """``<out>/similarity.csv``: one row per pair at or above FLOOR (docs/batch.md#similarity)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for p in comparison.pairs:
        writer.writerow(
            [
                p.a,
                p.b,
                _num(p.code),
                _num(p.answers),
                _num(p.figures),
                _num(p.score),
                str(p.flagged).lower(),
                p.evidence,
            ]
        )
    path = Path(out) / CSV_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue().encode("utf-8"))
    return path


def update_results(out: Path, comparison: Comparison) -> list[str]:
    """Set each compared submission's ``similarity`` field in ``<out>/<id>/result.json`` (its flagged
    pairs, ``[]`` for none) where a result exists; returns the ids whose field changed (their
    reports need drawing again). A result that cannot be read is left alone."""
    from harness.grading.result import SCHEMA
    from harness.io import write_json_atomic

    entries = comparison.entries()
    changed = []
    for sid in comparison.members:
        path = Path(out) / sid / "result.json"
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            continue
        mine = entries.get(sid, [])
        if data.get("similarity", []) == mine:
            continue
        data["similarity"] = mine
        write_json_atomic(path, data)
        changed.append(sid)
    return changed


def summary_view(comparison: Comparison | None, error: str = "") -> dict:
    """What summary.html's similarity section shows (plain data for the template)."""
    if comparison is None:
        return {"error": error, "flagged": [], "skipped": [], "counts": ""}
    flagged = []
    for p in comparison.flagged:
        rx, ry = p.code_regions
        code = [
            {"a_where": x.where, "a_text": x.text, "b_where": y.where, "b_text": y.text}
            for x, y in zip(_padded(rx, len(ry)), _padded(ry, len(rx)), strict=True)
        ][:MAX_SIDE_BY_SIDE]
        flagged.append(
            {
                "a": p.a,
                "b": p.b,
                "code": p.code,
                "answers": p.answers,
                "figures": p.figures,
                "score": p.score,
                "signals": p.signals,
                "evidence": p.evidence,
                "code_regions": code,
                "answers_regions": [
                    {"question": q, "a_text": _shorten(ta, 600), "b_text": _shorten(tb, 600)}
                    for q, ta, tb in p.answer_regions
                ],
                "figure_matches": [f"{fa} = {fb} ({d} bits apart)" for fa, fb, d in p.figure_matches],
            }
        )
    counts = (
        f"{len(comparison.members)} submissions and the reference compared; {comparison.compared} pairs compared, "
        f"{len(comparison.pairs)} at or above {FLOOR:g} (similarity.csv), {len(flagged)} flagged"
    )
    return {
        "error": error,
        "flagged": flagged,
        "skipped": [f"{s.name}: {s.why}" for s in comparison.skipped],
        "counts": counts,
    }


def _padded(regions: Sequence[Region], n: int) -> list[Region]:
    return list(regions) + [Region("", "")] * max(0, n - len(regions))


def default_workers() -> int:
    """The cores this process may use, at most 4 (reading notebooks is the parallel part)."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def publish(out: Path, comparison: Comparison, render: bool = True) -> tuple[Path, list[str]]:
    """Write ``similarity.csv``, set each compared submission's ``similarity`` field where its result
    exists and, with ``render``, draw again the reports whose field changed; returns the csv and a
    line per report that failed to draw."""
    from harness.course.reports import render_documents

    path = write_csv(out, comparison)
    failures = []
    for sid in update_results(out, comparison):
        if not render:
            continue
        failed = [r.error for r in render_documents(Path(out) / sid, ["report"]) if r.error]
        if failed:  # the flag is in result.json; `harness render` draws the report again
            failures.append(f"{sid}: report: {failed[0]}")
    return path, failures


def describe(comparison: Comparison) -> list[str]:
    """The comparison for the terminal: what was skipped, the counts, then each flagged pair."""
    lines = [f"skipped {s.name}: {s.why}" for s in comparison.skipped]
    flagged = comparison.flagged
    lines.append(
        f"similarity: {len(comparison.members)} submissions and the reference, {comparison.compared} pairs compared "
        f"({comparison.candidates} candidates), {len(flagged)} flagged for review"
    )
    for p in flagged:
        lines.append(
            f"similar: {p.a} ~ {p.b} ({', '.join(p.signals)}; code {p.code:.2f}, answers {p.answers:.2f}, "
            f"figures {p.figures:.2f}): {p.evidence}"
        )
    return lines


def redraw_summary(out: Path, comparison: Comparison, a: Assignment) -> Path | None:
    """Draw ``<out>/summary.html`` again with this comparison, when the folder holds one (a graded
    course); its grade rows and profile are read from the stored results."""
    from harness.course.summary import SUMMARY_NAME, write_summary
    from harness.course.table import grade_rows

    out = Path(out)
    if not (out / SUMMARY_NAME).is_file():
        return None
    graded = [sid for sid in comparison.ids if (out / sid).is_dir()]
    profiles = Counter()
    for sid in graded:
        try:
            profiles[json.loads((out / sid / "result.json").read_text(encoding="utf-8")).get("profile", "")] += 1
        except (OSError, ValueError, AttributeError):
            continue
    profile = profiles.most_common(1)[0][0] if profiles else ""
    return write_summary(out, grade_rows(out, graded, a), a, profile, similarity=summary_view(comparison))
