"""Instructors' manual grades: ``<out>/overrides.csv``, merged into every total and report.

The instructor writes the file (the harness never does): one row per overridden rubric item,
columns ``submission,item,points,comment``. Loading is strict (:func:`load_overrides`): a bad
row names the file, its line and the fix. Merging (:func:`merge`) never touches the stored
``result.json``: a regrade rewrites only the automatic result, and the override, kept in the
CSV, is applied to the new one.

"Regrading never overwrites an override; it flags the item when the automatic result changed":
when an override is first applied, the automatic points and status it replaced are remembered
in ``<out>/<id>/overrides.json`` (the *basis*). A later automatic result that differs from the
basis flags the item, until the instructor edits the row (new points or comment: a new
decision, and a new basis) or deletes the basis file (docs/batch.md#overrides).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.grading.result import load_result
from harness.grading.rubric import status_for
from harness.io import write_json_atomic

if TYPE_CHECKING:
    from harness.config.assignment import Assignment

OVERRIDES_NAME = "overrides.csv"
BASIS_NAME = "overrides.json"
BASIS_SCHEMA = "harness.overrides-basis/1"
COLUMNS = ("submission", "item", "points", "comment")
_EPS = 1e-9


class OverridesError(ValueError):
    """``overrides.csv`` cannot be used; the message names the file, each bad line and its fix."""


@dataclass(frozen=True)
class Override:
    """One row of ``overrides.csv``."""

    submission: str
    item: str
    points: float
    comment: str
    line: int  # the row's (last) line in the file, for messages


@dataclass
class Overrides:
    """A loaded ``overrides.csv``: the rows by submission and item, and what to warn about."""

    path: Path | None = None  # None: there is no file
    rows: dict[str, dict[str, Override]] = field(default_factory=dict)  # submission -> item -> row
    warnings: list[str] = field(default_factory=list)

    def of(self, submission: str) -> dict[str, Override]:
        """The submission's overrides by item (empty when it has none)."""
        return self.rows.get(submission, {})


# --------------------------------------------------------------------------- loading


def rubric_points(a: Assignment) -> dict[str, float]:
    """Item id -> its maximum points, from the assignment's rubric."""
    return {k.id: float(k.points) for k in a.rubric}


def result_points(result: Mapping[str, Any]) -> dict[str, float]:
    """Item id -> its maximum points, from a stored result (the report has no assignment)."""
    return {i["id"]: float(i["max_points"]) for i in result.get("items", [])}


def _parse_points(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def header_problems(names: list[str]) -> list[str]:
    """What is wrong with a header line's column names (none: it is usable)."""
    missing = [c for c in COLUMNS if c not in names]
    extra = [h for h in names if h not in COLUMNS]
    return [
        *([f"missing column{'s' * (len(missing) > 1)} {', '.join(missing)}"] if missing else []),
        *([f"unknown column{'s' * (len(extra) > 1)} {', '.join(extra)}"] if extra else []),
        *(["a column appears twice"] if len(set(names)) != len(names) else []),
    ]


def parse_overrides(
    text: str, path: Path, rubric: Mapping[str, float], submissions: Collection[str] | None = None
) -> Overrides:
    """Validate the CSV text of ``path`` against the rubric (item -> max points). Every problem
    is collected, then raised together as one :class:`OverridesError`. A submission not in
    ``submissions`` (when given) is a warning: its rows are kept but match nothing."""
    name = str(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None or not any(h.strip() for h in header):
        raise OverridesError(
            f"{name}:1: no header line. Fix: start the file with the header line "
            f"{','.join(COLUMNS)}, one row per overridden item below"
        )
    names = [h.strip() for h in header]
    problems = header_problems(names)
    if problems:
        raise OverridesError(
            f"{name}:1: header {','.join(names)!r}: {'; '.join(problems)}. Fix: the header line must "
            f"be exactly {','.join(COLUMNS)}"
        )
    errors: list[str] = []
    out = Overrides(path)
    seen: dict[tuple[str, str], int] = {}
    for fields in reader:
        line = reader.line_num
        if not any(f.strip() for f in fields):  # blank lines are allowed
            continue
        if len(fields) > len(names):
            errors.append(
                f"{name}:{line}: {len(fields)} fields, the header has {len(names)}. Fix: quote a comment "
                'that contains a comma ("like, this")'
            )
            continue
        row = dict(zip(names, [f.strip() for f in fields] + [""] * (len(names) - len(fields)), strict=False))
        sid, item = row["submission"], row["item"]
        if not sid:
            errors.append(f"{name}:{line}: the submission is empty. Fix: write the submission id (its folder name)")
            continue
        if item not in rubric:
            errors.append(
                f"{name}:{line}: unknown item {item!r}. Fix: use one of the rubric's item ids: {', '.join(rubric)}"
            )
            continue
        points = _parse_points(row["points"])
        if points is None:
            errors.append(
                f"{name}:{line}: points {row['points']!r} is not a number. Fix: write the points as a "
                f"number from 0 to {rubric[item]:g}, e.g. 2.5"
            )
            continue
        if points < 0 or points > rubric[item] + _EPS:
            errors.append(
                f"{name}:{line}: points {points:g} for {item} are outside 0..{rubric[item]:g}. Fix: write a "
                f"number from 0 to {rubric[item]:g} (the item's maximum)"
            )
            continue
        if (sid, item) in seen:
            errors.append(
                f"{name}:{line}: a second override of {item} for {sid} (the first is on line "
                f"{seen[sid, item]}). Fix: keep one row per submission and item"
            )
            continue
        seen[sid, item] = line
        out.rows.setdefault(sid, {})[item] = Override(sid, item, points, row["comment"], line)
        if submissions is not None and sid not in submissions:
            out.warnings.append(f"{name}:{line}: submission {sid!r} is not in this course; the row applies to nothing")
    if errors:
        raise OverridesError("\n".join(errors))
    return out


def load_overrides(path: Path, rubric: Mapping[str, float], submissions: Collection[str] | None = None) -> Overrides:
    """:func:`parse_overrides` on the file; no file means no overrides."""
    path = Path(path)
    if not path.is_file():
        return Overrides()
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: spreadsheets save UTF-8 with a byte-order mark
    except UnicodeDecodeError as e:
        raise OverridesError(f"{path}: not UTF-8 text (byte {e.start}). Fix: save it as CSV UTF-8") from None
    except OSError as e:
        raise OverridesError(f"{path}: cannot be read ({e.strerror}). Fix: make it readable") from None
    return parse_overrides(text, path, rubric, submissions)


def check_course(out: Path, ids: Collection[str], a: Assignment) -> list[str]:
    """The batch's step before any grading: raise :class:`OverridesError` when
    ``<out>/overrides.csv`` is invalid; else record the basis of every override not yet
    applied, against the result on disk (the one the instructor decided on, so that a regrade
    in this batch is compared with it), and return the file's warnings."""
    out = Path(out)
    overrides = load_overrides(out / OVERRIDES_NAME, rubric_points(a), ids)
    for sid, items in overrides.rows.items():
        if sid not in ids:
            continue
        try:
            result = load_result(out / sid / "result.json")
        except (OSError, ValueError):  # no result yet: the basis is recorded with the first one
            continue
        apply_overrides(out / sid, result, items)
    return overrides.warnings


# --------------------------------------------------------------------------- merging


def _same(a: float, b: float) -> bool:
    return abs(float(a) - float(b)) <= _EPS


def basis_entry(override: Override, item: Mapping[str, Any], created: str) -> dict[str, Any]:
    """What the basis remembers of an override and the automatic result it replaced."""
    return {
        "points": override.points,
        "comment": override.comment,
        "auto_points": item["points"],
        "auto_status": item["status"],
        "result_created": created,
    }


def next_basis(
    result: Mapping[str, Any], overrides: Mapping[str, Override], basis: Mapping[str, dict]
) -> dict[str, dict]:
    """The basis after applying ``overrides`` to ``result``: an entry whose override is
    unchanged is kept (so a changed automatic result stays flagged); a new or edited override
    records the automatic result it now replaces; items no longer overridden are dropped."""
    items = {i["id"]: i for i in result.get("items", [])}
    out = {}
    for item_id, o in overrides.items():
        if item_id not in items:
            continue
        old = basis.get(item_id)
        if old and _same(old.get("points", math.nan), o.points) and old.get("comment") == o.comment:
            out[item_id] = dict(old)
        else:
            out[item_id] = basis_entry(o, items[item_id], result.get("created", ""))
    return out


def change_flag(item_id: str, entry: Mapping[str, Any], item: Mapping[str, Any]) -> str:
    """``""``, or why the overridden item needs another look: its automatic result is not the
    one the override replaced."""
    if _same(entry["auto_points"], item["points"]) and entry["auto_status"] == item["status"]:
        return ""
    return (
        f"override of {item_id}: automatic result changed from {entry['auto_points']:g} ({entry['auto_status']}) "
        f"to {item['points']:g} ({item['status']}) since the override"
    )


def merge(
    result: Mapping[str, Any], overrides: Mapping[str, Override], basis: Mapping[str, dict] | None = None
) -> dict:
    """A copy of a stored result with the overrides applied: each overridden item gets the
    override's points, the status they earn, and ``override`` (``points``, ``comment``,
    ``auto_points``, ``auto_status``, ``changed``); ``total`` is recomputed, the automatic one
    kept as ``auto_total``, and ``flags`` lists the items whose automatic result changed since
    the basis. ``result`` itself is not modified."""
    merged = copy.deepcopy(dict(result))
    flags = []
    for item in merged.get("items", []):
        o = overrides.get(item["id"])
        if o is None:
            continue
        entry = (basis or {}).get(item["id"])
        changed = change_flag(item["id"], entry, item) if entry else ""
        item["override"] = {
            "points": o.points,
            "comment": o.comment,
            "auto_points": item["points"],
            "auto_status": item["status"],
            "changed": changed,
        }
        item["points"], item["status"] = o.points, status_for(o.points, item["max_points"])
        flags += [changed] if changed else []
    present = {i["id"] for i in merged.get("items", [])}
    flags += [f"override of {i}: the result has no such item" for i in overrides if i not in present]
    merged["auto_total"] = result.get("total")
    merged["total"] = sum(i["points"] for i in merged.get("items", []))
    merged["flags"] = flags
    return merged


def read_basis(folder: Path) -> dict[str, dict]:
    """The basis of ``<out>/<id>/``; a missing or damaged file is no basis."""
    try:
        data = json.loads((Path(folder) / BASIS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    items = data.get("items") if isinstance(data, dict) and data.get("schema") == BASIS_SCHEMA else None
    return items if isinstance(items, dict) else {}


def apply_overrides(folder: Path, result: Mapping[str, Any], overrides: Mapping[str, Override]) -> dict:
    """:func:`merge` with the submission's basis, first bringing ``<folder>/overrides.json``
    up to date (written only when it changes; a submission that never had an override gets
    none). A basis that cannot be written is reported in the merged ``flags``."""
    folder = Path(folder)
    old = read_basis(folder)
    new = next_basis(result, overrides, old)
    problem = ""
    if new != old or (not (folder / BASIS_NAME).is_file() and new):
        try:
            write_json_atomic(folder / BASIS_NAME, {"schema": BASIS_SCHEMA, "items": new})
        except OSError as e:
            problem = (
                f"overrides: {folder / BASIS_NAME} could not be written ({e}); changes to the automatic result "
                "go unflagged"
            )
    merged = merge(result, overrides, new)
    merged["flags"] += [problem] if problem else []
    return merged


def report_overrides(folder: Path, result: Mapping[str, Any]) -> tuple[dict, str]:
    """For the instructor report of ``<out>/<id>/``: the result with ``<out>/overrides.csv``
    applied, and ``""``; or, when that file is invalid, the result as stored and the error."""
    folder = Path(folder)
    try:
        overrides = load_overrides(folder.parent / OVERRIDES_NAME, result_points(result))
    except OverridesError as e:
        return dict(result), str(e)
    return apply_overrides(folder, result, overrides.of(folder.name)), ""  # the folder is named by the submission id


# --------------------------------------------------------------------------- batch reruns


def reports_to_refresh(out: Path, ids: Collection[str], overrides: Overrides) -> list[str]:
    """The submissions among ``ids`` whose ``report.html`` no longer shows their overrides
    (``overrides``: ``<out>/overrides.csv`` as loaded now), so a batch that skips them
    (unchanged since their result) renders their report again. A report is stale when it is
    older than the submission's ``overrides.json`` (the overrides were applied since, e.g. by
    ``grades.csv``), when the items overridden in ``overrides.csv`` are not those of the basis
    (rows added or removed), or when the submission has rows in ``overrides.csv`` and the
    report is older than that file (rows edited). Submissions without a result, with an error
    record or without a report are left out."""
    out = Path(out)
    csv_path = out / OVERRIDES_NAME
    csv_mtime = csv_path.stat().st_mtime_ns if csv_path.is_file() else None
    stale = []
    for sid in ids:
        folder = out / sid
        report, basis_path = folder / "report.html", folder / BASIS_NAME
        if not (folder / "result.json").is_file() or (folder / "error.json").is_file() or not report.is_file():
            continue
        mtime = report.stat().st_mtime_ns
        basis = read_basis(folder)
        mine = set(overrides.of(sid))
        if (
            (basis_path.is_file() and mtime < basis_path.stat().st_mtime_ns)
            or mine != set(basis)
            or (mine and csv_mtime is not None and mtime < csv_mtime)
        ):
            stale.append(sid)
    return stale
