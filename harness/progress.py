"""Progress lines that suit where they go: a terminal or a log.

On a terminal (the stream's ``isatty()``) the active bars of a stream share one line, redrawn
in place with ``\\r`` at most every 0.1 s (``reference runs: 3/9 run | ae: 120/500 step``). In
a log (a pipe, a file, CI) a redraw would pile up thousands of ``\\r`` fragments, so the same
line is printed whole, at most once every :data:`LOG_EVERY_S` seconds per stream.

:class:`Progress` has the part of tqdm's interface the harness uses (``update``, ``n``,
``set_postfix``, ``write``, ``close``, a context manager, ``disable``), so a ``tqdm(...)``
call becomes ``Progress(...)`` with the same arguments.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TextIO

LOG_EVERY_S = 5.0  # a stream that is not a terminal: at most one line this often
TTY_EVERY_S = 0.1  # a terminal: redraw at most this often


def is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class _Display:
    """The bars active on one stream, drawn together, and when that stream last got a line."""

    def __init__(self, stream: TextIO, tty: bool):
        self.stream, self.tty = stream, tty
        self.bars: list[Progress] = []
        self.lock = threading.RLock()
        self.last = float("-inf")
        self.width = 0  # of what is drawn now (terminal): cleared before a shorter redraw

    def text(self) -> str:
        return " | ".join(b.describe() for b in self.bars)

    def draw(self, now: float, every_s: float, force: bool = False) -> None:
        with self.lock:
            if not self.bars or (not force and now - self.last < every_s):
                return
            self.last = now
            text = self.text()
            for b in self.bars:
                b.shown = b.n
            if self.tty:
                text = text[: max(20, shutil.get_terminal_size().columns - 1)]
                self._write("\r" + text + " " * max(0, self.width - len(text)))
                self.width = len(text)
            else:
                self._write(text + "\n")

    def clear(self) -> None:
        """Blank the terminal line (before a plain line is printed, or when the last bar ends)."""
        with self.lock:
            if self.tty and self.width:
                self._write("\r" + " " * self.width + "\r")
                self.width = 0

    def _write(self, s: str) -> None:
        try:
            self.stream.write(s)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not stop grading
            pass


_displays: weakref.WeakKeyDictionary[Any, _Display] = weakref.WeakKeyDictionary()
_displays_lock = threading.Lock()


def _display(stream: TextIO) -> _Display:
    with _displays_lock:
        try:
            d = _displays.get(stream)
        except TypeError:  # a stream that cannot be weakly referenced: not shared
            return _Display(stream, is_tty(stream))
        if d is None:
            d = _displays[stream] = _Display(stream, is_tty(stream))
        return d


def _clock_text(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """A progress bar over ``total`` steps on ``file`` (default: stderr), throttled as the
    module says. ``clock`` and ``every_s`` exist for tests and special streams; ``disable``
    prints nothing but still counts (callers read ``n``)."""

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        *,
        disable: bool = False,
        leave: bool = True,
        file: TextIO | None = None,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.total, self.desc, self.unit = total, desc, unit
        self.disable, self.leave, self.clock = disable, leave, clock
        self.n = 0
        self.shown = -1  # n when a line last showed this bar
        self.postfix: dict[str, str] = {}
        self.started = clock()
        self.closed = False
        if disable:
            return
        self.display = _display(file if file is not None else sys.stderr)
        self.every_s = every_s if every_s is not None else TTY_EVERY_S if self.display.tty else LOG_EVERY_S
        with self.display.lock:
            self.display.bars.append(self)
            if self.display.tty:
                self.display.draw(self.started, self.every_s, force=True)

    def describe(self) -> str:
        """The bar as text: ``desc: n/total unit (pct%, elapsed<eta) key=value ...``."""
        elapsed = self.clock() - self.started
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            eta = elapsed / self.n * (self.total - self.n) if self.n else None
            timing = f"{_clock_text(elapsed)}<{_clock_text(eta) if eta is not None else '?'}"
            text = f"{head}{self.n}/{self.total} {self.unit} ({100 * self.n / self.total:.0f}%, {timing})"
        else:
            text = f"{head}{self.n} {self.unit} ({_clock_text(elapsed)})"
        return " ".join([text, *(f"{k}={v}" for k, v in self.postfix.items())])

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.disable and not self.closed:
            self.display.draw(self.clock(), self.every_s)

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        self.postfix = {k: str(v) for k, v in {**(ordered_dict or {}), **kwargs}.items()}
        if refresh and not self.disable and not self.closed:
            self.display.draw(self.clock(), self.every_s)

    def write(self, line: str, file: TextIO | None = None) -> None:
        """Print a whole line (default: stdout) without tearing the bars; shown even when disabled."""
        target = file if file is not None else sys.stdout
        if self.disable:
            print(line, file=target, flush=True)
            return
        with self.display.lock:
            self.display.clear()
            print(line, file=target, flush=True)
            if self.display.tty:
                self.display.draw(self.clock(), self.every_s, force=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.disable:
            return
        d = self.display
        with d.lock:
            if self.leave and (d.tty or self.shown != self.n):  # the final count, once
                d.clear()
                d._write(self.describe() + "\n")
            d.bars.remove(self)
            d.clear()
            if d.bars and d.tty:
                d.draw(self.clock(), self.every_s, force=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
