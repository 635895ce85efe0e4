"""Shared fixtures. Data comes through the harness's own setting: HARNESS_DATA (CI points it
at the MNIST stand-in), else the user cache, exactly as the CLI resolves it.

tox runs the suite in two pytest-xdist workers (``-n 2 --dist loadfile``: a file's tests stay
in one worker, so its module fixtures are built once). Each worker's torch, and so each
training unit it starts, gets an equal share of the cores, and the workers share one cache
folder, so the classifier and each reference are trained once (the harness's cache lock
makes the other worker wait). Helpers shared by test files (the example submission and its
planted copies, a course folder without training) are in tests/helpers.py.

Tests that need ``../shared`` (the real handouts, the answer calibration set) skip, saying so,
when it is absent; with ``HARNESS_REQUIRE_SHARED=1`` (CI sets it) such a skip is a failure, so a
broken checkout of the shared folder cannot pass as a run of skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from harness.config.assignment import load_assignment
from harness.ml.data import load_mnist
from tests.helpers import EXAMPLE

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, torch.get_num_threads()) // WORKERS))
if WORKERS > 1:  # the CLI processes tests start take the same share
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))


pytest_plugins = ["tests.require_shared"]  # HARNESS_REQUIRE_SHARED=1: a skip for want of ../shared fails


@pytest.fixture(scope="session")
def assignment():
    return load_assignment("variant-a")


@pytest.fixture(scope="session")
def mnist():
    return load_mnist(None, os.environ)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One cache folder for the whole run (all xdist workers), so the classifier is trained once."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker's base folder sits in the run's folder
        shared = tmp_path_factory.getbasetemp().parent / "cache"
        shared.mkdir(exist_ok=True)
        return shared
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def variant_a_text() -> str:
    return (Path(__file__).parents[1] / "harness" / "config" / "assignments" / "variant-a.toml").read_text()


@pytest.fixture(scope="session")
def run_check(assignment, mnist):
    """Check a submission folder as `harness check` does; returns the Result."""
    from harness.grading.check import check_submission
    from harness.grading.session import RunOptions

    def run(folder: Path, timeout_s: float | None = None, memory_mb: int | None = None):
        return check_submission(folder, assignment, mnist, RunOptions(timeout_s=timeout_s, memory_mb=memory_mb))

    return run


@pytest.fixture(scope="session")
def example_points(run_check) -> dict[str, float]:
    return {i.id: i.points for i in run_check(EXAMPLE).items}


@pytest.fixture(scope="session")
def grader(assignment, mnist, session_cache):
    """The smoke-profile grader (reference built once per session, in the session cache), with the
    full-protocol beta band (the AE and the search under `full`, also built once)."""
    from harness.grading.grader import make_grader
    from harness.reference.beta_band import ensure_band
    from harness.reference.build import build_reference

    ensure_band(assignment, mnist, torch.device("cpu"), session_cache, quiet=True)
    profile = assignment.profile("smoke")
    ref = build_reference(assignment, profile, mnist, torch.device("cpu"), session_cache, quiet=True)
    return make_grader(assignment, profile, mnist, ref, session_cache, torch.device("cpu"))


@pytest.fixture(scope="session")
def run_grade(grader):
    """Grade a submission folder in this process (smoke grader); returns the Result."""
    from harness.grading.grade import grade_submission
    from harness.grading.session import RunOptions

    def run(folder: Path, train_timeout_s: float | None = None):
        return grade_submission(folder, grader, RunOptions(train_timeout_s=train_timeout_s, quiet=True))

    return run
