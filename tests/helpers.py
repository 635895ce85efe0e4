"""Helpers shared by test files (and the benchmarks), in a plain module: test files import
them from here, never from another test file or from conftest.py (which holds the fixtures).

- ``EXAMPLE``, ``copy_example``, ``planted_copy``: the bundled example submission and edited
  copies of it, with bugs planted by exact text edits.
- ``FIXTURE``, ``store``, ``overrides``: a course's reports folder built without training, of
  copies of the stored graded example (``tests/fixtures/example-smoke``), and its
  ``overrides.csv``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from harness.course.overrides import OVERRIDES_NAME
from harness.grading.rubric import status_for

EXAMPLE = Path(__file__).parents[1] / "submissions" / "example"
EXAMPLE_TUNED = "tuned_beta = 0.0001"  # the example's line in submission.toml

FIXTURE = Path(__file__).parent / "fixtures" / "example-smoke"  # the example graded and written up (smoke)
OVERRIDES_HEADER = "submission,item,points,comment\n"  # the header row of overrides.csv


def copy_example(
    dest: Path, replace: list[tuple[str, str]] = (), append: str = "", answers: list[tuple[str, str]] = ()
) -> Path:
    """A copy of the example with exact text edits; each ``old`` must occur exactly once, so a
    change to the example breaks the test loudly instead of leaving the bug unplanted."""
    shutil.copytree(EXAMPLE, dest)
    for file, edits in (("submission.py", replace), ("answers.md", answers)):
        path = dest / file
        text = path.read_text()
        for old, new in edits:
            assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {file}"
            text = text.replace(old, new)
        if file == "submission.py" and append:
            text += "\n" + append
        path.write_text(text)
    return dest


def planted_copy(dest: Path, edits: list[tuple[str, str]] = (), tuned: str | None = None) -> Path:
    """A copy of the example with exact edits of submission.py and, given ``tuned``, that line in
    place of the example's tuned_beta."""
    folder = copy_example(dest, edits)
    if tuned:
        toml = folder / "submission.toml"
        text = toml.read_text()
        assert text.count(EXAMPLE_TUNED) == 1, f"{EXAMPLE_TUNED!r} is not in the example's submission.toml once"
        toml.write_text(text.replace(EXAMPLE_TUNED, tuned))
    return folder


def store(
    out: Path,
    sid: str,
    points: dict[str, float] | None = None,
    statuses: dict[str, str] | None = None,
    created: str = "2026-01-01T00:00:00+00:00",
    student: str = "Ada Example",
    student_id: str = "a1",
) -> Path:
    """``<out>/<sid>/result.json``: the fixture result with some items' automatic points (status
    from the points unless given) and a fresh ``created``, as a (re)grade would write it."""
    r = json.loads((FIXTURE / "result.json").read_text())
    for item in r["items"]:
        if item["id"] in (points or {}):
            item["points"] = float(points[item["id"]])
            item["status"] = status_for(item["points"], item["max_points"])
        item["status"] = (statuses or {}).get(item["id"], item["status"])
    r["total"] = sum(i["points"] for i in r["items"])
    r["created"] = created
    r["submission"].update(id=sid, student=student, student_id=student_id)
    folder = out / sid
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").write_text(json.dumps(r))
    return folder


def overrides(out: Path, *rows: str) -> Path:
    """``<out>/overrides.csv`` holding these rows under the header."""
    path = out / OVERRIDES_NAME
    path.write_text(OVERRIDES_HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


SMOKE_CPU = ("--profile", "smoke", "--device", "cpu")  # the tests' profile and device for a training verb


def harness_command(*args: object) -> list[str]:
    """``python -m harness ARGS`` as a subprocess's argv (paths and numbers as text)."""
    return [sys.executable, "-m", "harness", *map(str, args)]


def lost_items(result) -> set[str]:
    """The items of a Result that did not earn their full points."""
    return {i.id for i in result.items if i.points < i.max_points}


def notebook_in(folder: Path, nb, name: str = "doejane_12345_678901_vae.ipynb") -> Path:
    """Write a notebook (nbformat) into ``folder`` under an LMS download's name (Canvas's pattern)."""
    import nbformat

    path = Path(folder) / name
    nbformat.write(nb, str(path))
    return path
