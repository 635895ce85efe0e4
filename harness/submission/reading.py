"""Reading a student's files safely: size caps, no symbolic links, encodings (docs/submission-format.md).

A submission is the student's, so every file the harness reads is read defensively: no symbolic
link is followed (checked on every component of the path, then ``O_NOFOLLOW``), every read is
bounded by the file's cap, and text that is not UTF-8 is decoded with a detected encoding and said
so. The student's messages for a file that could not be read are built here too, so they read the
same for every file.
"""

from __future__ import annotations

import codecs
import errno
import io
import os
import stat
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

KIB, MIB = 1024, 1024 * 1024
MAX_ANSWERS_BYTES = 256 * KIB  # ~40,000 words: 40x the whole assignment's word limits
MAX_META_BYTES = 64 * KIB  # three keys and comments
MAX_CODE_BYTES = 2 * MIB  # the example is 7 KB; more is generated code or embedded data
MAX_FOLDER_BYTES = 200 * MIB  # what the sandbox copies (harness.submission.files) and the content hash reads

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
class FileBytes:
    """One submission file as the harness read it: its bytes, or why there are none (``why``)."""

    data: bytes | None = None
    why: Unread = ""
    size: int = 0
    error: str = ""


# --------------------------------------------------------------------------- links and caps


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


def open_regular(folder: Path, rel: str) -> int:
    """A read-only descriptor of a regular file, never opened through a symbolic link.
    Raises OSError (``ELOOP`` for a link in the last component) or ValueError (not a regular file)."""
    # O_NONBLOCK: a file swapped for a FIFO since it was listed must not hang the harness
    fd = os.open(folder / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"{rel} is not a regular file")
    return fd


def read_capped(folder: Path, rel: str, cap: int) -> FileBytes:
    """A submission file's bytes, never through a symbolic link (checked on every component,
    then O_NOFOLLOW) and never more than ``cap`` + 1 bytes read, however large the file."""
    seen = inspect_file(folder, rel, cap)
    if seen.why:
        return seen
    try:
        fd = open_regular(folder, rel)
    except ValueError:
        return FileBytes(why="not a file")
    except OSError as e:
        return FileBytes(why="link" if e.errno == errno.ELOOP else "unreadable", error=e.strerror or "")
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(cap + 1)
    if len(data) > cap:
        return FileBytes(why="too large", size=max(size, len(data)))
    return FileBytes(data, size=len(data))


# --------------------------------------------------------------------------- messages


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


# --------------------------------------------------------------------------- encodings


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


def python_source(data: bytes) -> str:
    """Python source as the interpreter reads it: in the encoding its byte-order mark or coding
    line names, else UTF-8. Bytes that do not decode are replaced; importing the file reports
    them to the student (no problem is raised here)."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:  # an unknown coding line, or one that contradicts the mark
        encoding = "utf-8"
    return data.decode(encoding, errors="replace")
