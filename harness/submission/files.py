"""Which files make up a submission folder, and what is done with all of them at once.

One rule, here only: every regular file, hidden files and folders (``.git``), caches
(``__pycache__``) and symbolic links left out. The content hash covers these files, a Dask worker
receives them (``harness.course.cluster``) and the sandbox's private copy holds them
(``harness.sandbox.host``), so all three agree on what the submission is.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from harness.submission.reading import MAX_FOLDER_BYTES, link_on_path, open_regular


def _hidden(rel: Path) -> bool:
    return any(p.startswith(".") or p == "__pycache__" for p in rel.parts)


def submission_files(folder: Path) -> list[Path]:
    """The files that make up a submission, as relative paths in order: every regular file,
    hidden files, caches and symbolic links left out."""
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


def copy_files(folder: Path, files: tuple[Path, ...] | list[Path], dest: Path) -> None:
    """Copy a submission's ``files`` (relative paths) from ``folder`` into ``dest``: regular files
    only, never through a symbolic link, at most MAX_FOLDER_BYTES in all. A file that became a
    link or something other than a regular file since it was listed is skipped, one that is gone
    too; over the cap raises OSError."""
    total = 0
    for rel in files:
        if _hidden(Path(rel)) or link_on_path(folder, str(rel)):
            continue
        try:
            fd = open_regular(folder, str(rel))
        except (OSError, ValueError):
            continue
        with os.fdopen(fd, "rb") as src:
            total += os.fstat(src.fileno()).st_size
            if total > MAX_FOLDER_BYTES:
                raise OSError(f"the submission folder holds more than {MAX_FOLDER_BYTES >> 20} MB")
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
