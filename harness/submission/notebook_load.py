"""A handed-in Colab notebook as a :class:`~harness.submission.contents.Submission`.

A notebook submission is a ``.ipynb`` file, or a folder holding one (optionally with the student's
PDF and a ``submission.toml`` with ``student`` and ``student_id``). Reading it:

1. :func:`harness.submission.notebook.read_notebook`: bounded read, nbformat 3 upgraded, Colab's
   defects repaired and recorded; a file that is no notebook raises NotebookError.
2. The handout it follows must be the assignment's (its ``[notebook]`` markers): a notebook of
   another assignment is refused by name (``harness.submission.cells``).
3. Each code cell becomes a :class:`CodeSource` with its number, role and IPython lines taken out
   (``harness.submission.notebook_code``); the sandbox runs them in one namespace, in order.
4. Answers from the question cells, the tuned beta from the tuned-beta slot, identity from
   ``submission.toml`` or else the file name (``harness.submission.identity``).
5. Forensics of the stored outputs: execution counts out of order, outputs stripped, a stored
   figure older than the code it shows.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import replace
from pathlib import Path

from harness.config.assignment import Assignment
from harness.submission.cells import (
    Cell,
    CellMap,
    assignment_name,
    detect_handout,
    detection_problem,
    map_roles,
    missing_markers,
    untouched_todos,
)
from harness.submission.contents import CodeSource, NotebookFacts, StoredFigure, Submission
from harness.submission.files import content_hash
from harness.submission.folder import beta_problem, toml_table
from harness.submission.identity import CANVAS_PATTERN, identity_from_name
from harness.submission.notebook import NotebookError, NotebookFile, cell_source, execution_counts, read_notebook
from harness.submission.notebook_answers import notebook_answers
from harness.submission.notebook_code import runnable_source, tuned_beta
from harness.submission.notebook_figures import place_figures
from harness.submission.notebook_logs import stored_losses
from harness.submission.reading import MAX_META_BYTES, read_capped

NOTEBOOK_SUFFIX = ".ipynb"
PDF_SUFFIX = ".pdf"
META = "submission.toml"
CELLS_FILE = "notebook-cells.json"  # what the sandbox's units read the cells from (harness.sandbox.notebook_run)
MAX_STORED_FIGURES = 40  # the report shows what the notebook carries; a notebook of 500 images shows its first 40
MAX_FIGURE_BYTES = 4 << 20
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Roles whose code later cells use: a stored figure older than one of these shows older code.
DEFINING_ROLES = ("encoder_decoder", "autoencoder", "vae_model", "sampling", "reconstruction")


def notebooks_in(folder: Path) -> list[Path]:
    """The notebooks directly in ``folder`` (checkpoint copies Jupyter keeps in hidden folders are not)."""
    return sorted(p for p in folder.iterdir() if p.suffix == NOTEBOOK_SUFFIX and not p.name.startswith("."))


def notebook_path(path: Path) -> Path:
    """The notebook a path hands in: the file itself, or the one notebook of a folder.
    Raises NotebookError for a folder with none or several."""
    path = Path(path)
    if not path.is_dir():
        return path
    found = notebooks_in(path)
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise NotebookError(f"{path} must hold exactly one notebook (.ipynb) to be graded as one; it holds {names}")
    return found[0]


def cells_of(nb: NotebookFile) -> list[Cell]:
    """Every cell as ``(number, type, source)``, numbered from 1 as Colab shows them."""
    out = []
    for number, cell in enumerate(nb.notebook.get("cells", []), start=1):
        if not isinstance(cell, dict):
            continue
        out.append(Cell(number, str(cell.get("cell_type", "")), cell_source(cell)))
    return out


def _code(cells: list[Cell], cell_map: CellMap) -> tuple[tuple[CodeSource, ...], tuple[str, ...]]:
    code, removed = [], []
    for c in cells:
        if c.cell_type != "code":
            continue
        runnable = runnable_source(c.source)
        removed += [f"cell {c.number}: {line}" for line in runnable.removed]
        code.append(
            CodeSource(f"cell {c.number}", runnable.text, c.number, cell_map.role_of(c.number), runnable.removed)
        )
    return tuple(code), tuple(removed)


def _meta(folder: Path, problems: list[str]) -> dict:
    f = read_capped(folder, META, MAX_META_BYTES)
    if f.data is None:
        if f.why != "missing":
            problems.append(f"{META} could not be read ({f.why}); the student is named from the file name")
        return {}
    return toml_table(f.data, META, problems, "the student is named from the file name")


def _run_cells(a: Assignment, cell_map: CellMap, runs: dict[str, dict]) -> dict[str, int]:
    """The cell whose stored output is each run's log: the AE training cell, and each VAE run's
    cell as its code sets the run (the last such cell)."""
    found = {name: int(r["cell"]) for name, r in runs.items() if isinstance(r.get("cell"), int)}
    ae = cell_map.roles.get("ae_training", ())
    if ae:
        found[a.training.ae.name] = int(ae[-1])
    return found


def forensics(nb: NotebookFile, cell_map: CellMap) -> list[str]:
    """What the stored outputs and execution counts say about how the notebook was run."""
    flags = []
    counts = execution_counts(nb)
    ran = [(n, c) for n, c in counts if c is not None]
    cells = nb.notebook.get("cells", [])
    with_outputs = [n for n, _ in counts if cells[n - 1].get("outputs")]
    if counts and not ran:
        flags.append("no code cell has an execution count: the notebook was saved unrun or with its outputs cleared")
    if counts and not with_outputs:
        flags.append("no code cell carries outputs: they were stripped or never produced")
    late = [(n, c, pn, pc) for (pn, pc), (n, c) in zip(ran, ran[1:], strict=False) if c < pc]
    if late:
        shown = "; ".join(f"cell {n} [{c}] after cell {pn} [{pc}]" for n, c, pn, pc in late[:5])
        more = f" and {len(late) - 5} more" if len(late) > 5 else ""
        flags.append(f"execution counts out of document order ({shown}{more}): cells were run out of order")
    by_number = dict(counts)
    for n in with_outputs:
        count = by_number.get(n)
        if count is None or not any("image/png" in o.get("data", {}) for o in cells[n - 1].get("outputs", [])):
            continue
        newer = [
            (role, m, by_number[m])
            for role in DEFINING_ROLES
            for m in cell_map.roles.get(role, ())
            if m < n and by_number.get(m) is not None and by_number[m] > count
        ]
        if newer:
            role, m, c = newer[0]
            flags.append(
                f"cell {n}'s stored figure [{count}] is older than cell {m} [{c}] ({role.replace('_', ' ')}), whose "
                "code it uses: the figure may not show the code as handed in"
            )
    return flags


def handout_of(path: Path, assignments: list[Assignment]) -> Assignment:
    """The one assignment whose handout the notebook at ``path`` follows (its ``[notebook]``
    markers); NotebookError, naming what is missing, for a notebook of none or of several."""
    nb = read_notebook(notebook_path(path))
    cells = cells_of(nb)
    found = detect_handout(cells, assignments)
    if found is None:
        raise NotebookError(f"{nb.path.name}: {detection_problem(cells, assignments)}")
    return found


def course_handout(folder: Path, assignments: list[Assignment]) -> Assignment | None:
    """The handout a course folder's notebooks follow (directly in it or one per sub-folder), when
    those that can be read all follow one; None when there are none. A course mixing handouts
    raises NotebookError: it must be graded once per assignment, with ``--assignment``."""
    paths = notebooks_in(folder) + [
        p
        for sub in sorted(folder.iterdir())
        if sub.is_dir() and not sub.name.startswith(".")
        for p in notebooks_in(sub)
    ]
    found: dict[str, list[str]] = {}
    by_name = {}
    for path in paths:
        try:
            a = handout_of(path, assignments)
        except NotebookError:
            continue  # its own error record says why, when it is graded
        found.setdefault(assignment_name(a), []).append(path.name)
        by_name[assignment_name(a)] = a
    if len(found) > 1:
        shown = "; ".join(f"{name}: {', '.join(names[:3])}" for name, names in sorted(found.items()))
        raise NotebookError(f"{folder} holds notebooks of several handouts ({shown}); grade each with --assignment")
    return next(iter(by_name.values()), None)


def stored_figures(nb: NotebookFile, cell_map: CellMap) -> tuple[list[StoredFigure], int]:
    """The PNG images the code cells' outputs carry, in notebook order (at most MAX_STORED_FIGURES,
    each at most MAX_FIGURE_BYTES; anything that is not a PNG is left out), and how many PNG
    outputs there are in all (the ones past the cap are counted, never decoded)."""
    found: list[StoredFigure] = []
    total = 0
    for number, cell in enumerate(nb.notebook.get("cells", []), start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        index = 0
        for output in cell.get("outputs", []):
            data = output.get("data", {}) if isinstance(output, dict) else {}
            text = data.get("image/png") if isinstance(data, dict) else None
            if text is None:
                continue
            total += 1
            if len(found) >= MAX_STORED_FIGURES:
                continue
            if isinstance(text, list):
                text = "".join(t for t in text if isinstance(t, str))
            if not isinstance(text, str) or len(text) > MAX_FIGURE_BYTES * 4 // 3 + 4:
                continue
            try:
                png = base64.b64decode(text, validate=False)
            except (binascii.Error, ValueError):
                continue
            if not png.startswith(PNG_MAGIC):
                continue
            found.append(StoredFigure(number, cell_map.role_of(number), index, png))
            index += 1
    return found, total


def _check_handout(cells: list[Cell], nb: NotebookFile, a: Assignment) -> None:
    name = assignment_name(a)
    if a.notebook is None:
        raise NotebookError(f"{nb.path.name}: the assignment {name} has no [notebook] table: it grades folders only")
    missing = missing_markers(cells, a.notebook)
    if missing:
        lacks = " and ".join(repr(m) for m in missing)
        raise NotebookError(
            f"{nb.path.name} is not a notebook of the {name} handout: no code line starts with {lacks}; "
            "pass the notebook's own assignment with --assignment, or hand in the course's notebook"
        )


def load(path: Path, a: Assignment, pattern: str = CANVAS_PATTERN) -> Submission:
    """The notebook at ``path`` (a ``.ipynb`` file or a folder holding one) as a submission of ``a``.
    Raises NotebookError for a file that is not a notebook of this assignment's handout; the
    student's mistakes inside it become ``problems``, never exceptions."""
    path = Path(path)
    nb_path = notebook_path(path)
    nb = read_notebook(nb_path)
    cells = cells_of(nb)
    _check_handout(cells, nb, a)
    cell_map = map_roles(cells, a.notebook)
    code, removed = _code(cells, cell_map)
    problems: list[str] = []
    notes = list(cell_map.notes) + [f"{role}: no cell found" for role in cell_map.missing]

    found = notebook_answers(cells, cell_map, a)
    notes += list(found.notes)
    beta = tuned_beta(cells, cell_map, names=a.notebook.names)
    value = beta.value
    if beta.problem:
        problems.append(f"tuned beta: {beta.problem}")
    elif why := beta_problem(value):
        problems.append(f"tuned beta (cell {beta.cell}, `{beta.text}`): {why}")
        value = None
    else:
        notes.append(f"tuned beta: `{beta.text}` in cell {beta.cell}")

    folder = path if path.is_dir() else nb_path.parent
    identity = identity_from_name(nb_path.name, pattern)
    meta = _meta(folder, problems) if path.is_dir() else {}
    student, student_id = meta.get("student", identity.student), meta.get("student_id", identity.student_id)
    if not (isinstance(student, str) and student) and not (isinstance(student_id, str) and student_id):
        problems.append(
            f"no student named: {nb_path.name} does not match the file-name pattern and there is no {META} "
            "(docs/submission-format.md#notebooks)"
        )
    files = [nb_path.relative_to(folder)]
    if path.is_dir():
        files += sorted(p.relative_to(folder) for p in folder.iterdir() if p.suffix.lower() == PDF_SUFFIX)
        files += [Path(META)] if (folder / META).is_file() else []
    figures, images = stored_figures(nb, cell_map)
    if images > len(figures) and len(figures) == MAX_STORED_FIGURES:
        notes.append(f"the outputs hold {images} images; the first {MAX_STORED_FIGURES} are kept for the documents")
    placement = place_figures(cells, cell_map, figures, a, beta)
    figures = [replace(f, slot=placement.placed[f.key], shape=placement.shapes[f.key]) for f in figures]
    untouched = tuple(
        {"role": t.role, "cell": t.cell, "lines": [t.region.start, t.region.end], "placeholder": t.region.placeholder}
        for t in untouched_todos(cells, cell_map)
    )
    facts = NotebookFacts(
        file=nb_path.name,
        handout=assignment_name(a),
        nbformat=nb.original_version,
        roles={role: list(numbers) for role, numbers in cell_map.roles.items()},
        repairs=nb.repairs,
        validation=nb.validation,
        notes=tuple(notes),
        removed=removed,
        untouched=untouched,
        forensics=tuple(forensics(nb, cell_map)),
        figures=tuple(figures),
        missing_figures=placement.missing,
        stored_runs=placement.runs,
        comparisons=tuple(placement.comparisons),
        tuned_beta={"cell": beta.cell, "text": beta.text} if beta.cell is not None else {},
        stored_losses=stored_losses(
            nb.notebook.get("cells", []), _run_cells(a, cell_map, placement.runs), a.notebook.printed_losses
        ),
    )
    return Submission(
        id=path.name if path.is_dir() else identity.id,
        path=folder,
        kind="notebook",
        label=nb_path.name,
        module=CELLS_FILE,
        code=code,
        files=tuple(files),
        student=student if isinstance(student, str) else "",
        student_id=student_id if isinstance(student_id, str) else "",
        tuned_beta=value,
        answers=found.answers,
        content_hash=content_hash(folder, files),
        problems=tuple(problems),
        notebook=facts,
    )
