"""The on-disk cache (trained reference models, the metrics classifier) and atomic writes.

Location, in order: ``--cache DIR``, the environment variable ``HARNESS_CACHE``,
else ``$XDG_CACHE_HOME/harness`` (``~/.cache/harness``). Entries are folders
named by a hash of everything that changes their content; a folder appears only
once complete (written under a temporary name, then renamed), so an interrupted
run never leaves a half entry that a later run would trust. One process at a time
builds an entry (:func:`building`): a second one that needs it waits and reads it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ENV_CACHE = "HARNESS_CACHE"


def cache_root(cache: str | os.PathLike | None = None, env: Mapping[str, str] = os.environ) -> Path:
    from harness.ml.data import user_cache_dir  # lazily: reading results must not import torch

    if cache:
        return Path(cache).expanduser()
    if env.get(ENV_CACHE):
        return Path(env[ENV_CACHE]).expanduser()
    return user_cache_dir()


def versions() -> dict[str, str]:
    """Library versions that change numbers; part of every cache key."""
    import torch
    import torchvision

    from harness import __version__

    return {
        "harness": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": ".".join(map(str, sys.version_info[:3])),
    }


def make_key(parts: Mapping[str, Any]) -> str:
    """A short stable hash of JSON-serialisable key parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def staging_dir(final: Path) -> Path:
    """A fresh temporary folder beside ``final``, to be published with :func:`publish`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial"))


def publish(staging: Path, final: Path) -> None:
    """Move a complete staging folder into place, replacing an older entry."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)


@contextmanager
def building(final: Path, quiet: bool = False) -> Iterator[None]:
    """Held while this process builds the cache entry ``final``. Another process that needs the
    same entry (a second batch, a test worker) waits here, then finds it built, instead of
    training it again and replacing it under a reader. The operating system releases the lock
    when its holder dies. Callers check for the finished entry before (a cache that is only
    read needs no lock) and again inside."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(final.parent / f".{final.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not quiet:
                print(f"waiting for another process that is building {final} ...", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
