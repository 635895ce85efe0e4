"""What a submission is, once read: its code, answers and metadata, whatever form it came in.

A :class:`Submission` is built by a loader (``harness.submission.folder`` for a folder,
``harness.submission.notebook_load`` for a notebook; see ``harness.submission.detect``) and is all
the rest of the harness knows of the student's hand-in: grading reads its answers and metadata,
the sandbox copies its files and imports its module (or, for a notebook, runs its cells), and
every message about its code names it by its ``label``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SubmissionKind = Literal["folder", "notebook"]  # what a path holds (harness.submission.detect)


@dataclass(frozen=True)
class CodeSource:
    """One piece of a submission's code, and the name messages give it (``submission.py``)."""

    label: str
    text: str = field(repr=False)  # as Python reads it (harness.submission.reading.python_source)
    number: int = 0  # a notebook cell's 1-based position, as Colab shows it (0: a file)
    role: str = ""  # the cell's role in the handout ([notebook] roles), "" for none
    removed: tuple[str, ...] = ()  # IPython magics and shell lines taken out: never run


@dataclass(frozen=True)
class StoredFigure:
    """A PNG image an executed notebook carries in a cell's outputs: what the student saw."""

    cell: int
    role: str
    index: int  # its place among the cell's images, from 0
    png: bytes = field(repr=False)
    slot: str = ""  # the write-up's figure it is ("beta-0/samples"; harness.submission.notebook_figures), "" for none
    shape: str = ""  # what its pixels look like ("two loss curves", "a square image grid")

    @property
    def key(self) -> str:
        """Its name in the run artefacts (``stored/cell-17-0``) and the result."""
        return f"cell-{self.cell}-{self.index}"


@dataclass(frozen=True)
class NotebookFacts:
    """What reading a handed-in notebook found, for the result's ``notebook`` field
    (docs/result-schema.md): the handout it follows, each role's cells, what was repaired or
    taken out, the TODO regions left untouched and what its stored outputs suggest."""

    file: str  # the notebook's file name
    handout: str  # the assignment it follows (variant-a, variant-b)
    nbformat: str  # the version as written in the file ("3.0" was upgraded to 4)
    roles: dict[str, list[int]] = field(default_factory=dict)
    repairs: tuple[str, ...] = ()
    validation: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # roles found twice or not at all, where answers and the tuned beta came from
    removed: tuple[str, ...] = ()  # "cell 2: %matplotlib inline (IPython magic)"
    untouched: tuple[dict, ...] = ()  # {"role", "cell", "lines", "placeholder"} per untouched TODO region
    forensics: tuple[str, ...] = ()  # what the stored outputs and execution counts show
    figures: tuple[StoredFigure, ...] = ()  # the images its outputs carry (capped), for the report
    missing_figures: dict[str, str] = field(default_factory=dict)  # write-up slot -> why no stored figure fills it
    stored_runs: dict[str, dict] = field(default_factory=dict)  # run -> {"cell", "beta", "epochs"} its cell sets
    comparisons: tuple[dict, ...] = ()  # interpolation comparisons stored: {"cell", "start", "end"} labels as coded
    tuned_beta: dict = field(default_factory=dict)  # {"cell", "text"}: the tuned-beta slot as written ("beta = 1e-4")
    # role -> {"cell", "value", "lines", "text"}: the last reconstruction loss a training cell's
    # stored output printed (harness.submission.notebook_logs)
    stored_losses: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "handout": self.handout,
            "nbformat": self.nbformat,
            "roles": self.roles,
            "repairs": list(self.repairs),
            "validation": list(self.validation),
            "notes": list(self.notes),
            "removed": list(self.removed),
            "untouched": [dict(u) for u in self.untouched],
            "forensics": list(self.forensics),
            "stored_figures": [
                {"cell": f.cell, "role": f.role, "index": f.index, "key": f.key, "slot": f.slot, "shape": f.shape}
                for f in self.figures
            ],
            "missing_figures": dict(self.missing_figures),
            "stored_runs": dict(self.stored_runs),
            "comparisons": [dict(c) for c in self.comparisons],
            "tuned_beta": dict(self.tuned_beta),
            "stored_losses": {run: dict(log) for run, log in self.stored_losses.items()},
        }


@dataclass(frozen=True)
class Submission:
    """One student's hand-in. ``code`` is empty when there is no code to run (the file is missing,
    unreadable or too large, or the folder is too large); ``problems`` says why."""

    id: str
    path: Path  # the folder the student handed in
    kind: SubmissionKind = "folder"
    label: str = "submission.py"  # how messages name its code: "submission.py defines no `VAE`"
    module: str = "submission.py"  # the file the sandbox imports, relative to its copy of ``files``
    code: tuple[CodeSource, ...] = ()
    files: tuple[Path, ...] = ()  # relative paths: what its hash covers and the sandbox copies
    student: str = ""
    student_id: str = ""
    tuned_beta: float | None = None
    answers: dict[str, str] = field(default_factory=dict)
    answers_unread: str = ""  # why the answers could not be read (missing, a link, too large); "" when they were
    content_hash: str = ""
    problems: tuple[str, ...] = ()
    notebook: NotebookFacts | None = None  # set for a notebook (kind "notebook")

    @property
    def has_code(self) -> bool:
        """Whether there is code to run in the sandbox."""
        return bool(self.code)

    def summary(self) -> dict:
        """The submission as the result's ``submission`` field records it."""
        return {
            "id": self.id,
            "student": self.student,
            "student_id": self.student_id,
            "tuned_beta": self.tuned_beta,
            "content_hash": self.content_hash,
        }
