"""Open a local HTML file in headless Chromium and report what its scripts did (test helper).

Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe``: the browser
reads JSON commands on its fd 3 and writes replies and events on its fd 4, each message ended
by a NUL byte, so the standard library is enough (no websocket, no port). This is used instead
of ``--enable-logging=stderr``, whose ``CONSOLE`` lines in Debian's chromium 150 are all
logged at INFO: ``console.log`` and ``console.error`` look the same there.

What counts (:class:`Page`):

- ``errors``: uncaught exceptions (``Runtime.exceptionThrown``), ``console.error`` and failed
  ``console.assert`` (``Runtime.consoleAPICalled``), and the browser's own error entries
  (``Log.entryAdded`` at level ``error``: a resource that failed to load, a blocked request);
- ``warnings``: ``console.warn`` and the browser's warning entries (deprecations, interventions);
- ``messages``: everything, each as ``"<kind>: <text>"``.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

REQUIRE = "HARNESS_REQUIRE_CHROMIUM"
# Root in a container: no setuid sandbox (--no-sandbox), a small /dev/shm
# (--disable-dev-shm-usage), no GPU; a fresh profile per run keeps runs independent.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--mute-audio",
]


def chromium() -> str:
    """The ``chromium`` executable; skips the test when there is none, or fails it when
    ``HARNESS_REQUIRE_CHROMIUM=1`` (CI installs chromium and sets it)."""
    path = shutil.which("chromium")
    if path is None:
        reason = "chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{reason}, and {REQUIRE}=1 requires it")
        pytest.skip(f"{reason}; set {REQUIRE}=1 to fail instead of skipping")
    return path


class Page:
    """One page loaded in a fresh headless Chromium; use as a context manager."""

    def __init__(self, path: Path, timeout_s: float = 30.0):
        self.url = Path(path).resolve().as_uri()
        self.timeout_s = timeout_s
        self.messages: list[str] = []
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self._next_id = 0
        self._events: queue.Queue = queue.Queue()

    # -- the browser process ------------------------------------------------------------

    def __enter__(self) -> Page:
        exe = chromium()
        self._profile = tempfile.TemporaryDirectory(prefix="harness-chromium-")
        # Two pipes. The child's ends are moved above fd 10 (close-on-exec) so that placing
        # them at 3 and 4 in the child cannot overwrite one with the other; dup2 makes the
        # copies at 3 and 4 inheritable. Not pass_fds=(3, 4): that needs 3 and 4 open here.
        # Every other descriptor of ours is close-on-exec (PEP 446), so close_fds=False
        # passes nothing else.
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()
        child_in, child_out = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser, from_browser))
        os.close(to_browser), os.close(from_browser)

        def place_fds():
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self._stderr = tempfile.TemporaryFile()
        args = [exe, *FLAGS, f"--user-data-dir={self._profile.name}", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            close_fds=False,
            preexec_fn=place_fds,
            start_new_session=True,
        )
        os.close(child_in), os.close(child_out)
        threading.Thread(target=self._reader, daemon=True).start()
        try:
            self._open()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self._send("Browser.close")
                    self.proc.wait(timeout=10)
                except Exception:  # noqa: BLE001 - a browser that will not close is killed below
                    pass
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what we started
                self.proc.wait()
            os.close(self._write)
            self._stderr.close()
            self._profile.cleanup()

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    # -- the protocol -------------------------------------------------------------------

    def _reader(self) -> None:
        buffer = b""
        with os.fdopen(self._read, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for m in messages:
                    self._events.put(json.loads(m))
        self._events.put(None)  # the browser closed its end

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and wait for its reply, recording the events that arrive meanwhile."""
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        reply = self._wait(lambda m: m.get("id") == msg["id"], f"the reply to {method}")
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _wait(self, match, what: str) -> dict:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                m = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"chromium: no {what} within {self.timeout_s:g} s\n{self.stderr()}") from None
            if m is None:
                raise RuntimeError(f"chromium exited while waiting for {what}\n{self.stderr()}")
            self._record(m)
            if match(m):
                return m

    def _record(self, m: dict) -> None:
        method, p = m.get("method"), m.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text", "")
            self._note("error", f"uncaught exception: {text} ({d.get('url', '')}:{d.get('lineNumber', 0) + 1})")
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            level = {"error": "error", "assert": "error", "warning": "warning"}.get(p["type"])
            self._note(level, f"console.{p['type']}: {text}")
        elif method == "Log.entryAdded":
            e = p["entry"]
            self._note(
                e["level"] if e["level"] in ("error", "warning") else None,
                f"{e['source']} {e['level']}: {e['text']} {e.get('url', '')}".rstrip(),
            )

    def _note(self, level: str | None, text: str) -> None:
        self.messages.append(text)
        if level == "error":
            self.errors.append(text)
        elif level == "warning":
            self.warnings.append(text)

    def _open(self) -> None:
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self._send(f"{domain}.enable", session=self._session)
        navigated = self._send("Page.navigate", {"url": self.url}, session=self._session)
        if navigated.get("errorText"):
            raise RuntimeError(f"chromium could not open {self.url}: {navigated['errorText']}")
        session = self._session
        self._wait(lambda m: m.get("method") == "Page.loadEventFired" and m.get("sessionId") == session, "load event")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable); an exception
        it throws is raised here (and is not counted among the page's errors)."""
        r = self._send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self._session,
        )
        if "exceptionDetails" in r:
            details = r["exceptionDetails"]
            raise RuntimeError(f"evaluate: {details.get('exception', {}).get('description', details)}")
        return r["result"].get("value")

    def settle(self, seconds: float = 0.2) -> None:
        """Collect the events the page sends for a moment (timers, late errors)."""
        self.evaluate(f"new Promise(function (done) {{ setTimeout(done, {seconds * 1000:.0f}); }})")
