"""The course dashboard: ``<out>/summary.html``, written by a batch after ``grades.csv``.

One self-contained page (figures as ``data:`` URIs, inline style and script): the score
distribution overall and per rubric item, a sortable table with one row per submission
linking its report, and the lists of submissions that need review or had errors. It reads
only the grade table (``harness.course.table.grade_rows``) and the assignment's rubric. Submissions
with integrity flags (harness.grading.integrity), their items held for review, have a section of
their own above the table, and so do the pairs of hand-ins flagged as similar (harness.course.similarity,
given by the batch: no points change).
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from harness.config.assignment import Assignment
from harness.course.table import INTEGRITY_PREFIX
from harness.io import write_bytes_atomic

SUMMARY_NAME = "summary.html"
STATUSES = ("complete", "needs_review", "incomplete", "error")  # a grade row's status (harness.course.table.grade_rows)


def status_counts(grades: pd.DataFrame) -> dict[str, int]:
    """How many rows of the grade table have each status, every status listed (zeros too), in
    :data:`STATUSES` order. The one count that summary.html, the batch's progress bar and its
    closing line all show, so they agree."""
    counts = {s: int((grades["status"] == s).sum()) for s in STATUSES}
    others = grades.loc[~grades["status"].isin(STATUSES), "status"].value_counts()  # none today; never dropped
    return {**counts, **{str(k): int(v) for k, v in others.items()}}


def describe_counts(counts: dict[str, int], sep: str = ", ") -> str:
    """``2 complete, 0 needs review, 1 incomplete, 1 error``."""
    return sep.join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def total_histogram(totals: np.ndarray, max_total: float) -> bytes:
    """How many submissions earned each total (at most 20 bins over 0..max_total)."""
    from harness.documents import figures

    fig, ax = figures.plt.subplots(figsize=(5.5, 2.2))
    bins = np.linspace(0, max_total, int(min(20, max(1, max_total))) + 1)
    ax.hist(totals, bins=bins, color=figures.SECOND, edgecolor="white")
    ax.set_xlim(0, max_total)
    ax.set_xlabel("total points")
    ax.set_ylabel("submissions")
    ax.yaxis.get_major_locator().set_params(integer=True)
    return figures.to_png(fig)


def item_shares(grades: pd.DataFrame, a: Assignment) -> bytes:
    """Per rubric item: each submission's share of the points (dots) and the mean (bar)."""
    from harness.documents import figures

    items = list(a.rubric)
    fig, ax = figures.plt.subplots(figsize=(6.6, 0.32 * len(items) + 0.7))
    rng = np.random.default_rng(0)  # fixed jitter: the same table draws the same picture
    for row, item in enumerate(items):
        shares = grades[item.id].dropna().to_numpy(dtype=float) / item.points
        y = len(items) - 1 - row
        ax.barh(y, shares.mean() if len(shares) else 0.0, color="#d9e2ec", height=0.7)
        ax.scatter(shares, y + rng.uniform(-0.2, 0.2, len(shares)), s=9, color=figures.SECOND, zorder=3)
    ax.set_yticks(range(len(items)))
    ax.set_yticklabels([f"{i.id} ({i.points:g})" for i in reversed(items)])
    ax.set_xlim(-0.03, 1.03)
    ax.set_xlabel("share of the item's points (bar: mean)")
    return figures.to_png(fig)


def summary_context(grades: pd.DataFrame, a: Assignment, profile: str, similarity: dict | None = None) -> dict:
    graded = grades[grades["total"].notna()]
    max_total = sum(r.points for r in a.rubric)
    records = grades.astype(object).where(grades.notna(), None).to_dict("records")
    return {
        "title": a.meta.title,
        "profile": profile,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rubric": list(a.rubric),
        "max_total": max_total,
        "rows": records,
        "counts": describe_counts(status_counts(grades), " · "),
        "mean": float(graded["total"].mean()) if len(graded) else None,
        "median": float(graded["total"].median()) if len(graded) else None,
        "review": [r for r in records if r["status"] == "needs_review"],
        "errors": [r for r in records if r["status"] == "error"],
        "pdf_review": [r for r in records if r.get("pdf") and r["pdf"] != "matches"],
        "integrity": integrity_rows(records),
        "histogram": _uri(total_histogram(graded["total"].to_numpy(dtype=float), max_total)) if len(graded) else None,
        "items": _uri(item_shares(graded, a)) if len(graded) else None,
        # the course-wide comparison (harness.course.similarity.summary_view); None: not run with this page
        "similarity": similarity,
    }


def integrity_rows(records: list[dict]) -> list[dict]:
    """The submissions with integrity flags (the grade table's ``integrity`` codes), each with its
    ``codes`` and the flags' ``messages`` (the ``flags`` cell's entries that start with
    :data:`~harness.course.table.INTEGRITY_PREFIX`)."""
    out = []
    for r in records:
        if not r.get("integrity"):
            continue
        parts = str(r.get("flags") or "").split("; ")
        messages = [p[len(INTEGRITY_PREFIX) :] for p in parts if p.startswith(INTEGRITY_PREFIX)]
        out.append({**r, "codes": str(r["integrity"]).split(";"), "messages": messages})
    return out


def write_summary(out: Path, grades: pd.DataFrame, a: Assignment, profile: str, similarity: dict | None = None) -> Path:
    """Render ``summary.html`` from the grade table (and the course's similarity comparison, when given)."""
    from harness.documents.render import environment, templates_dir

    env = environment()
    css = (templates_dir() / "style.css").read_text(encoding="utf-8")
    html = env.get_template("summary.html.j2").render(css=css, **summary_context(grades, a, profile, similarity))
    path = out / SUMMARY_NAME
    write_bytes_atomic(path, html.encode("utf-8"))
    return path
