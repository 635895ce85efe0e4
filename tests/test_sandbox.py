"""Pieces of the execution boundary on their own (the hostile suite tests it end to end)."""

from __future__ import annotations

import os
import pickle

import torch

from harness.sandbox.host import _load_value, private_copy, protections
from harness.sandbox.supervisor import CappedReader


def test_capped_reader_keeps_head_and_tail_of_a_flood():
    r, w = os.pipe()
    reader = CappedReader(r, cap=1000)
    reader.start()
    with os.fdopen(w, "wb") as f:
        f.write(b"HEAD" + b"x" * 5_000_000 + b"TAIL")
    reader.join()
    text = reader.text()
    assert reader.total == 5_000_008 and text.startswith("HEAD") and text.endswith("TAIL") and len(text) < 2100
    assert "bytes not kept" in text


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/harness-should-not-exist",))


def test_unit_output_is_loaded_as_plain_data_only(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"ok": True, "x": torch.ones(2)}, good)
    assert _load_value(good)["ok"] is True
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"ok": True, "x": Evil()}))
    assert _load_value(evil) is None
    assert not os.path.exists("/tmp/harness-should-not-exist")


def test_private_copy_skips_symlinks_and_hidden_files(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    (src / "submission.py").write_text("x = 1\n")
    (src / ".git").mkdir()
    (src / ".git" / "config").write_text("secret")
    (src / "link.py").symlink_to("/etc/hostname")
    dest.mkdir()
    private_copy(src, dest)
    assert sorted(p.name for p in dest.rglob("*")) == ["submission.py"]


def test_protections_say_what_is_in_force():
    prot = protections()
    assert any("time limit" in line for line in prot.lines)
    assert any(("no network" in line) or ("NOT in force: network" in line) for line in prot.lines)
    assert prot.full == (not prot.missing) and all(line.startswith("NOT in force") for line in prot.missing)


def test_student_code_sees_no_harness_environment_and_no_network(tmp_path, monkeypatch, assignment):
    import socket

    from harness.sandbox.host import Limits, Sandbox

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    monkeypatch.setenv("HARNESS_TEST_SECRET", "s3cret")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "submission.py").write_text(
        "import os, socket\n"
        "if os.environ.get('HARNESS_TEST_SECRET'):\n    saw_secret = True\n"
        f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n    reached_network = True\n"
        "except OSError:\n    pass\n"
    )
    with Sandbox(tmp_path / "sub", assignment.source, "submission.py", {}, 64, {"images": torch.zeros(1)}) as box:
        outcome = box.run("import", "import", Limits(30, 3000))
    server.close()
    assert outcome.ok and "saw_secret" not in outcome.value["defined"]
    if protections().namespaces:
        assert "reached_network" not in outcome.value["defined"]


def test_training_limits_scale_with_the_reference_between_floor_and_ceiling(assignment):
    from harness.grading.grade import training_limits
    from harness.sandbox.host import Limits

    s, base = assignment.sandbox, Limits(1.0, 3000)
    fast = training_limits(base, assignment, 5.0, None, student_loop=True)
    assert fast.timeout_s == s.train_floor_s and fast.stall_s == s.stall_s  # 10 x 5 s is under the floor
    mid = training_limits(base, assignment, 30.0, None, student_loop=True)
    assert mid.timeout_s == round(s.train_time_multiple * 30.0) and "reference's 30 s" in mid.why
    assert training_limits(base, assignment, 1e6, None, student_loop=True).timeout_s == s.train_timeout_s
    assert training_limits(base, assignment, None, None, student_loop=True).timeout_s == s.train_timeout_s
    explicit = training_limits(base, assignment, 30.0, 45.0, student_loop=True)
    assert explicit.timeout_s == 45.0 and explicit.why == "set by --train-timeout"
    # the harness's own loop reports no steps, so no stall watch on it
    assert training_limits(base, assignment, 30.0, None, student_loop=False).stall_s == 0
