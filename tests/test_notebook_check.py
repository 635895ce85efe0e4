"""The fast checks of handed-in notebooks (no training): completed notebooks built from the three
handouts (tests/notebooks.py) pass every check, each planted code bug costs exactly its item,
drift keeps full points, the untouched handout is reported region by region, and bad input gets a
clear message and exit code with nothing else lost. Grading them end to end:
tests/test_notebook_grade.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import pytest

from harness.config.assignment import load_assignment
from harness.grading.check import check_submission
from harness.grading.session import RunOptions
from tests import notebooks as nbs
from tests.helpers import harness_command, lost_items, notebook_in

pytestmark = pytest.mark.skipif(
    not nbs.HANDOUTS.is_dir(),
    reason="../shared/handouts not found: the handout notebooks are needed to build completed notebooks",
)

FULL_CHECK = 27.0  # the points `check` grades (code items and the first four answers)
QUIET = RunOptions(quiet=True)


def check(path: Path, year: str, mnist, a=None):
    return check_submission(path, a or load_assignment(nbs.CONFIG[year]), mnist, QUIET)


def test_a_completed_2022_notebook_passes_every_check(tmp_path, mnist):
    result = check(notebook_in(tmp_path, nbs.complete("2022")), "2022", mnist)
    assert result.total == result.max_total == FULL_CHECK


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
CODE_BUGS_2026 = ["loader-not-shuffled", "wrong-decoder-channels", "sigma-without-exp", "reconstruct-samples"]


@pytest.mark.parametrize("year, bug", [("2020", bug) for bug in CODE_BUGS] + [("2026", bug) for bug in CODE_BUGS_2026])
def test_a_code_bug_in_a_notebook_costs_exactly_its_item(bug, year, tmp_path, mnist):
    items, _ = nbs.bugs(year)[bug]
    result = check(notebook_in(tmp_path, nbs.planted(year, bug)), year, mnist)
    assert lost_items(result) == set(items), {i.id: i.evidence for i in result.items}


def test_each_drift_keeps_the_2026_checks_full(tmp_path, mnist):
    result = check(notebook_in(tmp_path, nbs.drifted("2026")), "2026", mnist)
    assert result.total == result.max_total == FULL_CHECK


def test_the_untouched_handout_is_reported_region_by_region_and_crashes_nothing(tmp_path, mnist):
    path = notebook_in(tmp_path, nbs.handout("2020"))
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
    proc = _cli(tmp_path, notebook_in(tmp_path, nbs.complete("2026")), "--assignment", "variant-a")
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
    path = notebook_in(tmp_path, _with_cell(nbs.complete("2020"), "while True:\n    pass\n"))
    result = check(path, "2020", mnist, a)
    looping = [c for c in result.notebook["cells"] if c["timed_out"]]
    assert len(looping) == 1 and "per-cell time limit" in looping[0]["error"]
    assert result.total == FULL_CHECK
    assert sum(result.timings[u] for u in ("architecture", "forward", "sampling", "vae")) < 30  # skipped there


def test_exit_in_a_cell_costs_nothing_else(tmp_path, mnist):
    path = notebook_in(tmp_path, _with_cell(nbs.complete("2020"), "import sys\nexit()\nsys.exit(1)\n"))
    result = check(path, "2020", mnist)
    assert any(c["error"].startswith("SystemExit") for c in result.notebook["cells"])
    assert result.total == FULL_CHECK


def test_shell_lines_are_taken_out_and_never_run(tmp_path, mnist):
    canary = tmp_path / "canary.txt"
    canary.write_text("still here")
    cell = f"!rm -rf /\n!rm -rf {tmp_path}\nimport os\nx = 1\n"
    result = check(notebook_in(tmp_path, _with_cell(nbs.complete("2020"), cell)), "2020", mnist)
    assert canary.read_text() == "still here"
    assert any("!rm -rf /" in r for r in result.notebook["removed"])
    assert result.total == FULL_CHECK


def _check_peak_mb(tmp_path: Path, path: Path) -> tuple[subprocess.CompletedProcess, float]:
    """``harness check PATH`` in a child that reports its own peak resident memory."""
    import sys

    code = (
        "import resource, sys\nfrom harness.cli import main\nrc = main(sys.argv[1:])\n"
        "print('peak-kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(rc)"
    )
    args = [sys.executable, "-c", code, "check", str(path), "--out", str(tmp_path / "out")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    return proc, int(proc.stderr.rsplit("peak-kb", 1)[1].split()[0]) / 1024


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
    small = tmp_path / "small.ipynb"
    small.write_text("not a notebook")
    proc, peak_mb = _check_peak_mb(tmp_path, path)
    _, baseline_mb = _check_peak_mb(tmp_path, small)
    assert proc.returncode == 2 and "is 300.1 MB; the limit is 64.0 MB" in proc.stderr
    assert peak_mb - baseline_mb < 64, (peak_mb, baseline_mb)  # the file was never read whole


def test_check_takes_a_notebook_path_finds_its_handout_and_reads_the_name_pattern(tmp_path):
    path = notebook_in(tmp_path, nbs.complete("2026"))
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
    sub = load(notebook_in(tmp_path, nb), load_assignment("variant-a"))
    facts = sub.notebook
    assert [(f.role, f.index) for f in facts.figures] == [("sampling", 0)]
    assert facts.figures[0].png.startswith(b"\x89PNG")
    assert any("out of document order" in f for f in facts.forensics)
    assert any("stored figure" in f and "older than cell" in f and "encoder decoder" in f for f in facts.forensics)
    f = facts.figures[0]
    assert facts.to_json()["stored_figures"] == [
        {"cell": f.cell, "role": "sampling", "index": 0, "key": f.key, "slot": f.slot, "shape": f.shape}
    ]


def test_a_folder_with_one_notebook_a_pdf_and_submission_toml_is_a_notebook_submission(tmp_path, mnist):
    from harness.submission.detect import load

    folder = tmp_path / "ada"
    folder.mkdir()
    nbs.write(nbs.complete("2020"), folder / "Copy of handout.ipynb")
    (folder / "write-up.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    (folder / "submission.toml").write_text('student = "Ada Lovelace"\nstudent_id = "1815"\n')
    sub = load(folder, load_assignment("variant-a"))
    assert (sub.kind, sub.id, sub.student, sub.student_id) == ("notebook", "ada", "Ada Lovelace", "1815")
    assert [str(f) for f in sub.files] == ["Copy of handout.ipynb", "write-up.pdf", "submission.toml"]
    result = check(folder, "2020", mnist)
    assert result.total == FULL_CHECK and result.submission["student"] == "Ada Lovelace"
