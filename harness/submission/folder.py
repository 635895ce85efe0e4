"""A student's submission folder: code, answers and metadata (docs/submission-format.md).

Loading never raises for the student's mistakes: a missing file, a TOML error or
a missing key becomes a clear message in ``problems``, and whatever else is
there can still be graded. The folder is the student's, so it is read with the
rules of ``harness.submission.reading`` (no symbolic link followed, size caps,
encodings), and its files are those of ``harness.submission.files``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from harness.config.assignment import Assignment
from harness.submission.contents import CodeSource, Submission
from harness.submission.files import content_hash, folder_size, submission_files, submission_links
from harness.submission.reading import (
    LINK_RULE,
    MAX_ANSWERS_BYTES,
    MAX_CODE_BYTES,
    MAX_FOLDER_BYTES,
    MAX_META_BYTES,
    decode_text,
    human_size,
    python_source,
    read_capped,
    size_over,
    unread_problem,
)

HEADING = re.compile(r"^##\s+(\S.*?)\s*$", re.MULTILINE)
BETA_MIN, BETA_MAX = 1e-12, 1e6  # tuned_beta range: docs/submission-format.md says why
MAX_LINKS_LISTED = 10


def parse_answers(text: str) -> dict[str, str]:
    """``## <question id>`` sections; each answer runs to the next ``## `` heading.
    Quoted lines (the starter's copy of the prompt) and TODO lines are not part of the answer."""
    matches = list(HEADING.finditer(text))
    answers = {}
    for m, nxt in zip(matches, [*matches[1:], None], strict=False):
        body = text[m.end() : nxt.start() if nxt else len(text)]
        kept = [line for line in body.splitlines() if not line.lstrip().startswith(">") and "TODO" not in line]
        answers[m.group(1).strip().lower()] = "\n".join(kept).strip()
    return answers


def _sci(x: float) -> str:
    return f"{x:.0e}".replace("e+0", "e").replace("e-0", "e-").replace("e+", "e")


BETA_RANGE = f"[{_sci(BETA_MIN)}, {_sci(BETA_MAX)}]"


def beta_problem(beta: object) -> str | None:
    """Why a tuned_beta cannot be used (not a finite number in BETA_RANGE), else None.
    The message ends with ``got <value>`` (grading explains ``got 0``: harness.grading.runs)."""
    try:
        ok = not isinstance(beta, bool) and isinstance(beta, (int, float)) and BETA_MIN <= float(beta) <= BETA_MAX
    except OverflowError:  # an integer beyond any float
        ok = False
    if ok:
        return None
    shown = repr(beta) if len(repr(beta)) <= 40 else repr(beta)[:37] + "..."
    return f"`tuned_beta` must be a number in {BETA_RANGE} in your own loss convention, got {shown}"


def _read_meta(folder: Path, name: str, problems: list[str]) -> dict:
    f = read_capped(folder, name, MAX_META_BYTES)
    if f.data is None:
        consequence = (
            "add student, student_id and tuned_beta (see docs/submission-format.md)"
            if f.why == "missing"
            else "it is read as missing: no student, student_id or tuned_beta"
        )
        problems.append(unread_problem(name, f, MAX_META_BYTES, consequence))
        return {}
    return toml_table(f.data, name, problems, "fix its syntax")


def toml_table(data: bytes, name: str, problems: list[str], consequence: str) -> dict:
    """A student's TOML file as a table: its text decoded (problems noted) and parsed; ``{}`` with
    a problem ending in ``consequence`` when it is not valid TOML."""
    text, decode_problems = decode_text(data, name)
    problems.extend(decode_problems)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problems.append(f"{name} is not valid TOML ({e}); {consequence}")
        return {}


def _read_answers(folder: Path, a: Assignment, problems: list[str]) -> dict[str, str] | None:
    """The answers by question id; None when the file could not be read (the problem says why)."""
    name = a.submission.answers
    f = read_capped(folder, name, MAX_ANSWERS_BYTES)
    if f.data is None:
        problems.append(unread_problem(name, f, MAX_ANSWERS_BYTES, "the answer items earn no points"))
        return None
    text, decode_problems = decode_text(f.data, name)
    problems.extend(decode_problems)
    answers = parse_answers(text)
    unknown = sorted(set(answers) - {q.id for q in a.questions})
    if unknown:
        known = ", ".join(q.id for q in a.questions)
        problems.append(f"{name}: unknown section(s) {', '.join(unknown)}; the questions are {known}")
    return answers


def _links_problem(folder: Path, own: set[str]) -> str | None:
    """One line for the links besides the three files (those have their own problems)."""
    links = [str(rel) for rel in submission_links(folder) if str(rel) not in own]
    if not links:
        return None
    shown = ", ".join(links[:MAX_LINKS_LISTED]) + (
        f" and {len(links) - MAX_LINKS_LISTED} more" if len(links) > MAX_LINKS_LISTED else ""
    )
    return f"skipped {len(links)} symbolic link(s): {shown}: {LINK_RULE}; hand in the files themselves"


def load(folder: Path, a: Assignment) -> Submission:
    """The submission in ``folder``: its metadata, answers and code, each file read safely, with a
    problem for each thing that could not be read. Raises FileNotFoundError when there is no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such submission folder")
    spec, problems = a.submission, []
    meta = _read_meta(folder, spec.meta, problems)
    student = meta.get("student", "")
    student_id = meta.get("student_id", "")
    for key, value in (("student", student), ("student_id", student_id)):
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{spec.meta}: `{key}` is missing or not a string")
    beta = meta.get("tuned_beta")
    why_beta = beta_problem(beta) if meta else None
    if why_beta:
        problems.append(f"{spec.meta}: {why_beta}")
        beta = None
    answers = _read_answers(folder, a, problems)
    answers_unread = problems[-1] if answers is None else ""
    code = read_capped(folder, spec.module, MAX_CODE_BYTES)
    if code.why:
        problems.append(unread_problem(spec.module, code, MAX_CODE_BYTES, "the code items earn no points"))
    files = submission_files(folder)
    size = folder_size(folder, files)
    if size > MAX_FOLDER_BYTES:
        held, cap = size_over(size, MAX_FOLDER_BYTES), human_size(MAX_FOLDER_BYTES)
        problems.append(
            f"the submission folder holds {held}; the limit is {cap}: the code items earn no points "
            "(remove data sets, checkpoints and other large files)"
        )
    links = _links_problem(folder, {spec.meta, spec.answers, spec.module})
    if links:
        problems.append(links)
    runnable = code.data is not None and size <= MAX_FOLDER_BYTES
    return Submission(
        id=folder.name,
        path=folder,
        kind="folder",
        label=spec.module,
        module=spec.module,
        code=(CodeSource(spec.module, python_source(code.data)),) if runnable else (),
        files=tuple(files),
        student=student if isinstance(student, str) else "",
        student_id=student_id if isinstance(student_id, str) else "",
        tuned_beta=float(beta) if beta is not None else None,
        answers=answers or {},
        answers_unread=answers_unread,
        content_hash=content_hash(folder, files),
        problems=tuple(problems),
    )
