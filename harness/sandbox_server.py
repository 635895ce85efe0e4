"""The inside of the execution boundary: a small supervisor that runs each unit of
student work in a forked child and cleans up after it.

Started by :class:`harness.sandbox.Sandbox` (inside new network, PID and mount
namespaces where the machine allows). It imports torch once, then answers one
JSON request per line on stdin, each naming a probe (``harness.probes``). For
each request it forks a child that drops privileges, redirects stdout/stderr
into capped pipes, imports ``submission.py`` and runs the probe; the supervisor
enforces the unit's timeout and memory cap and afterwards kills every process
the unit left behind, including ones that started a new session (the supervisor
is their reaper). It replies with one JSON line per request. Nothing the child
says decides points: the child writes tensors to ``out/<unit>.pt`` and the
harness computes every number that matters in its own process.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

PR_SET_CHILD_SUBREAPER, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 36, 24, 38
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
NOBODY = 65534
POLL_S = 0.05


# --------------------------------------------------------------------------- process tree


def _children_map() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(root: int) -> list[int]:
    tree, out, todo = _children_map(), [], [root]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_descendants(root: int) -> int:
    """SIGKILL every descendant until none is left (a fork bomb may race us); reap them."""
    killed = 0
    for _ in range(100):
        pids = descendants(root)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        _reap()
        time.sleep(0.01)
    _reap()
    return killed


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def tree_memory_mb(root: int) -> float:
    """Proportional set size of all descendants (shared torch pages counted once)."""
    total_kb = 0
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total_kb += int(line.split()[1])
                        break
        except OSError:
            continue
    return total_kb / 1024


# --------------------------------------------------------------------------- capped capture


class CappedReader(threading.Thread):
    """Drain a pipe, keeping only its head and tail so a flood cannot exhaust memory."""

    def __init__(self, fd: int, cap: int):
        super().__init__(daemon=True)
        self.fd, self.cap = fd, cap
        self.head, self.tail, self.total = bytearray(), bytearray(), 0

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            self.total += len(chunk)
            room = self.cap - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail = (self.tail + chunk)[-self.cap :]
        os.close(self.fd)

    def text(self) -> str:
        head = self.head.decode("utf-8", "replace")
        if not self.tail:
            return head
        dropped = self.total - len(self.head) - len(self.tail)
        marker = f"\n[... {dropped} bytes not kept ...]\n" if dropped > 0 else ""
        return head + marker + self.tail.decode("utf-8", "replace")


# --------------------------------------------------------------------------- set-up


def _protect(paths: list[str]) -> list[str]:
    """Bind-mount each path read-only inside this mount namespace; return those done."""
    libc = ctypes.CDLL(None, use_errno=True)
    done = []
    for p in paths:
        if not os.path.exists(p):
            continue
        b = p.encode()
        if libc.mount(b, b, None, MS_BIND | MS_REC, None) != 0:
            continue
        if libc.mount(b, b, None, MS_BIND | MS_REMOUNT | MS_RDONLY, None) == 0:
            done.append(p)
    return done


def drop_privileges() -> bool:
    """Give up every capability (and the right to regain one through exec), so root in the
    sandbox cannot undo the read-only mounts; True when all steps succeeded."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    ok = libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    return ok and libc.capset(header, data) == 0


def _become_reaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


# --------------------------------------------------------------------------- one unit


def _child(req: dict, scratch: Path, out_w: int, err_w: int, status_w: int, drop_to: int | None) -> None:
    """In the forked child: confine, redirect, run the probe, write its output. Never returns."""
    code = 0
    try:
        os.setpgid(0, 0)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        if drop_to is not None:
            os.setgroups([])
            os.setgid(drop_to)
            os.setuid(drop_to)
        drop_privileges()
        os.chdir(scratch / "work")
        from harness import probes

        status = os.fdopen(status_w, "w", buffering=1)
        probes.run_unit(req, scratch, status)
    except SystemExit as e:  # a probe reports sys.exit from student code itself; this is a last resort
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        os._exit(code)


def run_request(req: dict, scratch: Path, drop_to: int | None) -> dict:
    cap = int(req.get("output_cap_kb", 64)) * 1024
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    st_r, st_w = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        for fd in (out_r, err_r, st_r):
            os.close(fd)
        _child(req, scratch, out_w, err_w, st_w, drop_to)
    for fd in (out_w, err_w, st_w):
        os.close(fd)
    readers = [CappedReader(out_r, cap), CappedReader(err_r, cap), CappedReader(st_r, 16 * 1024)]
    for r in readers:
        r.start()
    timeout, memory_mb = float(req["timeout_s"]), float(req["memory_mb"])
    status, exit_code, term_signal, peak = "ok", None, None, 0.0
    me = os.getpid()
    next_mem = 0.0
    while True:
        done, wstatus = os.waitpid(pid, os.WNOHANG)
        if done:
            if os.WIFSIGNALED(wstatus):
                term_signal = os.WTERMSIG(wstatus)
            else:
                exit_code = os.WEXITSTATUS(wstatus)
            break
        now = time.monotonic()
        if now - started > timeout:
            status = "timeout"
            break
        if now >= next_mem:
            peak = max(peak, tree_memory_mb(me))
            next_mem = now + 0.2
            if peak > memory_mb:
                status = "memory"
                break
        time.sleep(POLL_S)
    leftovers = kill_descendants(me)  # the unit itself (on timeout) and anything it left behind
    for r in readers:
        r.join(timeout=2)
    seconds = time.monotonic() - started
    phases = readers[2].text().splitlines()
    if status == "ok" and (exit_code != 0 or term_signal is not None):
        status = "crashed"
    return {
        "unit": req["unit"],
        "status": status,
        "exit_code": exit_code,
        "signal": term_signal,
        "seconds": round(seconds, 3),
        "peak_memory_mb": round(peak, 1),
        "phase": phases[-1] if phases else "",
        "stdout": readers[0].text(),
        "stderr": readers[1].text(),
        "stdout_bytes": readers[0].total,
        "stderr_bytes": readers[1].total,
        "leftover_processes": max(0, leftovers - (1 if status in ("timeout", "memory") else 0)),
    }


def main() -> None:
    config = json.loads(sys.argv[1])
    scratch = Path(config["scratch"])
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)  # a unit signalling its parent must not stop the supervisor
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    protected = _protect(config.get("protect", [])) if config.get("mount_ns") else []
    reaper = os.getpid() == 1 or _become_reaper()
    import torch  # noqa: F401  (imported once here, so each forked unit starts warm)
    import torch.nn  # noqa: F401

    reply = sys.stdout
    reply.write(json.dumps({"ready": True, "protected": protected, "reaper": reaper, "pid1": os.getpid() == 1}) + "\n")
    reply.flush()
    warm = False
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("exit"):
            break
        if req.get("probe") == "train" and not warm:
            from harness.probes import warm_up

            warm_up(req)  # the harness's own code, once: every forked training unit inherits compiled kernels
            warm = True
        reply.write(json.dumps(run_request(req, scratch, config.get("drop_to"))) + "\n")
        reply.flush()
    kill_descendants(os.getpid())


if __name__ == "__main__":
    main()
