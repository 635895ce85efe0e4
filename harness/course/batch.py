"""``harness grade submissions/``: a whole course, graded against one shared reference.

Every submission below the course folder is graded as ``harness grade`` grades one (its code in
its own sandbox), by ``--workers`` at a time. A submission is a sub-folder (its name is its id) or
a notebook file as an LMS download holds them, one per student (its id from the file name:
``harness.submission.identity``; of two uploads of one student, the later is graded).
Faults never cost data:

- each submission's result is written atomically to ``<out>/<id>/result.json`` as soon as it
  is graded, keyed by the submission's content hash, the reference and the profile; a batch
  started again grades only what is missing or changed (``--force`` regrades everything);
- an exception while grading one submission is recorded as its error (``<out>/<id>/error.json``)
  and the batch goes on;
- one batch at a time per output folder: a second one is refused with a clear message
  (``<out>/.batch.lock``, an advisory lock the operating system releases when its holder dies).

At the end every pair of submissions is compared for similarity (harness.course.similarity:
``<out>/similarity.csv``, flags for review in the results, reports and dashboard; a failure there
is reported and the batch goes on), ``<out>/grades.csv`` has one row per submission
(harness.course.table) and ``<out>/summary.html`` is the course's dashboard (harness.course.summary;
docs/batch.md), both with
the instructor's manual grades in ``<out>/overrides.csv`` merged in (harness.course.overrides), as
in each instructor report (harness.course.reports).
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness import __version__
from harness.config.assignment import Assignment

# the course's entries live with the comparison, which must not load torch; named here as before
from harness.course.entries import course_entries, discover, entry_id  # noqa: F401
from harness.course.overrides import (
    OVERRIDES_NAME,
    OverridesError,
    check_course,
    load_overrides,
    reports_to_refresh,
    rubric_points,
)
from harness.course.reports import render_documents
from harness.course.summary import describe_counts, status_counts, write_summary
from harness.course.table import ERROR_NAME, grade_rows, write_grades
from harness.grading.grade import grade_submission
from harness.grading.grader import Grader
from harness.grading.result import load_result, write_result
from harness.grading.session import RunOptions
from harness.io import write_json_atomic
from harness.progress import Progress
from harness.sandbox.host import Protections
from harness.submission.files import content_hash

LOCK_NAME = ".batch.lock"


class BatchLocked(RuntimeError):
    """Another batch holds the output folder."""


class IsolationRefused(RuntimeError):
    """Isolation is required and the sandbox here lacks some of its protections."""


@dataclass(frozen=True)
class BatchOptions:
    workers: int = 1
    force: bool = False
    render: bool = True  # the instructor report per submission
    quiet: bool = False
    run: RunOptions = RunOptions()  # each submission's run; its output folder is set per submission
    # refuse to run student code where the sandbox's full set of protections is not in force;
    # checked by a Dask worker on its own machine (harness.course.cluster), by the CLI before a local batch
    require_isolation: bool = False


@dataclass
class Outcome:
    """What happened to one submission in this batch."""

    id: str
    status: str  # "graded", "skipped" (unchanged since its result), "error"
    seconds: float = 0.0
    error: str = ""
    full_marks: bool = False  # graded: the total reached the maximum


@dataclass
class BatchSummary:
    outcomes: list[Outcome] = field(default_factory=list)
    grades: Path | None = None  # grades.csv
    summary: Path | None = None  # summary.html (None when it could not be drawn)
    summary_error: str = ""
    notes: list[str] = field(default_factory=list)  # what the course folder held that was not graded, and why
    seconds: float = 0.0
    rows: pd.DataFrame | None = None  # what grades.csv and summary.html were written from
    similarity: Path | None = None  # similarity.csv (None: the comparison was not run, or failed)
    similarity_error: str = ""  # why the comparison failed (the grades stand)
    similarity_lines: list[str] = field(default_factory=list)  # what it found, for the terminal

    def count(self, status: str) -> int:
        """Outcomes of this run: ``graded``, ``skipped`` or ``error`` (grading failed)."""
        return sum(o.status == status for o in self.outcomes)

    def closing_line(self) -> str:
        """What the batch did, then the statuses of the rows, counted as summary.html counts them."""
        done = (
            f"{len(self.outcomes)} submissions: {self.count('graded')} graded, {self.count('skipped')} unchanged "
            "since their result (--force regrades)"
        )
        return done if self.rows is None else f"{done}; {describe_counts(status_counts(self.rows))}"


def isolation_refusal(prot: Protections, required: bool, where: str = "on this machine") -> str | None:
    """Why student code must not run, when isolation is ``required`` and some of the sandbox's
    documented protections are not in force; None when it may run."""
    if not required or not prot.missing:
        return None
    return (
        f"isolation is required (--require-isolation) but {len(prot.missing)} of the sandbox's protections "
        f"{'is' if len(prot.missing) == 1 else 'are'} not in force {where}: {'; '.join(prot.missing)}. No student "
        "code was run. Put them in force (docs/sandbox.md), or pass --no-require-isolation to run it with fewer "
        "protections"
    )


def isolation_warnings(prot: Protections) -> list[str]:
    """One warning per protection not in force, for the terminal before student code runs."""
    return [f"{line} — student code runs with fewer protections; see docs/sandbox.md" for line in prot.missing]


def up_to_date(folder: Path, out: Path, g: Grader, sid: str | None = None) -> bool:
    """Has this exact submission already been graded, against this reference and profile, under
    this assignment file (rubric, thresholds, questions) and harness version?"""
    sid = sid or entry_id(folder)
    path = out / sid / "result.json"
    if not path.is_file():
        return False
    if (out / sid / ERROR_NAME).is_file():  # the last attempt failed: try again
        return False
    try:
        r = load_result(path)
    except (ValueError, OSError):  # a damaged result is regraded
        return False
    return (
        r.get("submission", {}).get("content_hash")
        == (content_hash(folder) if folder.is_dir() else content_hash(folder.parent, [Path(folder.name)]))
        and r.get("profile") == g.profile.name
        and r.get("reference", {}).get("key") == g.reference.key
        and r.get("assignment", {}).get("digest") == g.a.digest
        and r.get("versions", {}).get("harness") == __version__
    )


class _Lock:
    """``<out>/.batch.lock``, held for the batch; refused when another process holds it."""

    def __init__(self, out: Path):
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / LOCK_NAME
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> _Lock:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            raise BatchLocked(
                f"{self.path.parent} is being graded by another batch ({holder}); "
                "wait for it to finish or use another --out folder"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def record_error(out: Path, sub_id: str, e: BaseException, seconds: float = 0.0) -> Outcome:
    """A submission whose grading failed: its ``<out>/<id>/error.json`` and its outcome."""
    error = f"{type(e).__name__}: {e}"
    tb = "".join(traceback.format_exception(e, limit=8))
    try:
        write_json_atomic(out / sub_id / ERROR_NAME, {"id": sub_id, "error": error, "traceback": tb})
    except OSError as again:
        error += f" (and its error record could not be written: {again})"
    return Outcome(sub_id, "error", seconds, error)


def grade_one(folder: Path, g: Grader, out: Path, options: BatchOptions) -> Outcome:
    """Grade one submission (a folder or a notebook file) and write its result (and report); any
    failure becomes its error record."""
    started = time.perf_counter()
    sid = entry_id(folder, options.run.name_pattern)
    target = out / sid
    try:
        target.mkdir(parents=True, exist_ok=True)
        result = grade_submission(folder, g, dataclasses.replace(options.run, out=target))
        write_result(target / "result.json", result)
        (target / ERROR_NAME).unlink(missing_ok=True)
        full = result.total >= result.max_total
    except Exception as e:  # noqa: BLE001 - one submission's failure must not end the batch
        return record_error(out, sid, e, time.perf_counter() - started)
    if options.render:
        try:
            failed = [r.error for r in render_documents(target, ["report"]) if r.error]
        except Exception as e:  # noqa: BLE001
            failed = [f"{type(e).__name__}: {e}"]
        if failed:  # the grade stands; the report can be rendered again with `harness render`
            return Outcome(sid, "graded", time.perf_counter() - started, f"report: {failed[0]}", full)
    return Outcome(sid, "graded", time.perf_counter() - started, full_marks=full)


Runner = Callable[[list[Path]], Iterator[Outcome]]
"""Grades the given submission folders, writes each one's files under the output folder and
yields its :class:`Outcome` as it finishes; closing the iterator stops the work (Ctrl-C).
:func:`thread_runner` here, ``harness.course.cluster.DaskRunner`` on a Dask cluster."""


def thread_runner(g: Grader, out: Path, options: BatchOptions) -> Runner:
    """``options.workers`` submissions at a time in threads of this process (each submission's
    code still runs in its own sandbox processes)."""

    def run(folders: list[Path]) -> Iterator[Outcome]:
        pool = ThreadPoolExecutor(max(1, options.workers))
        try:
            futures = [pool.submit(grade_one, f, g, out, options) for f in folders]
            for future in as_completed(futures):
                yield future.result()
        finally:  # Ctrl-C: what has not started is dropped, what is in flight finishes and is written
            pool.shutdown(wait=True, cancel_futures=True)

    return run


def grade_batch(
    root: Path, g: Grader, out: Path, options: BatchOptions = BatchOptions(), runner: Runner | None = None
) -> BatchSummary:
    """Grade every submission under ``root`` that is missing or changed (``options.workers`` at a
    time in this process, or by ``runner``), then write ``grades.csv`` and ``summary.html``."""
    started = time.perf_counter()
    pattern = options.run.name_pattern
    folders, notes = course_entries(root, out, pattern)
    ids = {f: entry_id(f, pattern) for f in folders}
    run = runner or thread_runner(g, out, options)
    summary = BatchSummary(notes=notes)
    with _Lock(out):
        # an invalid overrides.csv stops the batch here; new overrides are recorded against the
        # results they were decided on, before a regrade replaces them
        check_course(out, list(ids.values()), g.a)
        todo = [f for f in folders if options.force or not up_to_date(f, out, g, ids[f])]
        summary.outcomes += [Outcome(ids[f], "skipped") for f in folders if f not in todo]
        statuses: list[str] = []  # of the submissions graded so far, as grades.csv will give them
        finished = False  # the comparison runs after a whole batch, not after Ctrl-C
        try:
            with (
                Progress(total=len(todo), desc="submissions", unit="sub", disable=options.quiet) as bar,
                closing(run(todo)) as outcomes,
            ):
                for outcome in outcomes:
                    summary.outcomes.append(outcome)
                    if not options.quiet:
                        statuses.append(grade_rows(out, [outcome.id], g.a)["status"].iloc[0])
                        bar.set_postfix(status_counts(pd.DataFrame({"status": statuses})), refresh=False)
                    bar.update(1)
            if options.render:  # an override edited since a skipped submission's report was drawn
                skipped = {o.id: o for o in summary.outcomes if o.status == "skipped"}
                for sid, error in refresh_reports(out, list(skipped), g.a).items():
                    skipped[sid].error = f"report: {error}"
            finished = True
        finally:  # also after Ctrl-C: the tables show whatever is on disk
            summary.rows = rows = grade_rows(out, list(ids.values()), g.a)
            summary.grades = write_grades(out, rows)
            similar = course_similarity(root, out, g.a, options, summary) if finished else None
            try:
                summary.summary = write_summary(out, rows, g.a, g.profile.name, similarity=similar)
            except Exception as e:  # noqa: BLE001 - the grades are written; the dashboard can be redrawn
                summary.summary_error = f"{type(e).__name__}: {e}"
    summary.outcomes.sort(key=lambda o: o.id)
    summary.seconds = time.perf_counter() - started
    return summary


def course_similarity(root: Path, out: Path, a: Assignment, options: BatchOptions, summary: BatchSummary) -> dict:
    """The course-wide comparison after the batch (harness.course.similarity): ``similarity.csv``,
    each flagged submission's result and report, and summary.html's section (returned). Flags for
    review only: a failure is recorded in ``summary`` and the batch goes on."""
    from harness.course import similarity

    try:
        comparison = similarity.compare_course(
            root, a, out, options.run.name_pattern, workers=similarity.default_workers()
        )
        summary.similarity, failures = similarity.publish(out, comparison, options.render)
        summary.similarity_lines = similarity.describe(comparison) + failures
        return similarity.summary_view(comparison)
    except Exception as e:  # noqa: BLE001 - the grades are written; the comparison can be run again alone
        summary.similarity_error = f"{type(e).__name__}: {e}"
        return similarity.summary_view(None, summary.similarity_error)


def refresh_reports(out: Path, ids: list[str], a: Assignment) -> dict[str, str]:
    """Render again the reports that are older than their overrides; returns the failures.
    An ``overrides.csv`` made invalid during the batch refreshes nothing (every row of
    ``grades.csv`` says it is invalid)."""
    try:
        overrides = load_overrides(out / OVERRIDES_NAME, rubric_points(a), ids)
    except OverridesError:
        return {}
    failures = {}
    for sid in reports_to_refresh(out, ids, overrides):
        failed = [r.error for r in render_documents(out / sid, ["report"]) if r.error]
        if failed:
            failures[sid] = failed[0]
    return failures
