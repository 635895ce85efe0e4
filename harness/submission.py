"""A student's submission folder: code, answers and metadata (docs/submission-format.md).

Loading never raises for the student's mistakes: a missing file, a TOML error or
a missing key becomes a clear message in ``problems``, and whatever else is
there can still be graded.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness.assignment import Assignment

HEADING = re.compile(r"^##\s+(\S.*?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Submission:
    id: str
    path: Path
    student: str = ""
    student_id: str = ""
    tuned_beta: float | None = None
    answers: dict[str, str] = field(default_factory=dict)
    has_code: bool = False
    content_hash: str = ""
    problems: tuple[str, ...] = ()

    def summary(self) -> dict:
        return {
            "id": self.id,
            "student": self.student,
            "student_id": self.student_id,
            "tuned_beta": self.tuned_beta,
            "content_hash": self.content_hash,
        }


def submission_files(folder: Path) -> list[Path]:
    """The files that make up a submission, as relative paths in order: every regular file,
    hidden files, caches and symbolic links left out. What its hash covers and what a
    cluster worker receives (harness.cluster)."""
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(p.startswith(".") or p == "__pycache__" for p in rel.parts) or not path.is_file() or path.is_symlink():
            continue
        files.append(rel)
    return files


def content_hash(folder: Path) -> str:
    """SHA-256 over every submission file's relative path and bytes (:func:`submission_files`)."""
    h = hashlib.sha256()
    for rel in submission_files(folder):
        h.update(str(rel).encode() + b"\0")
        with open(folder / rel, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def parse_answers(text: str) -> dict[str, str]:
    """``## <question id>`` sections; each answer runs to the next ``## `` heading.
    Quoted lines (the starter's copy of the prompt) and TODO lines are not part of the answer."""
    matches = list(HEADING.finditer(text))
    answers = {}
    for m, nxt in zip(matches, [*matches[1:], None]):
        body = text[m.end() : nxt.start() if nxt else len(text)]
        kept = [line for line in body.splitlines() if not line.lstrip().startswith(">") and "TODO" not in line]
        answers[m.group(1).strip().lower()] = "\n".join(kept).strip()
    return answers


def _read_meta(path: Path, problems: list[str]) -> dict:
    if not path.is_file():
        problems.append(f"{path.name} is missing: add student, student_id and tuned_beta (see docs/submission-format.md)")
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        problems.append(f"{path.name} is not valid TOML ({e}); fix its syntax")
        return {}


def load_submission(folder: Path, a: Assignment) -> Submission:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such submission folder")
    spec, problems = a.submission, []
    meta = _read_meta(folder / spec.meta, problems)
    student = meta.get("student", "")
    student_id = meta.get("student_id", "")
    for key, value in (("student", student), ("student_id", student_id)):
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{spec.meta}: `{key}` is missing or not a string")
    beta = meta.get("tuned_beta")
    if meta and (isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0):
        problems.append(f"{spec.meta}: `tuned_beta` must be a number > 0 in your own loss convention, got {beta!r}")
        beta = None
    answers: dict[str, str] = {}
    answers_path = folder / spec.answers
    if answers_path.is_file():
        answers = parse_answers(answers_path.read_text(encoding="utf-8", errors="replace"))
        unknown = sorted(set(answers) - {q.id for q in a.questions})
        if unknown:
            known = ", ".join(q.id for q in a.questions)
            problems.append(f"{spec.answers}: unknown section(s) {', '.join(unknown)}; the questions are {known}")
    else:
        problems.append(f"{spec.answers} is missing: the answer items earn no points")
    has_code = (folder / spec.module).is_file()
    if not has_code:
        problems.append(f"{spec.module} is missing: the code items earn no points")
    return Submission(
        id=folder.name,
        path=folder,
        student=student if isinstance(student, str) else "",
        student_id=student_id if isinstance(student_id, str) else "",
        tuned_beta=float(beta) if beta is not None else None,
        answers=answers,
        has_code=has_code,
        content_hash=content_hash(folder),
        problems=tuple(problems),
    )
