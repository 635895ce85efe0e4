"""Whose notebook a file is, read from its name: an LMS download holds one file per student.

An instructor's course folder may hold the handed-in notebooks directly, as the LMS wrote them.
There is no ``submission.toml`` then, so the student's identity comes from the file name, through
a regular expression with named groups (docs/submission-format.md, "Notebooks (being built)").
The default, :data:`CANVAS_PATTERN`, reads the names of Canvas's bulk "Download Submissions"::

    doejane_12345_678901_hw1.ipynb          <name>_<user id>_<file id>_<original file name>
    doejane_late_12345_678901_hw1.ipynb     a late hand-in: ``late`` after the name
    doejane_12345_678902_hw1-1.ipynb        a re-submission: Canvas's ``-1`` stays in the original name

A name the pattern does not match is never an error: its identity is the file's stem, with no
student or student id, and whoever reports on it says so.

An :class:`Identity`'s ``id`` names the student's results folder, so it is made safe as one
folder name (:func:`safe_id`): only ASCII letters, digits, ``_``, ``-`` and ``.``; no leading dot
(no hidden folder, no ``.`` or ``..``) and no run of dots; at most :data:`MAX_ID_CHARS` characters.

Not yet used by the commands.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePosixPath

# Canvas writes <name>_[late_]<user id>_<file id>_<original file name>. The name is the sortable
# name lower-cased with its separators removed, so it holds no "_"; the ids are digits. The
# original name is kept as it is, Canvas's "-1" re-submission suffix included, since a student
# may well have named a file "hw1-1.ipynb" themselves.
CANVAS_PATTERN = r"(?P<student>[^_]+)_(?:(?P<late>late)_)?(?P<student_id>\d+)_(?P<file_id>\d+)_(?P<original>.+)"

IDENTITY_GROUPS = ("student", "student_id")  # a pattern needs at least one: else it identifies no one
KNOWN_GROUPS = (*IDENTITY_GROUPS, "file_id", "late", "original")
MAX_ID_CHARS = 100  # well under the 255 bytes most file systems allow a name, with room for suffixes
UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
DOT_RUN = re.compile(r"\.{2,}")


@dataclass(frozen=True)
class Identity:
    """Whose hand-in a file is, as its name says. ``student`` and ``student_id`` are "" when the
    name does not say (it did not match the pattern, or the pattern has no such group)."""

    id: str  # the results folder's name, unique per student: see identity_id and safe_id
    student: str
    student_id: str
    late: bool = False
    original: str = ""  # the file name the student uploaded; the whole name when the pattern did not match
    file_name: str = ""  # the name as found in the course folder
    file_id: str = ""  # the LMS's id of this file: of two files of one student, the larger is the later

    @property
    def matched(self) -> bool:
        """Whether the name said who the student is."""
        return bool(self.student or self.student_id)


def safe_id(text: str) -> str:
    """``text`` as one safe folder name: characters other than ASCII letters, digits, ``_``, ``-``
    and ``.`` become ``_``, runs of dots one dot, a leading dot ``_``; cut to MAX_ID_CHARS. Never
    empty (``_``). Two texts may give one id (``a/b``, ``a_b``): :func:`duplicates` reports them."""
    cleaned = DOT_RUN.sub(".", UNSAFE_CHARS.sub("_", text.strip()))[:MAX_ID_CHARS]
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    return cleaned or "_"


def identity_id(student_id: str, student: str, stem: str) -> str:
    """The results id: the student id when the name gives one, else the student's name (still one
    id for all of that student's files), else the file's stem; made safe by :func:`safe_id`."""
    return safe_id(student_id or student or stem)


def compile_pattern(text: str) -> re.Pattern[str]:
    """A user-given file-name pattern, checked: it must compile, name a ``student`` or
    ``student_id`` group, and name no group outside KNOWN_GROUPS (a misspelt ``late`` would
    otherwise be silently ignored). Raises ValueError saying what is wrong."""
    try:
        pattern = re.compile(text)
    except re.error as e:
        raise ValueError(f"the file-name pattern `{text}` is not a valid regular expression: {e}") from None
    _check_groups(pattern)
    return pattern


def _check_groups(pattern: re.Pattern[str]) -> None:
    groups = set(pattern.groupindex)
    unknown = sorted(groups - set(KNOWN_GROUPS))
    if unknown:
        raise ValueError(
            f"the file-name pattern `{pattern.pattern}` has unknown group(s) {', '.join(unknown)}; "
            f"the groups it may name are {', '.join(KNOWN_GROUPS)}"
        )
    if not groups & set(IDENTITY_GROUPS):
        raise ValueError(
            f"the file-name pattern `{pattern.pattern}` names no `student` or `student_id` group, so it "
            r"identifies no one; name one, e.g. (?P<student_id>\d+)"
        )


@lru_cache(maxsize=16)
def _compiled(text: str) -> re.Pattern[str]:
    # A course folder is read name by name with one pattern: compile and check it once.
    return compile_pattern(text)


def identity_from_name(file_name: str, pattern: str | re.Pattern[str] = CANVAS_PATTERN) -> Identity:
    """The identity ``file_name`` (its last path component) gives under ``pattern``, which must
    match the whole name (``re.fullmatch``). A name that does not match gives an identity from the
    file's stem, with no student or student id; never an error. An invalid pattern raises
    ValueError (:func:`compile_pattern`)."""
    if isinstance(pattern, str):
        pattern = _compiled(pattern)
    else:
        _check_groups(pattern)
    name = PurePosixPath(file_name).name
    m = pattern.fullmatch(name)
    if m is None:
        stem = PurePosixPath(name).stem
        return Identity(id=identity_id("", "", stem), student="", student_id="", original=name, file_name=name)
    found = {key: (value or "").strip() for key, value in m.groupdict().items()}
    student, student_id = found.get("student", ""), found.get("student_id", "")
    return Identity(
        id=identity_id(student_id, student, PurePosixPath(name).stem),
        student=student,
        student_id=student_id,
        late=bool(found.get("late")),
        original=found.get("original") or name,
        file_name=name,
        file_id=found.get("file_id", ""),
    )


def _upload_order(identity: Identity) -> tuple[int, str, str]:
    # Canvas's file ids grow with each upload, so they order a student's files; a file without
    # one sorts first, then names break ties so the order never depends on the folder's listing.
    fid = identity.file_id
    return (int(fid) if fid.isdigit() else -1, fid, identity.file_name)


def duplicates(identities: Iterable[Identity]) -> dict[str, list[str]]:
    """The ids that more than one file claims, each with its file names, earliest upload first
    (by file id): the last is the one a later step will grade. Empty when every id is one file's."""
    by_id: dict[str, list[Identity]] = {}
    for identity in identities:
        by_id.setdefault(identity.id, []).append(identity)
    return {
        key: [i.file_name for i in sorted(group, key=_upload_order)]
        for key, group in sorted(by_id.items())
        if len(group) > 1
    }
