"""A student's submission folder: code, answers and metadata (docs/submission-format.md).

Loading never raises for the student's mistakes: a missing file, a TOML error or
a missing key becomes a clear message in ``problems``, and whatever else is
there can still be graded. The folder is the student's, so it is read defensively
(docs/submission-format.md, "Limits and encodings"): no symbolic link inside it is
followed, every file the harness reads has a size cap and is read with a bounded read,
and text that is not UTF-8 is decoded with a detected encoding and said so.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.config.assignment import Assignment

HEADING = re.compile(r"^##\s+(\S.*?)\s*$", re.MULTILINE)

KIB, MIB = 1024, 1024 * 1024
MAX_ANSWERS_BYTES = 256 * KIB  # ~40,000 words: 40x the whole assignment's word limits
MAX_META_BYTES = 64 * KIB  # three keys and comments
MAX_CODE_BYTES = 2 * MIB  # the example is 7 KB; more is generated code or embedded data
MAX_FOLDER_BYTES = 200 * MIB  # what the sandbox copies (harness.sandbox.host) and the content hash reads
BETA_MIN, BETA_MAX = 1e-12, 1e6  # tuned_beta range: docs/submission-format.md says why
MAX_LINKS_LISTED = 10

LINK_RULE = "the harness does not follow links in a submission"
# Byte-order marks, UTF-32 first: its little-endian mark starts with UTF-16's.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
ENCODING_NAMES = {
    "utf-32": "UTF-32",
    "utf-16": "UTF-16",
    "utf-16-le": "UTF-16 (little-endian, no byte-order mark)",
    "utf-16-be": "UTF-16 (big-endian, no byte-order mark)",
    "cp1252": "Windows-1252 (cp1252)",
    "latin-1": "Latin-1 (ISO-8859-1)",
}
UTF16_NUL_SHARE = 0.3  # UTF-16 without a mark: at least this share of NULs at one byte parity...
UTF16_OTHER_NUL_SHARE = 0.05  # ...and at most this share at the other (ASCII text has all its high bytes 0)

Unread = Literal["", "missing", "link", "not a file", "too large", "unreadable"]


@dataclass(frozen=True)
class Submission:
    id: str
    path: Path
    student: str = ""
    student_id: str = ""
    tuned_beta: float | None = None
    answers: dict[str, str] = field(default_factory=dict)
    answers_unread: str = ""  # why answers.md could not be read (missing, a link, too large); "" when it was
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


@dataclass(frozen=True)
class FileBytes:
    """One submission file as the harness read it: its bytes, or why there are none (``why``)."""

    data: bytes | None = None
    why: Unread = ""
    size: int = 0
    error: str = ""


def _hidden(rel: Path) -> bool:
    return any(p.startswith(".") or p == "__pycache__" for p in rel.parts)


def submission_files(folder: Path) -> list[Path]:
    """The files that make up a submission, as relative paths in order: every regular file,
    hidden files, caches and symbolic links left out. What its hash covers and what a
    cluster worker receives (harness.course.cluster)."""
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if _hidden(rel) or not path.is_file() or path.is_symlink():
            continue
        files.append(rel)
    return files


def submission_links(folder: Path) -> list[Path]:
    """The symbolic links in a submission (hidden folders and caches aside), as relative paths:
    the harness skips them, so the student hears which. Links are not followed into."""
    return [
        p.relative_to(folder)
        for p in sorted(folder.rglob("*"))
        if p.is_symlink() and not _hidden(p.relative_to(folder))
    ]


def folder_size(folder: Path, files: list[Path]) -> int:
    """Bytes in the submission's files, from their sizes on disk (nothing is read)."""
    return sum((folder / rel).lstat().st_size for rel in files)


def content_hash(folder: Path, files: list[Path] | None = None) -> str:
    """SHA-256 over every submission file's relative path and bytes (:func:`submission_files`).
    A folder over MAX_FOLDER_BYTES is not read: its hash covers the paths and sizes instead."""
    files = submission_files(folder) if files is None else files
    h = hashlib.sha256()
    if folder_size(folder, files) > MAX_FOLDER_BYTES:
        h.update(b"sizes\0")
        for rel in files:
            h.update(f"{rel}\0{(folder / rel).lstat().st_size}\0".encode())
        return h.hexdigest()
    for rel in files:
        h.update(str(rel).encode() + b"\0")
        with open(folder / rel, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def link_on_path(folder: Path, rel: str) -> bool:
    """Whether ``rel`` or a folder on the way to it, inside ``folder``, is a symbolic link
    (``folder`` itself may be one: the instructor named it)."""
    path = folder
    for part in Path(rel).parts:
        path = path / part
        if path.is_symlink():
            return True
    return False


def inspect_file(folder: Path, rel: str, cap: int) -> FileBytes:
    """Whether a submission file can be read within ``cap`` bytes, from its own metadata (lstat):
    nothing is read and no link is followed."""
    if link_on_path(folder, rel):
        return FileBytes(why="link")
    try:
        st = (folder / rel).lstat()
    except (FileNotFoundError, NotADirectoryError):
        return FileBytes(why="missing")
    except OSError as e:
        return FileBytes(why="unreadable", error=e.strerror or type(e).__name__)
    if not stat.S_ISREG(st.st_mode):
        return FileBytes(why="not a file")
    if st.st_size > cap:
        return FileBytes(why="too large", size=st.st_size)
    return FileBytes(size=st.st_size)


def read_capped(folder: Path, rel: str, cap: int) -> FileBytes:
    """A submission file's bytes, never through a symbolic link (checked on every component,
    then O_NOFOLLOW) and never more than ``cap`` + 1 bytes read, however large the file."""
    seen = inspect_file(folder, rel, cap)
    if seen.why:
        return seen
    try:  # O_NONBLOCK: a file swapped for a FIFO since the check must not hang the harness
        fd = os.open(folder / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        return FileBytes(why="link" if e.errno == errno.ELOOP else "unreadable", error=e.strerror or "")
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return FileBytes(why="not a file")
        data = f.read(cap + 1)
    if len(data) > cap:
        return FileBytes(why="too large", size=max(st.st_size, len(data)))
    return FileBytes(data, size=len(data))


def human_size(n: int) -> str:
    """Sizes in problems, in binary units as the caps are (1 KB = 1024 bytes)."""
    if n >= MIB:
        return f"{n / MIB:.1f} MB"
    return f"{n / KIB:.0f} KB" if n >= KIB else f"{n} bytes"


def size_over(size: int, cap: int) -> str:
    """A size over ``cap`` as the student reads it: "more than" where rounding would hide the excess."""
    shown = human_size(size)
    return f"more than {human_size(cap)}" if shown == human_size(cap) else shown


def unread_problem(name: str, f: FileBytes, cap: int, consequence: str) -> str:
    """The student's message for a file the harness did not read, with what it costs them."""
    if f.why == "link":
        return f"{name} is a symbolic link: {LINK_RULE}; hand in the file itself ({consequence})"
    if f.why == "too large":
        return f"{name} is {size_over(f.size, cap)}; the limit is {human_size(cap)}: {consequence}"
    if f.why == "not a file":
        return f"{name} is not a regular file: {consequence}"
    if f.why == "unreadable":
        return f"{name} could not be read ({f.error}): {consequence}"
    return f"{name} is missing: {consequence}"


def utf16_without_bom(data: bytes) -> str | None:
    """``utf-16-le``/``-be`` for bytes that look like UTF-16 without a byte-order mark (many NULs
    at one byte parity, few at the other, as in mostly-ASCII text), else None."""
    if len(data) < 4 or len(data) % 2:
        return None
    even, odd = data[0::2].count(0) / (len(data) // 2), data[1::2].count(0) / (len(data) // 2)
    if odd >= UTF16_NUL_SHARE and even <= UTF16_OTHER_NUL_SHARE:
        return "utf-16-le"
    if even >= UTF16_NUL_SHARE and odd <= UTF16_OTHER_NUL_SHARE:
        return "utf-16-be"
    return None


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def detect_encoding(data: bytes) -> str:
    """The codec to read a text file with, without a dependency: a byte-order mark; else
    UTF-16 by its NUL pattern (checked first, as such bytes are also valid UTF-8); else
    strict UTF-8; else cp1252 when it decodes; else Latin-1, which always does."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return encoding
    utf16 = utf16_without_bom(data)
    if utf16 and _decodes(data, utf16):
        return utf16
    return next(e for e in ("utf-8", "cp1252", "latin-1") if _decodes(data, e))


def decode_text(data: bytes, name: str) -> tuple[str, list[str]]:
    """The text of a submission file and the problems reading it raised: never silently
    garbled (a non-UTF-8 encoding is named) and never carrying NUL characters."""
    encoding, problems = detect_encoding(data), []
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:  # only after a byte-order mark: the rest is damaged
        text = data.decode(encoding, errors="replace")
        problems.append(f"{name}: some bytes are not valid {ENCODING_NAMES[encoding]} and were replaced by \ufffd")
    if encoding not in ("utf-8", "utf-8-sig"):
        problems.append(f"{name} is not UTF-8: read as {ENCODING_NAMES[encoding]}; check its text and save it as UTF-8")
    nuls = text.count("\x00")
    if nuls:
        text = text.replace("\x00", "")
        problems.append(f"{name} contains {nuls} NUL character(s), removed: save it as plain UTF-8 text")
    return text, problems


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
    The message ends with ``got <value>`` (harness.grading.grade explains ``got 0``)."""
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
    text, decode_problems = decode_text(f.data, name)
    problems.extend(decode_problems)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problems.append(f"{name} is not valid TOML ({e}); fix its syntax")
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


def load_submission(folder: Path, a: Assignment) -> Submission:
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
    code = inspect_file(folder, spec.module, MAX_CODE_BYTES)
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
    return Submission(
        id=folder.name,
        path=folder,
        student=student if isinstance(student, str) else "",
        student_id=student_id if isinstance(student_id, str) else "",
        tuned_beta=float(beta) if beta is not None else None,
        answers=answers or {},
        answers_unread=answers_unread,
        has_code=not code.why and size <= MAX_FOLDER_BYTES,
        content_hash=content_hash(folder, files),
        problems=tuple(problems),
    )
