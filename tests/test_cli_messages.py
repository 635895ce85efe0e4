"""What the command line says before it runs anything: isolation warnings and refusals, the
default profile, a folder with nothing to grade; and how progress lines are throttled.

None of these tests trains a model: each command here stops before the reference is built, or
runs only the fast checks."""

from __future__ import annotations

import dataclasses
import io

import torch

from harness.cli import default_profile, main
from harness.course.batch import isolation_refusal, isolation_warnings
from harness.progress import Progress
from harness.sandbox.host import protections
from tests.helpers import EXAMPLE


def _with_lines(*lines: str):
    """This machine's Protections with other lines: ``missing`` and ``full`` follow the lines."""
    return dataclasses.replace(protections(), lines=lines)


def test_isolation_is_refused_only_when_required_and_a_protection_is_not_in_force():
    lacking = _with_lines("separate process per unit", "NOT in force: x (no unshare)", "NOT in force: y")
    full = _with_lines("separate process per unit", "no network (new network namespace)")
    reason = isolation_refusal(lacking, required=True)
    assert reason is not None and "NOT in force: x (no unshare); NOT in force: y" in reason
    assert "No student code was run" in reason and "--no-require-isolation" in reason
    assert isolation_refusal(lacking, required=False) is None  # a warning instead
    assert isolation_refusal(full, required=True) is None
    assert "on Dask worker tcp://w:1" in isolation_refusal(lacking, True, "on Dask worker tcp://w:1")


def test_each_protection_not_in_force_is_one_warning_pointing_at_the_sandbox_docs():
    lacking = _with_lines("separate process per unit", "NOT in force: x", "NOT in force: y")
    warnings = isolation_warnings(lacking)
    assert [w.split(" — ")[0] for w in warnings] == ["NOT in force: x", "NOT in force: y"]
    assert all("fewer protections; see docs/sandbox.md" in w for w in warnings)
    assert isolation_warnings(_with_lines("separate process per unit")) == []


def test_require_isolation_refuses_check_exactly_when_this_machine_lacks_a_protection(tmp_path, capsys):
    """Expected here: the full set is in force, so check passes the gate and goes on to load
    MNIST (absent from ``--data``: exit 2 for that). Where it is not, the refusal comes first and
    names every missing protection."""
    code = main(["check", str(EXAMPLE), "--out", str(tmp_path), "--data", str(tmp_path), "--require-isolation"])
    err = capsys.readouterr().err
    assert code == 2
    missing = protections().missing
    if not missing:
        assert "isolation is required" not in err and "NOT in force" not in err and "MNIST not found" in err
    else:
        assert "isolation is required" in err and all(line in err for line in missing) and "MNIST" not in err


def test_grade_of_an_empty_folder_exits_2_before_building_the_reference(tmp_path, capsys):
    (tmp_path / "course").mkdir()
    code = main(["grade", str(tmp_path / "course"), "--device", "cpu", "--cache", str(tmp_path / "cache")])
    assert code == 2
    assert f"error: no submission in {tmp_path / 'course'}: it is empty" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()  # no classifier, no reference


def test_a_folder_of_notebooks_is_a_course_to_grade_not_a_refusal(tmp_path, assignment):
    from harness.cli import nothing_to_grade
    from harness.submission.detect import is_submission

    course = tmp_path / "course"
    course.mkdir()
    for name in ("b.ipynb", "a.ipynb"):
        (course / name).write_text("{}")
    assert nothing_to_grade(course, assignment, tmp_path / "reports") is None
    assert not is_submission(course, assignment)  # several notebooks: one per student


def test_grade_of_a_folder_of_plain_files_exits_2_saying_what_it_holds(tmp_path, capsys):
    course = tmp_path / "course"
    course.mkdir()
    (course / "notes.txt").write_text("")
    assert main(["grade", str(course), "--device", "cpu", "--cache", str(tmp_path / "cache")]) == 2
    assert "it holds 1 entry (notes.txt) and no notebook or submission folder" in capsys.readouterr().err


def test_the_default_profile_suits_the_device_and_is_said_on_the_first_line(tmp_path, capsys):
    assert default_profile(torch.device("cpu")) == "quick" and default_profile(torch.device("cuda", 0)) == "full"
    (tmp_path / "course").mkdir()
    main(["grade", str(tmp_path / "course"), "--device", "cpu", "--cache", str(tmp_path / "cache")])
    first = capsys.readouterr().err.splitlines()[0]
    assert first == "profile quick (default on cpu; --profile full for the course's full protocol)"
    main(
        ["grade", str(tmp_path / "course"), "--device", "cpu", "--profile", "smoke", "--cache", str(tmp_path / "cache")]
    )
    err = capsys.readouterr().err
    assert "default on" not in err and "profile smoke" in err.splitlines()[0]  # --profile wins


def test_reference_takes_the_same_default_profile(tmp_path, capsys):
    assert main(["reference", "--device", "cpu", "--data", str(tmp_path)]) == 2  # no MNIST there: stops at the data
    assert capsys.readouterr().err.startswith("profile quick (default on cpu;")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    """Time that moves only when the test says."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_in_a_log_prints_at_most_a_line_per_five_seconds():
    log, clock = io.StringIO(), _Clock()
    with Progress(total=1000, desc="runs", unit="run", file=log, clock=clock) as bar:
        for _ in range(1000):  # 1000 updates within a second
            clock.now += 0.001
            bar.update()
    lines = log.getvalue().splitlines()
    assert 1 <= len(lines) <= 2 and "\r" not in log.getvalue()
    assert lines[-1].startswith("runs: 1000/1000 run (100%")


def test_progress_in_a_log_prints_again_after_five_seconds_and_the_final_count_once():
    log, clock = io.StringIO(), _Clock()
    with Progress(total=12, desc="runs", unit="run", file=log, clock=clock) as bar:
        for _ in range(12):  # one update a second
            clock.now += 1.0
            bar.update()
    lines = log.getvalue().splitlines()
    assert [line.split(" run (")[0] for line in lines] == ["runs: 1/12", "runs: 6/12", "runs: 11/12", "runs: 12/12"]
    assert lines[-1] == "runs: 12/12 run (100%, 00:12<00:00)"


def test_progress_on_a_terminal_redraws_one_line_in_place():
    term, clock = _Terminal(), _Clock()
    with Progress(total=10, desc="ae", unit="step", file=term, clock=clock, leave=False) as bar:
        for _ in range(10):
            clock.now += 0.25
            bar.update()
        drawn = term.getvalue()
    assert drawn.count("\r") >= 11 and "\n" not in drawn  # the first draw and one per update
    assert drawn.split("\r")[-1].startswith("ae: 10/10 step (100%, 00:02<00:00)")
    assert term.getvalue().endswith("\r") and "\n" not in term.getvalue()  # cleared, not left behind


def test_nested_progress_shares_one_line_and_a_written_line_goes_above_it():
    term, clock = _Terminal(), _Clock()
    with Progress(total=2, desc="reference runs", unit="run", file=term, clock=clock) as outer:
        with Progress(total=4, desc="ae", unit="step", file=term, clock=clock, leave=False) as inner:
            clock.now += 1.0
            inner.update(2)
            outer_text, inner_text = term.getvalue().split("\r")[-1].split(" | ")
            assert outer_text.startswith("reference runs: 0/2 run") and inner_text.startswith("ae: 2/4 step")
        outer.write("  ae: 1.0 s", file=term)
        outer.update()
    assert "\r  ae: 1.0 s\n" in term.getvalue().replace(" " * 10, "")
    assert term.getvalue().endswith("reference runs: 1/2 run (50%, 00:01<00:01)\n")  # left, with its final count


def test_disabled_progress_prints_nothing_but_still_counts():
    log = io.StringIO()
    with Progress(total=3, file=log, disable=True) as bar:
        bar.update(2)
    assert bar.n == 2 and log.getvalue() == ""


def test_the_readme_s_profile_table_gives_each_bundled_profile_s_training_images():
    """The README's Profiles table says what the first line of a grade says (the config's count)."""
    import re
    from pathlib import Path

    from harness.config.assignment import bundled_assignments, load_assignment

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| ([\d,]+) \|", readme, flags=re.M))
    assert {"quick", "smoke"} <= set(rows), rows
    for name in bundled_assignments():
        for p in load_assignment(name).profiles:
            if p.train_images:
                assert int(rows[p.name].replace(",", "")) == p.train_images, (name, p.name, rows[p.name])
