"""``python -m harness export`` (harness.course.export): each format's header and values, overrides
included, from a tmp course built of copies of the stored fixture result (no training)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.course.export import ExportError, course_ids, export
from harness.course.overrides import OverridesError
from tests.helpers import overrides, store

ROOT = Path(__file__).resolve().parent.parent


def course(out: Path) -> Path:
    """s1 (Ada, 43 automatic, an override to 44), s2 (Bob, full marks), s3 (an error record)."""
    store(out, "s1", {"ae_training": 4}, student="Ada Lovelace", student_id="a1")
    store(out, "s2", student="Bob, Jr.", student_id="b2")
    (out / "s3").mkdir()
    (out / "s3" / "error.json").write_text(json.dumps({"id": "s3", "error": "RuntimeError: boom", "traceback": ""}))
    (out / "_scratch").mkdir()  # not a submission: ignored as the batch ignores it
    overrides(out, "s1,ae_training,5,checked by hand")
    return out


def rows_of(path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_course_ids_are_the_graded_sub_folders_in_name_order(tmp_path):
    course(tmp_path)
    (tmp_path / "empty").mkdir()
    assert course_ids(tmp_path) == ["s1", "s2", "s3"]


def test_csv_is_the_grade_table_with_the_overrides(tmp_path, assignment):
    done = export(course(tmp_path), assignment, "csv")
    assert done.path == tmp_path / "export-csv.csv" and done.rows == 3 and done.unscored == ["s3"]
    head, *body = rows_of(done.path)
    assert head == [
        "id",
        "student",
        "student_id",
        *(k.id for k in assignment.rubric),
        "total",
        "max_total",
        "status",
        "flags",
        "overridden",
        "pdf",
        "integrity",
    ]
    s1 = dict(zip(head, body[0], strict=False))
    assert (s1["id"], s1["ae_training"], s1["total"], s1["overridden"]) == ("s1", "5.0", "44.0", "ae_training")
    assert dict(zip(head, body[2], strict=False))["status"] == "error"


def test_canvas_has_the_gradebook_columns_a_points_possible_row_and_the_totals(tmp_path, assignment):
    done = export(course(tmp_path), assignment, "canvas")
    assert rows_of(done.path) == [
        [
            "Student",
            "ID",
            "SIS User ID",
            "SIS Login ID",
            "Section",
            "Problem 1: Variational Auto-Encoder (vae-mnist-a)",
        ],
        ["Points Possible", "", "", "", "", "45"],
        ["Ada Lovelace", "", "a1", "", "", "44"],
        ["Bob, Jr.", "", "b2", "", "", "45"],
        ["", "", "", "", "", ""],  # the error record: no score
    ]


def test_gradescope_has_name_sid_email_total_max_and_one_column_per_item(tmp_path, assignment):
    done = export(course(tmp_path), assignment, "gradescope")
    head, s1, s2, s3 = rows_of(done.path)
    items = list(assignment.rubric)
    assert head[:5] == ["Name", "SID", "Email", "Total Score", "Max Points"]
    assert head[5:] == [f"{n}: {k.title} ({k.points:.1f} pts)" for n, k in enumerate(items, 1)]
    assert head[5 + [k.id for k in items].index("ae_training")] == "3: AE training loop (6.0 pts)"
    assert s1[:5] == ["Ada Lovelace", "a1", "", "44", "45"]
    assert s1[5 + [k.id for k in items].index("ae_training")] == "5"
    assert s2[:5] == ["Bob, Jr.", "b2", "", "45", "45"]
    assert s3[3:] == ["", "45", *[""] * len(items)]


def test_rows_without_a_score_and_rows_to_check_come_with_warnings(tmp_path, assignment):
    course(tmp_path)
    (tmp_path / "s4").mkdir()
    (tmp_path / "s4" / "result.json").write_text("{not json")
    store(tmp_path, "s5", student_id="")
    done = export(tmp_path, assignment, "canvas")
    assert done.unscored == ["s3", "s4"]
    assert "s3: no score exported (RuntimeError: boom)" in done.warnings
    assert any(w.startswith("s4: no score exported (no result (") for w in done.warnings)
    assert "s5: no student_id in its submission.toml; canvas can only match it by name" in done.warnings


def test_the_output_file_can_be_chosen_and_is_owner_only(tmp_path, assignment):
    target = tmp_path / "elsewhere" / "grades-for-canvas.csv"
    done = export(course(tmp_path / "reports"), assignment, "canvas", target)
    assert done.path == target and target.is_file()
    assert target.stat().st_mode & 0o777 == 0o600


def test_nothing_to_export_is_an_error_that_says_what_to_do(tmp_path, assignment):
    with pytest.raises(
        ExportError, match="holds no graded submissions .*python -m harness grade <submissions folder> --out "
    ):
        export(tmp_path, assignment, "csv")
    with pytest.raises(ExportError, match="no such reports folder"):
        export(tmp_path / "missing", assignment, "csv")


def test_results_of_another_assignment_are_refused(tmp_path, assignment):
    course(tmp_path)
    r = json.loads((tmp_path / "s2" / "result.json").read_text())
    r["assignment"]["id"] = "vae-mnist-b"
    (tmp_path / "s2" / "result.json").write_text(json.dumps(r))
    with pytest.raises(ExportError, match="graded for vae-mnist-b, not vae-mnist-a; pass the assignment"):
        export(tmp_path, assignment, "csv")


def test_an_invalid_overrides_csv_stops_the_export(tmp_path, assignment):
    course(tmp_path)
    overrides(tmp_path, "s1,ae_training,9,")
    with pytest.raises(OverridesError, match="outside 0..6"):
        export(tmp_path, assignment, "csv")
    assert not (tmp_path / "export-csv.csv").exists()


def test_the_verb_prints_what_it_wrote_and_warnings_on_stderr(tmp_path, capsys):
    course(tmp_path)
    assert main(["export", str(tmp_path), "--format", "gradescope"]) == 0
    out, err = capsys.readouterr()
    assert out == f"written: {tmp_path / 'export-gradescope.csv'} (gradescope, 3 submissions, 1 without a score)\n"
    assert "warning: s3: no score exported (RuntimeError: boom)\n" in err


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_export_exit_codes(tmp_path):
    reports = course(tmp_path / "reports")
    done = harness("export", "--format", "canvas", cwd=tmp_path)  # REPORTS_DIR defaults to reports/
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("written: reports/export-canvas.csv (canvas, 3 submissions")
    assert (reports / "export-canvas.csv").is_file()

    bad = harness("export", str(reports), "--format", "moodle", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'moodle'" in bad.stderr

    (tmp_path / "empty").mkdir()
    empty = harness("export", "empty", "--format", "csv", cwd=tmp_path)
    assert empty.returncode == 2 and empty.stderr.startswith("error: empty holds no graded submissions")

    overrides(reports, "s1,no_such_item,1,")
    invalid = harness("export", str(reports), "--format", "csv", cwd=tmp_path)
    assert invalid.returncode == 2 and "unknown item 'no_such_item'" in invalid.stderr


def test_the_grade_table_and_export_import_no_torch_and_export_a_course_without_it_in_a_fresh_process(tmp_path):
    """Read from stored files alone: a fresh interpreter (nothing else has imported torch) imports the
    grade table and export, then exports a course with an override, and torch is never loaded."""
    reports = course(tmp_path / "reports")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import harness.course.export, harness.course.table\n"
        "assert 'torch' not in sys.modules, 'torch imported by harness.course.export or harness.course.table'\n"
        "from harness.config.assignment import load_assignment\n"
        f"done = harness.course.export.export(Path({str(reports)!r}), load_assignment('variant-a'), 'csv')\n"
        "assert done.rows == 3, done\n"
        "assert 'torch' not in sys.modules, 'torch imported while exporting'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_export_verb_runs_without_loading_torch(tmp_path):
    """`python -m harness export` is a table job: the command line itself loads no torch either."""
    reports = course(tmp_path / "reports")
    script = (
        "import sys\n"
        "from harness.cli import main\n"
        f"code = main(['export', {str(reports)!r}, '--format', 'canvas'])\n"
        "assert code == 0, code\n"
        "assert 'torch' not in sys.modules, 'torch imported by the export verb'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (reports / "export-canvas.csv").is_file()


def test_help_lists_the_export_verb():
    from harness.cli import build_parser

    assert "export" in build_parser().format_help()
