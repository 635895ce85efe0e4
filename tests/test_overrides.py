"""Instructors' overrides (harness.course.overrides): validation, merging, the flag after a regrade,
grades.csv (harness.course.table) and the instructor report (harness.course.reports). No training:
each course is a tmp folder of copies of the stored fixture result
(tests/fixtures/example-smoke/result.json), edited per test."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from harness.course.overrides import (
    BASIS_NAME,
    OVERRIDES_NAME,
    OverridesError,
    apply_overrides,
    check_course,
    load_overrides,
    merge,
    parse_overrides,
    reports_to_refresh,
    rubric_points,
)
from harness.course.reports import render_documents, report_input
from harness.course.table import grade_rows, write_grades
from harness.documents.render import render_here, render_html
from tests.helpers import FIXTURE, overrides, store
from tests.helpers import OVERRIDES_HEADER as HEADER


def row(rows: pd.DataFrame, sid: str) -> dict:
    return rows.set_index("id").loc[sid].to_dict()


@pytest.fixture
def rubric(assignment) -> dict[str, float]:
    return rubric_points(assignment)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "text, message",
    [
        (
            HEADER + "s1,no_such_item,1,\n",
            r"overrides\.csv:2: unknown item 'no_such_item'\. Fix: use one of the rubric's item ids: ae_architecture, ",
        ),
        (
            HEADER + "s1,ae_training,four,\n",
            r"overrides\.csv:2: points 'four' is not a number\. Fix: write the points as a number from 0 to 6",
        ),
        (HEADER + "s1,ae_training,,\n", r"overrides\.csv:2: points '' is not a number\."),
        (HEADER + "s1,ae_training,nan,\n", r"overrides\.csv:2: points 'nan' is not a number\."),
        (
            HEADER + "s1,ae_training,-1,\n",
            r"overrides\.csv:2: points -1 for ae_training are outside 0\.\.6\. Fix: write a number from 0 to 6",
        ),
        (HEADER + "s1,ae_training,6.5,\n", r"overrides\.csv:2: points 6\.5 for ae_training are outside 0\.\.6\."),
        (
            HEADER + "s1,ae_training,4,\n\ns1,ae_training,5,again\n",
            r"overrides\.csv:4: a second override of ae_training for s1 \(the first is on line 2\)\. "
            r"Fix: keep one row per submission and item",
        ),
        (
            HEADER + "s1,ae_training,4,too,many\n",
            r"overrides\.csv:2: 5 fields, the header has 4\. Fix: quote a comment",
        ),
        (HEADER + ",ae_training,4,\n", r"overrides\.csv:2: the submission is empty\."),
        (
            "submission,item,points,comment,grader\ns1,ae_training,4,,me\n",
            r"overrides\.csv:1: header .*: unknown column grader\. "
            r"Fix: the header line must be exactly submission,item,points,comment",
        ),
        ("submission,item,points\ns1,ae_training,4\n", r"overrides\.csv:1: header .*: missing column comment\."),
        (
            "s1,ae_training,4,ok\n",
            r"overrides\.csv:1: header .*: missing columns submission, item, points, comment; "
            r"unknown columns s1, ae_training, 4, ok\.",
        ),
        (
            "",
            r"overrides\.csv:1: no header line\. "
            r"Fix: start the file with the header line submission,item,points,comment",
        ),
    ],
)
def test_each_invalid_overrides_csv_is_refused_with_file_line_and_fix(tmp_path, rubric, text, message):
    path = tmp_path / OVERRIDES_NAME
    path.write_text(text, encoding="utf-8")
    with pytest.raises(OverridesError) as e:
        load_overrides(path, rubric, ["s1"])
    assert str(e.value).startswith(f"{path}:")
    assert re.search(message, str(e.value)), str(e.value)


def test_every_bad_row_is_reported_at_once_one_line_each(tmp_path, rubric):
    path = overrides(tmp_path, "s1,nope,1,", "s1,ae_training,x,", "s1,ae_forward,1,fine", "s2,ae_forward,9,")
    with pytest.raises(OverridesError) as e:
        load_overrides(path, rubric)
    assert [line.split(": ")[0] for line in str(e.value).splitlines()] == [f"{path}:2", f"{path}:3", f"{path}:5"]


def test_a_file_that_is_not_utf8_is_refused_with_the_fix(tmp_path, rubric):
    path = tmp_path / OVERRIDES_NAME
    path.write_bytes(HEADER.encode() + "s1,ae_training,4,Überprüft\n".encode("latin-1"))
    with pytest.raises(
        OverridesError, match=r"overrides\.csv: not UTF-8 text \(byte \d+\)\. Fix: save it as CSV UTF-8"
    ):
        load_overrides(path, rubric)


def test_a_submission_not_in_the_course_is_a_warning_not_an_error(tmp_path, rubric):
    path = overrides(tmp_path, "s1,ae_training,4,", "ghost,ae_training,4,")
    loaded = load_overrides(path, rubric, ["s1", "s2"])
    assert set(loaded.rows) == {"s1", "ghost"}
    assert loaded.warnings == [f"{path}:3: submission 'ghost' is not in this course; the row applies to nothing"]


def test_a_byte_order_mark_blank_lines_quoted_commas_and_spaces_are_accepted(tmp_path, rubric):
    path = tmp_path / OVERRIDES_NAME
    path.write_bytes('\ufeffsubmission, item ,points,comment\n\n s1 ,ae_training, 4.5 ,"Überprüft, ok"\n'.encode())
    o = load_overrides(path, rubric).of("s1")["ae_training"]
    assert (o.points, o.comment, o.line) == (4.5, "Überprüft, ok", 3)


def test_no_file_means_no_overrides(tmp_path, rubric):
    assert load_overrides(tmp_path / OVERRIDES_NAME, rubric).rows == {}


def test_the_batch_check_raises_for_an_invalid_file_and_returns_warnings_otherwise(tmp_path, assignment):
    overrides(tmp_path, "ghost,ae_training,4,")
    assert check_course(tmp_path, ["s1"], assignment) == [
        f"{tmp_path / OVERRIDES_NAME}:2: submission 'ghost' is not in this course; the row applies to nothing"
    ]
    overrides(tmp_path, "s1,ae_training,40,")
    with pytest.raises(OverridesError, match="outside 0..6"):
        check_course(tmp_path, ["s1"], assignment)


def test_the_cli_refuses_a_batch_before_grading_when_overrides_csv_is_invalid(tmp_path, assignment, capsys):
    from harness.cli import _check_overrides

    (tmp_path / "subs" / "s1").mkdir(parents=True)
    out = tmp_path / "reports"
    out.mkdir()
    overrides(out, "s1,ae_training,7,")
    assert _check_overrides(out, tmp_path / "subs", assignment) is True
    assert (
        "error: " + str(out / OVERRIDES_NAME) + ":2: points 7 for ae_training are outside 0..6"
        in capsys.readouterr().err
    )
    overrides(out, "s1,ae_training,5,", "s9,ae_training,5,")
    assert _check_overrides(out, tmp_path / "subs", assignment) is False
    assert (
        "warning: " + str(out / OVERRIDES_NAME) + ":3: submission 's9' is not in this course" in capsys.readouterr().err
    )


# --------------------------------------------------------------------------- merging


def test_merge_sets_the_points_status_and_total_and_records_the_automatic_result(tmp_path, rubric):
    result = json.loads((store(tmp_path, "s1", {"ae_training": 4}) / "result.json").read_text())
    before = json.dumps(result)
    merged = merge(
        result, parse_overrides(HEADER + "s1,ae_training,6,re-ran: fine\n", tmp_path / OVERRIDES_NAME, rubric).of("s1")
    )
    item = next(i for i in merged["items"] if i["id"] == "ae_training")
    assert (item["points"], item["status"]) == (6.0, "pass")
    assert item["override"] == {
        "points": 6.0,
        "comment": "re-ran: fine",
        "auto_points": 4.0,
        "auto_status": "partial",
        "changed": "",
    }
    assert (merged["total"], merged["auto_total"], merged["flags"]) == (45.0, 43.0, [])
    assert json.dumps(result) == before  # the stored result is not touched


def test_an_override_resolves_review_and_error_statuses_from_its_points(tmp_path, assignment):
    store(
        tmp_path,
        "s1",
        {"ae_sampling_answer": 1},
        statuses={"ae_sampling_answer": "needs_review", "vae_training": "error"},
    )
    assert row(grade_rows(tmp_path, ["s1"], assignment), "s1")["status"] == "error"
    overrides(tmp_path, "s1,ae_sampling_answer,1.5,read it", "s1,vae_training,0,crashes on a GPU")
    r = row(grade_rows(tmp_path, ["s1"], assignment), "s1")
    assert (r["status"], r["ae_sampling_answer"], r["vae_training"], r["total"]) == ("complete", 1.5, 0.0, 45 - 0.5 - 4)
    assert r["overridden"] == "ae_sampling_answer; vae_training"


def test_a_regrade_keeps_the_override_and_flags_the_changed_automatic_result(tmp_path, assignment):
    store(tmp_path, "s1", {"ae_training": 4})
    overrides(tmp_path, "s1,ae_training,5,loop is fine; curve is noisy")
    first = row(grade_rows(tmp_path, ["s1"], assignment), "s1")
    assert (first["ae_training"], first["total"], first["flags"]) == (5.0, 44.0, "")
    basis = json.loads((tmp_path / "s1" / BASIS_NAME).read_text())["items"]["ae_training"]
    assert basis == {
        "points": 5.0,
        "comment": "loop is fine; curve is noisy",
        "auto_points": 4.0,
        "auto_status": "partial",
        "result_created": "2026-01-01T00:00:00+00:00",
    }

    store(tmp_path, "s1", {"ae_training": 6}, created="2026-02-01T00:00:00+00:00")  # the regrade rewrites result.json
    again = row(grade_rows(tmp_path, ["s1"], assignment), "s1")
    flag = "override of ae_training: automatic result changed from 4 (partial) to 6 (pass) since the override"
    assert (again["ae_training"], again["total"], again["overridden"]) == (5.0, 44.0, "ae_training")
    assert again["flags"] == flag
    assert (tmp_path / OVERRIDES_NAME).read_text() == HEADER + "s1,ae_training,5,loop is fine; curve is noisy\n"
    assert row(grade_rows(tmp_path, ["s1"], assignment), "s1")["flags"] == flag  # stays until acknowledged


def test_the_batch_check_records_a_new_override_against_the_result_it_was_decided_on(tmp_path, assignment):
    store(tmp_path, "s1", {"ae_training": 4})
    overrides(tmp_path, "s1,ae_training,5,")  # written after the last batch, never applied yet
    check_course(tmp_path, ["s1"], assignment)  # the next batch starts ...
    store(tmp_path, "s1", {"ae_training": 6})  # ... and regrades s1
    assert "from 4 (partial) to 6 (pass)" in row(grade_rows(tmp_path, ["s1"], assignment), "s1")["flags"]


def test_an_unchanged_regrade_produces_no_flag(tmp_path, assignment):
    store(tmp_path, "s1", {"ae_training": 4})
    overrides(tmp_path, "s1,ae_training,5,")
    grade_rows(tmp_path, ["s1"], assignment)
    store(tmp_path, "s1", {"ae_training": 4}, created="2026-02-01T00:00:00+00:00")
    r = row(grade_rows(tmp_path, ["s1"], assignment), "s1")
    assert (r["ae_training"], r["flags"]) == (5.0, "")


def test_editing_the_override_acknowledges_the_flag_and_refreshes_the_basis(tmp_path, assignment):
    store(tmp_path, "s1", {"ae_training": 4})
    overrides(tmp_path, "s1,ae_training,5,noisy")
    grade_rows(tmp_path, ["s1"], assignment)
    store(tmp_path, "s1", {"ae_training": 6})
    assert "automatic result changed" in row(grade_rows(tmp_path, ["s1"], assignment), "s1")["flags"]
    overrides(tmp_path, "s1,ae_training,5,noisy (checked after the regrade)")
    assert row(grade_rows(tmp_path, ["s1"], assignment), "s1")["flags"] == ""
    assert json.loads((tmp_path / "s1" / BASIS_NAME).read_text())["items"]["ae_training"]["auto_points"] == 6.0


def test_deleting_the_basis_file_acknowledges_every_flag_of_the_submission(tmp_path, assignment):
    store(tmp_path, "s1", {"ae_training": 4})
    overrides(tmp_path, "s1,ae_training,5,")
    grade_rows(tmp_path, ["s1"], assignment)
    store(tmp_path, "s1", {"ae_training": 6})
    (tmp_path / "s1" / BASIS_NAME).unlink()
    assert row(grade_rows(tmp_path, ["s1"], assignment), "s1")["flags"] == ""


def test_removing_the_row_restores_the_automatic_points_and_empties_the_basis(tmp_path, assignment):
    store(tmp_path, "s1", {"ae_training": 4})
    overrides(tmp_path, "s1,ae_training,5,")
    grade_rows(tmp_path, ["s1"], assignment)
    overrides(tmp_path)
    r = row(grade_rows(tmp_path, ["s1"], assignment), "s1")
    assert (r["ae_training"], r["total"], r["overridden"]) == (4.0, 43.0, "")
    assert json.loads((tmp_path / "s1" / BASIS_NAME).read_text())["items"] == {}


def test_overrides_never_modify_the_stored_result(tmp_path, assignment):
    folder = store(tmp_path, "s1", {"ae_training": 4})
    stored = (folder / "result.json").read_bytes()
    overrides(tmp_path, "s1,ae_training,5,")
    grade_rows(tmp_path, ["s1"], assignment)
    apply_overrides(folder, json.loads(stored), {})
    assert (folder / "result.json").read_bytes() == stored


def test_a_submission_without_overrides_gets_no_basis_file(tmp_path, assignment):
    store(tmp_path, "s1")
    store(tmp_path, "s2")
    overrides(tmp_path, "s1,ae_training,5,")
    grade_rows(tmp_path, ["s1", "s2"], assignment)
    assert (tmp_path / "s1" / BASIS_NAME).is_file() and not (tmp_path / "s2" / BASIS_NAME).exists()


# --------------------------------------------------------------------------- grades.csv and summary.html


def test_grades_csv_rows_include_the_overrides(tmp_path, assignment):
    store(tmp_path, "s1", {"ae_training": 4})
    store(tmp_path, "s2", {"ae_training": 4})
    overrides(tmp_path, "s1,ae_training,6,", "s1,interpolation,1,paths are blank")
    table = pd.read_csv(write_grades(tmp_path, grade_rows(tmp_path, ["s1", "s2"], assignment)), keep_default_na=False)
    assert list(table.columns[-6:]) == ["max_total", "status", "flags", "overridden", "pdf", "integrity"]
    s1, s2 = table.set_index("id").loc["s1"], table.set_index("id").loc["s2"]
    assert (s1["ae_training"], s1["interpolation"], s1["total"], s1["overridden"]) == (
        6.0,
        1.0,
        43.0,
        "ae_training; interpolation",
    )
    assert (s2["ae_training"], s2["total"], s2["overridden"]) == (4.0, 43.0, "")


def test_an_error_row_says_its_overrides_wait_for_a_result(tmp_path, assignment):
    (tmp_path / "s1").mkdir()
    (tmp_path / "s1" / "error.json").write_text(
        json.dumps({"id": "s1", "error": "RuntimeError: boom", "traceback": ""})
    )
    overrides(tmp_path, "s1,ae_training,6,")
    r = row(grade_rows(tmp_path, ["s1"], assignment), "s1")
    assert (r["status"], r["flags"]) == ("error", "RuntimeError: boom; overrides wait for a result: ae_training")


def test_an_invalid_overrides_csv_leaves_the_automatic_grades_and_says_so(tmp_path, assignment):
    store(tmp_path, "s1", {"ae_training": 4})
    overrides(tmp_path, "s1,ae_training,60,")
    rows = grade_rows(tmp_path, ["s1"], assignment)
    assert (row(rows, "s1")["total"], row(rows, "s1")["flags"]) == (43.0, "overrides.csv not applied: it is invalid")
    assert "points 60 for ae_training are outside 0..6" in rows.attrs["overrides_error"]


def test_summary_html_marks_overridden_points(tmp_path, assignment):
    from harness.course.summary import write_summary

    store(tmp_path, "s1", {"ae_training": 4})
    overrides(tmp_path, "s1,ae_training,5,")
    html = write_summary(tmp_path, grade_rows(tmp_path, ["s1"], assignment), assignment, "smoke").read_text()
    assert '<span title="instructor override">5*</span>' in html
    assert ">44</td>" in html


# --------------------------------------------------------------------------- the instructor report


def report_folder(out: Path, sid: str = "s1") -> Path:
    """The fixture's result and artefacts, as a batch leaves them in ``<out>/<sid>/``."""
    shutil.copytree(FIXTURE, out / sid, ignore=shutil.ignore_patterns("write-up.*"))
    return out / sid


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def report_html(folder: Path) -> str:
    """The instructor report's HTML as every command draws it: the stored result with
    ``overrides.csv`` merged in by harness.course.reports, rendered by harness.documents."""
    return render_html(folder, "report", report_input(folder))


def test_the_report_shows_the_override_its_comment_the_automatic_points_and_the_overridden_total(tmp_path):
    folder = report_folder(tmp_path)
    overrides(tmp_path, "s1,ae_training,4,Loop skips the last batch; -2")
    text = text_of(report_html(folder))
    assert "Total 43 / 45" in text
    assert "1 instructor override (automatic total 45)" in text
    assert (
        "AE training loop Instructor override: Loop skips the last batch; -2 (automatic: 6, pass) 4* 6 partial" in text
    )
    assert "Instructor override: 4 instead of the automatic 6 (pass): Loop skips the last batch; -2." in text


def test_the_report_shows_the_change_flag_after_a_regrade(tmp_path):
    folder = report_folder(tmp_path)
    overrides(tmp_path, "s1,ae_training,4,")
    report_html(folder)  # the first application records the basis (automatic 6, pass)
    result = json.loads((folder / "result.json").read_text())
    next(i for i in result["items"] if i["id"] == "ae_training").update(points=3.0, status="partial")
    (folder / "result.json").write_text(json.dumps(result))
    text = text_of(report_html(folder))
    assert "override of ae_training: automatic result changed from 6 (pass) to 3 (partial) since the override" in text
    assert "The automatic result changed since the override." in text


def test_an_invalid_overrides_csv_is_an_error_in_the_report_with_the_automatic_points(tmp_path, monkeypatch):
    import weasyprint

    class NoPdf:  # the PDF is not what this test is about
        def __init__(self, **_):
            pass

        def write_pdf(self):
            return b"%PDF-1.7"

    monkeypatch.setattr(weasyprint, "HTML", NoPdf)
    folder = report_folder(tmp_path)
    overrides(tmp_path, "s1,ae_training,x,")
    out = render_here(folder, "report", report_input(folder))
    assert out.error.startswith("overrides.csv is invalid, so the report shows the automatic points: ")
    assert "points 'x' is not a number" in out.error
    text = text_of(out.html.read_text())
    assert "overrides.csv could not be applied , so the points below are the automatic ones" in text
    assert "Total 45 / 45" in text


def test_rendering_a_folder_merges_the_overrides_into_the_report_its_child_process_draws(tmp_path):
    folder = report_folder(tmp_path)
    overrides(tmp_path, "s1,ae_training,4,checked by hand")
    (out,) = render_documents(folder, ["report"])
    assert not out.error, out.error
    assert "Instructor override: 4 instead of the automatic 6 (pass): checked by hand." in text_of(out.html.read_text())
    assert json.loads((folder / BASIS_NAME).read_text())["items"]["ae_training"]["auto_points"] == 6.0


def test_a_report_without_a_readable_result_is_an_error_and_no_file_is_written(tmp_path):
    folder = report_folder(tmp_path)
    (folder / "result.json").write_text("{not json")
    (out,) = render_documents(folder, ["report"])
    assert out.error.startswith("the HTML could not be rendered (JSONDecodeError: ")
    assert out.html is None and not (folder / "report.html").exists()


# --------------------------------------------------------------------------- reports to refresh


def aged(path: Path, seconds: int) -> None:
    """Set a file's modification time ``seconds`` into the past (deterministic ordering)."""
    t = path.stat().st_mtime - seconds
    os.utime(path, (t, t))


def stale(out: Path, ids: list[str], assignment) -> list[str]:
    """The reports a batch would render again, with overrides.csv as it is now."""
    return reports_to_refresh(out, ids, load_overrides(out / OVERRIDES_NAME, rubric_points(assignment), ids))


def rendered_course(out: Path, assignment) -> None:
    """s1 with an override, s2 without, both with a report rendered after everything else and
    before now (file times are coarser than the steps of a test)."""
    for sid in ("s1", "s2"):
        store(out, sid, {"ae_training": 4})
    overrides(out, "s1,ae_training,5,")
    grade_rows(out, ["s1", "s2"], assignment)
    for p in [out / OVERRIDES_NAME, out / "s1" / BASIS_NAME]:
        aged(p, 100)
    for sid in ("s1", "s2"):
        (out / sid / "report.html").write_text("<html></html>")
        aged(out / sid / "report.html", 50)


def test_no_report_needs_a_refresh_when_nothing_changed_since_it_was_rendered(tmp_path, assignment):
    rendered_course(tmp_path, assignment)
    assert stale(tmp_path, ["s1", "s2"], assignment) == []


def test_an_edited_row_makes_only_that_submissions_report_stale(tmp_path, assignment):
    rendered_course(tmp_path, assignment)
    overrides(tmp_path, "s1,ae_training,5.5,")
    assert stale(tmp_path, ["s1", "s2"], assignment) == ["s1"]


def test_an_added_or_removed_row_makes_the_report_stale(tmp_path, assignment):
    rendered_course(tmp_path, assignment)
    overrides(tmp_path, "s1,ae_training,5,", "s2,ae_training,6,")
    assert stale(tmp_path, ["s1", "s2"], assignment) == ["s1", "s2"]
    rendered_course(tmp_path / "again", assignment)
    (tmp_path / "again" / OVERRIDES_NAME).unlink()  # every override removed
    assert stale(tmp_path / "again", ["s1", "s2"], assignment) == ["s1"]


def test_overrides_applied_after_the_report_make_it_stale(tmp_path, assignment):
    rendered_course(tmp_path, assignment)
    overrides(tmp_path, "s1,ae_training,4.5,")
    aged(tmp_path / OVERRIDES_NAME, 200)  # the edit is older than the report, but grades.csv applied it since
    grade_rows(tmp_path, ["s1", "s2"], assignment)
    assert stale(tmp_path, ["s1", "s2"], assignment) == ["s1"]


def test_submissions_without_a_report_or_with_an_error_are_not_listed(tmp_path, assignment):
    rendered_course(tmp_path, assignment)
    overrides(tmp_path, "s1,ae_training,5.5,", "s2,ae_training,5.5,")
    (tmp_path / "s1" / "report.html").unlink()
    (tmp_path / "s2" / "error.json").write_text("{}")
    assert stale(tmp_path, ["s1", "s2"], assignment) == []


def test_a_rendered_report_is_no_longer_stale(tmp_path, assignment):
    folder = report_folder(tmp_path)
    overrides(tmp_path, "s1,ae_training,4,")
    aged(tmp_path / OVERRIDES_NAME, 100)
    (folder / "report.html").write_text("old")
    aged(folder / "report.html", 200)
    assert stale(tmp_path, ["s1"], assignment) == ["s1"]
    (folder / "report.html").write_text(report_html(folder))  # as render_documents writes it, after the basis
    assert stale(tmp_path, ["s1"], assignment) == []
