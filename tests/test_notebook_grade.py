"""Grading the notebooks students hand in, end to end under the smoke profile: completed notebooks
built from the handouts (tests/notebooks.py fills their TODO regions; nothing is copied into the
repository), planted training bugs, every real-world drift at once, and a course folder of LMS
downloads graded locally and on Dask. The fast checks of notebooks: tests/test_notebook_check.py."""

from __future__ import annotations

import json

import pytest
import torch

from harness.config.assignment import load_assignment
from harness.course.batch import BatchOptions, grade_batch
from harness.grading.grade import grade_submission
from harness.grading.result import load_result
from harness.grading.session import RunOptions
from tests import notebooks as nbs
from tests.helpers import lost_items, notebook_in

pytestmark = pytest.mark.skipif(
    not nbs.HANDOUTS.is_dir(),
    reason="../shared/handouts not found: the handout notebooks are needed to build completed notebooks",
)

QUIET = RunOptions(quiet=True)


@pytest.fixture(scope="module")
def grader_b(mnist, session_cache):
    """The smoke grader of variant-b (the 2026 handout), without a full-protocol band: its tuned
    beta is judged by the smoke search and beta_tuning is needs_review."""
    from harness.grading.grader import make_grader
    from harness.reference.build import build_reference

    a = load_assignment("variant-b")
    profile = a.profile("smoke")
    ref = build_reference(a, profile, mnist, torch.device("cpu"), session_cache, quiet=True)
    return make_grader(a, profile, mnist, ref, session_cache, torch.device("cpu"))


def test_a_completed_2026_notebook_scores_full_points(tmp_path, grader_b):
    result = grade_submission(notebook_in(tmp_path, nbs.complete("2026")), grader_b, QUIET)
    assert result.total == result.max_total == 45, {i.id: i.evidence for i in result.items if i.points < i.max_points}
    assert {i.id: i.status for i in result.items}["beta_tuning"] in ("pass", "needs_review")  # no band for variant-b
    assert result.notebook["handout"] == "variant-b"
    assert [c for c in result.notebook["cells"] if c["error"]] == []


TRAINING_BUGS = ["no-zero-grad", "vae-loop-without-backward"]  # the code bugs: tests/test_notebook_check.py


@pytest.mark.parametrize("bug", TRAINING_BUGS)
def test_a_training_bug_in_a_notebook_costs_exactly_its_items(bug, tmp_path, grader):
    items, _ = nbs.bugs("2020")[bug]
    result = grade_submission(notebook_in(tmp_path, nbs.planted("2020", bug)), grader, QUIET)
    assert lost_items(result) == set(items), {i.id: i.evidence for i in result.items if i.id in lost_items(result)}


def test_a_notebook_with_every_real_world_drift_keeps_full_points(tmp_path, grader):
    """A badge cell and answer cells inserted, the interpolation cell duplicated, no execution
    counts, no outputs, unguarded .cuda(), savefig instead of show, magics, and (the 2020 handout's
    own) plotting of loss tensors that require grad."""
    result = grade_submission(notebook_in(tmp_path, nbs.drifted("2020")), grader, QUIET)
    assert result.total == result.max_total, {i.id: i.evidence for i in result.items if i.points < i.max_points}
    subs = {s for c in result.notebook["cells"] for s in c["substituted"]}
    assert any("no GPU" in s for s in subs) or torch.cuda.is_available()
    assert any("!pip install" in r for r in result.notebook["removed"])
    assert any("no code cell has an execution count" in f for f in result.notebook["forensics"])


@pytest.fixture(scope="module")
def lms_course(tmp_path_factory):
    """A course folder as Canvas downloads it: notebooks directly in it, one student uploading twice
    (the later file is graded), one file that is not a notebook."""
    root = tmp_path_factory.mktemp("lms")
    nbs.write(nbs.planted("2020", "no-zero-grad"), root / "doejane_12345_678901_vae.ipynb")  # superseded
    nbs.write(nbs.complete("2020"), root / "doejane_12345_678950_vae-1.ipynb")
    (root / "roefred_late_23456_678999_vae.ipynb").write_text("{ not json")
    return root


# the threads conftest gave this worker: a Dask worker would otherwise take every core (docs/batch.md)
BATCH = BatchOptions(workers=1, render=False, quiet=True, run=RunOptions(quiet=True, threads=torch.get_num_threads()))


@pytest.fixture(scope="module")
def local_batch(lms_course, grader, tmp_path_factory):
    """The LMS course graded once by the local pool: its output folder and summary."""
    out = tmp_path_factory.mktemp("lms-out")
    return out, grade_batch(lms_course, grader, out, BATCH)


def test_a_course_of_lms_notebooks_is_graded_one_per_student_with_full_points_for_a_complete_one(
    lms_course, local_batch, grader
):
    out, summary = local_batch
    assert [(o.id, o.status) for o in summary.outcomes] == [("12345", "graded"), ("23456", "error")]
    assert summary.notes and "grading the last, doejane_12345_678950_vae-1.ipynb" in summary.notes[0]
    result = load_result(out / "12345" / "result.json")
    assert result["total"] == result["max_total"] == 45, [i for i in result["items"] if i["points"] < i["max_points"]]
    assert result["submission"]["student"] == "doejane" and result["submission"]["tuned_beta"] == 1e-4
    nb = result["notebook"]
    assert nb["handout"] == "variant-a" and nb["untouched"] == []
    assert [c for c in nb["cells"] if c["error"]] == []
    assert set(result["runs"]) == {"ae", "beta-0", "beta-10", "tuned"}
    assert all(r["status"] == "ok" and r["cells"] for r in result["runs"].values())
    assert "not a notebook" in json.loads((out / "23456" / "error.json").read_text())["error"]
    again = grade_batch(lms_course, grader, out, BATCH)  # unchanged: nothing is regraded
    assert [(o.id, o.status) for o in again.outcomes if o.id == "12345"] == [("12345", "skipped")]


def test_a_dask_cluster_grades_the_lms_course_as_the_local_batch(
    lms_course, local_batch, grader, session_cache, tmp_path
):
    from distributed import Client, LocalCluster

    from harness.course.cluster import DaskRunner, grading_kit

    local, remote = local_batch[0], tmp_path / "dask"
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as c,
        Client(c) as client,
    ):
        runner = DaskRunner(client, grading_kit(grader, session_cache, "cpu"), remote, BATCH)
        summary = grade_batch(lms_course, grader, remote, BATCH, runner)
    assert [(o.id, o.status) for o in summary.outcomes] == [("12345", "graded"), ("23456", "error")]
    a, b = (load_result(o / "12345" / "result.json") for o in (local, remote))
    assert [(i["id"], i["points"]) for i in a["items"]] == [(i["id"], i["points"]) for i in b["items"]]
    assert a["submission"] == b["submission"]  # the worker hashed the same notebook and read the same name
