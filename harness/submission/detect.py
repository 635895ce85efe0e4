"""What a path holds, and the one way to load a submission from it.

Today a submission is a folder (``harness.submission.folder``); each other form a submission can
take gets its kind (``harness.submission.contents.SubmissionKind``), a test in :func:`detect` and
a loader in ``LOADERS``, and every command reads it through :func:`load`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.config.assignment import Assignment
from harness.submission import folder
from harness.submission.contents import Submission, SubmissionKind

LOADERS: dict[SubmissionKind, Callable[[Path, Assignment], Submission]] = {"folder": folder.load}


def detect(path: Path, a: Assignment) -> SubmissionKind:
    """What ``path`` holds: ``"folder"`` for a folder (its files are judged when it is loaded).
    Raises FileNotFoundError when nothing is there and NotADirectoryError for anything else."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such submission folder")
    spec = a.submission
    raise NotADirectoryError(
        f"{path} is not a submission folder: hand in a folder holding {spec.module}, {spec.answers} and {spec.meta}"
    )


def is_submission(folder: Path, a: Assignment) -> bool:
    """A submission folder holds the assignment's code module, metadata or answers file."""
    spec = a.submission
    return any((folder / name).exists() for name in (spec.module, spec.meta, spec.answers))


def load(path: Path, a: Assignment) -> Submission:
    """The submission at ``path``, read by the loader for what it holds (:func:`detect`)."""
    return LOADERS[detect(path, a)](Path(path), a)
