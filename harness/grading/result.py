"""The result of checking or grading one submission, as versioned plain JSON.

Schema: docs/result-schema.md. Other tools (reports, batch tables, exports)
read these files, never the harness's objects.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from harness import __version__
from harness.config.assignment import Assignment
from harness.grading.rubric import ItemResult, total
from harness.io import write_json_atomic
from harness.submission.contents import Submission

SCHEMA = "harness.result/1"


@dataclass
class Result:
    kind: Literal["check", "grade", "write-up"]
    submission: dict[str, Any]  # id, student, student_id, tuned_beta, content_hash
    assignment: dict[str, Any]  # id, title, digest
    profile: str
    items: list[ItemResult]
    pending: list[str] = field(default_factory=list)  # rubric items this kind of run does not grade
    problems: list[str] = field(default_factory=list)  # submission-level messages (missing files, ...)
    answers: dict[str, Any] = field(default_factory=dict)  # per question: words, limit, concepts found
    timings: dict[str, float] = field(default_factory=dict)
    protections: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    reference: dict[str, Any] = field(default_factory=dict)  # grade: the reference it was judged against
    runs: dict[str, Any] = field(default_factory=dict)  # grade, write-up: each training run, how it ended, measures
    artifacts: str = ""  # grade, write-up: the run artefacts file beside this one (harness.grading.artifacts)
    # a notebook: what reading it found (harness.submission.contents.NotebookFacts) and "cells", each
    # code cell's run in the definition pass: role, seconds, substitutions, error (docs/result-schema.md)
    notebook: dict[str, Any] = field(default_factory=dict)
    # grade: the hand-in PDF against the notebook and the re-run (harness.grading.handin), {} without a PDF
    pdf_check: dict[str, Any] = field(default_factory=dict)
    # check, grade: results no honest run reaches and code that is not the student's own, one
    # {"code", "message", "evidence", "items"} per flag (harness.grading.integrity.Flag); the items
    # named are held for review. Older files lack the field: read it with .get("integrity", [])
    integrity: list[dict[str, Any]] = field(default_factory=list)
    # grade in a course: the pairs of the course-wide comparison this submission is flagged in, one
    # {"with", "code", "answers", "figures", "score", "signals", "evidence"} each (harness.course.similarity;
    # set after the batch, for review only: no points change). Older files lack it: .get("similarity", [])
    similarity: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> float:
        return total(self.items)[0]

    @property
    def max_total(self) -> float:
        return total(self.items)[1]

    @property
    def failed(self) -> bool:
        failing = any(i.status in ("fail", "partial", "error", "timeout") for i in self.items)
        return failing or bool(self.problems) or bool(self.integrity)  # a held item is needs_review, at 0 points

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {"schema": SCHEMA, **data, "total": self.total, "max_total": self.max_total}


def submission_result(
    kind: str,
    sub: Submission,
    a: Assignment,
    profile: str,
    items: list[ItemResult],
    pending: list[str],
    answers: dict,
    timings: dict,
    protections: list[str],
    versions: dict[str, str],
    reference: dict | None = None,
    cells: list[dict] | None = None,
) -> Result:
    """A result of ``sub`` with its provenance (the protections in force, versions, time); for a
    notebook, what reading it found and how its cells ran (``cells``)."""
    notebook = {**sub.notebook.to_json(), "cells": list(cells or [])} if sub.notebook else {}
    return Result(
        kind=kind,
        submission=sub.summary(),
        assignment={"id": a.meta.id, "title": a.meta.title, "digest": a.digest},
        profile=profile,
        items=items,
        pending=pending,
        problems=list(sub.problems),
        answers=answers,
        timings=timings,
        protections=protections,
        versions=versions,
        created=now(),
        reference=reference or {},
        notebook=notebook,
    )


def run_versions() -> dict[str, str]:
    import torch

    return {"harness": __version__, "torch": torch.__version__, "python": platform.python_version()}


def installed_versions() -> dict[str, str]:
    """As :func:`run_versions`, without importing torch (its installed distribution's version):
    for results of runs that never load it (``report --stored``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = ""
    return {"harness": __version__, "torch": torch_version, "python": platform.python_version()}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_result(path: Path, result: Result) -> None:
    """Atomic: a crash leaves the old file or the new one, never half of one."""
    write_json_atomic(path, result.to_json())


def load_result(path: Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {data.get('schema')!r}, this harness reads {SCHEMA!r}")
    return data


def gradescope(result: Result) -> dict[str, Any]:
    """Gradescope's autograder ``results.json``: one test per rubric item, evidence as output."""
    tests = []
    for item in result.items:
        output = "\n".join(str(e) for e in item.evidence)
        if item.status == "needs_review":
            output += "\n(suggested score: an instructor reviews it)"
        tests.append(
            {
                "name": item.title,
                "score": item.points,
                "max_score": item.max_points,
                "output": output,
                "visibility": "visible",
                "status": "passed" if item.status == "pass" else "failed",
            }
        )
    return {
        "score": result.total,
        "tests": tests,
        "output": f"{result.assignment['title']}: {result.total:g} / {result.max_total:g} ({result.profile} profile)",
        "visibility": "visible",
    }
