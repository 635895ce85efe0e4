"""Integrity flags (harness.grading.integrity): code that imports the harness and results no honest
run reaches are flagged, and the items they would earn are held for review at 0 points.

Unit tests on tiny tensors and hand-made measures; the grade table, summary.html and the
instructor report from a stored result with a flag; one integration test grading a copy of the
example that imports the harness (smoke profile)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness.grading import integrity
from harness.grading.integrity import Flag, harness_imports, hold, plausibility_flags, provenance_flags
from harness.grading.rubric import ItemResult
from harness.submission.contents import CodeSource, NotebookFacts, Submission
from tests.helpers import EXAMPLE, FIXTURE, copy_example, store

ANSWER_ITEMS = {"ae_sampling_answer", "beta0_answer", "beta10_answer", "welltuned_answer"}


def folder_sub(text: str) -> Submission:
    return Submission("s1", Path("s1"), code=(CodeSource("submission.py", text),))


def notebook_sub(*cells: tuple[int, str]) -> Submission:
    facts = NotebookFacts(file="hw.ipynb", handout="variant-a", nbformat="4.4")
    code = tuple(CodeSource(f"cell {n}", text, n) for n, text in cells)
    return Submission("s1", Path("s1"), kind="notebook", label="hw.ipynb", code=code, notebook=facts)


# --------------------------------------------------------------------------- provenance

IMPORT_FORMS = {
    "import": "import harness\n",
    "import-submodule-as": "import harness.ml.models as m\n",
    "from-import": "from harness.ml.models import AutoEncoder as _Ref\n",
    "from-package-import": "from harness import ml\n",
    "import-module": "import importlib\nm = importlib.import_module('harness.ml.models')\n",
    "import-module-bare": 'from importlib import import_module\nm = import_module("harness")\n',
    "dunder-import": "m = __import__('harness.ml')\n",
    "inside-a-function": "def f():\n    from harness.ml import training\n    return training\n",
}


@pytest.mark.parametrize("form", sorted(IMPORT_FORMS))
def test_each_form_of_importing_the_harness_in_a_folders_module_is_flagged(form, assignment):
    flags = provenance_flags(folder_sub("import torch\n" + IMPORT_FORMS[form]), assignment)
    assert [f.code for f in flags] == ["imports-harness"]
    line = IMPORT_FORMS[form].count("\n", 0, IMPORT_FORMS[form].index("harness")) + 2
    assert f"submission.py line {line}" in flags[0].message and "harness" in flags[0].evidence[0]


NOT_IMPORTS = {
    "comment": "import torch\n# import harness  (the grader's package; do not use)\n",
    "string": 's = "from harness.ml.models import AutoEncoder"\nimportlib = None\n',
    "docstring": '"""Graded by the harness: import harness is not allowed."""\n',
    "other-package": "import harnessing\nfrom harness_tools import x\n",
    "relative": "from .harness import helper\n",
    "variable": "harness = 3\nprint(harness)\n",
    "import-module-other": "import importlib\nimportlib.import_module('torch')\n",
}


@pytest.mark.parametrize("case", sorted(NOT_IMPORTS))
def test_a_file_that_only_mentions_harness_is_not_flagged(case, assignment):
    assert provenance_flags(folder_sub(NOT_IMPORTS[case]), assignment) == []


def test_code_that_does_not_parse_falls_back_to_whole_import_lines():
    broken = "def f(:\n# import harness\nx = 'import harness'\n  from harness.ml import models\n"
    assert [(i.line, i.statement) for i in harness_imports(broken)] == [(4, "from harness.ml import models")]
    assert harness_imports("def f(:\n__import__('harness')\n")[0].line == 2
    assert harness_imports("def f(:\nprint('harness')\n") == []


def test_notebook_cells_are_named_by_file_cell_and_line(assignment):
    sub = notebook_sub((1, "import torch\n"), (4, "pass\nimport harness.ml\n"), (7, "x = 'harness'\n"))
    (flag,) = provenance_flags(sub, assignment)
    assert "hw.ipynb cell 4 line 2" in flag.message
    assert flag.evidence == ("hw.ipynb cell 4 line 2: import harness.ml",)


def test_importing_the_harness_holds_every_item_but_the_written_answers(assignment):
    (flag,) = provenance_flags(folder_sub("import harness\n"), assignment)
    assert set(flag.items) == {r.id for r in assignment.rubric} - ANSWER_ITEMS
    assert "interpolation" in flag.items  # its paths come from the code


def test_flag_to_json_has_lists():
    f = Flag("imports-harness", "m", ("e",), ("ae_training",))
    assert f.to_json() == {"code": "imports-harness", "message": "m", "evidence": ["e"], "items": ["ae_training"]}


# --------------------------------------------------------------------------- plausibility

REFERENCE = [
    {"name": "ae", "test_mse": 0.02, "sample_fid": 170.0},
    {"name": "beta-0", "test_mse": 0.09, "sample_fid": 530.0},
    {"name": "tuned", "test_mse": 0.019, "sample_fid": 180.0},
]
REAL_FID = 7.4


def run(role: str, test_mse: float = 0.02, sample_fid: float = 200.0, **more) -> dict:
    return {"role": role, "status": "ok", "measure": {"test_mse": test_mse, "sample_fid": sample_fid}, **more}


def codes(flags: list[Flag]) -> list[tuple[str, tuple[str, ...]]]:
    return [(f.code, f.items) for f in flags]


def test_a_test_mse_far_below_the_references_best_is_flagged_on_the_runs_items():
    flags = plausibility_flags({"ae": run("ae", test_mse=0.001)}, REFERENCE, REAL_FID, {}, None)
    assert codes(flags) == [("mse-far-below-reference", ("ae_training", "interpolation"))]
    assert "0.001" in flags[0].message and "0.019" in flags[0].message


def test_beating_a_barely_trained_namesake_is_no_flag_while_the_references_best_is_not_beaten():
    # beta-0's own reference is at 0.09; 0.01 is 0.11x of it but over half the reference's best
    assert plausibility_flags({"beta-0": run("fixed", test_mse=0.01)}, REFERENCE, REAL_FID, {}, None) == []
    flags = plausibility_flags({"beta-0": run("fixed", test_mse=0.003)}, REFERENCE, REAL_FID, {}, None)
    assert codes(flags) == [("mse-far-below-reference", ("vae_training",))]


def test_a_sample_fid_at_the_real_data_floor_is_flagged():
    flags = plausibility_flags({"tuned": run("tuned", sample_fid=8.0)}, REFERENCE, REAL_FID, {}, None)
    assert codes(flags) == [("fid-at-real-floor", ("beta_tuning", "interpolation"))]


def test_a_good_fid_above_the_floor_or_no_better_than_the_reference_is_not_flagged():
    assert plausibility_flags({"tuned": run("tuned", sample_fid=20.0)}, REFERENCE, REAL_FID, {}, None) == []
    close_reference = [{"test_mse": 0.02, "sample_fid": 9.0}]
    assert plausibility_flags({"tuned": run("tuned", sample_fid=8.0)}, close_reference, REAL_FID, {}, None) == []


def test_runs_that_did_not_end_ok_or_hold_nothing_of_the_students_are_skipped():
    runs = {
        "ae": {"role": "ae", "status": "error", "error": "x"},
        "beta-0": {"role": "fixed", "status": "not run"},
        "tuned": run("tuned", test_mse=0.0, trainer="harness", model="reference"),
    }
    assert plausibility_flags(runs, REFERENCE, REAL_FID, {}, None) == []
    runs["tuned"]["model"] = "student"  # the harness's loop on the student's model: the model may cheat
    assert codes(plausibility_flags(runs, REFERENCE, REAL_FID, {}, None)) == [
        ("mse-far-below-reference", ("beta_tuning", "interpolation"))
    ]


def train_images(n: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=g).mul(255).round().div(255)


def as_u8(x: torch.Tensor) -> np.ndarray:
    return x.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()


def test_nearest_mse_in_chunks_matches_brute_force():
    train, g = train_images(50), torch.Generator().manual_seed(1)
    samples = torch.rand(7, 1, 28, 28, generator=g)
    brute = ((samples.reshape(7, 1, -1) - train.reshape(1, 50, -1)) ** 2).mean(-1).min(1).values
    assert torch.allclose(integrity.nearest_mse(samples, train, chunk=8).float(), brute, atol=1e-6)
    assert integrity.nearest_mse(train[:3], train).max() < 1e-12  # copies are exactly 0


def test_samples_that_copy_training_images_are_flagged_with_their_distances():
    train = train_images()
    noisy = train[:16] + 0.1 * (torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(2)) * 2 - 1)
    for samples in (train[:16], noisy):
        arrays = {"run/tuned/samples": as_u8(samples)}
        flags = plausibility_flags({"tuned": run("tuned")}, REFERENCE, REAL_FID, arrays, train)
        assert codes(flags) == [("samples-copy-training-images", ("beta_tuning", "interpolation"))]
        assert "16 of 16 samples" in flags[0].message and flags[0].evidence[0].count(",") == 15


def test_novel_samples_or_a_minority_of_copies_are_not_flagged():
    train = train_images()
    fresh = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    assert plausibility_flags({"ae": run("ae")}, REFERENCE, REAL_FID, {"run/ae/samples": as_u8(fresh)}, train) == []
    some = torch.cat([train[:7], fresh[7:]])
    assert plausibility_flags({"ae": run("ae")}, REFERENCE, REAL_FID, {"run/ae/samples": as_u8(some)}, train) == []
    half = torch.cat([train[:8], fresh[8:]])
    flags = plausibility_flags({"ae": run("ae")}, REFERENCE, REAL_FID, {"run/ae/samples": as_u8(half)}, train)
    assert [f.code for f in flags] == ["samples-copy-training-images"]


# --------------------------------------------------------------------------- the loop, the status stream


def loop(steps: int, after: int, backwards: int, changed: bool) -> dict:
    return {"steps": steps, "steps_after_backward": after, "backwards": backwards, "params_changed": changed}


def test_steps_with_no_backward_pass_behind_them_are_flagged_holding_nothing():
    runs = {"ae": {"loop": loop(40, 0, 0, True)}, "beta-0": {"loop": loop(40, 40, 40, True)}}
    (flag,) = integrity.loop_flags(runs)
    assert (flag.code, flag.items) == ("steps-without-backward", ())
    assert flag.evidence == ("ae: 40 optimizer steps, 0 backward passes reached the model",)


def test_a_run_whose_weights_never_moved_is_flagged_did_not_train():
    runs = {"beta-0": {"loop": loop(0, 0, 0, False)}, "tuned": {"loop": None, "trainer": "harness"}}
    (flag,) = integrity.loop_flags(runs)
    assert flag.code == "did-not-train" and flag.evidence[0].startswith("beta-0: 0 optimizer steps")


def test_honest_loops_and_the_harness_s_own_loop_raise_no_loop_flag():
    runs = {"ae": {"loop": loop(40, 40, 40, True)}, "tuned": {"loop": None}, "beta-10": {"status": "not run"}}
    assert integrity.loop_flags(runs) == []


def test_lines_written_to_the_status_stream_are_one_flag_naming_each_unit():
    (flag,) = integrity.status_flags({"architecture": 2, "sampling": 1})
    assert (flag.code, flag.items) == ("status-stream-written", ())
    assert "3 line(s)" in flag.message
    assert flag.evidence == (
        "unit architecture: 2 line(s) the harness did not write",
        "unit sampling: 1 line(s) the harness did not write",
    )
    assert integrity.status_flags({}) == []


def test_the_loop_record_reads_the_observer_and_is_none_for_the_harness_s_loop():
    from harness.grading.runs import loop_record

    watch = {"steps": 5, "steps_after_backward": 3, "backwards": 4}
    assert loop_record({"run": {"watch": watch, "params_changed": True}}) == loop(5, 3, 4, True)
    assert loop_record({"run": {"watch": None, "params_changed": True}}) is None


# --------------------------------------------------------------------------- hold


def items() -> list[ItemResult]:
    return [
        ItemResult("ae_training", "AE training loop", 5.5, 6.0, "partial", ["ok loop"], {"runs": 1}),
        ItemResult("beta0_answer", "Inline: beta = 0", 3.0, 3.0, "pass", ["ok"]),
    ]


def test_hold_gives_0_points_and_needs_review_and_keeps_the_suggestion():
    before = items()
    flag = Flag("mse-far-below-reference", "run ae: test MSE 0.001 is far below", ("e",), ("ae_training",))
    held, answer = hold(before, [flag])
    assert (held.points, held.max_points, held.status) == (0.0, 6.0, "needs_review")
    assert held.metrics == {"runs": 1, "suggested_points": 5.5, "integrity": ["mse-far-below-reference"]}
    assert held.evidence == [
        "held for review: run ae: test MSE 0.001 is far below (suggested 5.5 of 6; an instructor's override "
        "in overrides.csv restores it)",
        "ok loop",
    ]
    assert answer == before[1] and before[0].points == 5.5 and before[0].status == "partial"  # pure


def test_hold_with_no_flags_changes_nothing():
    assert hold(items(), []) == items()


# --------------------------------------------------------------------------- grades.csv, summary.html, report

FLAG = Flag(
    "imports-harness",
    "submission.py line 12 imports the harness's own package `harness`",
    ("submission.py line 12: from harness.ml.models import AutoEncoder as _Ref",),
    ("ae_architecture", "ae_training"),
)


def flagged(out: Path, sid: str) -> Path:
    """A stored result with one integrity flag, its items held as grade holds them."""
    folder = store(out, sid)
    r = json.loads((folder / "result.json").read_text())
    held = hold([ItemResult(**i) for i in r["items"]], [FLAG])
    r["items"] = [dataclasses.asdict(i) for i in held]
    r["total"] = sum(i.points for i in held)
    r["integrity"] = [FLAG.to_json()]
    (folder / "result.json").write_text(json.dumps(r))
    return folder


def test_grades_csv_has_an_integrity_column_of_codes_empty_without_flags(tmp_path, assignment):
    from harness.course.table import grade_rows, write_grades

    flagged(tmp_path, "s1")
    store(tmp_path, "s2")  # an older result: no integrity field at all
    path = write_grades(tmp_path, grade_rows(tmp_path, ["s1", "s2"], assignment))
    table = pd.read_csv(path, keep_default_na=False).set_index("id")
    assert list(table.columns[-2:]) == ["pdf", "integrity"]
    s1, s2 = table.loc["s1"], table.loc["s2"]
    assert (s1["integrity"], s2["integrity"]) == ("imports-harness", "")
    assert s1["status"] == "needs_review" and "review ae_architecture" in s1["flags"]
    assert "integrity: submission.py line 12 imports" in s1["flags"] and "integrity" not in s2["flags"]
    assert s1["ae_architecture"] == 0 and s1["total"] == s2["total"] - 12


def test_summary_html_lists_flagged_submissions_with_codes_and_messages(tmp_path, assignment):
    from harness.course.summary import write_summary
    from harness.course.table import grade_rows

    flagged(tmp_path, "s1")
    store(tmp_path, "s2")
    html = write_summary(tmp_path, grade_rows(tmp_path, ["s1", "s2"], assignment), assignment, "smoke").read_text()
    section = html[html.index('id="integrity"') : html.index("<h2>Submissions</h2>")]
    assert "<h2>Integrity flags</h2>" in section and 's1/report.html#integrity">s1</a>' in section
    assert "<strong>imports-harness</strong>" in section and "submission.py line 12 imports" in section
    assert "s2/report.html" not in section


def test_the_instructor_report_shows_the_flags_near_the_top(tmp_path):
    from harness.documents.render import DocumentInput, render_html

    folder = tmp_path / "s1"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("write-up.*"))
    flagged(tmp_path, "s1")
    r = json.loads((folder / "result.json").read_text())
    html = render_html(folder, "report", DocumentInput(r))
    top = html[html.index('id="integrity"') : html.index("<h2>Grade</h2>")]
    assert "<h2>Integrity</h2>" in top and "<code>imports-harness</code>" in top
    assert "from harness.ml.models import AutoEncoder as _Ref" in top
    assert "AE architecture (suggested 6 of 6)" in top
    clean = render_html(folder, "report", DocumentInput({**r, "integrity": []}))
    assert 'id="integrity"' not in clean


# --------------------------------------------------------------------------- integration


def test_a_submission_importing_the_harness_is_flagged_and_earns_no_more_than_the_example(
    tmp_path, run_grade, run_check
):
    folder = copy_example(tmp_path / "imports", append="from harness.ml.models import AutoEncoder as _Ref\n")
    checked = run_check(folder)
    assert [f["code"] for f in checked.integrity] == ["imports-harness"]
    assert all(i.points == 0 for i in checked.items if i.id not in ANSWER_ITEMS)
    plain, attack = run_grade(EXAMPLE), run_grade(folder)
    assert plain.integrity == [], plain.integrity
    assert [f["code"] for f in attack.integrity] == ["imports-harness"]
    assert "submission.py line" in attack.integrity[0]["message"]
    assert attack.total <= plain.total
    held = {i.id: i for i in attack.items if i.id not in ANSWER_ITEMS}
    assert all(i.status == "needs_review" and i.points == 0 for i in held.values())
    assert all("suggested_points" in i.metrics for i in held.values())
    assert attack.to_json()["integrity"] == attack.integrity
