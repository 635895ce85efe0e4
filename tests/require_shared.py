"""A pytest plugin: with ``HARNESS_REQUIRE_SHARED=1`` (CI sets it), a test or test file that
would skip because ``../shared`` is missing (the real handouts, the answer calibration set) fails
instead, so a broken checkout of the shared folder cannot pass as a run of skips. A skip is read
as one for want of ``../shared`` when its reason names it (every such skip in the suite does)."""

from __future__ import annotations

import os

import pytest

REQUIRE_SHARED = "HARNESS_REQUIRE_SHARED"
SHARED_WORDS = ("../shared", "handouts", "answers-calibration")


def fail_if_required(report, what: str) -> None:
    """Turn ``report``'s skip into a failure when ../shared is required and the skip is for want of it."""
    if os.environ.get(REQUIRE_SHARED) != "1" or not report.skipped or not isinstance(report.longrepr, tuple):
        return
    reason = str(report.longrepr[2])
    if any(w in reason for w in SHARED_WORDS):
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE_SHARED}=1 and {what} would skip: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    fail_if_required(outcome.get_result(), "this test")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    fail_if_required(outcome.get_result(), "this test file")
