"""Deny by default, end to end: hostile student code reaches for secrets, the instructor's
checkout, other submissions, the cache and results, and finds none of them; it never runs as
root; it cannot outlive the harness. The checkout, the cache and other results are hashed
before and after this file's tests and must be byte-identical (docs/sandbox.md)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from harness.sandbox.host import SCRATCH_PREFIX, Limits, Sandbox, protections
from harness.sandbox.supervisor import descendants
from harness.submission.detect import load
from tests.helpers import copy_example, harness_command

ROOT = Path(__file__).resolve().parent.parent
SKIP_IN_HASH = {".venv", ".tox", "__pycache__", ".pytest_cache", ".ruff_cache", "harness.egg-info"}
GIT_BOOKKEEPING = {"index", "FETCH_HEAD", "ORIG_HEAD"}  # git rewrites these on a status; hooks, config and refs count
SECRET = "s3cret-of-another-student"

pytestmark = pytest.mark.skipif(not protections().namespaces, reason="the deny-by-default root needs unshare here")


def tree_hash(folder: Path) -> str:
    """Every file's path and bytes under ``folder`` (links as their target), caches left out."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_IN_HASH)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name in GIT_BOOKKEEPING and path.parent.name == ".git":
                continue
            h.update(str(path.relative_to(folder)).encode() + b"\0")
            h.update(os.readlink(path).encode() if path.is_symlink() else path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def untouched(tmp_path_factory):
    """Folders hostile code must not change: the checkout, the cache the harness is given (its
    own here: the session's is shared with the other test worker, which writes to it), another
    student's result and submission. Yields them; after the module's tests, each hashes as before."""
    base = tmp_path_factory.mktemp("bystanders")
    cache = base / "cache"
    (cache / "reference" / "another-entry").mkdir(parents=True)
    (cache / "reference" / "another-entry" / "run.json").write_text(json.dumps({"note": SECRET}))
    other = copy_example(base / "submissions" / "other")
    (other / "secret.txt").write_text(SECRET)
    with open(other / "answers.md", "a") as f:
        f.write(f"\n{SECRET}\n")
    reports = base / "reports"
    (reports / "other").mkdir(parents=True)
    (reports / "other" / "check.json").write_text(json.dumps({"total": 45, "note": SECRET}))
    watched = {"checkout": ROOT, "cache": cache, "other submission": other, "other result": reports / "other"}
    before = {name: tree_hash(path) for name, path in watched.items()}
    yield {"other": other, "reports": reports, **watched}
    after = {name: tree_hash(path) for name, path in watched.items()}
    assert after == before, "hostile code changed: " + ", ".join(n for n in before if after[n] != before[n])


def attempts_code(targets: dict[str, str]) -> str:
    """Student code that tries every read and write in ``targets`` at import and raises with
    whatever it got, so any success would surface in the result's evidence."""
    return f"""
import os as _os, json as _json
_got = []
def _read(path):
    try:
        if _os.path.isdir(path):
            _got.append(f"listed {{path}}: {{sorted(_os.listdir(path))[:20]}}")
        else:
            with open(path, "rb") as f:
                _got.append(f"read {{path}}: {{f.read(200)!r}}")
    except OSError:
        pass
def _write(path):
    try:
        _os.makedirs(_os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("planted")  # inside the sandbox only /tmp takes it: the test looks for it outside
    except OSError:
        pass
_targets = _json.loads({json.dumps(json.dumps(targets))})
for _p in _targets["read"]:
    _read(_p)
for _p in _targets["write"]:
    _write(_p)
if _os.getuid() == 0 or _os.geteuid() == 0:
    _got.append("running as root")
_filled = 0
try:
    with open("/tmp/fill", "wb") as f:
        for _ in range(160):  # 10 GB in 64 MB blocks; the unit's /tmp holds far less
            f.write(bytes(64 << 20))
            _filled += 64
except OSError:
    pass
if _filled >= 2048:
    _got.append(f"filled /tmp with {{_filled}} MB")
_os.remove("/tmp/fill") if _os.path.exists("/tmp/fill") else None
if _got:
    raise RuntimeError("escaped: " + " | ".join(_got))
"""


def hostile_targets(untouched: dict, out: Path) -> dict[str, list[str]]:
    cache, other, reports = untouched["cache"], untouched["other"], untouched["reports"]
    home = Path.home()  # the instructor's: /root here, where the only thing visible is the way to Python
    read = [
        "/etc/shadow",
        "/etc/gshadow",
        "/home",
        str(home / ".ssh"),
        str(home / ".bash_history"),
        str(home / ".cache"),
        str(ROOT / "README.md"),
        str(ROOT / ".git" / "config"),
        str(ROOT / "tests" / "conftest.py"),
        str(other / "secret.txt"),
        str(other / "answers.md"),
        str(reports / "other" / "check.json"),
        str(cache),
        str(cache / "reference" / "another-entry" / "run.json"),
    ]
    write = [
        str(ROOT / ".git" / "hooks" / "post-checkout"),
        str(ROOT / "templates" / "planted.html"),
        str(ROOT / "reports" / "planted.json"),
        str(ROOT / "harness" / "planted.py"),
        str(cache / "planted"),
        str(out / "planted.json"),
        str(out.parent / "reports" / "planted.json"),
        str(reports / "other" / "check.json"),
        f"/tmp/{SECRET}-planted",
        os.path.expanduser("~") + "/planted",
    ]
    return {"read": read, "write": write}


def test_hostile_reads_and_writes_all_fail_and_nothing_leaks(untouched, tmp_path):
    """Through the real `check` command: every attempt fails inside the sandbox, the code items
    keep their points (the attempts raise only if one succeeds), and no byte of a secret reaches
    the result."""
    out = tmp_path / "reports"
    folder = copy_example(tmp_path / "hostile", append=attempts_code(hostile_targets(untouched, out / "hostile")))
    shadow = Path("/etc/shadow").read_text().splitlines()[0] if Path("/etc/shadow").exists() else "no-shadow-here"
    env = {**os.environ, "HARNESS_CACHE": str(untouched["cache"])}
    done = subprocess.run(
        [sys.executable, "-m", "harness", "check", str(folder), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    result = json.loads((out / "hostile" / "check.json").read_text())
    evidence = {i["id"]: i["evidence"] for i in result["items"] if i["points"] < i["max_points"]}
    assert evidence == {}, evidence
    everything = (
        done.stdout + done.stderr + "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    )
    for secret in (SECRET, shadow):
        assert secret not in everything
    for path in hostile_targets(untouched, out / "hostile")["write"]:
        assert not Path(path).exists() or Path(path).is_relative_to(untouched["other result"]), path  # that one: hashed


def run_units(assignment, folder: Path, code: str, units: int, assignment_path: str | None = None, **sandbox):
    """``code`` as a submission.py, imported by ``units`` units in one sandbox: their outcomes and
    the files of the sandbox's copy of the submission afterwards (units must not change it)."""
    (folder / "sub").mkdir()
    (folder / "sub" / "submission.py").write_text(code)
    a = dataclasses.replace(assignment, source=assignment_path) if assignment_path else assignment
    with Sandbox(load(folder / "sub", a), a, {"x": torch.zeros(1)}, **sandbox) as box:
        outcomes = [box.run(f"u{i}", "import", Limits(60, 3000)) for i in range(units)]
        copy = sorted(p.name for p in (box.scratch / "work").iterdir())
    return outcomes, copy


def test_student_code_never_runs_as_root_and_sees_only_its_view(assignment, tmp_path):
    code = (
        "import os, json\nopen('written-in-cwd.txt', 'w').write('x')\n"
        "print('VIEW' + json.dumps({'uid': os.getuid(), 'euid': os.geteuid(), 'root': sorted(os.listdir('/')),"
        " 'home': os.environ['HOME'], 'cwd': os.getcwd(), 'cwd_files': sorted(os.listdir('.'))}))\n"
    )
    outcomes, copy = run_units(assignment, tmp_path, code, 2)
    assert copy == ["submission.py"]  # the unit's writes stay in its own /tmp
    for o in outcomes:
        assert o.ok, (o.error, o.stderr)
        view = json.loads(o.stdout.split("VIEW", 1)[1])
        assert view["uid"] != 0 and view["euid"] != 0
        assert set(view["root"]) <= {
            "bin",
            "dev",
            "etc",
            "lib",
            "lib32",
            "lib64",
            "libx32",
            "proc",
            "root",
            "sandbox",
            "sbin",
            "sys",
            "tmp",
            "usr",
            *Path(ROOT).parts[1:2],
        }
        assert "home" not in view["root"] and view["cwd"] == "/tmp/work" and view["home"].startswith("/tmp")
        assert view["cwd_files"] == ["submission.py", "written-in-cwd.txt"]  # fresh each unit: one file, written now


def test_a_unit_s_tmp_is_fresh_and_capped(assignment, tmp_path):
    code = (
        "import os\nleft = os.path.exists('/tmp/left-by-earlier-unit')\n"
        "open('/tmp/left-by-earlier-unit', 'w').write('x')\n"
        "n = 0\ntry:\n    with open('/tmp/big', 'wb') as f:\n"
        "        while True:\n            f.write(bytes(16 << 20)); n += 16\n"
        "except OSError as e:\n    print('FULL', n, left, e.errno)\n"
    )
    outcomes, _ = run_units(assignment, tmp_path, code, 2, scratch_mb=64)
    for o in outcomes:
        assert o.ok, o.error
        _, filled, left, errno = o.stdout.split()
        assert int(filled) <= 64 and left == "False" and errno == "28"  # ENOSPC at the cap, nothing carried over


def _sandbox_pids(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker in Path(f"/proc/{entry}/cmdline").read_text(errors="replace"):
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def _wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_sigkill_of_grade_mid_unit_leaves_no_sandbox_process(tmp_path, grader, session_cache):
    """A batch system's time limit or the OOM killer: `grade` gets SIGKILL while a unit spins."""
    import tempfile

    folder = copy_example(tmp_path / "spinner", append="while True:\n    pass\n")
    env = {**os.environ, "HARNESS_CACHE": str(session_cache)}
    grade = subprocess.Popen(
        harness_command("grade", folder, "--profile", "smoke", "--out", tmp_path / "out", "-q"),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = f"{SCRATCH_PREFIX}{grade.pid}-"
    started = lambda: any(Path(tempfile.gettempdir()).glob(f"{marker}*/out/*.pt"))  # noqa: E731  (the supervisor opened a unit's file)
    try:
        assert _wait_until(started, 300), "no unit started"
        time.sleep(2)  # the unit spins now
        assert _sandbox_pids(marker)
    finally:
        grade.kill()
        grade.wait()
    assert _wait_until(lambda: not _sandbox_pids(marker), 10), _sandbox_pids(marker)


def test_sigterm_to_the_supervisor_ends_its_unit_and_itself(assignment, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "submission.py").write_text("while True:\n    pass\n")
    with Sandbox(load(tmp_path / "sub", assignment), assignment, {"x": torch.zeros(1)}) as box:
        outcome: list = []
        worker = threading.Thread(target=lambda: outcome.append(box.run("spin", "import", Limits(300, 3000))))
        worker.start()
        assert _wait_until(lambda: box.proc is not None and len(descendants(box.proc.pid)) >= 2, 120)
        supervisor = descendants(box.proc.pid)[0] if protections().namespaces else box.proc.pid
        family = [supervisor, *descendants(supervisor)]
        os.kill(supervisor, signal.SIGTERM)
        worker.join(60)
        assert not worker.is_alive() and outcome[0].status == "crashed"
        assert _wait_until(lambda: not any(Path(f"/proc/{p}").exists() for p in family), 10)


AS_NORMAL_USER = """
import json, sys
sys.path.insert(0, {root!r})
from pathlib import Path
import torch
from harness.config.assignment import load_assignment
from harness.sandbox.host import Limits, Sandbox, protections
from harness.submission.detect import load
p = protections()
a = load_assignment({assignment!r})
with Sandbox(load(Path({sub!r}), a), a, {{"x": torch.zeros(1)}}) as box:
    o = box.run("import", "import", Limits(60, 3000))
r = {{"drop": p.drop, "missing": p.missing, "status": o.status, "error": o.error, "stdout": o.stdout}}
print("RESULT" + json.dumps(r))
"""


def reachable_for_others(paths: list[Path], base: Path) -> str:
    """Shell steps, for a private mount namespace, that let another user reach ``paths`` where a
    folder on the way is closed to others (a 700 /root holding Python, tox's 700 .tox): a tmpfs
    over that folder holding only the way to each path, bound back from a copy of the mount."""
    groups: dict[Path, list[Path]] = {}
    for path in (p.resolve() for p in paths):
        closed = next((a for a in [*reversed(path.parents), path] if not os.stat(a).st_mode & 0o001), None)
        if closed is not None:
            groups.setdefault(closed, []).append(path)
    steps = []
    for i, (closed, inside) in enumerate(groups.items()):
        stash = base / f"stash-{i}"
        stash.mkdir()
        steps.append(f"mount --bind {closed} {stash} && mount -t tmpfs -o mode=755 tmpfs {closed}")
        steps += [f"mkdir -p {p} && mount --bind {stash / p.relative_to(closed)} {p}" for p in inside]
    return "".join(step + " && " for step in steps)


def test_as_a_normal_user_student_code_runs_as_nobody_in_a_user_namespace(assignment):
    """The harness run by uid 65534 (root plays a normal user: Python's folder made reachable in
    a private mount namespace, then setpriv): unshare -r gives the sandbox a user namespace and
    the unit a nested one, where it is uid 65534 and sees the same deny-by-default root."""
    import shutil
    import tempfile

    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to play a normal user (as a normal user, the other tests are this case)")
    base = Path(tempfile.mkdtemp(prefix="harness-normal-user-"))
    try:
        base.chmod(0o755)
        for d in ("sub", "tmp", "home"):
            (base / d).mkdir()
        (base / "tmp").chmod(0o1777)
        os.chown(base / "home", 65534, 65534)
        (base / "sub" / "submission.py").write_text(
            "import os\nprint('UID', os.getuid(), os.path.exists('/etc/shadow'))\n"
        )
        (base / "sub" / "submission.py").chmod(0o644)
        script = AS_NORMAL_USER.format(root=str(ROOT), sub=str(base / "sub"), assignment=assignment.source)
        (base / "run.py").write_text(script)
        (base / "run.py").chmod(0o644)
        reach = reachable_for_others([Path(sys.base_prefix), Path(sys.prefix), ROOT], base)
        drop = "setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all"
        env = f"env -i PATH=/usr/bin:/bin HOME={base}/home TMPDIR={base}/tmp"
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", f"{reach}exec {drop} {env} {sys.executable} {base}/run.py"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if "RESULT" not in done.stdout and "Permission denied" in done.stderr:
            pytest.skip(f"user nobody cannot read this checkout or virtual environment: {done.stderr[-300:]}")
        assert "RESULT" in done.stdout, done.stderr[-3000:]
        seen = json.loads(done.stdout.split("RESULT", 1)[1])
        assert seen["drop"] == "userns" and seen["missing"] == [], seen
        assert seen["status"] == "ok", seen
        assert seen["stdout"].split() == ["UID", "65534", "False"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_an_assignment_file_under_tmp_stays_visible_under_each_fresh_tmp(assignment, tmp_path):
    """A Dask worker keeps its assignment file in the system temp folder; the units' fresh /tmp
    must not hide it (nor a virtual environment that lives there)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="harness-assignment-", dir="/tmp"))
    try:
        folder.chmod(0o755)
        copy = folder / "assignment.toml"
        copy.write_bytes(Path(assignment.source).read_bytes())
        copy.chmod(0o644)
        code = f"print('SEEN', open({str(copy)!r}).readline().strip())\n"
        outcomes, _ = run_units(assignment, tmp_path, code, 2, assignment_path=str(copy))
        for o in outcomes:
            assert o.ok and "SEEN" in o.stdout, (o.error, o.stderr)
            assert o.stdout.split("SEEN", 1)[1].strip() == copy.read_text().splitlines()[0].strip()
    finally:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
