"""Which of the write-up's figures a notebook's stored outputs hold, and why the others are missing.

The course's write-up (the seed's order) shows the AE's samples; for beta = 0, beta = 10 and the
tuned beta the training curves, reconstructions and samples; and AE/VAE interpolation strips. A
notebook carries those as PNG outputs of its cells. Each stored figure is placed in a *slot*
(``"ae/samples"``, ``"beta-0/curves"``, ``"interpolation/1/vae"``, ...) by two things together:

- **the cell**: its role in the handout (``[notebook] roles``) and, for the VAE's figures, the run
  it belongs to. A VAE-run cell's beta is the one its code assigns (or passes as ``beta=``); the
  cell holding the tuned-beta slot is the tuned run. Cells without a role that follow a run cell
  (``vis_reconstruction(vae_model)``) show that run.
- **the plot content**, read from the image: a line plot with two axes is the two loss curves;
  a grey picture is a sample *grid* (about square), reconstruction *pairs* (two rows, about 5:2)
  or a *strip* (one row: the interpolation). Position inside a cell never decides alone: two
  figures of one kind for one slot leave the slot empty and say it is ambiguous.

2020/2022's handout trains every beta in one VAE cell, so its outputs hold only the last run;
the missing runs are reported as overwritten, with what the student can do about it.

The handout's names read here (``beta``, ``epochs``, the interpolation function and its label
variables, the models and sampling function the messages name) are the assignment's
``[notebook.names]``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.config.assignment import Assignment, NotebookNames
from harness.submission.cells import Cell, CellMap
from harness.submission.contents import StoredFigure
from harness.submission.images import open_png
from harness.submission.notebook_code import DEFAULT_NAMES, TunedBeta, number, runnable_source

ANALYSIS_SIDE = 256  # figures are read downscaled to this longest side
_DARK, _COLOUR = 110, 60  # grey level of "ink"; channel spread of a coloured (plotted line) pixel


@dataclass(frozen=True)
class FigureShape:
    """What a stored figure looks like: ``curves`` (a line plot, ``panels`` axes), ``grid``,
    ``pairs``, ``strip`` (grey pictures by the aspect of their dark area) or ``other``."""

    kind: str
    panels: int = 0
    aspect: float = 0.0

    def describe(self) -> str:
        if self.kind == "curves":
            return "two loss curves" if self.panels == 2 else f"a line plot with {self.panels or 'no'} axes"
        words = {"grid": "a square image grid", "pairs": "two rows of images", "strip": "one row of images"}
        return words.get(self.kind, "an image the harness does not recognise")


def _grey_and_spread(png: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """The PNG downscaled to ANALYSIS_SIDE: its grey levels and each pixel's colour spread (max -
    min channel), transparency composited on white; None when it cannot be decoded."""
    image = open_png(png, ANALYSIS_SIDE)
    if image is None:
        return None
    rgb = np.asarray(image, dtype=np.int16)
    return rgb.mean(axis=2).astype(np.uint8), (rgb.max(axis=2) - rgb.min(axis=2)).astype(np.uint8)


def shape_of(png: bytes) -> FigureShape:
    """The figure's kind from its pixels (see the module docstring)."""
    decoded = _grey_and_spread(png)
    if decoded is None:
        return FigureShape("other")
    grey, spread = decoded
    h, w = grey.shape
    if (spread > _COLOUR).mean() > 0.002:
        # axes frames are long thin lines (faint once downscaled): a left and a right spine per panel
        dark_cols = (grey < 235).mean(axis=0) > 0.6
        runs = int(np.count_nonzero(dark_cols[1:] & ~dark_cols[:-1]) + dark_cols[0])
        return FigureShape("curves", panels=max(1, runs // 2) if runs else 0)
    dark = grey < _DARK
    rows = dark.mean(axis=1) > 0.05
    if not rows.any():
        return FigureShape("other")
    cols = dark[rows].mean(axis=0) > 0.05
    top, bottom = np.flatnonzero(rows)[[0, -1]]
    left, right = np.flatnonzero(cols)[[0, -1]] if cols.any() else (0, w - 1)
    aspect = (right - left + 1) / (bottom - top + 1)
    kind = "grid" if 0.6 <= aspect <= 1.6 else "pairs" if 1.6 < aspect <= 3.6 else "strip" if aspect > 3.6 else "other"
    return FigureShape(kind, aspect=round(float(aspect), 2))


# --------------------------------------------------------------------------- slots


@dataclass(frozen=True)
class RunCell:
    """A VAE-run cell: the run it trains and the beta and epochs its code sets."""

    cell: int
    run: str  # the run name (config), "" when its beta is neither a fixed one nor the tuned cell's
    beta: float | None
    epochs: float | None = None


@dataclass(frozen=True)
class Placement:
    """Stored figures placed in the write-up's slots: slot -> figure key, each figure's shape and
    slot, and a student-actionable reason for each empty slot."""

    slots: dict[str, str]
    shapes: dict[str, str]  # figure key -> FigureShape.describe()
    placed: dict[str, str]  # figure key -> slot ("" when it is in none)
    missing: dict[str, str]  # slot -> why it is empty
    runs: dict[str, dict]  # run name -> {"cell", "beta", "epochs"} as its cell's code sets them (the last such cell)
    comparisons: list[dict]  # per interpolation comparison with figures: {"cell", "start", "end"} (labels as coded)


def slot_names(a: Assignment, comparisons: int = 1) -> list[str]:
    """The write-up's figure slots in the seed's order."""
    t = a.training
    runs = [s.name for s in t.fixed] + [t.tuned.name]
    names = [f"{t.ae.name}/samples"]
    names += [f"{run}/{what}" for run in runs for what in ("curves", "reconstructions", "samples")]
    names += [f"interpolation/{n}/{m}" for n in range(1, max(1, comparisons) + 1) for m in ("ae", "vae")]
    return names


def handout_names(a: Assignment) -> NotebookNames:
    """The assignment's ``[notebook.names]`` (the defaults for an assignment without ``[notebook]``)."""
    return a.notebook.names if a.notebook is not None else DEFAULT_NAMES


def cell_setting(text: str, name: str) -> float | None:
    """The number a cell sets ``name`` to: its last top-level ``name = <number>``, else the number a
    call passes as ``name=`` (``run_with_beta(5, 1e-3, beta=10)``); None when it sets none."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    assigned = [
        n for n in tree.body if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == name for t in n.targets)
    ]
    if assigned:
        return number(assigned[-1].value)
    passed = [n.value for n in ast.walk(tree) if isinstance(n, ast.keyword) and n.arg == name]
    return next((v for v in map(number, passed) if v is not None), None)


def _trains(text: str) -> bool:
    """Whether a VAE-run cell runs anything at top level (not only ``def run_with_beta``)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return "for " in text
    return any(not isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)) for n in tree.body)


def run_cells(cells: Sequence[Cell], cell_map: CellMap, a: Assignment, tuned: TunedBeta) -> list[RunCell]:
    """The VAE-run cells that train, each with its run name (by the tuned-beta slot, else by beta)."""
    fixed = {s.beta: s.name for s in a.training.fixed}
    names = handout_names(a)
    found = []
    for c in cells:
        if c.number not in cell_map.roles.get("vae_runs", ()) or c.cell_type != "code":
            continue
        text = runnable_source(c.source).text
        if not _trains(text):
            continue
        beta = cell_setting(text, names.beta)
        run = a.training.tuned.name if c.number == tuned.cell else fixed.get(beta, "") if beta is not None else ""
        found.append(RunCell(c.number, run, beta, cell_setting(text, names.epochs)))
    return found


def run_labels(a: Assignment) -> dict[str, str]:
    """How the checklist names each run: ``{"ae": "AE", "beta-0": "β = 0", ..., "tuned": "tuned β"}``."""
    labels = {a.training.ae.name: "AE"} | {s.name: f"β = {_num(s.beta)}" for s in a.training.fixed}
    return labels | {a.training.tuned.name: "tuned β"}


def checklist(missing: dict[str, str], labels: dict[str, str]) -> list[str]:
    """The empty slots as lines a student acts on, one per run (or comparison) and reason:
    "β = 0 training curves, reconstructions and samples: not in the notebook; ..."."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for slot, why in missing.items():
        run, _, what = slot.partition("/")
        if run == "interpolation":
            n, _, model = what.partition("/")
            key, part = (f"interpolation comparison {n}", why), f"{model.upper()} strip"
        else:
            key, part = (labels.get(run, run), why), _WHAT.get(what, what)
        grouped.setdefault(key, []).append(part)
    lines = []
    for (label, why), parts in grouped.items():
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        lines.append(f"{label} {listed}: {why}")
    return lines


def _interpolation_order(text: str, function: str) -> list[str]:
    """``ae`` / ``vae`` per ``function(model, "tag", ...)`` call (the handout's
    ``interpolate_and_visualize``), in the code's order."""
    order = []
    call = re.compile(rf"\s*{re.escape(function)}\(\s*(\w+)\s*,\s*(['\"])(.*?)\2")
    for line in text.splitlines():
        m = call.match(line)
        if m:
            model, tag = m.group(1).lower(), m.group(3).lower()
            order.append("vae" if "vae" in model or "variational" in tag else "ae")
    return order


def place_figures(
    cells: Sequence[Cell], cell_map: CellMap, figures: Sequence[StoredFigure], a: Assignment, tuned: TunedBeta
) -> Placement:
    """Each stored figure in its slot, by cell and content; a reason for every empty slot."""
    ae = a.training.ae.name
    names = handout_names(a)
    shapes = {f.key: shape_of(f.png) for f in figures}
    by_cell: dict[int, list[StoredFigure]] = {}
    for f in figures:
        by_cell.setdefault(f.cell, []).append(f)
    runs = run_cells(cells, cell_map, a, tuned)
    run_of_cell = {r.cell: r for r in runs}
    wants: dict[str, list[StoredFigure]] = {}  # slot -> candidate figures
    ambiguous_why: dict[str, str] = {}

    current: RunCell | None = None
    comparisons, labels = 0, []
    for c in cells:
        if c.cell_type != "code":
            continue
        role = cell_map.role_of(c.number)
        if c.number in run_of_cell:
            current = run_of_cell[c.number]
        elif role:
            current = None  # a run's figures are in its cell and the role-less cells after it
        mine = by_cell.get(c.number, [])
        if not mine:
            continue
        if role == "sampling":
            wants.setdefault(f"{ae}/samples", []).extend(f for f in mine if shapes[f.key].kind == "grid")
        elif role == "interpolation" or (role == "" and f"{names.interpolation_function}(" in c.source):
            strips = [f for f in mine if shapes[f.key].kind == "strip"]
            text = runnable_source(c.source).text
            order = _interpolation_order(text, names.interpolation_function)
            if not strips:
                continue
            comparisons += 1
            start, end = (cell_setting(text, n) for n in names.interpolation_labels)
            labels.append({"cell": c.number, "start": _label(start), "end": _label(end)})
            if len(order) == len(strips):
                for model, f in zip(order, strips, strict=True):
                    wants.setdefault(f"interpolation/{comparisons}/{model}", []).append(f)
            else:
                slot = f"interpolation/{comparisons}/ae"
                ambiguous_why[slot] = (
                    f"cell {c.number} shows {len(strips)} one-row images but its code makes {len(order)} "
                    "interpolation calls: which is the AE's and which the VAE's cannot be told"
                )
        elif current is not None and current.run:
            kinds = {"curves": "curves", "pairs": "reconstructions", "grid": "samples"}
            for f in mine:
                s = shapes[f.key]
                what = kinds.get(s.kind)
                if what == "curves" and s.panels != 2:
                    continue  # the write-up's curves are the two loss curves
                if what:
                    wants.setdefault(f"{current.run}/{what}", []).append(f)

    slots, placed = {}, {f.key: "" for f in figures}
    for slot, found in wants.items():
        if len(found) == 1:
            slots[slot] = found[0].key
            placed[found[0].key] = slot
        elif len(found) > 1:
            where = ", ".join(f"cell {f.cell} image {f.index + 1}" for f in found)
            ambiguous_why[slot] = f"{len(found)} figures look like it ({where}); the harness does not guess which"
    names = slot_names(a, comparisons)
    missing = {
        s: ambiguous_why.get(s) or _why_missing(s, cells, cell_map, runs, a, tuned, figures)
        for s in names
        if s not in slots
    }
    by_run = {r.run: {"cell": r.cell, "beta": r.beta, "epochs": r.epochs} for r in runs if r.run}
    return Placement(slots, {k: v.describe() for k, v in shapes.items()}, placed, missing, by_run, labels)


_WHAT = {"curves": "training curves", "reconstructions": "reconstructions", "samples": "samples"}


def _why_missing(
    slot: str,
    cells: Sequence[Cell],
    cell_map: CellMap,
    runs: list[RunCell],
    a: Assignment,
    tuned: TunedBeta,
    figures: Sequence[StoredFigure],
) -> str:
    """Why a slot is empty, in words a student acts on."""
    if not figures:
        return "the notebook has no stored figures (it was saved without outputs): run all its cells and save it again"
    run, _, what = slot.partition("/")
    names = handout_names(a)
    if run == a.training.ae.name:
        cell = cell_map.cell("sampling")
        where = f"the sampling cell (cell {cell})" if cell else "no sampling cell was found, and the notebook"
        call = f"{names.sample_function}({names.ae_model})"
        return f"{where} stores no square image grid: run `{call}` and save the notebook with its output"
    if run == "interpolation":
        cell = cell_map.cell("interpolation")
        where = f"the interpolation cell (cell {cell})" if cell else "the notebook"
        return f"{where} stores no AE and VAE interpolation strips: run it and save the notebook with its outputs"
    label = _beta_label(run, a)
    mine = [r for r in runs if r.run == run]
    if run == a.training.tuned.name and tuned.value is None:
        return f"no tuned β is set ({tuned.problem or 'the tuned-beta slot is empty'}): set it, run the cell and save"
    if not mine:
        if len(runs) == 1:
            only = runs[0]
            return (
                f"not in the notebook: the handout's VAE cell (cell {only.cell}) keeps only its last run "
                f"(β = {_num(only.beta)}); re-running it with another β overwrote the {label} outputs. Run "
                f"`harness report` without --stored, or re-run cell {only.cell} with {label} and keep a copy of "
                "its outputs"
            )
        return f"no VAE cell trains with {label}: add one (a copy of the VAE cell with {label}) and run it"
    cell = mine[-1].cell
    return (
        f"the {label} run (cell {cell}) stores no {_WHAT.get(what, what)}"
        f"{' plot with two axes' if what == 'curves' else ''}: run cell {cell} and the cell that visualises "
        f"its `{names.vae_model}`, then save the notebook with its outputs"
    )


def _beta_label(run: str, a: Assignment) -> str:
    fixed = {s.name: s.beta for s in a.training.fixed}
    return f"β = {_num(fixed[run])}" if run in fixed else "the tuned β"


def _label(x: float | None) -> int | None:
    return int(x) if x is not None and x == int(x) else None


def _num(x: float | None) -> str:
    return "?" if x is None else f"{x:g}"
