"""Batch grading of a course folder (`harness grade submissions/`), on real digits under smoke.

One real submission (the example) makes the batch pay for training once; the other folders
are cheap on purpose (no code, garbage metadata, a folder that vanished) so the fault paths
run without training.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from harness.batch import BatchLocked, BatchOptions, _Lock, discover, grade_batch, grade_one, grade_rows, is_submission, write_grades
from tests.conftest import EXAMPLE

CHEAP = BatchOptions(workers=2, render=False, quiet=True)


def garbage(folder):
    """A half-written submission: binary noise where submission.toml should be, nothing else."""
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_bytes(bytes(range(256)) * 2)
    return folder


@pytest.fixture(scope="module")
def course(tmp_path_factory, grader):
    """A course graded once: the example and a half-written folder."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(EXAMPLE, root / "ada")
    garbage(root / "zed")
    (root / "README.md").write_text("not a folder: ignored")
    out = root.parent / f"{root.name}-reports"
    summary = grade_batch(root, grader, out, [], CHEAP)
    return root, out, summary


def test_every_submission_gets_a_row_and_a_half_written_one_is_flagged_not_fatal(course, assignment):
    root, out, summary = course
    assert [(o.id, o.status) for o in summary.outcomes] == [("ada", "graded"), ("zed", "graded")]
    grades = pd.read_csv(out / "grades.csv").set_index("id")
    assert list(grades.index) == ["ada", "zed"]
    assert grades.loc["ada", "total"] == 45 and grades.loc["ada", "status"] == "complete"
    assert grades.loc["zed", "total"] == 0 and grades.loc["zed", "status"] == "incomplete"
    assert "not valid TOML" in grades.loc["zed", "flags"]
    assert [c for c in grades.columns if c in {r.id for r in assignment.rubric}] == [r.id for r in assignment.rubric]


def test_summary_html_has_one_linked_row_per_submission_and_no_external_references(course):
    _, out, summary = course
    html = (out / "summary.html").read_text()
    assert summary.summary == out / "summary.html"
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr>") == 2 and 'href="ada/report.html"' in body and 'href="zed/report.html"' in body
    assert all(s.startswith("data:image/png;base64,") for s in re.findall(r"""\bsrc\s*=\s*["']([^"']*)""", html))
    assert all(not h.startswith(("http:", "https:", "//")) for h in re.findall(r"""\bhref\s*=\s*["']([^"']*)""", html))
    assert "<link" not in html and html.count("<img") == 2


def test_a_rerun_grades_only_what_changed_and_writes_the_same_grades(course, grader):
    root, out, _ = course
    before = (out / "grades.csv").read_text()
    again = grade_batch(root, grader, out, [], CHEAP)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped"]
    assert (out / "grades.csv").read_text() == before
    (root / "zed" / "answers.md").write_text("## ae-samples\n\nsomething new\n")
    changed = grade_batch(root, grader, out, [], CHEAP)
    assert [(o.id, o.status) for o in changed.outcomes] == [("ada", "skipped"), ("zed", "graded")]


def test_force_regrades_an_up_to_date_submission(tmp_path, grader):
    garbage(tmp_path / "course" / "zed")
    out = tmp_path / "reports"
    grade_batch(tmp_path / "course", grader, out, [], CHEAP)
    assert [o.status for o in grade_batch(tmp_path / "course", grader, out, [], CHEAP).outcomes] == ["skipped"]
    forced = BatchOptions(workers=1, force=True, render=False, quiet=True)
    assert [o.status for o in grade_batch(tmp_path / "course", grader, out, [], forced).outcomes] == ["graded"]


def test_a_submission_that_cannot_be_graded_is_recorded_with_its_error(tmp_path, grader, assignment):
    out = tmp_path / "reports"
    gone = tmp_path / "course" / "gone"  # listed, then removed before its turn
    outcome = grade_one(gone, grader, out, [], CHEAP)
    assert outcome.status == "error" and "no such submission folder" in outcome.error
    assert "FileNotFoundError" in (out / "gone" / "error.json").read_text()
    row = pd.read_csv(write_grades(out, grade_rows(out, ["gone"], assignment))).iloc[0]
    assert row["status"] == "error" and "no such submission folder" in row["flags"]


def test_a_second_batch_on_the_same_output_folder_is_refused(tmp_path, grader):
    garbage(tmp_path / "course" / "zed")
    out = tmp_path / "reports"
    with _Lock(out):
        with pytest.raises(BatchLocked, match=r"being graded by another batch \(pid \d+"):
            grade_batch(tmp_path / "course", grader, out, [], CHEAP)
    assert grade_batch(tmp_path / "course", grader, out, [], CHEAP).count("graded") == 1  # released


def test_the_lock_is_released_when_its_holder_dies(tmp_path):
    out = tmp_path / "reports"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\nfrom harness.batch import _Lock\n"
                               f"with _Lock(Path({str(out)!r})):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(BatchLocked):
        _Lock(out).__enter__()
    holder.kill()
    holder.wait()
    with _Lock(out):
        pass


def test_a_course_folder_is_told_apart_from_a_submission(tmp_path, assignment):
    assert is_submission(EXAMPLE, assignment) and not is_submission(EXAMPLE.parent, assignment)
    for name in ("b", "a", ".hidden", "_private"):
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("")
    assert [p.name for p in discover(tmp_path)] == ["a", "b"]


def test_the_cli_grades_a_course_folder_and_writes_grades_csv(tmp_path, session_cache):
    garbage(tmp_path / "course" / "zed")
    (tmp_path / "course" / "empty").mkdir()
    out = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "harness", "grade", str(tmp_path / "course"), "--profile", "smoke", "--device",
                           "cpu", "--cache", str(session_cache), "--out", str(out), "--workers", "2", "--no-report", "-q"],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 submissions: 2 graded, 0 unchanged" in proc.stdout and f"written: {out / 'grades.csv'}" in proc.stdout
    assert list(pd.read_csv(out / "grades.csv")["id"]) == ["empty", "zed"]
