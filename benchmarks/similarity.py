"""Times the course-wide similarity comparison (harness.course.similarity) on a course built from the
three handouts, and (--calibrate) prints the signal values its thresholds are set between.

    HARNESS_DATA=<MNIST root> python benchmarks/similarity.py [--students 500] [--workers 2] [--seed 0]
    HARNESS_DATA=<MNIST root> python benchmarks/similarity.py --calibrate

The course: --students notebooks of the 2026 handout (variant-b), each solved region by region in
one of two styles (tests/notebooks.py's solution, or tests/test_similarity.py's independent one),
with a few lines of its own in some regions (its own constants), its own answers (words drawn
at random from the example's answers) and its own stored figures (sample grids of random test
digits, reconstructions of the first test digits, loss curves, interpolation strips: PNGs of
handout size). Planted among them: renamed copies of another student's notebook (code), answers
pasted from another student (answers), another student's stored figures (figures) and the
reference implementation pasted into a cell (reference). The notebooks are written first; then
`compare_course` runs as `harness similarity` runs it (--workers reading processes) and the
script prints the time, the peak memory of this process and its readers, and the pair counts:
candidate pairs from the LSH and figure indexes, pairs compared, pairs flagged, and how many of
the planted pairs are among the flagged.

Recorded (2 shared CPU cores, stand-in MNIST, --students 500 --workers 2 --seed 0):

    see docs/batch.md#similarity (the figures are kept there with the thresholds)

--calibrate prints, for each handout year, the code, answers and figures signals of: a notebook and
its renamed copy, a copy of half its regions, two independent solutions, two untouched templates,
the reference pasted into a notebook; and the pHash distances of each stored figure between the
same run and between two runs of one notebook.
"""

from __future__ import annotations

import argparse
import base64
import copy
import io
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from harness.config.assignment import load_assignment  # noqa: E402
from harness.course import similarity as S  # noqa: E402
from tests import notebooks as N  # noqa: E402
from tests.test_similarity import (  # noqa: E402
    OTHER_ANSWERS,
    _alternative,
    _figures_of,
    executed,
    independent,
    pasted_figures,
    renamed_copy,
    with_reference,
)

YEAR = "2026"


# --------------------------------------------------------------------------- the course


def _png(grey: np.ndarray, scale: int) -> bytes:
    from PIL import Image

    image = Image.fromarray((np.clip(grey, 0, 1) * 255).astype(np.uint8)).resize(
        (grey.shape[1] * scale, grey.shape[0] * scale), Image.NEAREST
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _curves(rng) -> np.ndarray:
    canvas = np.ones((120, 300))
    steps = np.arange(300)
    values = 20 + 80 * np.exp(-steps / rng.uniform(20, 80)) + rng.normal(0, 3, steps.size)
    rows = np.clip(119 - values.astype(int), 0, 119)
    canvas[rows, steps] = 0
    return canvas


def figure(kind: str, images: np.ndarray, rng) -> bytes:
    """A stored figure of ``kind`` at about the handout's size, cheaply drawn (no matplotlib)."""
    from tests.handin_pdfs import make_grid

    noise = lambda x: np.clip(x + rng.normal(0, 0.08, x.shape), 0, 1)  # noqa: E731 - one run's model
    if kind == "samples":
        return _png(make_grid(noise(images[rng.choice(len(images), 16)]), 4, pad_value=1.0), 5)
    if kind == "reconstruction":
        return _png(np.concatenate([np.hstack(images[:5]), np.hstack(noise(images[:5]))]), 4)
    if kind == "curves":
        return _png(_curves(rng), 2)
    return _png(make_grid(noise(images[rng.choice(len(images), 7)]), 7, pad_value=1.0), 3)


def student(rng, images, vocabulary: list[str]) -> nbformat.NotebookNode:
    """One student's executed notebook: each region in one of two styles, a few lines of its own,
    its own answers and figures."""
    edits = []
    for old, new in N.solution_edits(YEAR):
        text = new if rng.random() < 0.5 else _alternative(new)
        if rng.random() < 0.5:  # a line of the student's own, after the region's last line
            body = text.rstrip("\n")
            last = body.splitlines()[-1]
            indent = last[: len(last) - len(last.lstrip())]
            mine = f"{indent}_check_{rng.integers(100)} = {rng.uniform():.5f} * {rng.integers(2, 999)}"
            text = f"{body}\n{mine}{text[len(body) :]}"
        edits.append((old, text))
    nb = N.apply(N.handout(YEAR), edits)
    for _qid, index in N._question_cells(nb, YEAR).items():
        words = rng.choice(vocabulary, int(rng.integers(40, 120)))
        nb.cells[index].source = N._with_answer(nb.cells[index].source, " ".join(words))
    for cell in nb.cells:
        if cell.cell_type == "code":
            kinds = _figures_of(cell.source)
            if kinds:  # other cells keep what the handout ships (2026: the staff's data figure)
                cell.outputs = [output(figure(k, images, rng)) for k in kinds]
    return nb


def output(png: bytes) -> nbformat.NotebookNode:
    return nbformat.from_dict(
        {"output_type": "display_data", "metadata": {}, "data": {"image/png": base64.b64encode(png).decode()}}
    )


def paste_answers(into: nbformat.NotebookNode, source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    into = copy.deepcopy(into)
    for (_, index), (_, other) in zip(
        sorted(N._question_cells(into, YEAR).items()), sorted(N._question_cells(source, YEAR).items()), strict=True
    ):
        into.cells[index].source = source.cells[other].source
    return into


def build_course(folder: Path, students: int, seed: int) -> set[tuple[str, str]]:
    """Write the course's notebooks into ``folder``; returns the planted pairs (ids)."""
    from harness.ml.data import load_mnist  # torch: here only, not in the spawned readers

    rng = np.random.default_rng(seed)
    mnist = load_mnist()
    images = mnist.test_images[:2000, 0].numpy().astype(np.float64)
    vocabulary = sorted({w.strip(".,:;()") for t in N.example_answers().values() for w in t.split()})
    planted: set[tuple[str, str]] = set()
    made: dict[str, nbformat.NotebookNode] = {}
    copies, answers, figures, references = (max(1, students // n) for n in (50, 100, 100, 150))
    for i in range(students):
        sid = f"{100000 + i}"
        others = list(made)
        if len(others) > 10 and copies and i % 7 == 3:
            src = others[int(rng.integers(len(others)))]
            nb, copies = renamed_copy(made[src]), copies - 1
            planted.add((src, sid))
        elif len(others) > 10 and answers and i % 7 == 5:
            src = others[int(rng.integers(len(others)))]
            nb, answers = paste_answers(student(rng, images, vocabulary), made[src]), answers - 1
            planted.add((src, sid))
        elif len(others) > 10 and figures and i % 7 == 6:
            src = others[int(rng.integers(len(others)))]
            nb, figures = pasted_figures(student(rng, images, vocabulary), made[src]), figures - 1
            planted.add((src, sid))
        elif references and i % 11 == 9:
            nb, references = with_reference(student(rng, images, vocabulary)), references - 1
            planted.add((sid, S.REFERENCE_ID))
        else:
            nb = student(rng, images, vocabulary)
        made[sid] = nb
        nbformat.write(nb, str(folder / f"student{i}_{sid}_{700000 + i}_vae.ipynb"))
    return planted


def _hwm_mb(pid: int) -> int:
    """A live process's peak resident memory (VmHWM) in MB, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _explained(flagged: set, planted: set) -> set:
    """The flagged pairs whose two members the planted pairs join, directly or through others
    (a copy of a copy: the second copier and the first source share the code too)."""
    group = {}
    for a, b in planted:
        ga, gb = group.get(a, {a}), group.get(b, {b})
        for m in ga | gb:
            group[m] = ga | gb
    return {p for p in flagged if p[1] in group.get(p[0], set())}


def benchmark(args) -> None:
    """Build the course, then compare it as an instructor does: ``python -m harness similarity`` in a
    child process, whose peak memory (and its readers') is read from /proc while it runs (VmHWM:
    getrusage would also count this process, which the child was forked from)."""
    import csv
    import re
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        course, out = Path(tmp) / "course", Path(tmp) / "out"
        course.mkdir()
        started = time.perf_counter()
        planted = {tuple(sorted(p)) for p in build_course(course, args.students, args.seed)}
        size = sum(p.stat().st_size for p in course.iterdir()) / 2**20
        print(f"built {args.students} notebooks ({size:.0f} MB) in {time.perf_counter() - started:.0f} s")
        command = [sys.executable, "-m", "harness", "similarity", str(course), "--out", str(out)]
        command += ["--assignment", N.CONFIG[YEAR], "--workers", str(args.workers), "--no-report"]
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        peaks: dict[int, int] = {}
        while child.poll() is None:
            for pid in [child.pid, *_children(child.pid)]:
                peaks[pid] = max(peaks.get(pid, 0), _hwm_mb(pid))
            time.sleep(0.1)
        stdout, stderr = child.communicate()
        seconds = time.perf_counter() - started
        if child.returncode:
            raise SystemExit(f"harness similarity failed ({child.returncode}): {stderr}")
        with open(out / S.CSV_NAME, newline="") as f:
            flagged = {tuple(sorted((r["a"], r["b"]))) for r in csv.DictReader(f) if r["flagged"] == "true"}
    said = next(line for line in stdout.splitlines() if "pairs compared" in line)
    compared, candidates = map(int, re.search(r"(\d+) pairs compared \((\d+) candidates\)", said).groups())
    inside = re.search(r"done in ([\d.]+) s", stdout).group(1)
    readers = sorted((v for k, v in peaks.items() if k != child.pid), reverse=True)
    n = args.students
    print(
        f"`harness similarity` on {n} notebooks: {seconds:.1f} s wall, {inside} s after start-up "
        f"({args.workers} reading processes)"
    )
    print(f"peak memory: the command {peaks.get(child.pid, 0)} MB, its readers {readers[: args.workers]} MB")
    print(f"candidate pairs from LSH and the figure index: {candidates}")
    print(
        f"pairs compared: {compared} (of {n * (n - 1) // 2} pairs of students, and one per student with the reference)"
    )
    explained = _explained(flagged, planted)
    print(
        f"pairs flagged: {len(flagged)}; planted {len(planted)}, of them flagged {len(planted & flagged)}; "
        f"flagged and not joined by planted copies: {len(flagged - explained)}"
    )


# --------------------------------------------------------------------------- calibration


def _members(notebooks: dict[str, nbformat.NotebookNode], a, folder: Path) -> dict[str, S.Member]:
    out = {}
    for name, nb in notebooks.items():
        path = folder / f"{name}.ipynb"
        nbformat.write(nb, str(path))
        out[name] = S.read_member(path, name, a)
    return out


def _half_copy(nb, other) -> nbformat.NotebookNode:
    """``other`` with the code cells of the second half of ``nb``'s TODO cells (its own answers)."""
    mixed = copy.deepcopy(other)
    todo = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "TODO" in c.source]
    for i in todo[len(todo) // 2 :]:
        mixed.cells[i].source = nb.cells[i].source
    return mixed


def calibrate(args) -> None:
    from harness.ml.data import load_mnist

    mnist = load_mnist()
    digits = (mnist.test_images[:600, 0].numpy().astype(np.float64), mnist.test_labels[:600].numpy())
    for year in N.YEARS:
        a = load_assignment(N.CONFIG[year])
        done = N.complete(year)
        own = independent(year)
        cases = {
            "solution": done,
            "renamed copy": renamed_copy(done),
            "half copied": _half_copy(done, own),
            "independent": own,
            "template": N.handout(year),
            "template 2": N.handout(year),
            "reference pasted": with_reference(own),
        }
        with tempfile.TemporaryDirectory() as tmp:
            members = _members(cases, a, Path(tmp))
            comparison = S.compare_members(list(members.values()), S.reference_member())
            everything = S.drop_template_cells(list(members.values()))
            ix = {m.id: S.Indexed(m, S.code_of(m), S.shingles(m.answers)) for m in everything}
            ix[S.REFERENCE_ID] = S.Indexed(S.reference_member(), S.code_of(S.reference_member()), {})
            print(f"{year}: {'pair':<42}{'code':>7}{'answers':>9}")
            for x, y in itertools.combinations(ix, 2):
                code, _, _ = S.compare_code(ix[x], ix[y])
                answers, _ = S.compare_answers(ix[x], ix[y])
                print(f"      {x + ' ~ ' + y:<42}{code:>7.3f}{answers:>9.3f}")
            print(f"      flagged: {[(p.a, p.b, p.signals) for p in comparison.flagged]}")
            runs = _members({f"run {r}": executed(done, digits, r) for r in range(4)}, a, Path(tmp))
            apart = [
                (f.cell, (f.hash ^ g.hash).bit_count())
                for x, y in itertools.combinations(runs.values(), 2)
                for f in x.figures
                for g in y.figures
                if (f.cell, f.index) == (g.cell, g.index)
            ]
            by_cell: dict[int, list[int]] = {}
            for cell, d in apart:
                by_cell.setdefault(cell, []).append(d)
            same = [(f.hash ^ f.hash).bit_count() for m in runs.values() for f in m.figures]
            print(
                f"      figures, same run pasted: max {max(same)} bits; two runs of the notebook, per cell: "
                + ", ".join(f"{c}: {min(d)}-{max(d)}" for c, d in sorted(by_cell.items()))
            )
    print(
        f"thresholds: code {S.CODE_FLAG}, answers {S.ANSWERS_FLAG}, figures {S.FIGURES_FLAG} "
        f"(at most {S.FIGURE_MAX_DISTANCE} bits apart, {S.MIN_FIGURES_MATCHED} figures at least), "
        f"floor {S.FLOOR}; answer words by another student: {len(OTHER_ANSWERS)} questions"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--students", type=int, default=500)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--calibrate", action="store_true", help="print the signals the thresholds sit between")
    args = p.parse_args()
    calibrate(args) if args.calibrate else benchmark(args)


if __name__ == "__main__":
    main()
