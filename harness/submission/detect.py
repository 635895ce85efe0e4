"""What a path holds, and the one way to load a submission from it.

A submission is a folder with the assignment's ``submission.py`` (``harness.submission.folder``)
or a handed-in notebook: a ``.ipynb`` file, or a folder holding one and no ``submission.py``
(``harness.submission.notebook_load``). Each form has its kind
(``harness.submission.contents.SubmissionKind``), a test in :func:`detect` and a loader in
``LOADERS``; every command reads a submission through :func:`load`.
"""

from __future__ import annotations

from pathlib import Path

from harness.config.assignment import Assignment
from harness.submission import folder, notebook_load
from harness.submission.contents import Submission, SubmissionKind
from harness.submission.identity import CANVAS_PATTERN


def detect(path: Path, a: Assignment) -> SubmissionKind:
    """What ``path`` holds: ``"notebook"`` for a ``.ipynb`` file or a folder with notebooks and no
    code module, else ``"folder"`` for a folder (its files are judged when it is loaded).
    Raises FileNotFoundError when nothing is there and NotADirectoryError for any other file."""
    path = Path(path)
    if path.is_dir():
        if not (path / a.submission.module).exists() and notebook_load.notebooks_in(path):
            return "notebook"
        return "folder"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such submission (a folder or a .ipynb notebook)")
    if path.suffix == notebook_load.NOTEBOOK_SUFFIX:
        return "notebook"
    spec = a.submission
    raise NotADirectoryError(
        f"{path} is not a submission: hand in the course's notebook (.ipynb), or a folder holding "
        f"{spec.module}, {spec.answers} and {spec.meta}"
    )


def is_submission(path: Path, a: Assignment) -> bool:
    """A submission is a notebook file, or a folder with the assignment's code module, metadata or
    answers file, or with notebooks (a course folder holds folders, not notebooks and no module,
    so one notebook among them makes it a student's folder only when it holds no sub-folder)."""
    path = Path(path)
    if path.is_file():
        return path.suffix == notebook_load.NOTEBOOK_SUFFIX
    spec = a.submission
    if any((path / name).exists() for name in (spec.module, spec.meta, spec.answers)):
        return True
    return len(notebook_load.notebooks_in(path)) == 1 and not any(p.is_dir() for p in path.iterdir())


def load(path: Path, a: Assignment, pattern: str = CANVAS_PATTERN) -> Submission:
    """The submission at ``path``, read by the loader for what it holds (:func:`detect`);
    ``pattern`` reads a notebook's student from its file name (harness.submission.identity)."""
    path = Path(path)
    if detect(path, a) == "notebook":
        return notebook_load.load(path, a, pattern)
    return folder.load(path, a)
