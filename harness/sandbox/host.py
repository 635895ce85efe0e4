"""The execution boundary: student code never runs in the harness's own process.

A :class:`Sandbox` serves one :class:`~harness.submission.contents.Submission`. It
copies the submission's files into a private scratch folder and starts a supervisor
(``harness.sandbox.supervisor``) with a clean environment, inside new network, PID
and mount namespaces where ``unshare`` works on this machine, tied to the harness's
life (``setpriv --pdeathsig``). The supervisor builds a deny-by-default root: a unit
sees only the system's libraries, Python, the probe code and its own inputs, and
writes only a fresh, capped /tmp, never as root. Each call to :meth:`Sandbox.run` is
one unit of work (one check, one training run) in a fresh forked child with its own
time limit, stall watchdog, memory cap (proportional set size, which works with CUDA
builds of torch, unlike ``RLIMIT_AS``; pytorch#16558) and capped stdout/stderr.
Every process a unit started is killed when it ends. :func:`protections` says which
of these are in force here; results record it. A notebook cell that ends its unit's process in
the definition pass is recorded and skipped from then on (:func:`run_definition`). See
``docs/sandbox.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

import harness
from harness.config.assignment import Assignment, NotebookNames
from harness.submission.contents import Submission
from harness.submission.files import copy_files

UnitStatus = Literal["ok", "error", "timeout", "stalled", "memory", "crashed"]
NOBODY = 65534
START_TIMEOUT_S = 180.0  # a cold start imports torch from disk
MAX_OUTPUT_BYTES = 512 * 1024 * 1024
SCRATCH_PREFIX = "harness-sandbox-"


@dataclass(frozen=True)
class Limits:
    timeout_s: float
    memory_mb: int
    output_cap_kb: int = 64
    threads: int = 1
    stall_s: float = 0.0  # a training unit whose loop takes no optimizer step for this long is stopped (0: off)
    why: str = ""  # how the time limit was set, for the evidence ("10 x the reference's 15 s, at least 120 s")


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
    limits: Limits | None = None
    exit_code: int | None = None  # how the unit's process ended (None: by a signal, or not known)
    term_signal: int | None = None  # the signal that ended it

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        """One sentence for the student's evidence, naming the limit and what was measured."""
        where = f" during {self.phase.removeprefix('call ')}" if self.phase and self.phase != "done" else ""
        lim = self.limits
        if self.status == "ok":
            return "ran"
        if self.status == "timeout":
            limit = (
                f"the limit is {lim.timeout_s:.0f} s" + (f" ({lim.why})" if lim.why else "")
                if lim
                else "the time limit"
            )
            return f"stopped after {self.seconds:.0f} s{where}: {limit}"
        if self.status == "stalled":
            stall = f"{lim.stall_s:.0f} s" if lim else "the stall limit"
            return (
                f"stopped after {self.seconds:.0f} s{where}: "
                f"the training loop took no optimizer step for {stall} (the stall limit)"
            )
        if self.status == "memory":
            limit = f"the limit is {lim.memory_mb} MB" if lim else "the memory limit"
            return f"stopped at {self.peak_memory_mb:.0f} MB{where}: {limit}"
        return self.error or f"the process ended unexpectedly{where}"


@dataclass(frozen=True)
class Protections:
    """Which protections this machine allows; each line ends up in the result."""

    namespaces: bool
    drop: str | None  # "setuid" (root becomes nobody), "userns" (nobody in a user namespace) or None
    lines: tuple[str, ...] = field(default=())
    pdeathsig: bool = False  # setpriv can tie the sandbox's life to the harness thread that starts it

    @property
    def missing(self) -> tuple[str, ...]:
        """The documented protections NOT in force here (empty when the full set is)."""
        return tuple(line for line in self.lines if line.startswith("NOT in force"))

    @property
    def full(self) -> bool:
        return not self.missing


ALWAYS = (
    "separate process per unit; time limit, stall watchdog, memory cap (PSS watchdog) and output cap per unit",
    "clean environment (no inherited variables) and a private copy of the submission",
    "every process a unit started is killed when the unit ends, and when the harness ends",
    "the unit writes only a result pipe (kept from a finished unit), its step counter and a fresh, capped /tmp",
)


def _unshare_prefix() -> list[str]:
    """Network, PID and mount namespaces; as a normal user also a user namespace (-r)."""
    flags = "-mnpf" if os.geteuid() == 0 else "-rmnpf"
    return ["unshare", "--kill-child", flags, "--mount-proc"]


def _boot() -> str:
    root = str(Path(harness.__file__).resolve().parent.parent)
    return f"import sys; sys.path.insert(0, {root!r}); from harness.sandbox.supervisor import main; main()"


@functools.cache
def protections() -> Protections:
    """Probe once per process what the OS allows, by starting the supervisor's own set-up
    without torch: the namespaces and the deny-by-default root, then leaving root."""
    pdeathsig = _setpriv_pdeathsig()
    root = os.geteuid() == 0
    ns, drop = False, None
    # The full set first (one probe on a machine that allows it), then what is left of it.
    for ns_try, drop_try in ((True, "setuid" if root else "userns"), (True, None), (False, "setuid" if root else None)):
        if (ns_try and not shutil.which("unshare")) or (not ns_try and drop_try is None):
            continue
        if _probe_supervisor(ns_try, drop_try) == "":
            ns, drop = ns_try, drop_try
            break
    lines = list(ALWAYS)
    if ns:
        lines.append("no network (new network namespace); harness processes invisible (new PID namespace)")
        lines.append(
            "deny by default: a read-only root holding only the system libraries, Python, the probe code and "
            "the unit's inputs; /root, /home, the checkout, the cache, results and other submissions absent"
        )
        lines.append("student code holds no capabilities (cannot remount or regain them via exec)")
    else:
        lines.append("NOT in force: network isolation and the deny-by-default root (unshare unavailable here)")
    if drop == "setuid":
        lines.append("student code runs as user 'nobody' (uid 65534), never as root")
    elif drop == "userns":
        lines.append("student code runs as uid 65534 in a user namespace, never as root")
    elif root:
        lines.append("NOT in force: running student code as an unprivileged user (it would run as root)")
    else:
        lines.append("NOT in force: a separate unprivileged user (student code runs as the harness's own user)")
    if not pdeathsig:
        lines.append("NOT in force: ending the sandbox when the harness is killed (setpriv --pdeathsig unavailable)")
    return Protections(ns, drop, tuple(lines), pdeathsig)


def _setpriv_pdeathsig() -> bool:
    try:
        help_text = subprocess.run(["setpriv", "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--pdeathsig" in help_text


def _probe_supervisor(namespaces: bool, drop: str | None) -> str:
    """ "" when a supervisor starts here with these settings and can leave root; else why not."""
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX + f"{os.getpid()}-probe-"))
    try:
        for d in ("out", "root", "work"):
            (scratch / d).mkdir()
        config = supervisor_config(scratch, visible_paths(), namespaces, drop, probe=True)
        prefix = _unshare_prefix() if namespaces else []
        cmd = [*prefix, sys.executable, "-I", "-B", "-c", _boot(), json.dumps(config)]
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=60, cwd=scratch, env=_clean_env(scratch, namespaces)
        )
        if done.returncode != 0 or not done.stdout.strip():
            return (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return json.loads(done.stdout.splitlines()[0]).get("drop_problem", "") if drop else ""
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        return str(e)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def visible_paths(assignment_path: str | None = None) -> list[str]:
    """What a unit sees besides the system's libraries: the Python installation and virtual
    environment, the harness package (the probe code) and the assignment's file."""
    package = Path(harness.__file__).resolve().parent
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    paths = [*sorted(prefixes), package]
    if assignment_path and not Path(assignment_path).resolve().is_relative_to(package):
        paths.append(Path(assignment_path).resolve())
    return [str(p) for p in paths]


def supervisor_config(
    scratch: Path, visible: list[str], namespaces: bool, drop: str | None, tmp_mb: int = 512, probe: bool = False
) -> dict:
    """What the supervisor is told at start (harness.sandbox.supervisor.main)."""
    return {
        "scratch": str(scratch),
        "visible": list(dict.fromkeys(visible)),
        "mount_ns": namespaces,
        "drop": drop,
        "owner": NOBODY if drop == "setuid" else None,
        "tmp_mb": tmp_mb,
        "probe": probe,
    }


def _clean_env(scratch: Path, namespaces: bool) -> dict[str, str]:
    home, tmp = ("/tmp/home", "/tmp") if namespaces else (str(scratch / "home"), str(scratch / "tmp"))
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
    }
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return env


def remove_stale_scratch(base: Path | None = None) -> None:
    """Scratch folders of harness processes that are gone (killed before they could clean up)."""
    for folder in Path(base or tempfile.gettempdir()).glob(SCRATCH_PREFIX + "*"):
        pid = folder.name.removeprefix(SCRATCH_PREFIX).split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


class SandboxError(RuntimeError):
    """The sandbox itself could not start (not the student's fault)."""


class Sandbox:
    """Runs units of one submission's code in confined child processes. Use as a context manager.

    The units see a private copy of the submission's files (``submission.files``) as their working
    folder and import its module (``submission.module``); messages about its code name it by
    ``submission.label``. ``scratch_mb`` caps each unit's fresh /tmp (default: the assignment's
    ``[sandbox] scratch_mb``)."""

    def __init__(
        self, submission: Submission, a: Assignment, inputs: dict[str, torch.Tensor], scratch_mb: int | None = None
    ):
        self.submission = submission
        self.prot = protections()
        remove_stale_scratch()
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))
        try:
            self._prepare(inputs, a.notebook.names if a.notebook is not None else NotebookNames())
        except BaseException:  # a copy over the cap, a full disk: leave no scratch folder behind
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise
        self.base = {
            "module": submission.module,
            "kind": submission.kind,
            "label": submission.label,
            "names": dataclasses.asdict(a.submission.names),
            "nz": a.model.nz,
            "assignment": a.source,
            "cell_timeout_s": a.notebook.cell_timeout_s if a.notebook else 0,
        }
        tmp_mb = a.sandbox.scratch_mb if scratch_mb is None else scratch_mb
        self.config = supervisor_config(
            self.scratch, visible_paths(a.source), self.prot.namespaces, self.prot.drop, tmp_mb
        )
        self.proc: subprocess.Popen | None = None
        self.ready: dict = {}
        self._stderr: list[str] = []
        # units whose status stream held lines the harness did not write: unit -> how many
        self.foreign_status: dict[str, int] = {}

    def _prepare(self, inputs: dict[str, torch.Tensor], names: NotebookNames) -> None:
        """The scratch folder: the private copy in ``work/``, the units' inputs, their folders."""
        work = self.scratch / "work"
        for d in ("work", "out", "in", "home", "tmp", "root"):
            (self.scratch / d).mkdir()
        if self.submission.kind == "notebook":  # the cells, as run: the notebook file itself never enters
            write_cells(work / self.submission.module, self.submission, names)
        else:
            copy_files(self.submission.path, self.submission.files, work)
        torch.save(inputs, self.scratch / "in" / "shared.pt")
        if self.prot.drop == "setuid":  # the unit's own folders; out/ stays the harness's
            for path in [work, *work.rglob("*"), self.scratch / "home", self.scratch / "tmp"]:
                os.chown(path, NOBODY, NOBODY)
        self.scratch.chmod(0o755)

    # -- lifecycle

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        # setpriv --pdeathsig: the sandbox gets SIGKILL when the harness thread that started it
        # ends, however it ends; unshare --kill-child passes that on to the supervisor (PID 1 of
        # the sandbox's PID namespace), whose death ends every process in the namespace.
        prefix = ["setpriv", "--pdeathsig", "KILL"] if self.prot.pdeathsig else []
        if self.prot.namespaces:
            prefix += _unshare_prefix()
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-I", "-B", "-c", _boot(), json.dumps(self.config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.scratch,
            env=_clean_env(self.scratch, self.prot.namespaces),
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

    def skip_cells(self, numbers: list[int]) -> None:
        """A notebook's cells that later units do not run: ones that ran past their time limit in
        the first unit would cost every unit that limit again, ones that ended its process would
        end every unit (harness.sandbox.notebook_run, :func:`run_definition`)."""
        self.base["skip_cells"] = sorted(set(self.base.get("skip_cells", [])) | set(numbers))

    def progress(self, unit: str) -> int:
        """Optimizer steps a running training unit has reported so far (for display only)."""
        try:
            return int((self.scratch / "out" / f"{unit}.progress").read_text()[:12])
        except (OSError, ValueError):
            return 0

    def run(
        self,
        unit: str,
        probe: str,
        limits: Limits,
        args: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        trusted: bool = False,
    ) -> UnitOutcome:
        """Run one probe in a fresh child; never raises for anything the student's code does.

        ``inputs``: this unit's own inputs instead of the sandbox's shared ones, written just
        before it starts and removed when it ends, so no other unit ever sees them (an
        evaluation unit's test images and prior draws). ``trusted``: the unit runs no code of the
        submission's (an evaluation unit) and works in an empty folder."""
        if inputs is None:
            return self._run(unit, probe, limits, args, None, trusted)
        own = self.scratch / "in" / f"{unit}.pt"
        try:
            torch.save(inputs, own)
            if self.prot.drop == "setuid":
                os.chown(own, NOBODY, NOBODY)
            return self._run(unit, probe, limits, args, unit, trusted)
        finally:
            own.unlink(missing_ok=True)

    def _run(
        self, unit: str, probe: str, limits: Limits, args: dict | None, inputs: str | None, trusted: bool
    ) -> UnitOutcome:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            self._start()
        req = {
            **self.base,
            "unit": unit,
            "probe": probe,
            "args": args or {},
            "timeout_s": limits.timeout_s,
            "stall_s": limits.stall_s,
            "memory_mb": limits.memory_mb,
            "output_cap_kb": limits.output_cap_kb,
            "threads": limits.threads,
            "inputs": inputs,
            "trusted": trusted,
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
            time.sleep(0.1)  # let the drain thread take the supervisor's last words
            last = next((ln.strip() for ln in reversed(self._stderr) if ln.strip()), "")
            why = f" ({last[:300]})" if last else ""
            return UnitOutcome(
                unit, "crashed", error=f"the sandbox's supervisor stopped during this unit{why}", limits=limits
            )
        reply = json.loads(line)
        phase, foreign = read_phase(reply.get("phases", []), self.submission.label)
        if foreign:
            self.foreign_status[unit] = foreign
        outcome = UnitOutcome(
            unit,
            reply["status"],
            seconds=reply["seconds"],
            phase=phase,
            stdout=reply["stdout"],
            stderr=reply["stderr"],
            peak_memory_mb=reply["peak_memory_mb"],
            leftover_processes=reply["leftover_processes"],
            limits=limits,
            exit_code=reply.get("exit_code"),
            term_signal=reply.get("signal"),
        )
        foreign_note = f" (its status stream also held {foreign} lines the harness did not write)" if foreign else ""
        if outcome.status == "ok" and outcome.phase != "done":  # ended before its last phase, even with exit 0
            outcome.status = "crashed"
        if outcome.status == "crashed":
            how = f"signal {reply['signal']}" if reply["signal"] else f"exit code {reply['exit_code']}"
            where = outcome.phase.removeprefix("call ") or "start-up"
            outcome.error = f"the process ended ({how}) during {where}"
            if outcome.phase.startswith(("call", "cell", "import")):
                outcome.error += " (os._exit or a crash in the student's code)"
            outcome.error += foreign_note
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


# The status stream's vocabulary: the phases the probes write. A line of any other form was not
# written by the harness (student code can write to the stream), so it never reaches the evidence.
_CALL_TEXT = re.compile(r"[A-Za-z_][\w.]*(\([\w ,.:'=+\-\[\]]{0,160}\))?( [\w ,.=+\-]{0,60})?")
_FIXED_PHASES = ("save", "done", "export the trained model", "evaluate the trained model", "load the trained model")
_FIXED_CALLS = ("iterating the data loader", "backward through the reconstruction")


def is_phase(line: str, label: str) -> bool:
    """Whether ``line`` is of a form the probes write (``label``: how the submission is named)."""
    if line in _FIXED_PHASES or line == f"import {label}":
        return True
    if line.startswith("cell "):
        return line[5:].isdigit() and len(line) < 16
    if line.startswith("call "):
        what = line[5:]
        return what in _FIXED_CALLS or bool(_CALL_TEXT.fullmatch(what))
    return False


def read_phase(lines: list[str], label: str) -> tuple[str, int]:
    """The unit's last phase in the harness's vocabulary, and how many lines were not of it."""
    known = [line for line in lines if is_phase(line, label)]
    return (known[-1] if known else ""), len(lines) - len(known)


def write_cells(path: Path, sub: Submission, names: NotebookNames) -> None:
    """A notebook's code cells as its units read them (harness.sandbox.notebook_run.load_cells),
    with the handout's names the units bind and read (the assignment's ``[notebook.names]``)."""
    cells = [{"number": c.number, "role": c.role, "text": c.text} for c in sub.code]
    path.write_text(json.dumps({"label": sub.label, "cells": cells, "names": dataclasses.asdict(names)}))


# --------------------------------------------------------------------------- cells that end the process

MAX_FATAL_CELLS = 4  # cells of one notebook skipped for ending the definition pass's process; then it fails
_ENDS = ("crashed", "memory", "timeout")  # statuses of a unit whose process did not end by itself
_SIGNALS = {
    "SIGSEGV": "a segmentation fault",
    "SIGBUS": "a bus error",
    "SIGABRT": "an abort",
    "SIGFPE": "a floating-point exception",
    "SIGILL": "an illegal instruction",
    "SIGKILL": "killed",
}


@dataclass(frozen=True)
class FatalCell:
    """A notebook cell that ended its unit's process in the definition pass: which cell (as the
    notebook numbers it), its role, and how the process ended, in words ("os._exit, exit code 0")."""

    number: int
    role: str
    how: str
    seconds: float = 0.0  # of the unit it ended

    def describe(self) -> str:
        """The cell in the notebook's words, for the evidence and the notebook's cell list."""
        role = f" ({self.role.replace('_', ' ')})" if self.role else ""
        return (
            f"cell {self.number}{role} ended the process ({self.how}) in the harness's definition pass; "
            "the harness skipped it and ran the cells after it"
        )


def how_it_ended(outcome: UnitOutcome) -> str:
    """How a unit's process ended, in words a student recognises."""
    lim = outcome.limits
    if outcome.status == "memory":
        return f"over the memory limit{f' of {lim.memory_mb} MB' if lim else ''}"
    if outcome.status == "timeout":
        return f"killed at the unit's time limit{f' of {lim.timeout_s:.0f} s' if lim else ''}, past the per-cell limit"
    if outcome.term_signal:
        try:
            name = signal.Signals(outcome.term_signal).name
        except ValueError:
            name = str(outcome.term_signal)
        return f"{_SIGNALS[name]}, {name}" if name in _SIGNALS else f"signal {name}"
    return f"os._exit or a C library's exit, exit code {outcome.exit_code}"


def fatal_cell(outcome: UnitOutcome, roles: dict[int, str]) -> FatalCell | None:
    """The cell a unit's process ended in, when it ended there: the unit did not end by itself and
    its last phase is one of the notebook's code cells (``roles``: number -> role)."""
    if outcome.status not in _ENDS or not outcome.phase.startswith("cell "):
        return None
    number = outcome.phase.removeprefix("cell ")
    if not number.isdigit() or int(number) not in roles:
        return None
    return FatalCell(int(number), roles[int(number)], how_it_ended(outcome), outcome.seconds)


def run_definition(box, unit: str, limits: Limits) -> tuple[UnitOutcome, list[FatalCell]]:
    """Run a notebook's first unit (its definition pass, then the probe named ``unit``) until it
    ends by itself: each cell that ends the process is recorded, skipped by every later unit
    (:meth:`Sandbox.skip_cells`) and the unit runs again, for at most MAX_FATAL_CELLS cells. A
    later unit's definition pass runs the same cells, so it does not end there again. A folder's
    unit runs once. ``box``: a :class:`Sandbox`, or anything with its ``run`` and ``skip_cells``."""
    sub = box.submission
    roles = {c.number: c.role for c in sub.code if c.number} if sub.kind == "notebook" else {}
    fatal: list[FatalCell] = []
    while True:
        outcome = box.run(unit, unit, limits)
        cell = fatal_cell(outcome, roles)
        if cell is None or len(fatal) == MAX_FATAL_CELLS or cell.number in {f.number for f in fatal}:
            return outcome, fatal
        fatal.append(cell)
        box.skip_cells([cell.number])


def _load_value(path: Path) -> dict | None:
    """Load a unit's observations as plain data only: ``weights_only`` refuses pickled code."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_OUTPUT_BYTES:
            return None
        value = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001  (a tampered file is the student's problem, not a harness crash)
        return None
    return value if isinstance(value, dict) else None
