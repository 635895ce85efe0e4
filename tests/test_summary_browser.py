"""summary.html in a real browser: headless Chromium (Debian's ``chromium``) opens it without
console errors or warnings, shows one table row per submission, and its script sorts the table.

No training: the course folder is built from the stored grade result of the example
(``tests/fixtures/example-smoke``) with edited names and points, plus one error record. The
browser is driven by ``tests/browser.py``; without chromium these tests skip, or fail when
``HARNESS_REQUIRE_CHROMIUM=1`` (CI).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.course.summary import write_summary
from harness.course.table import ERROR_NAME, grade_rows
from tests.browser import Page

RESULT = Path(__file__).parent / "fixtures" / "example-smoke" / "result.json"
IDS = ["ada", "bob", "cyd", "dan"]  # dan: grading failed (error.json)
ROW_IDS = "Array.from(document.querySelectorAll('#grades tbody tr'), function (r) { return r.cells[0].innerText; })"


def click(page: Page, heading: str) -> list[str]:
    """Click the table's column heading ``heading``; the row ids in their new order."""
    page.evaluate(
        "Array.from(document.querySelectorAll('#grades th'))"
        f".find(function (th) {{ return th.textContent.trim() === {json.dumps(heading)}; }}).click()"
    )
    return page.evaluate(ROW_IDS)


def sorted_by(page: Page) -> dict[str, str]:
    return page.evaluate(
        "Object.fromEntries(Array.from(document.querySelectorAll('#grades th[aria-sort]'),"
        " function (th) { return [th.textContent.trim(), th.getAttribute('aria-sort')]; }))"
    )


def write_result(out: Path, sid: str, student: str, changes: dict[str, tuple[float, str]]) -> None:
    """The example's stored result as submission ``sid``: another student, some items changed
    to (points, status), the total recomputed."""
    r = json.loads(RESULT.read_text())
    r["submission"].update(id=sid, student=student, student_id=sid)
    for item in r["items"]:
        if item["id"] in changes:
            item["points"], item["status"] = changes.pop(item["id"])
    assert not changes, f"no such items in the fixture: {sorted(changes)}"
    r["total"] = sum(i["points"] for i in r["items"])
    (out / sid).mkdir(parents=True)
    (out / sid / "result.json").write_text(json.dumps(r))


@pytest.fixture
def summary(tmp_path, assignment) -> Path:
    out = tmp_path / "out"
    write_result(out, "ada", "Mo Ada", {})  # full marks: 45
    write_result(out, "bob", "Al Bob", {"ae_training": (2.0, "partial")})  # 41
    write_result(out, "cyd", "Zed Cyd", {"vae_model": (0.0, "fail"), "beta0_answer": (0.0, "needs_review")})  # 35
    (out / "dan").mkdir()
    (out / "dan" / ERROR_NAME).write_text(json.dumps({"id": "dan", "error": "RuntimeError: boom", "traceback": ""}))
    rows = grade_rows(out, IDS, assignment)
    assert list(rows["status"]) == ["complete", "complete", "needs_review", "error"]
    return write_summary(out, rows, assignment, "smoke")


def test_summary_opens_without_console_errors_and_shows_one_row_per_submission(summary):
    with Page(summary) as page:
        page.settle()
        assert page.errors == [], page.messages
        assert page.warnings == [], page.messages
        assert page.evaluate(ROW_IDS) == IDS
        assert page.evaluate("document.querySelector('#grades tbody tr:last-child .status').textContent") == "error"
        assert "4 submissions" in page.evaluate("document.querySelector('.provenance').textContent")


def test_clicking_a_column_heading_sorts_the_rows(summary):
    with Page(summary) as page:
        assert click(page, "total") == ["cyd", "bob", "ada", "dan"]  # numeric; the blank total last
        assert sorted_by(page) == {"total": "ascending"}
        assert click(page, "total") == ["ada", "bob", "cyd", "dan"]  # blanks stay last
        assert sorted_by(page) == {"total": "descending"}
        assert click(page, "student") == ["dan", "bob", "ada", "cyd"]  # text; the error row has no name
        assert sorted_by(page) == {"student": "ascending"}
        page.settle()
        assert page.errors == [] and page.warnings == [], page.messages


def test_the_checker_catches_errors_in_a_broken_page(tmp_path):
    """Control: the same checker on a page that logs an error, throws, warns and misses an image."""
    broken = tmp_path / "broken.html"
    broken.write_text(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>broken</title></head><body>\n'
        '<img src="missing.png" alt="">\n'
        '<script>console.error("deliberate error"); console.warn("deliberate warning");</script>\n'
        "<script>undefined_fn()</script>\n"
        "<script>setTimeout(function () { null.late; }, 0);</script>\n"
        "</body></html>\n"
    )
    with Page(broken) as page:
        page.settle()
    errors = "\n".join(page.errors)
    assert "console.error: deliberate error" in errors
    assert "ReferenceError: undefined_fn is not defined" in errors
    assert "TypeError" in errors and "null" in errors  # thrown after load, from a timer
    assert "missing.png" in errors  # the browser's own error entry (Log domain)
    assert page.warnings == ["console.warning: deliberate warning"]
