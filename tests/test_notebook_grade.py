"""Grading the notebooks students hand in: completed notebooks built from the three handouts
(tests/notebooks.py fills their TODO regions; nothing is copied into the repository) graded end to
end under the smoke profile, planted bugs in notebook form, real-world drift, bad input and a
course folder of LMS downloads graded locally and on Dask."""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

import nbformat
import pytest
import torch

from harness.config.assignment import load_assignment
from harness.course.batch import BatchOptions, grade_batch
from harness.grading.check import check_submission
from harness.grading.grade import grade_submission
from harness.grading.result import load_result
from harness.grading.session import RunOptions
from tests import notebooks as nbs
from tests.helpers import harness_command

pytestmark = pytest.mark.skipif(
    not nbs.HANDOUTS.is_dir(),
    reason="../shared/handouts not found: the handout notebooks are needed to build completed notebooks",
)

FULL_CHECK = 27.0  # the points `check` grades (code items and the first four answers)
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


def notebook(tmp_path: Path, nb, name: str = "doejane_12345_678901_vae.ipynb") -> Path:
    return nbs.write(nb, tmp_path / name)


def points(result) -> dict[str, float]:
    return {i.id: i.points for i in result.items}


def lost(result) -> set[str]:
    return {i.id for i in result.items if i.points < i.max_points}


def check(path: Path, year: str, mnist, a=None):
    return check_submission(path, a or load_assignment(nbs.CONFIG[year]), mnist, QUIET)


# --------------------------------------------------------------------------- full notebooks


def test_a_completed_2020_notebook_scores_full_points_with_every_cell_run(tmp_path, grader):
    result = grade_submission(notebook(tmp_path, nbs.complete("2020")), grader, QUIET)
    assert result.total == result.max_total == 45, {
        i.id: i.evidence[:2] for i in result.items if i.points < i.max_points
    }
    nb = result.notebook
    assert nb["handout"] == "variant-a" and nb["untouched"] == []
    assert [c for c in nb["cells"] if c["error"]] == []
    assert result.submission["student"] == "doejane" and result.submission["student_id"] == "12345"
    assert result.submission["tuned_beta"] == 1e-4
    assert set(result.runs) == {"ae", "beta-0", "beta-10", "tuned"}
    assert all(r["status"] == "ok" for r in result.runs.values())


def test_a_completed_2026_notebook_scores_full_points(tmp_path, grader_b):
    result = grade_submission(notebook(tmp_path, nbs.complete("2026")), grader_b, QUIET)
    assert result.total == result.max_total == 45, {
        i.id: i.evidence[:2] for i in result.items if i.points < i.max_points
    }
    assert {i.id: i.status for i in result.items}["beta_tuning"] in ("pass", "needs_review")  # no band for variant-b
    assert result.notebook["handout"] == "variant-b"
    assert [c for c in result.notebook["cells"] if c["error"]] == []


def test_a_completed_2022_notebook_passes_every_check(tmp_path, mnist):
    result = check(notebook(tmp_path, nbs.complete("2022")), "2022", mnist)
    assert result.total == result.max_total == FULL_CHECK


# --------------------------------------------------------------------------- planted bugs

TRAINING_BUGS = ["no-zero-grad", "hard-coded-lr", "vae-loop-without-backward"]
CODE_BUGS = [
    "loader-not-shuffled",
    "uniform-prior-draws",
    "missing-batch-norm",
    "wrong-decoder-channels",
    "sigma-without-exp",
    "kl-reversed",
    "l1-reconstruction",
    "reconstruct-samples",
]


@pytest.mark.parametrize("bug", TRAINING_BUGS)
def test_a_training_bug_in_a_notebook_costs_exactly_its_items(bug, tmp_path, grader):
    items, _ = nbs.bugs("2020")[bug]
    result = grade_submission(notebook(tmp_path, nbs.planted("2020", bug)), grader, QUIET)
    assert lost(result) == set(items), {i.id: i.evidence[:2] for i in result.items if i.id in lost(result)}


@pytest.mark.parametrize("year", ["2020", "2026"])
@pytest.mark.parametrize("bug", CODE_BUGS)
def test_a_code_bug_in_a_notebook_costs_exactly_its_item(bug, year, tmp_path, mnist):
    items, _ = nbs.bugs(year)[bug]
    result = check(notebook(tmp_path, nbs.planted(year, bug)), year, mnist)
    assert lost(result) == set(items), {i.id: i.evidence[:2] for i in result.items}


# --------------------------------------------------------------------------- drift


def drifted(year: str):
    nb = nbs.complete(year)
    for variant in (
        nbs.with_badge_cell,
        nbs.with_answer_cells,
        nbs.with_duplicated_interpolation,
        nbs.with_null_counts,
        nbs.stripped,
        nbs.with_unguarded_cuda,
        nbs.with_savefig,
        nbs.with_magics,
    ):
        nb = variant(nb)
    return nb


def test_a_notebook_with_every_real_world_drift_keeps_full_points(tmp_path, grader):
    """A badge cell and answer cells inserted, the interpolation cell duplicated, no execution
    counts, no outputs, unguarded .cuda(), savefig instead of show, magics, and (the 2020 handout's
    own) plotting of loss tensors that require grad."""
    result = grade_submission(notebook(tmp_path, drifted("2020")), grader, QUIET)
    assert result.total == result.max_total, {i.id: i.evidence[:2] for i in result.items if i.points < i.max_points}
    subs = {s for c in result.notebook["cells"] for s in c["substituted"]}
    assert any("no GPU" in s for s in subs) or torch.cuda.is_available()
    assert any("!pip install" in r for r in result.notebook["removed"])
    assert any("no code cell has an execution count" in f for f in result.notebook["forensics"])


def test_each_drift_keeps_the_2026_checks_full(tmp_path, mnist):
    result = check(notebook(tmp_path, drifted("2026")), "2026", mnist)
    assert result.total == result.max_total == FULL_CHECK


def test_the_untouched_handout_is_reported_region_by_region_and_crashes_nothing(tmp_path, mnist):
    path = notebook(tmp_path, nbs.handout("2020"))
    result = check(path, "2020", mnist)
    regions = result.notebook["untouched"]
    roles = {u["role"] for u in regions}
    assert {"encoder_decoder", "forward_test", "ae_training", "sampling", "vae_model", "vae_runs"} <= roles
    assert all(u["placeholder"] for u in regions)
    failed = {c["number"]: c["error"] for c in result.notebook["cells"] if c["error"]}
    assert any("SyntaxError" in e for e in failed.values())  # `for None in None:` does not compile
    assert result.total == 0 and len(result.items) == 8
    proc = _cli(tmp_path, path)
    assert proc.returncode == 1
    assert "TODO region untouched (`for None in None:`)" in proc.stdout


# --------------------------------------------------------------------------- bad input


def run_harness(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(harness_command(*args), capture_output=True, text=True, timeout=600)


def _cli(tmp_path: Path, path: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_harness("check", path, "--out", tmp_path / "out", *extra)


def test_a_file_that_is_not_json_or_is_truncated_is_refused_with_exit_2(tmp_path):
    bad = tmp_path / "notjson.ipynb"
    bad.write_text("this is a PDF, really")
    proc = _cli(tmp_path, bad)
    assert proc.returncode == 2 and "not a notebook" in proc.stderr and "Traceback" not in proc.stderr
    text = nbformat.writes(nbs.complete("2020"))
    cut = tmp_path / "cut.ipynb"
    cut.write_text(text[: len(text) // 2])
    proc = _cli(tmp_path, cut)
    assert proc.returncode == 2 and "truncated" in proc.stderr and "Traceback" not in proc.stderr


def test_an_nbformat_3_notebook_is_upgraded_and_graded(tmp_path, mnist):
    from nbformat import v3, v4

    v3nb = v3.convert.upgrade(v4.convert.downgrade(nbs.complete("2020")))  # nbformat 3, as old Jupyter saved it
    path = tmp_path / "old.ipynb"
    path.write_text(v3.writes_json(v3nb))
    assert json.loads(path.read_text())["nbformat"] == 3
    result = check(path, "2020", mnist)
    assert result.notebook["nbformat"].startswith("3") and "upgraded from nbformat 3 to 4" in result.notebook["repairs"]
    assert result.total == FULL_CHECK


def test_a_notebook_of_another_assignment_is_refused_by_name(tmp_path):
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import pandas as pd\ndf = pd.DataFrame()")])
    proc = _cli(tmp_path, nbs.write(other, tmp_path / "other.ipynb"))
    assert proc.returncode == 2 and "follows none of the known handouts" in proc.stderr
    proc = _cli(tmp_path, notebook(tmp_path, nbs.complete("2026")), "--assignment", "variant-a")
    assert proc.returncode == 2 and "is not a notebook of the variant-a handout" in proc.stderr


def _with_cell(nb, code: str, after_role_anchor: str = "class AutoEncoder(nn.Module):"):
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if after_role_anchor in c.source)
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(code))
    return nb


def test_a_cell_that_loops_forever_is_stopped_reported_and_skipped_by_later_units(tmp_path, mnist):
    toml = (
        Path(load_assignment("variant-a").source)
        .read_text()
        .replace("[notebook]\n", "[notebook]\ncell_timeout_s = 3\n")
    )
    fast = tmp_path / "variant-a-fast.toml"
    fast.write_text(toml)
    a = load_assignment(str(fast))
    path = notebook(tmp_path, _with_cell(nbs.complete("2020"), "while True:\n    pass\n"))
    result = check(path, "2020", mnist, a)
    looping = [c for c in result.notebook["cells"] if c["timed_out"]]
    assert len(looping) == 1 and "per-cell time limit" in looping[0]["error"]
    assert result.total == FULL_CHECK
    assert sum(result.timings[u] for u in ("architecture", "forward", "sampling", "vae")) < 30  # skipped there


def test_exit_in_a_cell_costs_nothing_else(tmp_path, mnist):
    path = notebook(tmp_path, _with_cell(nbs.complete("2020"), "import sys\nexit()\nsys.exit(1)\n"))
    result = check(path, "2020", mnist)
    assert any(c["error"].startswith("SystemExit") for c in result.notebook["cells"])
    assert result.total == FULL_CHECK


def test_shell_lines_are_taken_out_and_never_run(tmp_path, mnist):
    canary = tmp_path / "canary.txt"
    canary.write_text("still here")
    cell = f"!rm -rf /\n!rm -rf {tmp_path}\nimport os\nx = 1\n"
    result = check(notebook(tmp_path, _with_cell(nbs.complete("2020"), cell)), "2020", mnist)
    assert canary.read_text() == "still here"
    assert any("!rm -rf /" in r for r in result.notebook["removed"])
    assert result.total == FULL_CHECK


def test_a_300_mb_notebook_of_outputs_is_refused_without_reading_it(tmp_path):
    nb = nbs.complete("2020")
    path = tmp_path / "huge.ipynb"
    head, tail = nbformat.writes(nb).rsplit('"outputs": []', 1)
    chunk = "x" * (1 << 20)
    with open(path, "w") as f:  # a real notebook: one cell's stream output holds 300 MB of text
        f.write(head + '"outputs": [{"output_type": "stream", "name": "stdout", "text": "')
        for _ in range(300):
            f.write(chunk)
        f.write('"}]' + tail)
    proc = _cli(tmp_path, path)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child's peak so far
    assert proc.returncode == 2 and "is 300.1 MB; the limit is 64.0 MB" in proc.stderr
    assert peak_mb < 1024  # the file was never read whole


# --------------------------------------------------------------------------- a course of LMS downloads


@pytest.fixture(scope="module")
def lms_course(tmp_path_factory):
    """A course folder as Canvas downloads it: notebooks directly in it, one student uploading twice
    (the later file is graded), one file that is not a notebook."""
    root = tmp_path_factory.mktemp("lms")
    nbs.write(nbs.planted("2020", "no-zero-grad"), root / "doejane_12345_678901_vae.ipynb")  # superseded
    nbs.write(nbs.complete("2020"), root / "doejane_12345_678950_vae-1.ipynb")
    (root / "roefred_late_23456_678999_vae.ipynb").write_text("{ not json")
    return root


BATCH = BatchOptions(workers=1, render=False, quiet=True, run=RunOptions(quiet=True))


def test_a_course_of_lms_notebooks_is_graded_one_per_student_with_ids_from_file_names(lms_course, grader, tmp_path):
    out = tmp_path / "out"
    summary = grade_batch(lms_course, grader, out, BATCH)
    assert [(o.id, o.status) for o in summary.outcomes] == [("12345", "graded"), ("23456", "error")]
    assert summary.notes and "grading the last, doejane_12345_678950_vae-1.ipynb" in summary.notes[0]
    result = load_result(out / "12345" / "result.json")
    assert result["total"] == 45 and result["submission"]["student"] == "doejane"
    assert "not a notebook" in json.loads((out / "23456" / "error.json").read_text())["error"]
    again = grade_batch(lms_course, grader, out, BATCH)  # unchanged: nothing is regraded
    assert [(o.id, o.status) for o in again.outcomes if o.id == "12345"] == [("12345", "skipped")]


def test_a_dask_cluster_grades_the_lms_course_as_the_local_batch(lms_course, grader, session_cache, tmp_path):
    from distributed import Client, LocalCluster

    from harness.course.cluster import DaskRunner, grading_kit

    local, remote = tmp_path / "local", tmp_path / "dask"
    grade_batch(lms_course, grader, local, BATCH)
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


def test_check_takes_a_notebook_path_finds_its_handout_and_reads_the_name_pattern(tmp_path):
    path = notebook(tmp_path, nbs.complete("2026"))
    out = tmp_path / "out"
    proc = run_harness("check", path, "--out", out, "--name-pattern", r"(?P<student>[a-z]+)_.*")
    assert proc.returncode == 0, proc.stderr
    assert "assignment variant-b" in proc.stderr
    check_json = json.loads((out / path.stem / "check.json").read_text())
    assert check_json["submission"]["student"] == "doejane" and check_json["submission"]["student_id"] == ""


def test_a_course_folder_s_handout_is_recognised_from_its_notebooks_and_a_mix_is_refused(tmp_path):
    from harness.config.assignment import bundled_assignments
    from harness.submission.notebook import NotebookError
    from harness.submission.notebook_load import course_handout

    bundled = [load_assignment(n) for n in bundled_assignments()]
    course = tmp_path / "course"
    course.mkdir()
    nbs.write(nbs.complete("2026"), course / "a_1_1_hw.ipynb")
    (course / "b_2_2_hw.ipynb").write_text("{ broken")  # unreadable: its own error when graded
    (course / "c").mkdir()
    nbs.write(nbs.complete("2026"), course / "c" / "hw.ipynb")
    assert Path(course_handout(course, bundled).source).stem == "variant-b"
    nbs.write(nbs.complete("2020"), course / "d_4_4_hw.ipynb")
    with pytest.raises(NotebookError, match="several handouts"):
        course_handout(course, bundled)
    assert course_handout(tmp_path / "course" / "c", bundled) is not None


def _png() -> str:
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    plt.plot([1, 2])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def test_stored_figures_are_kept_and_forensics_flag_counts_out_of_order_and_stale_figures(tmp_path):
    from harness.submission.detect import load

    nb = nbs.complete("2020")
    code = [c for c in nb.cells if c.cell_type == "code"]
    for count, cell in enumerate(code, start=1):
        cell.execution_count = count
    encoder = next(c for c in code if "class Encoder(nn.Module):" in c.source)
    sampling = next(c for c in code if "def vis_samples(model):" in c.source)
    encoder.execution_count = 99  # the model cell was re-run after the samples were drawn
    sampling.outputs = [nbformat.v4.new_output("display_data", data={"image/png": _png(), "text/plain": "<Figure>"})]
    sub = load(notebook(tmp_path, nb), load_assignment("variant-a"))
    facts = sub.notebook
    assert [(f.role, f.index) for f in facts.figures] == [("sampling", 0)]
    assert facts.figures[0].png.startswith(b"\x89PNG")
    assert any("out of document order" in f for f in facts.forensics)
    assert any("stored figure" in f and "older than cell" in f and "encoder decoder" in f for f in facts.forensics)
    assert facts.to_json()["stored_figures"] == [
        {"cell": facts.figures[0].cell, "role": "sampling", "index": 0, "key": facts.figures[0].key}
    ]
