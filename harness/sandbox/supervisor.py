"""The inside of the execution boundary: a small supervisor that runs each unit of
student work in a forked child and cleans up after it.

Started by :class:`harness.sandbox.host.Sandbox` (inside new network, PID and mount
namespaces where the machine allows). It builds the units' deny-by-default root and
pivots into it, imports torch once, then answers one JSON request per line on
stdin, each naming a probe (``harness.sandbox.probes``). For each request it mounts a fresh
/tmp, opens the unit's two output files and forks a child that leaves root, gives up
its capabilities, redirects stdout/stderr into capped pipes, imports the
submission's module (``submission.py``) and runs the probe; the supervisor enforces
the unit's time limit, stall watchdog and memory cap and afterwards kills every
process the unit left behind, including ones that started a new session (the
supervisor is their reaper). It replies with one JSON line per request. Nothing the
child says decides points: the child writes tensors to ``out/<unit>.pt`` and the
harness computes every number that matters in its own process.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 36, 38
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_NOATIME, MS_NODIRATIME = 1, 2, 4, 8, 32, 1024, 2048
MS_BIND, MS_REC, MS_RELATIME, MNT_DETACH, CLONE_NEWUSER = 4096, 16384, 1 << 21, 2, 0x10000000
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
NOBODY = 65534
POLL_S = 0.05
OUTPUT_FILE_CAP = 600 * 1024 * 1024  # RLIMIT_FSIZE for a unit: its observations (the harness loads <= 512 MB)

# What a unit sees besides its own files (docs/sandbox.md#what-a-unit-sees): the system's
# programs and libraries, and a few harmless files from /etc. Everything else is absent.
SYSTEM_PATHS = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/alternatives",
    "/etc/fonts",
)
DEVICES = ("null", "zero", "full", "random", "urandom")
ETC_FILES = {
    "passwd": (
        "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/tmp/home:/usr/sbin/nologin\n"
    ),
    "group": "root:x:0:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1 localhost\n::1 localhost\n",
}


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


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    libc = _libc()
    enc = lambda v: None if v is None else v.encode()  # noqa: E731
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _locked_flags(path: str) -> int:
    """The flags a read-only remount must keep: in a user namespace the kernel refuses to drop
    nosuid/nodev/noexec or change the atime mode of a mount inherited from outside."""
    f = os.statvfs(path).f_flag
    flags = MS_NOSUID | MS_NODEV
    flags |= MS_NOEXEC if f & os.ST_NOEXEC else 0
    flags |= MS_NOATIME if f & os.ST_NOATIME else 0
    flags |= MS_NODIRATIME if f & os.ST_NODIRATIME else 0
    flags |= MS_RELATIME if f & os.ST_RELATIME else 0
    return flags


def bind_read_only(source: str, target: str) -> None:
    _mount(source, target, None, MS_BIND | MS_REC)
    _mount(source, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags(target))


def _place(root: str, path: str, read_only: bool = True, at: str | None = None) -> None:
    """Make host ``path`` appear under ``root``, at the same path or at ``at``: a symbolic link
    is recreated, a folder or file is bind-mounted (read-only unless said otherwise)."""
    inside = root + (at or path)
    if os.path.islink(path):
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        os.symlink(os.readlink(path), inside)
        return
    if os.path.isdir(path):
        os.makedirs(inside, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(inside), exist_ok=True)
        with open(inside, "a"):
            pass
    if read_only:
        bind_read_only(path, inside)
    else:
        _mount(path, inside, None, MS_BIND | MS_REC)


def build_root(root: str, visible: list[str], sandbox: dict[str, str]) -> dict:
    """Deny by default: a fresh, empty tmpfs becomes the root, holding only the system paths,
    ``visible`` (the Python prefixes, the probe code) at their own paths, ``sandbox`` (this
    submission's copy and inputs: name -> host path) under /sandbox, a few device nodes and a new
    /proc, all read-only but /proc, /tmp and /dev/shm; then pivot into it and drop the old root.
    Returns what was placed and what could not be."""
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=0755")
    placed, skipped = [], []
    gpu = sorted(f"/dev/{d}" for d in os.listdir("/dev") if d.startswith("nvidia"))
    extra = ["/sys"] if gpu else []  # the CUDA driver reads /sys; nothing is mounted there otherwise
    # A visible path under /tmp (a virtual environment or a Dask worker's assignment file there)
    # would vanish under each unit's fresh /tmp: it is kept at /sandbox/tmp/<n> and bound back
    # into every fresh /tmp (fresh_tmp).
    under_tmp = {p: f"/sandbox/tmp/{i}" for i, p in enumerate(v for v in visible if _under(v, "/tmp"))}
    wanted = [(p, under_tmp.get(p)) for p in [*SYSTEM_PATHS, *visible, *extra, *(f"/dev/{d}" for d in DEVICES), *gpu]]
    wanted += [(host, f"/sandbox/{name}") for name, host in sandbox.items()]
    for path, at in wanted:
        if not os.path.lexists(path):
            continue
        try:
            _place(root, path, read_only=not path.startswith("/dev/"), at=at)
            placed.append(at or path)
        except OSError as e:
            skipped.append(f"{at or path} ({e.strerror or e})")
    os.makedirs(root + "/etc", exist_ok=True)
    for name, text in ETC_FILES.items():
        with open(f"{root}/etc/{name}", "w") as f:
            f.write(text)
    for link, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, f"{root}/dev/{link}")
    for d in ("/proc", "/tmp", "/dev/shm"):
        os.makedirs(root + d, exist_ok=True)
    # A new /proc before the pivot: in a user namespace the kernel allows it only while a
    # fully visible /proc (unshare's --mount-proc) is still mounted.
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _pivot(root)
    _mount("none", "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    kept = {at: path for path, at in under_tmp.items() if at in placed}
    fresh_tmp(16, kept)  # the supervisor's own until the first unit gets a fresh one
    return {"placed": placed, "skipped": skipped, "kept": kept}


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def fresh_tmp(size_mb: int, kept: dict[str, str]) -> None:
    """New, size-capped tmpfs at /tmp and /dev/shm (the previous ones detached), with the visible
    paths that live under /tmp bound back in, read-only (``kept``: /sandbox/tmp/<n> -> path)."""
    libc = _libc()
    for target in ("/tmp", "/dev/shm"):
        libc.umount2(target.encode(), MNT_DETACH)  # the previous unit's, if any
        _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,mode=1777")
    for stash, path in kept.items():
        _place("", stash, at=path)


def _pivot(root: str) -> None:
    libc = _libc()
    os.chdir(root)
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None or libc.syscall(number, b".", b".") != 0:
        raise OSError(ctypes.get_errno(), "pivot_root failed")
    if libc.umount2(b".", MNT_DETACH) != 0:  # the old root, stacked under the new one, goes away
        raise OSError(ctypes.get_errno(), "could not detach the old root")
    os.chdir("/")


def fresh_scratch(size_mb: int, owner: int | None, submission: str, kept: dict[str, str]) -> str:
    """A new, size-capped tmpfs at /tmp and /dev/shm for one unit, holding the home folder and a
    writable view of the submission (an overlay on its read-only copy); returns that folder."""
    fresh_tmp(size_mb, kept)
    work, hidden = "/tmp/work", "/tmp/.overlay"
    os.makedirs("/tmp/home")
    os.makedirs(work)
    os.makedirs(hidden + "/upper")
    os.makedirs(hidden + "/work")
    os.chmod(hidden, 0o700)  # the unit may not touch the overlay's own folders
    if owner is not None:
        for path in ("/tmp/home", work, hidden + "/upper"):
            os.chown(path, owner, owner)
    try:
        _mount(
            "overlay",
            work,
            "overlay",
            MS_NOSUID | MS_NODEV,
            f"lowerdir={submission},upperdir={hidden}/upper,workdir={hidden}/work",
        )
    except OSError:  # no overlayfs here (old kernel in a user namespace): a plain copy
        shutil.copytree(submission, work, dirs_exist_ok=True)
        if owner is not None:
            for folder, dirs, files in os.walk(work):
                for name in [*dirs, *files]:
                    os.chown(os.path.join(folder, name), owner, owner)
    return work


def drop_privileges() -> bool:
    """Give up every capability (and the right to regain one through exec), so root in the
    sandbox cannot undo the read-only mounts; True when all steps succeeded."""
    libc = _libc()
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    ok = libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable: all empty
    return ok and libc.capset(header, data) == 0


def _become_reaper() -> bool:
    return _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def become_unprivileged(mode: str | None) -> None:
    """Leave root for good. ``setuid``: the harness runs as root, so become ``nobody``.
    ``userns``: the harness is a normal user, root only inside the sandbox's user namespace; a
    nested user namespace maps ``nobody`` (65534) onto it, so the unit's uid is not 0 anywhere."""
    if mode == "setuid":
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    elif mode == "userns":
        uid, gid = os.getuid(), os.getgid()
        if _libc().unshare(CLONE_NEWUSER) != 0:
            raise OSError(ctypes.get_errno(), "could not enter a user namespace")
        for name, text in (("setgroups", "deny"), ("uid_map", f"{NOBODY} {uid} 1"), ("gid_map", f"{NOBODY} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    if mode and os.getuid() == 0:
        raise OSError("still root after dropping privileges")


# --------------------------------------------------------------------------- one unit


class Unit:
    """Where one unit works and what it may write: set up by the supervisor before the fork.

    The unit's observations reach the supervisor through a pipe; the supervisor alone writes
    them to ``out/<unit>.pt`` (the unit holds no descriptor of that file), and keeps them only
    when the unit ended at its last phase."""

    def __init__(self, req: dict, config: dict, out_dir: int):
        self.req, self.config = req, config
        name = str(req["unit"])
        inputs = str(req.get("inputs") or "shared")
        for part in (name, inputs):
            if "/" in part or part.startswith("."):
                raise ValueError(f"bad unit name {part!r}")
        flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        self.out_fd = os.open(f"{name}.pt", flags, 0o644, dir_fd=out_dir)
        self.progress_fd = os.open(f"{name}.progress", flags, 0o644, dir_fd=out_dir)
        scratch = config["scratch"]
        if config.get("mount_ns"):
            self.cwd = fresh_scratch(int(config["tmp_mb"]), config.get("owner"), "/sandbox/work", config["kept"])
            self.inputs = Path(f"/sandbox/in/{inputs}.pt")
        else:
            self.cwd, self.inputs = f"{scratch}/work", Path(scratch) / "in" / f"{inputs}.pt"
        if req.get("trusted"):  # an evaluation unit: nothing of the submission's in its working folder
            self.cwd = "/tmp/home" if config.get("mount_ns") else f"{scratch}/home"

    def close(self) -> None:
        os.close(self.out_fd)
        os.close(self.progress_fd)

    def progress(self) -> str:
        return os.pread(self.progress_fd, 32, 0).decode(errors="replace").strip()


class ResultWriter(threading.Thread):
    """Drains a unit's result pipe into its observation file, up to ``OUTPUT_FILE_CAP``."""

    def __init__(self, fd: int, out_fd: int):
        super().__init__(daemon=True)
        self.fd, self.out_fd, self.total = fd, out_fd, 0

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except OSError:
                break
            if not chunk:
                break
            self.total += len(chunk)
            if self.total <= OUTPUT_FILE_CAP:
                os.write(self.out_fd, chunk)
        os.close(self.fd)

    @property
    def over_cap(self) -> bool:
        return self.total > OUTPUT_FILE_CAP

    def discard(self) -> None:
        os.ftruncate(self.out_fd, 0)


def _child(unit: Unit, out_w: int, err_w: int, status_w: int, result_w: int, closing: tuple[int, ...]) -> None:
    """In the forked child: confine, redirect, run the probe, write its output. Never returns."""
    code = 0
    try:
        os.setpgid(0, 0)
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # without a PID namespace, die with the supervisor
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in (*closing, unit.out_fd):  # the unit writes its progress file and its result pipe, nothing else
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_FILE_CAP, OUTPUT_FILE_CAP))
        become_unprivileged(unit.config.get("drop"))
        drop_privileges()
        os.chdir(unit.cwd)
        from harness.sandbox import probes

        status = os.fdopen(status_w, "w", buffering=1)
        req = {**unit.req, "module": os.path.join(unit.cwd, unit.req["module"])}
        files = probes.UnitFiles(unit.inputs, result_w, unit.progress_fd)
        probes.run_unit(req, files, status)
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


def _harness_gone() -> bool:
    """The harness writes nothing while a unit runs, so a readable stdin means it closed: it died."""
    return bool(select.select([sys.stdin], [], [], 0)[0])


def run_request(req: dict, config: dict, out_dir: int, closing: tuple[int, ...] = ()) -> dict:
    """Run one unit in a forked child (``closing``: the supervisor's descriptors the child must not keep)."""
    cap = int(req.get("output_cap_kb", 64)) * 1024
    unit = Unit(req, config, out_dir)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    st_r, st_w = os.pipe()
    res_r, res_w = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(unit, out_w, err_w, st_w, res_w, (out_r, err_r, st_r, res_r, *closing))
    for fd in (out_w, err_w, st_w, res_w):
        os.close(fd)
    readers = [CappedReader(out_r, cap), CappedReader(err_r, cap), CappedReader(st_r, 16 * 1024)]
    result = ResultWriter(res_r, unit.out_fd)
    for r in (*readers, result):
        r.start()
    timeout, memory_mb = float(req["timeout_s"]), float(req["memory_mb"])
    stall_s = float(req.get("stall_s") or 0)
    status, exit_code, term_signal, peak = "ok", None, None, 0.0
    me = os.getpid()
    next_mem, last_progress, last_change = 0.0, "", started
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
            if _harness_gone():
                kill_descendants(me)
                os._exit(0)
            progress = unit.progress()
            if progress != last_progress:
                last_progress, last_change = progress, now
            if stall_s and progress != "done" and now - last_change > stall_s:
                status = "stalled"
                break
        time.sleep(POLL_S)
    leftovers = kill_descendants(me)  # the unit itself (on timeout) and anything it left behind
    for r in (*readers, result):
        r.join(timeout=2)
    seconds = time.monotonic() - started
    phases = readers[2].text().splitlines()
    if status == "ok" and (exit_code != 0 or term_signal is not None):
        status = "crashed"
    # Observations count only from a unit that reached its last phase, whatever its exit status.
    finished = status == "ok" and bool(phases) and phases[-1] == "done" and not result.over_cap
    if not finished:
        result.discard()
    unit.close()
    return {
        "unit": req["unit"],
        "status": status,
        "exit_code": exit_code,
        "signal": term_signal,
        "seconds": round(seconds, 3),
        "peak_memory_mb": round(peak, 1),
        "phases": phases[-50:],  # the host reads them against its own vocabulary (host.read_phase)
        "result_bytes": result.total,
        "stdout": readers[0].text(),
        "stderr": readers[1].text(),
        "stdout_bytes": readers[0].total,
        "stderr_bytes": readers[1].total,
        "leftover_processes": max(0, leftovers - (1 if status in ("timeout", "memory", "stalled") else 0)),
    }


# --------------------------------------------------------------------------- start-up


def _on_term(signum, frame) -> None:
    """SIGTERM (from outside: units cannot signal the supervisor) ends every unit and the supervisor."""
    kill_descendants(os.getpid())
    os._exit(128 + signum)


def check_unprivileged(config: dict) -> str:
    """In a throwaway child, leave root as units do and open what a unit needs (the
    interpreter, the standard library, torch's package, the probe code): "" when all of it
    works, else why not. Reading finds no spec for torch without importing it (no torch import)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        why = ""
        try:
            become_unprivileged(config.get("drop"))
            import importlib.util

            spec = importlib.util.find_spec("torch")
            probes = Path(__file__).with_name("probes.py")
            for path in (sys.executable, os.__file__, spec.origin if spec else None, probes):
                if path is None or not os.access(path, os.R_OK):
                    why = f"cannot read {path or 'torch'} as uid {os.getuid()}"
                    break
        except BaseException as e:  # noqa: BLE001
            why = f"{type(e).__name__}: {e}"
        os.write(w, why.encode()[:1000])
        os._exit(0)
    os.close(w)
    why = os.read(r, 2000).decode(errors="replace")
    os.close(r)
    os.waitpid(pid, 0)
    return why


def main() -> None:
    config = json.loads(sys.argv[1])
    scratch = Path(config["scratch"])
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)  # a unit signalling its parent must not stop the supervisor
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    out_dir = os.open(scratch / "out", os.O_RDONLY | os.O_DIRECTORY)  # kept across the pivot; units never see it
    mine = {"work": str(scratch / "work"), "in": str(scratch / "in")}
    view = build_root(str(scratch / "root"), config["visible"], mine) if config.get("mount_ns") else {}
    config["kept"] = view.get("kept", {})
    _libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # units may not reach into the supervisor's /proc entries
    reaper = os.getpid() == 1 or _become_reaper()
    drop_problem = check_unprivileged(config) if config.get("drop") else "no unprivileged user is configured"
    ready = {"ready": True, "view": view, "reaper": reaper, "pid1": os.getpid() == 1, "drop_problem": drop_problem}
    reply = sys.stdout
    if config.get("probe"):
        reply.write(json.dumps(ready) + "\n")
        return
    import torch  # noqa: F401  (imported once here, so each forked unit starts warm)
    import torch.nn  # noqa: F401

    reply.write(json.dumps(ready) + "\n")
    reply.flush()
    warm = notebook_warm = False
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("exit"):
            break
        if req.get("kind") == "notebook" and not notebook_warm:
            from harness.sandbox.notebook_run import preload

            preload()  # matplotlib and torchvision, once: every forked notebook unit inherits them
            notebook_warm = True
        if req.get("probe") in ("train", "evaluate") and not warm:
            from harness.sandbox.probes import warm_up

            warm_up(req)  # the harness's own code, once: every forked training unit inherits compiled kernels
            warm = True
        reply.write(json.dumps(run_request(req, config, out_dir, (out_dir,))) + "\n")
        reply.flush()
    kill_descendants(os.getpid())


if __name__ == "__main__":
    main()
