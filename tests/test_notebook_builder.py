"""The completed notebooks of tests/notebooks.py: built from the real handouts, every TODO region filled,
recognised as their handout, answered, robust to drift, and every planted bug applies exactly once.

Fast: nothing is executed (executing the notebooks needs torch training; see tests/notebooks.py).
The handouts live outside the repository, in ``../shared/handouts``; without them these tests skip.
"""

from __future__ import annotations

import pytest

from harness.config.assignment import load_assignment
from harness.submission.cells import detect_handout, has_line, map_roles, todo_regions, untouched_todos
from harness.submission.notebook_answers import notebook_answers
from tests import notebooks as N

pytestmark = pytest.mark.skipif(
    not N.HANDOUTS.is_dir(),
    reason="../shared/handouts not found: the handout notebooks are needed to build completed notebooks",
)

ROLES_WITH_TODOS = {"encoder_decoder", "forward_test", "ae_training", "sampling", "vae_model", "vae_runs"}


def assignment(year: str):
    return load_assignment(N.CONFIG[year])


def code_text(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


@pytest.fixture(scope="module")
def completed():
    return {year: N.complete(year) for year in N.YEARS}


@pytest.mark.parametrize("year", N.YEARS)
def test_the_blank_handout_has_untouched_todos_in_every_todo_role(year):
    """The check below means something: the handout itself fails it."""
    a = assignment(year)
    cells = N.cells(N.handout(year))
    roles = {t.role for t in untouched_todos(cells, map_roles(cells, a.notebook))}
    assert roles == ROLES_WITH_TODOS


@pytest.mark.parametrize("year", N.YEARS)
def test_a_completed_notebook_has_no_untouched_todo_and_compiles(year, completed):
    nb = completed[year]
    a = assignment(year)
    cells = N.cells(nb)
    cell_map = map_roles(cells, a.notebook)
    assert not cell_map.missing, cell_map.missing
    assert untouched_todos(cells, cell_map) == []
    for number, kind, source in cells:
        if kind == "code":
            assert all(r.closed for r in todo_regions(source)), number
            lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
            compile("\n".join(lines), f"<{year} cell {number}>", "exec")


@pytest.mark.parametrize("year", N.YEARS)
def test_a_completed_notebook_keeps_the_template_lines(year, completed):
    """Only TODO regions change: every line of the handout's code cells outside them survives, in order."""
    blank, nb = N.handout(year), completed[year]
    assert len(blank.cells) == len(nb.cells)
    for before, after in zip(blank.cells, nb.cells, strict=True):
        assert before.cell_type == after.cell_type and before.get("id") == after.get("id")
        assert before.metadata == after.metadata
        if before.cell_type != "code":
            continue
        kept = [line for line in before.source.splitlines() if line in after.source.splitlines()]
        outside = set(before.source.splitlines()) - {
            line for r in todo_regions(before.source) for line in r.code.splitlines()
        }
        assert outside <= set(kept), outside - set(kept)
    assert N.handout(year).cells[0].source == nb.cells[0].source


def test_the_fill_ins_use_the_template_names_and_the_years_settings(completed):
    for year, nb in completed.items():
        code = code_text(nb)
        assert "batch_size=batch_size, shuffle=True, num_workers=nworkers" in code
        assert code.count("for sample_img, _ in mnist_data_loader:") == 2
        # the template's lines after the loop's region, untouched (2026 added .item())
        appended = "losses['rec_loss'].item()" if year == "2026" else "rec_loss.append(losses['rec_loss']);"
        assert appended in code
        if year == "2026":
            assert "torch.randn(batch_size, nz, generator=gen)" in code
            assert "beta = 10 " in code and "epochs = 20 " in code and "\nbeta = 1e-4\n" in code
            assert "\nbeta = 0.0\n" in code  # the first run cell keeps the template's beta = 0
        else:
            assert "epochs = 10\n" in code and "epochs = 20 " in code and "\nbeta = 1e-4\n" in code
    assert "\nbeta = 1e-3\n" in code_text(N.complete("2020", tuned_beta="1e-3"))


@pytest.mark.parametrize("year", N.YEARS)
def test_a_completed_notebook_is_recognised_as_its_config(year, completed):
    both = [load_assignment("variant-a"), load_assignment("variant-b")]
    found = detect_handout(N.cells(completed[year]), both)
    assert found is not None and found.source is not None
    assert found.meta.id == assignment(year).meta.id


@pytest.mark.parametrize("year", N.YEARS)
def test_every_question_is_answered_with_the_examples_text(year, completed):
    a = assignment(year)
    cells = N.cells(completed[year])
    got = notebook_answers(cells, map_roles(cells, a.notebook), a)
    expected = N.example_answers()
    for q in a.questions:
        assert got.answers[q.id], q.id
        assert got.answers[q.id] == expected[q.id], q.id
        assert "after the question's Answer line" in got.where[q.id]


@pytest.mark.parametrize("variant", sorted(N.VARIANTS))
@pytest.mark.parametrize("year", N.YEARS)
def test_every_drift_variant_keeps_all_roles_answers_and_filled_todos(year, variant, completed):
    nb = completed[year]
    drifted = N.VARIANTS[variant](nb)
    assert drifted is not nb and N.cells(nb) == N.cells(N.complete(year)), "the variant must not edit its input"
    a = assignment(year)
    cells = N.cells(drifted)
    cell_map = map_roles(cells, a.notebook)
    assert not cell_map.missing, cell_map.missing
    assert untouched_todos(cells, cell_map) == []
    assert detect_handout(cells, [load_assignment("variant-a"), load_assignment("variant-b")]).meta.id == a.meta.id
    answers = notebook_answers(cells, cell_map, a).answers
    assert answers == {q.id: N.example_answers()[q.id] for q in a.questions}


@pytest.mark.parametrize("year", N.YEARS)
def test_the_drift_variants_drift(year, completed):
    nb = completed[year]
    assert "colab-badge" in N.with_badge_cell(nb).cells[0].source
    moved = N.with_answer_cells(nb)
    assert len(moved.cells) == len(nb.cells) + len(assignment(year).questions)
    where = notebook_answers(N.cells(moved), map_roles(N.cells(moved), assignment(year).notebook), assignment(year))
    assert all("added after the question" in w for w in where.where.values()), where.where
    dup = N.with_duplicated_interpolation(nb)
    labels = [c.source for c in dup.cells if has_line(c.source, "def interpolate_and_visualize(")]
    assert len(labels) == 2 and "START_LABEL = 1" in labels[1] and "END_LABEL = 7" in labels[1]
    assert all(c.execution_count is None for c in N.with_null_counts(nb).cells if c.cell_type == "code")
    assert all(not c.outputs for c in N.stripped(nb).cells if c.cell_type == "code")
    cuda = code_text(N.with_unguarded_cuda(nb))
    assert "AutoEncoder(nz).cuda()" in cuda and cuda.count("sample_img = sample_img.cuda()") == 2
    saved = code_text(N.with_savefig(nb))
    assert "plt.show()" not in saved and 'plt.savefig("fig.png")' in saved
    magic = code_text(N.with_magics(nb))
    assert "%load_ext autoreload" in magic and "!pip install" in magic and "!ls" in magic


# A bug whose loop trains nothing leaves a model the harness's loop trained downstream: those items
# lose only the results that would be the reference's work (docs/checks.md), never the defect again.
STAND_IN_LOSSES = {"vae-loop-without-backward": {"beta_tuning", "interpolation"}}


def test_the_bug_suite_is_large_and_each_bug_is_owned_by_one_rubric_item():
    items = {r.id for r in load_assignment("variant-a").rubric} & {r.id for r in load_assignment("variant-b").rubric}
    names = set(N.bugs("2020"))
    assert len(names) >= 9
    for year in N.YEARS:
        assert set(N.bugs(year)) == names
        for name, (lost, edits) in N.bugs(year).items():
            assert lost[0] in items and set(lost[1:]) == STAND_IN_LOSSES.get(name, set()), name
            assert edits, name


@pytest.mark.parametrize("year", N.YEARS)
def test_every_planted_bug_applies_exactly_once_and_changes_only_code(year, completed):
    nb = completed[year]
    code = code_text(nb)
    for name, (_, edits) in N.bugs(year).items():
        for old, new in edits:
            assert code.count(old) == 1, (name, old)
            assert old != new
        bugged = N.planted(year, name)
        assert code_text(bugged) != code, name
        assert [c.source for c in bugged.cells if c.cell_type != "code"] == [
            c.source for c in nb.cells if c.cell_type != "code"
        ]
        cells = N.cells(bugged)
        a = assignment(year)
        assert untouched_todos(cells, map_roles(cells, a.notebook)) == [], name


def test_an_edit_that_does_not_apply_fails_loudly(completed):
    with pytest.raises(AssertionError, match="occurs 0 times"):
        N.apply(completed["2020"], [("no such line", "x")])
    with pytest.raises(AssertionError, match="occurs 2 times"):
        N.apply(completed["2020"], [("for sample_img, _ in mnist_data_loader:", "x")])


def test_write_round_trips(tmp_path, completed):
    import nbformat

    path = N.write(completed["2026"], tmp_path / "done.ipynb")
    assert path.is_file()
    assert N.cells(nbformat.read(path, as_version=4)) == N.cells(completed["2026"])
