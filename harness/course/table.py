"""The course's grade table: one row per submission from its stored result (or error record),
the instructor's ``<out>/overrides.csv`` merged in, written as ``<out>/grades.csv``.

Read from the stored files alone, so it needs no grading code and imports no torch: the batch
writes it after grading, ``export`` reads it for the gradebooks, and ``summary.html`` is drawn
from it (harness.course.summary).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.config.assignment import Assignment
from harness.course.overrides import (
    BASIS_NAME,
    OVERRIDES_NAME,
    Overrides,
    OverridesError,
    apply_overrides,
    load_overrides,
    rubric_points,
)
from harness.grading.result import load_result
from harness.io import write_bytes_atomic

ERROR_NAME = "error.json"  # a submission whose grading failed: written by the batch, shown by the table
GRADES_NAME = "grades.csv"
INTEGRITY_PREFIX = "integrity: "  # how an integrity flag's message starts in the ``flags`` cell


def grade_rows(out: Path, ids: list[str], a: Assignment) -> pd.DataFrame:
    """One row per submission from its stored result (or error record): id, student, the points
    of every rubric item, total, status and flags. Status: ``error`` (grading failed, or an item
    errored or timed out), ``incomplete`` (the submission has problems: missing files, bad
    metadata), ``needs_review`` (an answer awaits an instructor), else ``complete``.

    ``pdf`` says how the hand-in PDF compared with the notebook and the re-run (:func:`pdf_column`;
    its flags are in ``flags`` too). ``integrity`` lists the codes of the result's integrity flags
    (:func:`integrity_column`; their messages are in ``flags`` too, their items held for review).

    The instructor's ``<out>/overrides.csv`` is merged in (harness.course.overrides): points, totals
    and statuses include the overrides, ``overridden`` lists the overridden items and ``flags``
    says when an overridden item's automatic result changed. An invalid ``overrides.csv`` is not
    applied (the batch refuses one before grading); every row says so and ``rows.attrs``
    holds the reason (``overrides_error``) and the file's warnings (``overrides_warnings``)."""
    try:
        overrides, overrides_error = load_overrides(out / OVERRIDES_NAME, rubric_points(a), ids), ""
    except OverridesError as e:  # the grades are still written, without the overrides
        overrides, overrides_error = Overrides(), str(e)
    not_applied = [f"{OVERRIDES_NAME} not applied: it is invalid"] if overrides_error else []
    rows = []
    for sid in ids:
        row = {"id": sid, "student": "", "student_id": ""}
        folder = out / sid
        waiting = [f"overrides wait for a result: {', '.join(overrides.of(sid))}"] if overrides.of(sid) else []
        if (folder / ERROR_NAME).is_file():
            err = json.loads((folder / ERROR_NAME).read_text())
            rows.append(
                {
                    **row,
                    "total": None,
                    "max_total": None,
                    "status": "error",
                    "flags": "; ".join([err["error"], *waiting]),
                }
            )
            continue
        try:
            r = load_result(folder / "result.json")
        except (OSError, ValueError) as e:
            rows.append(
                {
                    **row,
                    "total": None,
                    "max_total": None,
                    "status": "error",
                    "flags": "; ".join([f"no result ({e})", *waiting]),
                }
            )
            continue
        if overrides.of(sid) or (folder / BASIS_NAME).is_file():  # also when the last override was removed
            r = apply_overrides(folder, r, overrides.of(sid))
        items = {i["id"]: i for i in r["items"]}
        review = [i["id"] for i in r["items"] if i["status"] == "needs_review"]
        broken = [f"{i['id']} {i['status']}" for i in r["items"] if i["status"] in ("error", "timeout")]
        status = "error" if broken else "incomplete" if r.get("problems") else "needs_review" if review else "complete"
        pdf, pdf_flags = pdf_column(r.get("pdf_check") or {})
        integrity, integrity_flags = integrity_column(r.get("integrity", []))
        flags = "; ".join(
            [
                *(f"review {x}" for x in review),
                *broken,
                *r.get("problems", []),
                *integrity_flags,
                *r.get("flags", []),
                *pdf_flags,
                *not_applied,
            ]
        )
        rows.append(
            {
                **row,
                "student": r["submission"].get("student", ""),
                "student_id": r["submission"].get("student_id", ""),
                **{k.id: items[k.id]["points"] if k.id in items else None for k in a.rubric},
                "total": r["total"],
                "max_total": r["max_total"],
                "status": status,
                "flags": flags,
                "overridden": "; ".join(i["id"] for i in r["items"] if "override" in i),
                "pdf": pdf,
                "integrity": integrity,
            }
        )
    columns = [
        "id",
        "student",
        "student_id",
        *(k.id for k in a.rubric),
        "total",
        "max_total",
        "status",
        "flags",
        "overridden",
        "pdf",
        "integrity",
    ]
    table = pd.DataFrame(rows, columns=columns)
    table.attrs.update(overrides_error=overrides_error, overrides_warnings=list(overrides.warnings))
    return table


def pdf_column(check: dict) -> tuple[str, list[str]]:
    """The grade table's ``pdf`` cell for a result's ``pdf_check`` and its flags, each prefixed
    "PDF:": ``""`` (no PDF handed in), ``matches``, ``N mismatch(es)`` or ``unreadable``. The
    check changes no points: its flags are for review."""
    if not check:
        return "", []
    flags = [f"PDF: {f}" for f in check.get("flags", [])]
    if check.get("error"):
        return "unreadable", flags
    return ("matches" if not flags else f"{len(flags)} mismatch{'es' if len(flags) > 1 else ''}"), flags


def integrity_column(flags: list[dict]) -> tuple[str, list[str]]:
    """The grade table's ``integrity`` cell for a result's ``integrity`` flags: their codes joined by
    ``;`` (``""`` when there are none), and the flags' messages for ``flags``, each prefixed
    :data:`INTEGRITY_PREFIX`. The items a flag names are held for review at 0 points until an
    instructor's override restores them (harness.grading.integrity)."""
    codes = ";".join(dict.fromkeys(str(f.get("code", "")) for f in flags))
    return codes, [INTEGRITY_PREFIX + str(f.get("message", "")).replace("; ", ", ") for f in flags]


def write_grades(out: Path, rows: pd.DataFrame) -> Path:
    """``<out>/grades.csv`` from :func:`grade_rows`."""
    path = out / GRADES_NAME
    write_bytes_atomic(path, rows.to_csv(index=False).encode("utf-8"))
    return path
