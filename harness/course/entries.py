"""A course folder's entries: its submissions (sub-folders and notebooks as the LMS downloads
them), one per student, and the id each one's results are filed under. ``grade`` on a course
(harness.course.batch, .cluster) and ``similarity`` (harness.course.similarity) read the same
entries from here; this module loads no torch."""

from __future__ import annotations

from pathlib import Path

from harness.submission.identity import CANVAS_PATTERN, duplicates, identity_from_name
from harness.submission.notebook_load import NOTEBOOK_SUFFIX


def discover(root: Path) -> list[Path]:
    """The course's submissions: every visible sub-folder and notebook file, sorted by name. A
    folder that is not a submission is still listed; grading it records why."""
    return sorted(
        p
        for p in Path(root).iterdir()
        if not p.name.startswith((".", "_")) and (p.is_dir() or (p.is_file() and p.suffix == NOTEBOOK_SUFFIX))
    )


def entry_id(path: Path, pattern: str = CANVAS_PATTERN) -> str:
    """A course entry's id, its results folder's name: a folder's name, or the id a notebook's
    file name gives (the student id under Canvas's pattern)."""
    return path.name if path.is_dir() else identity_from_name(path.name, pattern).id


def course_entries(root: Path, out: Path, pattern: str = CANVAS_PATTERN) -> tuple[list[Path], list[str]]:
    """The submissions to grade under ``root`` (``out`` left out), one per id: of notebooks whose
    names give one id (a student who uploaded twice), the last upload; and a note per id so decided."""
    entries = [p for p in discover(root) if p.resolve() != Path(out).resolve()]
    files = [p for p in entries if not p.is_dir()]
    twice = duplicates(identity_from_name(p.name, pattern) for p in files)
    dropped = {name for names in twice.values() for name in names[:-1]}
    notes = [
        f"{sid}: {len(names)} uploads ({', '.join(names)}); grading the last, {names[-1]}"
        for sid, names in twice.items()
    ]
    return [p for p in entries if p.name not in dropped], notes
