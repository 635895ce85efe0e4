import subprocess
import sys


def _harness(*args, env=None):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=120, env=env)


def test_help_lists_every_verb_with_one_line():
    out = _harness("--help")
    assert out.returncode == 0 and "reference" in out.stdout


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
