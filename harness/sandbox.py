"""The execution boundary: student code never runs in the harness's own process.

A :class:`Sandbox` serves one submission. It copies the submission into a private
scratch folder and starts a supervisor (``harness.sandbox_server``) with a clean
environment, inside new network, PID and mount namespaces where ``unshare`` works
on this machine. Each call to :meth:`Sandbox.run` is one unit of work (one check,
one training run) in a fresh forked child with its own timeout, memory cap
(proportional set size, which works with CUDA builds of torch, unlike
``RLIMIT_AS``; pytorch#16558) and capped stdout/stderr. Every process a unit
started is killed when it ends. :func:`protections` says which of these are in
force here; results record it. See ``docs/sandbox.md``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

import harness

UnitStatus = Literal["ok", "error", "timeout", "memory", "crashed"]
NOBODY = 65534
START_TIMEOUT_S = 180.0  # a cold start imports torch from disk
MAX_COPY_BYTES = 200 * 1024 * 1024
MAX_OUTPUT_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_mb: int
    output_cap_kb: int = 64
    threads: int = 1


@dataclass
class UnitOutcome:
    """What happened to one unit: its status, where it was, what it printed, what it returned."""

    unit: str
    status: UnitStatus
    seconds: float = 0.0
    value: dict[str, Any] | None = None
    error: str = ""
    traceback: str = ""
    phase: str = ""
    stdout: str = ""
    stderr: str = ""
    peak_memory_mb: float = 0.0
    leftover_processes: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        """One sentence for the student's evidence."""
        where = f" during {self.phase.removeprefix('call ')}" if self.phase and self.phase != "done" else ""
        if self.status == "ok":
            return "ran"
        if self.status == "timeout":
            return f"stopped after {self.seconds:.0f} s (the time limit){where}"
        if self.status == "memory":
            return f"stopped at {self.peak_memory_mb:.0f} MB (the memory limit){where}"
        return self.error or f"the process ended unexpectedly{where}"


@dataclass(frozen=True)
class Protections:
    """Which protections this machine allows; each line ends up in the result."""

    namespaces: bool
    drop_to: int | None
    lines: tuple[str, ...] = field(default=())


@functools.cache
def protections() -> Protections:
    """Probe once per process what the OS allows: namespaces via ``unshare``, dropping to nobody."""
    unshare = shutil.which("unshare")
    root = os.geteuid() == 0
    ns = False
    if unshare:
        flags = ["-mnpf", "--mount-proc"] if root else ["-rmnpf", "--mount-proc"]
        try:
            ns = subprocess.run([unshare, *flags, "true"], capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ns = False
    drop = NOBODY if root and _nobody_can_run_python() else None
    lines = [
        "separate process per unit; timeout, memory cap (PSS watchdog) and output cap per unit",
        "clean environment (no inherited variables) and a private copy of the submission",
        "every process a unit started is killed when the unit ends",
    ]
    if ns:
        lines.append("no network (new network namespace); harness processes invisible (new PID namespace)")
        lines.append("results, cache, submissions, data and harness code read-only (mount namespace)")
        lines.append("student code holds no capabilities, even as root (cannot remount or regain them via exec)")
    else:
        lines.append("NOT in force: network isolation and read-only mounts (unshare unavailable here)")
    if drop is not None:
        lines.append("student code runs as user 'nobody' (cannot write the harness's files or signal it)")
    elif root:
        lines.append("NOT in force: dropping to an unprivileged user (nobody cannot run this Python)")
    return Protections(ns, drop, tuple(lines))


def _nobody_can_run_python() -> bool:
    probe = [sys.executable, "-I", "-c", "import importlib.util as u; assert u.find_spec('torch')"]
    try:
        return subprocess.run(probe, user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def private_copy(src: Path, dest: Path) -> None:
    """Copy regular files only (no symlinks, devices or huge files) into ``dest``."""
    total = 0
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_symlink() or any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        target = dest / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            total += path.stat().st_size
            if total > MAX_COPY_BYTES:
                raise OSError(f"the submission folder holds more than {MAX_COPY_BYTES >> 20} MB")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


class SandboxError(RuntimeError):
    """The sandbox itself could not start (not the student's fault)."""


class Sandbox:
    """Runs units of one submission's code in confined child processes. Use as a context manager."""

    def __init__(
        self,
        submission_dir: Path,
        assignment_path: str,
        module: str,
        names: dict[str, str],
        nz: int,
        inputs: dict[str, torch.Tensor],
        protect: list[Path] = (),
    ):
        self.prot = protections()
        self.scratch = Path(tempfile.mkdtemp(prefix="harness-sandbox-"))
        work = self.scratch / "work"
        work.mkdir()
        (self.scratch / "out").mkdir()
        (self.scratch / "home").mkdir()
        (self.scratch / "tmp").mkdir()
        private_copy(submission_dir, work)
        torch.save(inputs, self.scratch / "inputs.pt")
        if self.prot.drop_to is not None:
            for path in [self.scratch, *self.scratch.rglob("*")]:
                os.chown(path, self.prot.drop_to, self.prot.drop_to)
        self.base = {"module": str(work / module), "names": names, "nz": nz, "assignment": assignment_path}
        package = Path(harness.__file__).resolve().parent
        # A protected folder that holds the scratch folder would make the unit's own output read-only.
        wanted = [Path(p).resolve() for p in protect] + [package, Path(sys.prefix), Path(sys.base_prefix)]
        self.protect = [str(p) for p in wanted if not self.scratch.resolve().is_relative_to(p)]
        self.proc: subprocess.Popen | None = None
        self.ready: dict = {}
        self._stderr: list[str] = []

    # -- lifecycle

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        config = {
            "scratch": str(self.scratch),
            "protect": self.protect,
            "mount_ns": self.prot.namespaces,
            "drop_to": self.prot.drop_to,
        }
        prefix = []
        if self.prot.namespaces:
            prefix = ["unshare", "-mnpf", "--mount-proc"] if os.geteuid() == 0 else ["unshare", "-rmnpf", "--mount-proc"]
        root = str(Path(harness.__file__).resolve().parent.parent)
        boot = f"import sys; sys.path.insert(0, {root!r}); from harness.sandbox_server import main; main()"
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.scratch / "home"),
            "TMPDIR": str(self.scratch / "tmp"),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1",
        }
        if "CUDA_VISIBLE_DEVICES" in os.environ:
            env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-I", "-c", boot, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.scratch,
            env=env,
            start_new_session=True,
            text=True,
        )
        threading.Thread(target=self._drain_stderr, args=(self.proc,), daemon=True).start()
        line = self._read_line(START_TIMEOUT_S)
        if not line:
            self._kill()
            raise SandboxError("the sandbox did not start: " + "".join(self._stderr[-20:]).strip())
        self.ready = json.loads(line)

    def _drain_stderr(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            if len(self._stderr) < 200:
                self._stderr.append(line)

    def _read_line(self, timeout: float) -> str:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return box[0] if box else ""

    def _kill(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # in a PID namespace this takes every process in it
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.proc = None

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.write(json.dumps({"exit": True}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                pass
            self._kill()
        shutil.rmtree(self.scratch, ignore_errors=True)

    # -- units

    def progress(self, unit: str) -> int:
        """Optimizer steps a running training unit has reported so far (for display only)."""
        try:
            return int((self.scratch / "out" / f"{unit}.progress").read_text()[:12])
        except (OSError, ValueError):
            return 0

    def run(self, unit: str, probe: str, limits: Limits, args: dict[str, Any] | None = None) -> UnitOutcome:
        """Run one probe in a fresh child; never raises for anything the student's code does."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            self._start()
        req = {
            **self.base,
            "unit": unit,
            "probe": probe,
            "args": args or {},
            "timeout_s": limits.timeout_s,
            "memory_mb": limits.memory_mb,
            "output_cap_kb": limits.output_cap_kb,
            "threads": limits.threads,
        }
        out_file = self.scratch / "out" / f"{unit}.pt"
        out_file.unlink(missing_ok=True)
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self._read_line(limits.timeout_s + 30)
        except (OSError, ValueError):
            line = ""
        if not line:  # the supervisor itself died or hung: restart it for the next unit
            self._kill()
            return UnitOutcome(unit, "crashed", error="the sandbox's supervisor stopped during this unit")
        reply = json.loads(line)
        outcome = UnitOutcome(
            unit,
            reply["status"],
            seconds=reply["seconds"],
            phase=reply["phase"],
            stdout=reply["stdout"],
            stderr=reply["stderr"],
            peak_memory_mb=reply["peak_memory_mb"],
            leftover_processes=reply["leftover_processes"],
        )
        if outcome.status == "crashed":
            how = f"signal {reply['signal']}" if reply["signal"] else f"exit code {reply['exit_code']}"
            where = outcome.phase.removeprefix("call ") or "start-up"
            outcome.error = f"the process ended ({how}) during {where}"
            if outcome.phase.startswith("call"):
                outcome.error += " (os._exit or a crash in the student's code)"
            return outcome
        if outcome.status != "ok":
            return outcome
        outcome.value = _load_value(out_file)
        if outcome.value is None:
            outcome.status, outcome.error = "crashed", "the unit finished without leaving its observations"
        elif not outcome.value.get("ok"):
            outcome.status = "error"
            outcome.error = str(outcome.value.get("error", "error"))
            outcome.traceback = str(outcome.value.get("traceback", ""))
        return outcome


def _load_value(path: Path) -> dict | None:
    """Load a unit's observations as plain data only: ``weights_only`` refuses pickled code."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_OUTPUT_BYTES:
            return None
        value = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001  (a tampered file is the student's problem, not a harness crash)
        return None
    return value if isinstance(value, dict) else None
