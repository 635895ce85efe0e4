"""Reading a student's executed notebook safely: caps, no links, nbformat, Colab's known defects repaired.

Students hand in the executed Colab notebook of the handout. :func:`read_notebook` reads it under
the rules of :mod:`harness.submission.reading` (no symbolic link followed, a bounded read),
parses it with nbformat, upgrades an nbformat 3 notebook to 4, repairs the defects Colab is known
to write and validates what is left against the nbformat schema. A file that is not a notebook is
refused with a :class:`NotebookError` that names it and says what to do; a notebook that is merely
off-schema is kept, its validation errors listed, since grading reads only cells and outputs.

Cells are named as the student sees them: 1-based positions, as Colab and Jupyter number them,
with the execution count (``[12]``) where the cell has one.

Not yet used by the commands (docs/submission-format.md, "Notebooks (being built)").
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat.reader import parse_json
from nbformat.v4.nbbase import random_cell_id
from nbformat.validator import iter_validate

from harness.submission.reading import LINK_RULE, MIB, human_size, read_capped, size_over

# The handouts are ~100 KB; an executed one, with its dozen figures and training logs, a few MB.
# 64 MB leaves room for verbose logs and many images while bounding memory: the parsed tree of a
# notebook takes several times the file's size.
MAX_NOTEBOOK_BYTES = 64 * MIB
SUPPORTED_MAJORS = (3, 4)
IDS_FROM = (4, 5)  # cell ids are required from nbformat 4.5 on
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
MAX_MESSAGE_CHARS = 200  # one validation error, as listed
RESAVE = "download it again from Colab (File > Download > Download .ipynb) and hand in that file"


class NotebookError(ValueError):
    """A file that cannot be read as a notebook; the message names it and says what to do."""


@dataclass(frozen=True)
class NotebookFile:
    """A notebook as read: nbformat 4, repaired; what was repaired and what still fails validation."""

    path: Path
    notebook: nbformat.NotebookNode
    original_version: str  # "major.minor" as written in the file, before any upgrade
    repairs: tuple[str, ...] = ()
    validation: tuple[str, ...] = ()


# --------------------------------------------------------------------------- reading


def read_notebook(path: Path, max_bytes: int = MAX_NOTEBOOK_BYTES) -> NotebookFile:
    """The notebook at ``path``, as nbformat 4 with Colab's known defects repaired and recorded.

    Raises NotebookError for a file that is missing, a link, over ``max_bytes`` (never read whole),
    not UTF-8 JSON, truncated, not a notebook, or of an nbformat other than 3 or 4.
    """
    path = Path(path)
    text = _read_text(path, max_bytes)
    raw = _parse(path.name, text)
    major, minor = _version(path.name, raw)
    repairs: list[str] = []
    nb = _to_v4(path.name, raw, major, minor)
    if major == 3:
        repairs.append("upgraded from nbformat 3 to 4")
    repairs += repair_cells(nb) + repair_widgets(nb)
    return NotebookFile(path, nb, f"{major}.{minor}", tuple(repairs), validation_errors(nb))


def _read_text(path: Path, max_bytes: int) -> str:
    """The file's text: read within the cap, never through a link, strict UTF-8 (a BOM is allowed)."""
    name = path.name
    f = read_capped(path.parent, name, max_bytes)
    if f.why == "missing":
        raise NotebookError(f"{name}: no such file; check the path and hand in the .ipynb file")
    if f.why == "link":
        raise NotebookError(f"{name} is a symbolic link: {LINK_RULE}; hand in the notebook file itself")
    if f.why == "too large":
        raise NotebookError(
            f"{name} is {size_over(f.size, max_bytes)}; the limit is {human_size(max_bytes)}: "
            "clear the outputs of cells that print or plot in loops, save and hand it in again"
        )
    if f.why == "not a file":
        raise NotebookError(f"{name} is not a regular file: hand in the .ipynb file itself")
    if f.why or f.data is None:
        raise NotebookError(f"{name} could not be read ({f.error}): check its permissions")
    try:
        return f.data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise NotebookError(f"{name} is not a notebook: not UTF-8 (byte {e.start}); {RESAVE}") from None


def _parse(name: str, text: str) -> dict[str, Any]:
    """The file's JSON object, via nbformat's parser; a clear message for text that is not one."""
    if not text.strip():
        raise NotebookError(f"{name} is not a notebook: the file is empty; {RESAVE}")
    try:
        raw = parse_json(text)
    except nbformat.reader.NotJSONError as e:
        cause = e.__cause__
        if not isinstance(cause, json.JSONDecodeError):
            raise NotebookError(f"{name} is not a notebook: not JSON; {RESAVE}") from None
        if is_truncated(cause):
            raise NotebookError(
                f"{name} is not a notebook: its JSON is truncated (it ends early, at line {cause.lineno}); "
                f"the upload or download was probably cut off: {RESAVE}"
            ) from None
        raise NotebookError(
            f"{name} is not a notebook: not JSON (line {cause.lineno}, column {cause.colno}); {RESAVE}"
        ) from None
    if not isinstance(raw, dict):
        raise NotebookError(f"{name} is not a notebook: its JSON is a {type(raw).__name__}, not an object; {RESAVE}")
    return raw


def is_truncated(error: json.JSONDecodeError) -> bool:
    """Whether a JSON error is the text ending early: the parser ran into the end of the text
    (Python's parser reports "Unterminated string" only at the end of the text, at the string's start)."""
    return error.pos >= len(error.doc.rstrip()) or error.msg.startswith("Unterminated string")


def _version(name: str, raw: dict[str, Any]) -> tuple[int, int]:
    """The notebook's (major, minor) nbformat, checked: supported, and with the cells it implies."""
    major, minor = raw.get("nbformat"), raw.get("nbformat_minor", 0)
    if "nbformat" not in raw:
        what = "no cells" if "cells" not in raw and "worksheets" not in raw else 'no "nbformat" version'
        raise NotebookError(f"{name} is not a notebook: JSON with {what}; {RESAVE}")
    if not isinstance(major, int) or isinstance(major, bool) or major not in SUPPORTED_MAJORS:
        raise NotebookError(
            f"{name} is nbformat {major!r}, which the harness does not read (only 3 and 4): "
            "open it in Colab or Jupyter, save it (nbformat 4) and hand it in again"
        )
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise NotebookError(f"{name} is not a notebook: its nbformat_minor is {minor!r}, not a number; {RESAVE}")
    cells_key = "worksheets" if major == 3 else "cells"
    if not isinstance(raw.get(cells_key), list):
        raise NotebookError(f'{name} is not a notebook: nbformat {major} without a "{cells_key}" list; {RESAVE}')
    return major, minor


def _to_v4(name: str, raw: dict[str, Any], major: int, minor: int) -> nbformat.NotebookNode:
    """The notebook as nbformat 4: what ``nbformat.reads(text, as_version=4)`` does, without its
    closing validation, which would add missing cell ids unrecorded and log errors to the console."""
    try:
        nb = nbformat.versions[major].to_notebook_json(raw, minor=minor)
        return nbformat.convert(nb, 4)
    except (nbformat.ValidationError, AttributeError, KeyError, TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:MAX_MESSAGE_CHARS] if str(e).strip() else type(e).__name__
        raise NotebookError(
            f"{name} could not be read as nbformat 4 ({first}): "
            "open it in Colab or Jupyter, save it and hand it in again"
        ) from None


# --------------------------------------------------------------------------- repairs


def cell_label(number: int, cell: Any) -> str:
    """A cell as the student sees it: its 1-based position, kind and execution count."""
    kind = cell.get("cell_type", "unknown") if isinstance(cell, dict) else "unknown"
    count = cell.get("execution_count") if isinstance(cell, dict) and kind == "code" else None
    return f"{kind} cell {number}" + (f" [{count}]" if isinstance(count, int) else "")


def repair_cells(nb: nbformat.NotebookNode) -> list[str]:
    """Repair, in place, the cell defects Colab writes; one sentence per repaired cell
    (missing ids: one sentence for all)."""
    repairs: list[str] = []
    for number, cell in enumerate(nb.get("cells", []), start=1):
        if not isinstance(cell, dict):
            continue  # left to validation: nothing sensible to repair
        label = cell_label(number, cell)
        if cell.get("cell_type") == "code":
            missing = [key for key in ("outputs", "execution_count") if key not in cell]
            for key in missing:
                cell[key] = [] if key == "outputs" else None
            if missing:
                repairs.append(f"{label} had no {' and no '.join(_words(missing))}: added empty")
        elif cell.get("cell_type") in ("markdown", "raw"):
            extra = [key for key in ("outputs", "execution_count") if key in cell]
            for key in extra:
                del cell[key]
            if extra:
                repairs.append(f"{label} carried {' and '.join(_words(extra))}, which only code cells have: removed")
    return repairs + repair_ids(nb)


def _words(keys: Iterable[str]) -> list[str]:
    return [key.replace("_", " ") for key in keys]


def repair_ids(nb: nbformat.NotebookNode) -> list[str]:
    """From nbformat 4.5 on, give every cell a unique id (what ``nbformat.validator.normalize``
    does, but recorded): Colab writes 4.5 notebooks without them."""
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < IDS_FROM:
        return []
    cells = [(n, c) for n, c in enumerate(nb.get("cells", []), start=1) if isinstance(c, dict)]
    seen: set[str] = set()
    missing, duplicate = [], []
    for number, cell in cells:
        cell_id = cell.get("id")
        if cell_id is None or cell_id in seen:
            (missing if cell_id is None else duplicate).append(number)
            cell["id"] = _fresh_id(seen)
        seen.add(cell["id"])
    repairs = []
    if missing:
        repairs.append(f"{_cells(missing)} had no id: ids generated")
    if duplicate:
        repairs.append(f"{_cells(duplicate)} repeated an earlier cell's id: new ids generated")
    return repairs


def _fresh_id(seen: set[str]) -> str:
    cell_id = random_cell_id()
    while cell_id in seen:  # astronomically rare
        cell_id = random_cell_id()
    return cell_id


def _cells(numbers: list[int]) -> str:
    """``cell 3`` or ``cells 1-4, 7``: runs of consecutive numbers as ranges."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    parts = [str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs]
    return ("cell " if len(numbers) == 1 else "cells ") + ", ".join(parts)


def repair_widgets(nb: nbformat.NotebookNode) -> list[str]:
    """Drop ``metadata.widgets`` when it lacks its ``state`` (Colab writes the widget models
    directly under the MIME type, which nbconvert and the schema reject); nothing grades widgets."""
    metadata = nb.get("metadata")
    if not isinstance(metadata, dict) or "widgets" not in metadata:
        return []
    widgets = metadata["widgets"]
    if isinstance(widgets, dict) and all(isinstance(entry, dict) and "state" in entry for entry in widgets.values()):
        return []
    del metadata["widgets"]
    return ['the notebook\'s widget metadata had no "state" (a Colab defect): removed']


# --------------------------------------------------------------------------- validation


def validation_errors(nb: nbformat.NotebookNode) -> tuple[str, ...]:
    """Each schema error left after the repairs, one capped line each, located by cell where it is in one."""
    messages = []
    for error in iter_validate(nb):
        path = list(getattr(error, "absolute_path", []) or [])
        where = ""
        if len(path) >= 2 and path[0] == "cells" and isinstance(path[1], int):
            where = f"{cell_label(path[1] + 1, nb['cells'][path[1]])}: "
        first = (getattr(error, "message", None) or str(error)).strip().splitlines() or [type(error).__name__]
        messages.append((where + first[0])[:MAX_MESSAGE_CHARS])
    return tuple(messages)


# --------------------------------------------------------------------------- helpers for grading


def cell_source(cell: Any) -> str:
    """A cell's source as one string (a malformed notebook's list of lines joined)."""
    source = cell.get("source", "")
    if isinstance(source, list):  # left by a malformed notebook: nbformat joins well-formed ones
        return "".join(s for s in source if isinstance(s, str))
    return source if isinstance(source, str) else ""


def _cells_of(nb: NotebookFile | nbformat.NotebookNode, kind: str) -> list[tuple[int, Any]]:
    node = nb.notebook if isinstance(nb, NotebookFile) else nb
    return [
        (n, c) for n, c in enumerate(node.get("cells", []), 1) if isinstance(c, dict) and c.get("cell_type") == kind
    ]


def code_cells(nb: NotebookFile | nbformat.NotebookNode) -> list[tuple[int, str]]:
    """Each code cell's (1-based cell number, source)."""
    return [(n, cell_source(c)) for n, c in _cells_of(nb, "code")]


def markdown_cells(nb: NotebookFile | nbformat.NotebookNode) -> list[tuple[int, str]]:
    """Each markdown cell's (1-based cell number, source)."""
    return [(n, cell_source(c)) for n, c in _cells_of(nb, "markdown")]


def execution_counts(nb: NotebookFile | nbformat.NotebookNode) -> list[tuple[int, int | None]]:
    """Each code cell's (1-based cell number, execution count), None where it never ran."""
    counts = []
    for n, c in _cells_of(nb, "code"):
        count = c.get("execution_count")
        counts.append((n, count if isinstance(count, int) and not isinstance(count, bool) else None))
    return counts


def output_bytes(nb: NotebookFile | nbformat.NotebookNode) -> int:
    """The size of every code cell's outputs as compact UTF-8 JSON: what later caps measure."""
    total = 0
    for _, c in _cells_of(nb, "code"):
        outputs = c.get("outputs", [])
        if outputs:
            total += len(json.dumps(outputs, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    return total
