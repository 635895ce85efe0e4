"""Reading the inline questions' answers out of a notebook (harness/submission/notebook_answers.py).

Completed notebooks are built from the real handouts in ``../shared/handouts`` (tests that need them
are skipped without them): answers are typed after the template's Answer line in each form the
handouts use, or into markdown cells inserted after the question, as students do.
"""

from __future__ import annotations

import pytest

from harness.config.assignment import load_assignment
from harness.submission.cells import map_roles
from harness.submission.notebook_answers import (
    NotebookAnswers,
    after_answer_line,
    is_heading,
    notebook_answers,
    unquote,
)
from tests.test_notebook_cells import CONFIGS, NAMES, Cells, handout_cells, needs_handouts, renumber

BADGE = "[![Open In Colab](https://colab.research.google.com/badge.svg)]"


def read(cells: Cells, config: str) -> NotebookAnswers:
    a = load_assignment(config)
    return notebook_answers(cells, map_roles(cells, a.notebook), a)


def question_cells(cells: Cells, config: str) -> dict[str, int]:
    """Question id -> its cell, found by the template's "Inline Question:" text in config order."""
    a = load_assignment(config)
    numbers = [n for n, kind, s in cells if kind == "markdown" and "Inline Question:" in s]
    assert len(numbers) == len(a.questions)
    return {q.id: n for q, n in zip(a.questions, numbers, strict=True)}


def answer_for(qid: str) -> str:
    return f"For {qid}: the latent space is unconstrained, so samples look like noise."


def fill(source: str, text: str, style: str) -> str:
    """The question cell with ``text`` typed after its Answer line, as students type it."""
    lines = source.splitlines()
    i = next(i for i, line in enumerate(lines) if "**Answer" in line)
    if style == "same line":
        lines[i] = lines[i] + " " + text if not lines[i].endswith(" ") else lines[i] + text
    elif style == "next line, quoted":
        lines[i + 1 : i + 1] = [">" + line for line in text.splitlines()]
    else:  # next line, the quoting dropped
        lines[i + 1 : i + 1] = ["", *text.splitlines()]
    return "\n".join(lines)


def insert_after(cells: Cells, after: dict[int, list[tuple[str, str]]], badge: bool = False) -> Cells:
    """The cells with new ones inserted after the given cells, renumbered (a badge cell first)."""
    out: list[tuple[str, str]] = [("markdown", BADGE)] if badge else []
    for n, kind, source in cells:
        out.append((kind, source))
        out.extend(after.get(n, []))
    return renumber(out)


# --------------------------------------------------------------------------- the handouts


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_a_blank_handout_gives_an_empty_answer_and_a_note_for_every_question(name):
    config = CONFIGS[name]
    found = read(handout_cells(name), config)
    ids = [q.id for q in load_assignment(config).questions]
    assert list(found.answers) == ids and list(found.where) == ids
    assert found.answers == dict.fromkeys(ids, "")
    assert found.where == dict.fromkeys(ids, "")
    assert len(found.notes) == len(ids)
    for qid, note in zip(ids, found.notes, strict=True):
        assert note.startswith(f"{qid}: no answer found"), note


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_the_handouts_use_both_answer_line_forms_and_each_is_recognised(name):
    cells = handout_cells(name)
    sources = {n: s for n, _, s in cells}
    forms = set()
    for n in question_cells(cells, CONFIGS[name]).values():
        line = next(line for line in sources[n].splitlines() if "**Answer" in line)
        forms.add(line.strip())
        assert after_answer_line(sources[n]) == ""
    assert forms == {">**Answer:**", ">**Answer**:"}


@needs_handouts
@pytest.mark.parametrize("style", ["same line", "next line, quoted", "next line, unquoted"])
@pytest.mark.parametrize("name", NAMES)
def test_an_answer_typed_after_the_answer_line_is_read_exactly(name, style):
    config = CONFIGS[name]
    cells = handout_cells(name)
    questions = question_cells(cells, config)
    by_cell = {n: qid for qid, n in questions.items()}
    filled = [(n, kind, fill(s, answer_for(by_cell[n]), style) if n in by_cell else s) for n, kind, s in cells]
    found = read(filled, config)
    assert found.answers == {qid: answer_for(qid) for qid in questions}
    assert found.where == {qid: f"cell {n}, after the question's Answer line" for qid, n in questions.items()}
    assert found.notes == ()


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_a_multi_line_quoted_answer_loses_only_its_quoting(name):
    config = CONFIGS[name]
    cells = handout_cells(name)
    questions = question_cells(cells, config)
    text = "AE latents are not regularised.\n\n1. interpolations leave the data manifold\n2. VAE paths stay smooth"
    qid, n = next(iter(questions.items()))
    filled = [(m, kind, fill(s, text, "next line, quoted") if m == n else s) for m, kind, s in cells]
    assert read(filled, config).answers[qid] == text


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_answers_in_inserted_markdown_cells_are_found_behind_a_badge_cell(name):
    config = CONFIGS[name]
    cells = handout_cells(name)
    questions = question_cells(cells, config)
    added = {n: [("markdown", f"**Answer:** {answer_for(qid)}")] for qid, n in questions.items()}
    drifted = insert_after(cells, added, badge=True)
    found = read(drifted, config)
    assert found.answers == {qid: answer_for(qid) for qid in questions}
    shifted = {qid: n + 1 + sorted(questions.values()).index(n) for qid, n in questions.items()}
    assert found.where == {
        qid: f"cell {shifted[qid] + 1}, a markdown cell added after the question" for qid in questions
    }
    assert found.notes == ()


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_two_added_cells_are_joined_and_a_heading_or_role_cell_ends_them(name):
    config = CONFIGS[name]
    cells = handout_cells(name)
    questions = question_cells(cells, config)
    added = {
        n: [("markdown", ">First paragraph."), ("markdown", ""), ("markdown", "Second paragraph.")]
        for n in questions.values()
    }
    found = read(insert_after(cells, added), config)
    assert set(found.answers.values()) == {"First paragraph.\n\nSecond paragraph."}
    assert all(w.endswith(", markdown cells added after the question") for w in found.where.values())


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_an_answer_in_both_places_reads_the_question_cell_and_says_so(name):
    config = CONFIGS[name]
    cells = handout_cells(name)
    questions = question_cells(cells, config)
    by_cell = {n: qid for qid, n in questions.items()}
    filled = [(n, kind, fill(s, answer_for(by_cell[n]), "same line") if n in by_cell else s) for n, kind, s in cells]
    drifted = insert_after(filled, {n: [("markdown", "A draft I forgot to delete.")] for n in by_cell}, badge=True)
    found = read(drifted, config)
    assert found.answers == {qid: answer_for(qid) for qid in questions}
    assert all(w.endswith(", after the question's Answer line") for w in found.where.values())
    assert len(found.notes) == len(questions)
    assert all("also holds text" in note for note in found.notes)


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_an_empty_answer_line_with_an_added_cell_reads_the_added_cell(name):
    config = CONFIGS[name]
    cells = handout_cells(name)
    questions = question_cells(cells, config)
    qid, n = list(questions.items())[1]  # beta-0: the next cell is another question's template text
    found = read(insert_after(cells, {n: [("markdown", "> Posterior collapse does not happen.")]}), config)
    assert found.answers[qid] == "Posterior collapse does not happen."
    assert found.where[qid] == f"cell {n + 1}, a markdown cell added after the question"
    others = [q for q in questions if q != qid]
    assert all(found.answers[q] == "" for q in others)
    assert len(found.notes) == len(others)


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_the_question_ids_are_the_configs(name):
    config = CONFIGS[name]
    a = load_assignment(config)
    assert list(read(handout_cells(name), config).answers) == [q.id for q in a.questions]
    assert {r.name for r in a.notebook.roles if r.name.startswith("question.")} == {
        f"question.{q.id}" for q in a.questions
    }


# --------------------------------------------------------------------------- without the handouts


def test_a_question_cell_that_was_not_found_gives_an_empty_answer_and_a_note():
    found = read([(1, "markdown", "# Problem 1"), (2, "code", "x = 1")], "variant-a")
    assert set(found.answers.values()) == {""}
    assert all("no markdown cell holds the question" in note for note in found.notes)


def test_a_question_cell_without_its_answer_line_reads_only_added_cells():
    anchor = ">**Inline Question: Describe your observations, why do you think they occur? [2pt]**"
    cells = [(1, "markdown", anchor + "\nMy answer replaced the Answer line."), (2, "markdown", "Added answer.")]
    found = read(cells, "variant-a")
    assert found.answers["ae-samples"] == "Added answer."
    assert found.notes[0] == "ae-samples: cell 1 has no Answer line; only cells added after it are read"


def test_unquote_and_headings():
    assert unquote(">a\n> b\n>> c\n  >d  \n\n") == "a\nb\nc\nd"
    assert after_answer_line("q\n> **Answer:** x\n>y") == "x\ny"
    assert after_answer_line("q\n**Answer**:\n\nx") == "x"
    assert after_answer_line("no answer line") is None
    assert is_heading("\n## Tuning") and not is_heading("Text # not a heading")


@needs_handouts
def test_an_unanswered_question_is_named_by_its_notebook_cell_never_by_answers_md(tmp_path):
    from harness.grading.items.answers import score_answers
    from harness.submission.detect import load
    from tests import notebooks as nbs
    from tests.helpers import notebook_in

    a = load_assignment("variant-a")
    sub = load(notebook_in(tmp_path, nbs.handout("2020")), a)
    items, _ = score_answers(a, sub)
    beta0 = items[next(q.rubric_item for q in a.questions if q.id == "beta-0")]
    cell = sub.notebook.roles["question.beta-0"][0]
    assert beta0.points == 0 and "answers.md" not in beta0.evidence[0], beta0.evidence
    assert f"{sub.notebook.file} cell {cell}" in beta0.evidence[0], beta0.evidence
