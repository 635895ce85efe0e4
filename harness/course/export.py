"""``python -m harness export``: a graded course's scores in a gradebook's import format.

Read from the stored results alone, as ``grades.csv`` is (``harness.course.table.grade_rows``, so the
instructor's ``overrides.csv`` is merged in); nothing is graded, and no torch is imported.
Formats (docs/batch.md#export):

- ``csv``: the grade table, the same columns as ``grades.csv``;
- ``canvas``: Canvas's gradebook import CSV, one assignment column, a "Points Possible" row;
- ``gradescope``: the layout of Gradescope's grade export (Name, SID, Email, Total Score,
  Max Points, one column per rubric item), which matches students by SID or email.

A submission without a score (an error record, an unreadable result) keeps its row with the
score empty, and a warning says why.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.config.assignment import Assignment
from harness.course.overrides import check_course
from harness.course.table import ERROR_NAME, grade_rows
from harness.io import write_bytes_atomic

FORMATS = ("canvas", "gradescope", "csv")


class ExportError(ValueError):
    """Nothing can be exported: the message says why and what to do."""


@dataclass
class Exported:
    """What :func:`export` wrote."""

    path: Path
    rows: int  # submissions in the file
    unscored: list[str] = field(default_factory=list)  # ids exported with an empty score
    warnings: list[str] = field(default_factory=list)


def course_ids(reports: Path) -> list[str]:
    """The graded submissions of a reports folder: the visible sub-folders holding a
    ``result.json`` or an ``error.json``, sorted by name (the batch's order)."""
    return sorted(
        p.name
        for p in Path(reports).iterdir()
        if p.is_dir()
        and not p.name.startswith((".", "_"))
        and ((p / "result.json").is_file() or (p / ERROR_NAME).is_file())
    )


def graded_for(reports: Path, ids: list[str]) -> set[str]:
    """The assignment ids the readable results were graded for."""
    found = set()
    for sid in ids:
        try:
            found.add(json.loads((Path(reports) / sid / "result.json").read_text())["assignment"]["id"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # its row says why it has no score
    return found


def _score(x) -> str:
    """A number as the gradebooks read it; a missing one as an empty cell."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{float(x):g}"


def _text(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)


def _csv(lines: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(lines)
    return buf.getvalue()


def grades_table(rows: pd.DataFrame) -> str:
    """``csv``: the grade table as ``grades.csv`` holds it."""
    return rows.to_csv(index=False)


def canvas_table(rows: pd.DataFrame, a: Assignment) -> str:
    """``canvas``: the columns of Canvas's gradebook export, which its import reads back:
    ``Student, ID, SIS User ID, SIS Login ID, Section`` and one assignment column named
    ``<title> (<assignment id>)``, then a ``Points Possible`` row. Canvas's own user id and
    login are not known to the harness and stay empty: Canvas matches a row by its SIS User ID
    (the student's ``student_id``), else by the student's name."""
    head = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", f"{a.meta.title} ({a.meta.id})"]
    possible = ["Points Possible", "", "", "", "", _score(sum(k.points for k in a.rubric))]
    body = [
        [_text(r["student"]), "", _text(r["student_id"]), "", "", _score(r["total"])] for r in rows.to_dict("records")
    ]
    return _csv([head, possible, *body])


def gradescope_table(rows: pd.DataFrame, a: Assignment) -> str:
    """``gradescope``: ``Name, SID, Email, Total Score, Max Points`` and one column per rubric
    item, ``<n>: <title> (<points> pts)``, as Gradescope's grade export names its questions.
    The harness knows no e-mail addresses: Gradescope matches by SID (``student_id``)."""
    items = list(a.rubric)
    head = [
        "Name",
        "SID",
        "Email",
        "Total Score",
        "Max Points",
        *(f"{n}: {k.title} ({float(k.points):.1f} pts)" for n, k in enumerate(items, 1)),
    ]
    max_total = _score(sum(k.points for k in items))
    body = [
        [
            _text(r["student"]),
            _text(r["student_id"]),
            "",
            _score(r["total"]),
            max_total,
            *(_score(r.get(k.id)) for k in items),
        ]
        for r in rows.to_dict("records")
    ]
    return _csv([head, *body])


def row_warnings(rows: pd.DataFrame, fmt: str) -> tuple[list[str], list[str]]:
    """(ids exported without a score, what the instructor should know about the rows)."""
    unscored, notes = [], []
    for r in rows.to_dict("records"):
        flags = _text(r.get("flags"))
        if _score(r["total"]) == "":
            unscored.append(r["id"])
            notes.append(f"{r['id']}: no score exported ({flags or 'no result'})")
            continue
        if r["status"] != "complete" or "automatic result changed" in flags:
            notes.append(f"{r['id']} ({r['status'].replace('_', ' ')}): {flags}")
        if fmt in ("canvas", "gradescope") and not _text(r["student_id"]):
            notes.append(
                f"{r['id']}: no student_id in its submission.toml; {fmt} can only match it by name"
                if _text(r["student"])
                else f"{r['id']}: no student name or student_id; {fmt} cannot match it"
            )
    return unscored, notes


def export(reports: Path, a: Assignment, fmt: str, out: Path | None = None) -> Exported:
    """Write the course's scores in ``fmt`` to ``out`` (default ``<reports>/export-<fmt>.csv``),
    atomically. Raises :class:`ExportError` when there is nothing to export or the results are
    another assignment's, and ``harness.course.overrides.OverridesError`` for an invalid
    ``overrides.csv`` (an export must not silently leave the manual grades out)."""
    reports = Path(reports)
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not reports.is_dir():
        raise ExportError(f"{reports}: no such reports folder")
    ids = course_ids(reports)
    if not ids:
        raise ExportError(
            f"{reports} holds no graded submissions (no <id>/result.json or <id>/error.json); grade the "
            f"course first: python -m harness grade <submissions folder> --out {reports}"
        )
    others = graded_for(reports, ids) - {a.meta.id}
    if others:
        raise ExportError(
            f"the results in {reports} were graded for {', '.join(sorted(others))}, not {a.meta.id}; "
            "pass the assignment they were graded with (--assignment)"
        )
    warnings = check_course(reports, ids, a)
    rows = grade_rows(reports, ids, a)
    tables = {
        "csv": grades_table,
        "canvas": lambda r: canvas_table(r, a),
        "gradescope": lambda r: gradescope_table(r, a),
    }
    path = Path(out) if out else reports / f"export-{fmt}.csv"
    path = path / f"export-{fmt}.csv" if path.is_dir() else path
    write_bytes_atomic(path, tables[fmt](rows).encode("utf-8"))
    unscored, notes = row_warnings(rows, fmt)
    return Exported(path, len(rows), unscored, [*warnings, *notes])
