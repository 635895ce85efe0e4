"""A notebook cell that ends the process during the definition pass (``os._exit``, a segmentation
fault, the memory limit) costs only the items that need that cell: the host records the cell,
skips it and runs the unit again (harness.sandbox.host.run_definition), every later unit skips it
too, and the items that fall short name it in the notebook's words. Completed notebooks are built
from the real handouts (tests/notebooks.py); the host's loop itself is tested with a stand-in box."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.config.assignment import load_assignment
from harness.grading.check import check_submission
from harness.grading.session import RunOptions
from harness.sandbox.host import MAX_FATAL_CELLS, Limits, UnitOutcome, fatal_cell, how_it_ended, run_definition
from harness.submission.contents import CodeSource
from tests import notebooks as nbs
from tests.helpers import notebook_in

needs_handouts = pytest.mark.skipif(
    not nbs.HANDOUTS.is_dir(),
    reason="../shared/handouts not found: the handout notebooks are needed to build completed notebooks",
)
QUIET = RunOptions(quiet=True)
FULL_CHECK = 27.0  # the points `check` grades (code items and the first four answers)
LIMITS = Limits(timeout_s=60, memory_mb=6144)


def _crashing_sampler(year: str, statement: str):
    """The completed ``year`` notebook whose ``vis_samples`` first runs ``statement``, and the
    number of the sampling cell (as the notebook numbers it)."""
    nb = nbs.complete(year)
    nbs.replace_once(nb, "def vis_samples(model):\n", f"def vis_samples(model):\n  {statement}\n")
    number = next(i for i, c in enumerate(nb.cells, 1) if "def vis_samples(model):" in c.source)
    return nb, number


def _check_crashing_sampler(tmp_path, mnist, year: str, statement: str):
    nb, number = _crashing_sampler(year, statement)
    a = load_assignment(nbs.CONFIG[year])
    return check_submission(notebook_in(tmp_path, nb), a, mnist, QUIET), a, number


@needs_handouts
@pytest.mark.parametrize(
    "year, statement, how",
    [
        ("2020", "import os; os._exit(0)", "(os._exit"),
        ("2026", "import ctypes; ctypes.string_at(0)", "(a segmentation fault, SIGSEGV)"),
    ],
    ids=["os-exit-2020", "segfault-2026"],
)
def test_a_sampler_that_ends_the_process_costs_the_sampling_item_only(tmp_path, mnist, year, statement, how):
    result, a, number = _check_crashing_sampler(tmp_path, mnist, year, statement)
    items = {i.id: i for i in result.items}
    assert items["ae_sampling"].points == 0
    for kept in ("ae_architecture", "ae_forward", "vae_model"):
        assert items[kept].points == a.item(kept).points, (kept, items[kept].evidence)
    assert result.total == FULL_CHECK - a.item("ae_sampling").points
    first = items["ae_sampling"].evidence[0]
    assert first.startswith(f"cell {number} (sampling) ended the process {how}"), first
    assert "the harness skipped it and ran the cells after it" in first
    assert not any("ended the process" in e for k in ("ae_architecture", "vae_model") for e in items[k].evidence)
    entry = next(c for c in result.notebook["cells"] if c["number"] == number)
    assert entry["error"].startswith("ended the process") and "skipped from then on" in entry["error"]


# --------------------------------------------------------------------------- the host's loop


class StandInBox:
    """A sandbox stand-in: the import unit ends its process in the first cell of ``crashes`` that
    is not skipped yet, else it runs through."""

    def __init__(self, crashes: list[int], kind: str = "notebook", cells: int = 8):
        code = [CodeSource(f"cell {n}", "x = 1", n, "sampling" if n == 4 else "") for n in range(1, cells + 1)]
        self.submission = SimpleNamespace(kind=kind, code=code, label="hw.ipynb")
        self.crashes, self.skipped, self.runs = crashes, [], 0

    def run(self, unit: str, probe: str, limits: Limits, args: dict | None = None, **_) -> UnitOutcome:
        self.runs += 1
        cell = next((n for n in self.crashes if n not in self.skipped), None)
        if cell is None:
            return UnitOutcome(unit, "ok", seconds=1.0, phase="done", value={"ok": True}, limits=limits)
        return UnitOutcome(unit, "crashed", seconds=2.0, phase=f"cell {cell}", limits=limits, exit_code=0)

    def skip_cells(self, numbers: list[int]) -> None:
        self.skipped += numbers


def test_each_cell_that_ends_the_process_is_recorded_skipped_and_the_unit_run_again():
    box = StandInBox(crashes=[4, 7])
    outcome, fatal = run_definition(box, "import", LIMITS)
    assert outcome.ok and box.runs == 3 and box.skipped == [4, 7]
    assert [(f.number, f.role, f.seconds) for f in fatal] == [(4, "sampling", 2.0), (7, "", 2.0)]
    assert fatal[0].describe().startswith("cell 4 (sampling) ended the process (os._exit")


def test_a_notebook_that_keeps_ending_the_process_gives_up_after_the_last_allowed_cell():
    box = StandInBox(crashes=list(range(1, MAX_FATAL_CELLS + 3)))
    outcome, fatal = run_definition(box, "import", LIMITS)
    assert outcome.status == "crashed" and len(fatal) == MAX_FATAL_CELLS == len(box.skipped)
    assert box.runs == MAX_FATAL_CELLS + 1


def test_a_crash_that_names_no_cell_of_the_notebook_is_not_retried():
    folder = StandInBox(crashes=[2], kind="folder")  # a folder's code has no cells to skip
    assert run_definition(folder, "import", LIMITS)[1] == [] and folder.runs == 1
    stranger = StandInBox(crashes=[99])  # a phase naming no code cell (written by the student's code)
    assert run_definition(stranger, "import", LIMITS)[1] == [] and stranger.runs == 1


@pytest.mark.parametrize(
    "outcome, how",
    [
        (UnitOutcome("import", "crashed", phase="cell 3", term_signal=11), "a segmentation fault, SIGSEGV"),
        (UnitOutcome("import", "crashed", phase="cell 3", term_signal=6), "an abort, SIGABRT"),
        (UnitOutcome("import", "crashed", phase="cell 3", exit_code=3), "os._exit or a C library's exit, exit code 3"),
        (UnitOutcome("import", "memory", phase="cell 3", limits=LIMITS), "over the memory limit of 6144 MB"),
        (UnitOutcome("import", "timeout", phase="cell 3", limits=LIMITS), "killed at the unit's time limit of 60 s"),
    ],
    ids=["segfault", "abort", "exit", "memory", "timeout"],
)
def test_how_a_cell_ended_the_process_is_said_in_a_students_words(outcome, how):
    assert how_it_ended(outcome).startswith(how)
    assert fatal_cell(outcome, {3: "data"}).describe().startswith(f"cell 3 (data) ended the process ({how}")


def test_a_unit_that_ran_through_or_raised_has_no_fatal_cell():
    assert fatal_cell(UnitOutcome("import", "ok", phase="done"), {3: ""}) is None
    assert fatal_cell(UnitOutcome("import", "error", phase="cell 3"), {3: ""}) is None
    assert fatal_cell(UnitOutcome("import", "crashed", phase="import hw.ipynb"), {3: ""}) is None
