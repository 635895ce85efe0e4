"""HARNESS_REQUIRE_SHARED=1 turns a skip for want of ../shared into a failure (tests/require_shared.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SKIPPING = """
import pytest

@pytest.mark.skipif(True, reason="../shared/handouts not found: the handouts are needed")
def test_marked():
    pass

def test_inline():
    pytest.skip("../shared/answers-calibration not found")

def test_unrelated():
    pytest.skip("no chromium")
"""


def _run(tmp_path: Path, required: bool) -> subprocess.CompletedProcess:
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_REQUIRE_SHARED"}
    if required:
        env["HARNESS_REQUIRE_SHARED"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "tests.require_shared", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*cmd, "-p", "no:xdist", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True
    )


@pytest.mark.parametrize("required", [False, True])
def test_skips_for_want_of_shared_fail_only_when_required(tmp_path, required):
    done = _run(tmp_path, required)
    tail = done.stdout.strip().splitlines()[-1]
    if required:
        assert done.returncode == 1, done.stdout
        assert "1 failed" in tail and "1 skipped" in tail and "1 error" in tail, tail
        assert "HARNESS_REQUIRE_SHARED=1 and this test would skip" in done.stdout
    else:
        assert done.returncode == 0 and "3 skipped" in tail, done.stdout
