"""Pieces of the execution boundary on their own (the hostile suite tests it end to end)."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from pathlib import Path

import torch

from harness.sandbox.host import Limits, Sandbox, _load_value, protections
from harness.sandbox.requests import TrainRequest
from harness.sandbox.supervisor import CappedReader
from harness.submission.detect import load


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


def a_folder(path, files: dict[str, str]):
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    return path


def test_the_private_copy_holds_the_submission_s_files_only(tmp_path, assignment):
    folder = a_folder(
        tmp_path / "sub",
        {"submission.py": "x = 1\n", "notes/data.txt": "n", ".git/config": "secret", "__pycache__/s.pyc": "c"},
    )
    (folder / "link.py").symlink_to("/etc/hostname")
    sub = load(folder, assignment)
    assert sub.files == (Path("notes/data.txt"), Path("submission.py"))
    with Sandbox(sub, assignment, {"x": torch.zeros(1)}) as box:  # no unit runs: the supervisor never starts
        copied = sorted(p.relative_to(box.scratch / "work") for p in (box.scratch / "work").rglob("*") if p.is_file())
    assert copied == list(sub.files)


def test_a_file_swapped_for_a_link_after_loading_is_not_copied(tmp_path, assignment):
    folder = a_folder(tmp_path / "sub", {"submission.py": "x = 1\n", "notes.md": "mine"})
    (tmp_path / "secret.md").write_text("not the student's")
    sub = load(folder, assignment)
    (folder / "notes.md").unlink()
    (folder / "notes.md").symlink_to(tmp_path / "secret.md")
    with Sandbox(sub, assignment, {"x": torch.zeros(1)}) as box:
        assert sorted(p.name for p in (box.scratch / "work").iterdir()) == ["submission.py"]


def test_a_training_request_survives_the_trip_into_the_unit(assignment):
    req = TrainRequest("vae", 2, 1e-3, 64, 7, "cpu", 5, beta=0.5, contract=True, substitute=("decoder",))
    assert TrainRequest.from_args(json.loads(json.dumps(req.to_args()))) == req
    ae = TrainRequest("ae", 2, 1e-3, 64, 7, "cpu", 5)
    assert TrainRequest.from_args(json.loads(json.dumps(ae.to_args()))) == ae


def test_protections_say_what_is_in_force():
    prot = protections()
    assert any("time limit" in line for line in prot.lines)
    assert any(("no network" in line) or ("NOT in force: network" in line) for line in prot.lines)
    assert prot.full == (not prot.missing) and all(line.startswith("NOT in force") for line in prot.missing)


def test_student_code_sees_no_harness_environment_and_no_network(tmp_path, monkeypatch, assignment):
    import socket

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
    with Sandbox(load(tmp_path / "sub", assignment), assignment, {"images": torch.zeros(1)}) as box:
        outcome = box.run("import", "import", Limits(30, 3000))
    server.close()
    assert outcome.ok and "saw_secret" not in outcome.value["defined"]
    if protections().namespaces:
        assert "reached_network" not in outcome.value["defined"]


def test_messages_about_the_code_name_it_by_the_submission_s_label(tmp_path, assignment):
    folder = a_folder(tmp_path / "sub", {"submission.py": "raise ValueError('at import')\n"})
    sub = dataclasses.replace(load(folder, assignment), label="notebook.ipynb")
    with Sandbox(sub, assignment, {"images": torch.zeros(1)}) as box:
        outcome = box.run("import", "import", Limits(30, 3000))
    assert (outcome.status, outcome.error) == ("error", "importing notebook.ipynb raised ValueError: at import")
