import subprocess
import sys

from harness.cli import main
from tests.helpers import EXAMPLE


def _harness(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_help_lists_every_verb_with_one_line():
    out = _harness("--help")
    assert out.returncode == 0 and all(v in out.stdout for v in ("reference", "check", "init"))


def test_a_bad_assignment_is_a_clear_error_not_a_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[meta]\nid = 1\n")
    out = _harness("reference", "--assignment", str(bad))
    assert out.returncode == 2 and "bad.toml: meta.id" in out.stderr and "Traceback" not in out.stderr


def test_missing_data_is_a_clear_error_not_a_traceback(tmp_path):
    out = _harness("reference", "--profile", "smoke", "--data", str(tmp_path))
    assert out.returncode == 2 and "MNIST not found" in out.stderr and "Traceback" not in out.stderr


def test_unknown_device_is_a_clear_error(tmp_path):
    out = _harness("reference", "--device", "tpu", "--data", str(tmp_path))
    assert out.returncode == 2 and "auto, cpu, cuda" in out.stderr and "Traceback" not in out.stderr


def test_unknown_profile_is_a_clear_error(tmp_path):
    out = _harness("reference", "--profile", "huge", "--data", str(tmp_path))
    assert out.returncode == 2 and "full, quick, smoke" in out.stderr


def test_check_prints_checklist_writes_result_and_exits_zero_on_the_example(tmp_path, capsys):
    from harness.grading.result import load_result

    code = main(["check", str(EXAMPLE), "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "[PASS] AE architecture: 6 / 6" in out and "total of these checks: 27 / 27" in out
    data = load_result(tmp_path / "example" / "check.json")
    assert data["total"] == data["max_total"] == 27 and data["kind"] == "check"
    assert data["submission"]["content_hash"] and data["protections"] and data["versions"]["torch"]
    assert not list((tmp_path / "example").glob(".*tmp"))  # written atomically: no temporary file left


def test_check_exits_nonzero_when_an_item_fails(tmp_path, capsys):
    from tests.helpers import copy_example

    folder = copy_example(tmp_path / "shuffle", [("shuffle=True", "shuffle=False")])
    assert main(["check", str(folder), "--out", str(tmp_path / "out")]) == 1
    assert "not shuffled" in capsys.readouterr().out


def test_check_on_a_missing_folder_is_a_clear_usage_error(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "no such submission (a folder or a .ipynb notebook)" in capsys.readouterr().err


def test_init_writes_a_starter_that_check_runs_on_without_crashing(tmp_path, capsys):
    dest = tmp_path / "newbie"
    assert main(["init", str(dest), "--student", "New Student", "--student-id", "s1"]) == 0
    assert main(["init", str(dest)]) == 2  # refuses to overwrite
    capsys.readouterr()
    assert main(["check", str(dest), "--out", str(tmp_path / "out"), "--timeout", "20"]) == 1
    out = capsys.readouterr().out
    assert "NotImplementedError" in out and "total of these checks: 0 / 27" in out
