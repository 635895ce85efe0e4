"""Batch grading of a course folder (`harness grade submissions/`), on real digits under smoke.

One real submission (the example) makes the batch pay for training once; the other folders
are cheap on purpose (no code, garbage metadata, a folder that vanished) so the fault paths
run without training.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from harness.course.batch import (
    BatchLocked,
    BatchOptions,
    BatchSummary,
    Outcome,
    _Lock,
    discover,
    grade_batch,
    grade_one,
    record_error,
)
from harness.course.summary import write_summary
from harness.course.table import grade_rows, write_grades
from harness.grading.result import load_result
from harness.grading.session import RunOptions
from tests.helpers import EXAMPLE, SMOKE_CPU, copy_example, harness_command

FIXTURE = EXAMPLE.parents[1] / "tests" / "fixtures" / "example-smoke"

# Two at a time, each training unit on its share of this test process's threads, as the CLI
# splits the cores. Explicit, because a Dask worker would otherwise give a unit all the
# machine's cores: oversubscribed beside a busy test worker, OpenMP's waits slow it severalfold.
CHEAP = BatchOptions(
    workers=2, render=False, quiet=True, run=RunOptions(quiet=True, threads=max(1, torch.get_num_threads() // 2))
)


def garbage(folder):
    """A half-written submission: binary noise where submission.toml should be, nothing else."""
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_bytes(bytes(range(256)) * 2)
    return folder


def vandal(folder, out):
    """A hostile copy of the example: at import it tries to rewrite, plant and delete files of
    the course's output folder, signals the harness, then kills its own import."""
    attack = (
        "import os as _os, shutil as _sh, signal as _sig, pathlib as _p\n"
        f"_out = _p.Path({str(out)!r})\n"
        "for _do in (lambda: (_out / 'ada' / 'result.json').write_text('{}'),"
        " lambda: (_out / 'grades.csv').write_text('x'),\n"
        "            lambda: (_out / 'planted.txt').write_text('x'), lambda: _sh.rmtree(_out / 'zed'),\n"
        "            lambda: _os.kill(_os.getppid(), _sig.SIGKILL)):\n"
        "    try:\n        _do()\n    except OSError:\n        pass\n"
        "_os._exit(3)\n"
    )
    return copy_example(folder, append=attack)


@pytest.fixture(scope="module")
def course(tmp_path_factory, grader):
    """A course graded once: the example, a hostile copy and a half-written folder."""
    root = tmp_path_factory.mktemp("course")
    out = root.parent / f"{root.name}-reports"
    shutil.copytree(EXAMPLE, root / "ada")
    vandal(root / "mal", out)
    garbage(root / "zed")
    (root / "README.md").write_text("not a folder: ignored")
    summary = grade_batch(root, grader, out, CHEAP)
    return root, out, summary


def test_every_submission_gets_a_row_and_a_half_written_one_is_flagged_not_fatal(course, assignment):
    root, out, summary = course
    assert [(o.id, o.status) for o in summary.outcomes] == [("ada", "graded"), ("mal", "graded"), ("zed", "graded")]
    grades = pd.read_csv(out / "grades.csv").set_index("id")
    assert list(grades.index) == ["ada", "mal", "zed"]
    assert grades.loc["ada", "total"] == 45 and grades.loc["ada", "status"] == "complete"
    assert grades.loc["zed", "total"] == 0 and grades.loc["zed", "status"] == "incomplete"
    assert "not valid TOML" in grades.loc["zed", "flags"]
    assert [c for c in grades.columns if c in {r.id for r in assignment.rubric}] == [r.id for r in assignment.rubric]


def test_a_hostile_submission_in_a_batch_is_confined_to_its_own_result(course, assignment):
    root, out, _ = course
    grades = pd.read_csv(out / "grades.csv").set_index("id")
    assert not (out / "planted.txt").exists() and (out / "zed" / "result.json").is_file()
    assert load_result(out / "ada" / "result.json")["total"] == 45  # not rewritten
    mal = load_result(out / "mal" / "result.json")
    code = {i["id"]: i for i in mal["items"] if i["id"] in ("ae_architecture", "ae_forward", "vae_model")}
    assert all(i["points"] == 0 and i["status"] == "error" for i in code.values())
    answers = [i for i in mal["items"] if i["id"].endswith("_answer")]
    assert answers and all(i["points"] == i["max_points"] for i in answers)  # its answers still count
    assert grades.loc["mal", "total"] == mal["total"] < 45


def test_a_batch_killed_mid_run_loses_only_its_in_flight_work(course, grader, session_cache, tmp_path):
    """Kill -9 while the example trains, after the cheap submissions were written; the rerun
    grades only what was in flight and writes the grades of an uninterrupted batch."""
    _, out, _ = course
    root, killed = tmp_path / "course", tmp_path / "reports"
    shutil.copytree(EXAMPLE, root / "ada")
    vandal(root / "mal", killed)  # the CLI protects only this batch's folders
    garbage(root / "zed")
    proc = subprocess.Popen(
        harness_command(
            "grade",
            root,
            *SMOKE_CPU,
            "--cache",
            session_cache,
            "--out",
            killed,
            "--workers",
            "2",
            "--no-report",
            "-q",
            "--no-require-isolation",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not all((killed / sid / "result.json").exists() for sid in ("mal", "zed")):
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "the cheap submissions were not graded in time"
            time.sleep(0.2)
        assert not (killed / "ada" / "result.json").exists(), "the example finished first: nothing was in flight"
    finally:
        proc.kill()
        proc.wait()
    assert not (killed / "grades.csv").exists()
    again = grade_batch(root, grader, killed, CHEAP)
    assert [(o.id, o.status) for o in again.outcomes] == [("ada", "graded"), ("mal", "skipped"), ("zed", "skipped")]
    assert (killed / "grades.csv").read_text() == (out / "grades.csv").read_text()


def test_summary_html_has_one_linked_row_per_submission_and_no_external_references(course):
    _, out, summary = course
    html = (out / "summary.html").read_text()
    assert summary.summary == out / "summary.html"
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    assert body.count("<tr>") == 3 and 'href="ada/report.html"' in body and 'href="zed/report.html"' in body
    assert all(s.startswith("data:image/png;base64,") for s in re.findall(r"""\bsrc\s*=\s*["']([^"']*)""", html))
    assert all(not h.startswith(("http:", "https:", "//")) for h in re.findall(r"""\bhref\s*=\s*["']([^"']*)""", html))
    assert "<link" not in html and html.count("<img") == 2


def test_a_rerun_grades_only_what_changed_and_writes_the_same_grades(course, grader):
    root, out, _ = course
    before = (out / "grades.csv").read_text()
    again = grade_batch(root, grader, out, CHEAP)
    assert [o.status for o in again.outcomes] == ["skipped", "skipped", "skipped"]
    assert (out / "grades.csv").read_text() == before
    (root / "zed" / "answers.md").write_text("## ae-samples\n\nsomething new\n")
    changed = grade_batch(root, grader, out, CHEAP)
    assert [(o.id, o.status) for o in changed.outcomes] == [("ada", "skipped"), ("mal", "skipped"), ("zed", "graded")]
    (root / "zed" / "answers.md").unlink()  # as it was, for the tests that compare with this course
    assert grade_batch(root, grader, out, CHEAP).count("graded") == 1


def test_an_override_survives_a_real_regrade_of_its_submission(course, grader):
    root, out, _ = course
    text = "submission,item,points,comment\nzed,ae_sampling_answer,1.5,graded by hand\n"
    (out / "overrides.csv").write_text(text)
    try:
        (root / "zed" / "answers.md").write_text("## ae-samples\n\nsomething new\n")
        assert grade_batch(root, grader, out, CHEAP).outcomes[-1].status == "graded"  # zed changed
        stored = load_result(out / "zed" / "result.json")  # the automatic result, untouched by the override
        auto = {i["id"]: i["points"] for i in stored["items"]}
        row = pd.read_csv(out / "grades.csv").set_index("id").loc["zed"]
        assert row["ae_sampling_answer"] == 1.5 and row["overridden"] == "ae_sampling_answer"
        assert row["total"] == stored["total"] - auto["ae_sampling_answer"] + 1.5
        assert (out / "overrides.csv").read_text() == text  # the instructor's file is never rewritten
    finally:  # as it was, for the tests that compare with this course
        (out / "overrides.csv").unlink()
        (root / "zed" / "answers.md").unlink(missing_ok=True)
        grade_batch(root, grader, out, CHEAP)


def test_force_regrades_an_up_to_date_submission(tmp_path, grader):
    garbage(tmp_path / "course" / "zed")
    out = tmp_path / "reports"
    grade_batch(tmp_path / "course", grader, out, CHEAP)
    assert [o.status for o in grade_batch(tmp_path / "course", grader, out, CHEAP).outcomes] == ["skipped"]
    forced = BatchOptions(workers=1, force=True, render=False, quiet=True)
    assert [o.status for o in grade_batch(tmp_path / "course", grader, out, forced).outcomes] == ["graded"]


def test_a_submission_that_cannot_be_graded_is_recorded_with_its_error(tmp_path, grader, assignment):
    out = tmp_path / "reports"
    gone = tmp_path / "course" / "gone"  # listed, then removed before its turn
    outcome = grade_one(gone, grader, out, CHEAP)
    assert outcome.status == "error" and "no such submission (a folder or a .ipynb notebook)" in outcome.error
    assert "FileNotFoundError" in (out / "gone" / "error.json").read_text()
    row = pd.read_csv(write_grades(out, grade_rows(out, ["gone"], assignment))).iloc[0]
    assert row["status"] == "error" and "no such submission (a folder or a .ipynb notebook)" in row["flags"]


def test_a_second_batch_on_the_same_output_folder_is_refused(tmp_path, grader):
    garbage(tmp_path / "course" / "zed")
    out = tmp_path / "reports"
    with _Lock(out):
        with pytest.raises(BatchLocked, match=r"being graded by another batch \(pid \d+"):
            grade_batch(tmp_path / "course", grader, out, CHEAP)
    assert grade_batch(tmp_path / "course", grader, out, CHEAP).count("graded") == 1  # released


def test_the_lock_is_released_when_its_holder_dies(tmp_path):
    out = tmp_path / "reports"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom pathlib import Path\nfrom harness.course.batch import _Lock\n"
            f"with _Lock(Path({str(out)!r})):\n    print('held', flush=True)\n    time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(BatchLocked):
        _Lock(out).__enter__()
    holder.kill()
    holder.wait()
    with _Lock(out):
        pass


def test_a_course_folder_is_told_apart_from_a_submission(tmp_path, assignment):
    from harness.submission.detect import is_submission

    assert is_submission(EXAMPLE, assignment) and not is_submission(EXAMPLE.parent, assignment)
    for name in ("b", "a", ".hidden", "_private"):
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("")
    assert [p.name for p in discover(tmp_path)] == ["a", "b"]


def _status_counts(text: str) -> dict[str, int]:
    """``{"complete": 0, "needs review": 1, ...}`` from a line that counts statuses."""
    return {status: int(n) for n, status in re.findall(r"(\d+) (complete|needs review|incomplete|error)\b", text)}


def _summary_counts(out) -> dict[str, int]:
    html = (out / "summary.html").read_text()
    return _status_counts(re.search(r'id="status-counts">([^<]*)<', html).group(1))


def test_the_closing_line_and_summary_html_count_the_same_errors(tmp_path, assignment):
    """Rows from stored results, without training: a good result, one whose item errored (its
    grading ran) and one whose grading failed (an error record) are both errors, in both places."""
    out = tmp_path / "reports"
    good = json.loads((FIXTURE / "result.json").read_text())
    for sid, result in (
        ("ada", good),
        (
            "mal",
            {**good, "items": [{**i, "status": "error"} if i["id"] == "vae_training" else i for i in good["items"]]},
        ),
    ):
        (out / sid).mkdir(parents=True)
        (out / sid / "result.json").write_text(json.dumps(result))
    failed = record_error(out, "gone", FileNotFoundError("no such submission folder"))
    rows = grade_rows(out, ["ada", "gone", "mal"], assignment)
    write_summary(out, rows, assignment, "smoke")
    summary = BatchSummary(outcomes=[Outcome("ada", "graded"), failed, Outcome("mal", "graded")], rows=rows)
    line = summary.closing_line()
    assert line.startswith("3 submissions: 2 graded, 0 unchanged since their result (--force regrades); ")
    assert (
        _status_counts(line) == _summary_counts(out) == {"complete": 1, "needs review": 0, "incomplete": 0, "error": 2}
    )


# slow: builds the smoke reference through the CLI (about a minute on 2 cores)
def test_the_cli_grades_a_course_folder_and_its_closing_line_agrees_with_summary_html(tmp_path, session_cache):
    garbage(tmp_path / "course" / "zed")
    (tmp_path / "course" / "empty").mkdir()
    broken = tmp_path / "course" / "broken"  # its code fails at import: its items error, its grading does not
    broken.mkdir()
    (broken / "submission.py").write_text("raise RuntimeError('broken on import')\n")
    out = tmp_path / "reports"
    proc = subprocess.run(
        harness_command(
            "grade",
            tmp_path / "course",
            *SMOKE_CPU,
            "--cache",
            session_cache,
            "--out",
            out,
            "--workers",
            "2",
            "--no-report",
            "-q",
            "--no-require-isolation",
        ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]  # no grading failed: exit 0 whatever the statuses
    assert "3 submissions: 3 graded, 0 unchanged" in proc.stdout and f"written: {out / 'grades.csv'}" in proc.stdout
    assert list(pd.read_csv(out / "grades.csv")["id"]) == ["broken", "empty", "zed"]
    closing = next(line for line in proc.stdout.splitlines() if line.startswith("3 submissions:"))
    assert (
        _status_counts(closing)
        == _summary_counts(out)
        == {"complete": 0, "needs review": 0, "incomplete": 2, "error": 1}
    )


def test_a_local_dask_cluster_grades_a_course_exactly_as_the_local_pool(course, grader, session_cache, tmp_path):
    from distributed import Client, LocalCluster

    from harness.course.cluster import DaskRunner, grading_kit

    root, out, _ = course
    dask_out = tmp_path / "dask"
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        runner = DaskRunner(client, grading_kit(grader, session_cache, "cpu"), dask_out, CHEAP)
        summary = grade_batch(root, grader, dask_out, CHEAP, runner)
    assert [(o.id, o.status) for o in summary.outcomes] == [("ada", "graded"), ("mal", "graded"), ("zed", "graded")]
    assert (dask_out / "grades.csv").read_text() == (out / "grades.csv").read_text()
    assert not (out / "planted.txt").exists()  # the hostile copy, on a worker, reached no folder of the batch
    for sid in ("ada", "mal", "zed"):
        local, remote = (load_result(o / sid / "result.json") for o in (out, dask_out))
        assert [(i["id"], i["points"], i["status"]) for i in remote["items"]] == [
            (i["id"], i["points"], i["status"]) for i in local["items"]
        ]
        assert remote["submission"] == local["submission"]  # the worker hashed the same files
    assert (dask_out / "ada" / "runs.npz").is_file() and not (dask_out / "ada" / "error.json").exists()


def test_a_worker_with_other_libraries_or_other_digits_refuses_to_grade(grader, session_cache, tmp_path):
    import dataclasses

    import numpy as np

    from harness.course.cluster import ClusterError, grading_kit, unpack_kit

    kit = grading_kit(grader, session_cache, "cpu")
    older = dataclasses.replace(kit, versions={**kit.versions, "torch": "1.0"})
    with pytest.raises(ClusterError, match=r"torch .* \(the batch: 1\.0\); install the same versions"):
        unpack_kit(older, tmp_path)
    digits = {**kit.mnist, "test_labels": np.roll(kit.mnist["test_labels"], 1)}
    with pytest.raises(ClusterError, match="MNIST decoded on the worker has fingerprint"):
        unpack_kit(dataclasses.replace(kit, mnist=digits), tmp_path)
