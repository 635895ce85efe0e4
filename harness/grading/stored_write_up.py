"""``harness report NOTEBOOK --stored``: the write-up from a notebook's stored outputs alone.

Nothing is trained, no sandbox is opened, no MNIST is read and torch is never imported, so a
student gets the write-up in seconds: their notebook's own figures, each in its write-up slot
(``harness.submission.notebook_figures``), the tuned beta as their code writes it, and their
answers. Each run is recorded with status ``stored`` and the beta and epochs its cell sets;
``notebook.missing_figures`` says why each empty slot is empty, and the write-up ends with that
checklist. Output, as ``harness.grading.write_up``: ``write-up.json`` (profile ``stored``),
``write-up.npz`` (the stored PNGs) and, through ``harness.documents.render``, the HTML and PDF.
"""

from __future__ import annotations

import time
from pathlib import Path

from harness.config.assignment import Assignment, Profile
from harness.config.plan import run_plan
from harness.grading import artifacts
from harness.grading.items.answers import score_answers
from harness.grading.result import Result, installed_versions, submission_result
from harness.submission.identity import CANVAS_PATTERN
from harness.submission.notebook_load import load

RESULT_NAME, ARTIFACTS_NAME = "write-up.json", "write-up.npz"  # as harness.grading.write_up's
STORED_PROFILE = "stored"  # the result's profile: nothing was trained


def stored_write_up(path: Path, a: Assignment, out: Path | None = None, name_pattern: str = CANVAS_PATTERN) -> Result:
    """The write-up result of the notebook at ``path``; with ``out``, its stored figures are written
    there (``write-up.npz``). Raises NotebookError when ``path`` is not a notebook of ``a``'s handout."""
    started = time.perf_counter()
    sub = load(path, a, name_pattern)
    facts = sub.notebook
    runs = {}
    for plan in run_plan(a, Profile(STORED_PROFILE, "the notebook as handed in", 0, 1.0)):
        coded = facts.stored_runs.get(plan.name, {}) if facts else {}
        runs[plan.name] = {
            "role": plan.role,
            "kind": plan.kind,
            "beta": sub.tuned_beta if plan.role == "tuned" else plan.beta,
            "epochs": coded.get("epochs"),
            "cell": coded.get("cell"),
            "status": "stored",
            "error": "",
            "traceback": "",
        }
    _, answers = score_answers(a, sub)
    timings = {"total": round(time.perf_counter() - started, 2)}
    # no student code ran: no protections to record, and torch is not imported for its version
    result = submission_result(
        "write-up", sub, a, STORED_PROFILE, [], [r.id for r in a.rubric], answers, timings, [], installed_versions()
    )
    result.runs = runs
    if out is not None:
        artifacts.write_artifacts(out / ARTIFACTS_NAME, artifacts.stored_arrays(facts.figures if facts else ()))
        result.artifacts = ARTIFACTS_NAME
    return result
