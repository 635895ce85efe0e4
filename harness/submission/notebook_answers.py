"""A notebook's answers to the inline questions, in the shape a folder's ``answers.md`` gives them.

Each question's markdown cell (role ``question.<id>``, found by :func:`harness.submission.cells.map_roles`)
is template text that ends with an Answer line, ``>**Answer:**`` or ``>**Answer**:`` (the 2020/2022
handouts leave a trailing space after the first form). The student types the answer after that line,
on it or below it; some add a markdown cell of their own after the question instead. The answer is
read from the question cell first and from the added cells only when the Answer line has nothing
after it, so a student who wrote in both places is graded on the text under the question.

Works on ``(number, cell_type, source)`` triples like cells.py; needs neither nbformat nor torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.config.assignment import Assignment
from harness.submission.cells import Cell, CellMap

# The template's Answer line, with or without its ">" quoting (students often delete it) and with
# the colon inside or outside the bold; group 1 is whatever the student typed on the same line.
_ANSWER_LINE = re.compile(r"^\s*(?:>\s*)*\*\*Answer(?::\*\*|\*\*:)(.*)$")
# The quoting markers a student kept from the template ("> ", ">>", " > "), one optional space each.
_QUOTE = re.compile(r"^(?:\s*>\s?)+")


@dataclass(frozen=True)
class NotebookAnswers:
    """Question id -> the answer text (``""`` when none was found), as ``Submission.answers`` has it;
    ``where`` says, for each question, where its answer was found (``""``: nowhere); ``notes`` lists
    anything odd: an untouched question, a question cell that was not found, text in two places."""

    answers: dict[str, str]
    where: dict[str, str]
    notes: tuple[str, ...] = ()


def unquote(text: str) -> str:
    """``text`` without the quoting markers at the start of its lines, each line's trailing spaces and
    blank lines at either end: the answer as the student means it."""
    lines = [_QUOTE.sub("", line).rstrip() for line in text.splitlines()]
    return "\n".join(lines).strip()


def answer_line(source: str) -> int | None:
    """The index of the (first) Answer line among ``source``'s lines, None when there is none."""
    return next((i for i, line in enumerate(source.splitlines()) if _ANSWER_LINE.match(line)), None)


def after_answer_line(source: str) -> str | None:
    """What follows the Answer line in ``source`` (on it and below it), unquoted; None when the cell
    has no Answer line."""
    index = answer_line(source)
    if index is None:
        return None
    lines = source.splitlines()
    rest = [_ANSWER_LINE.match(lines[index]).group(1), *lines[index + 1 :]]
    return unquote("\n".join(rest))


def is_heading(source: str) -> bool:
    """Whether a markdown cell opens a section: its first non-blank line is a ``#`` heading."""
    first = next((line for line in source.splitlines() if line.strip()), "")
    return first.lstrip().startswith("#")


def added_cells(cells: Sequence[Cell], question: int, cell_map: CellMap) -> list[Cell]:
    """The markdown cells right after the question cell that a student may have added for the answer:
    up to the next cell that is not markdown, plays a role, or opens a section (template text that
    follows a question always does one of these in the handouts). Blank cells are skipped."""
    found = []
    for cell in cells:
        if cell.number <= question:
            continue
        if cell.cell_type != "markdown" or cell_map.role_of(cell.number) or is_heading(cell.source):
            break
        if cell.source.strip():
            found.append(cell)
    return found


def added_text(cell: Cell) -> str:
    """An added cell's answer: what follows its own Answer line when the student copied one, else the
    whole cell, unquoted."""
    rest = after_answer_line(cell.source)
    return unquote(cell.source) if rest is None else rest


def cells_label(numbers: Sequence[int]) -> str:
    """``cell 20`` or ``cells 20, 21``."""
    return ("cell " if len(numbers) == 1 else "cells ") + ", ".join(map(str, numbers))


@dataclass(frozen=True)
class _Found:
    text: str
    where: str
    notes: tuple[str, ...] = ()


def _answer(qid: str, cells: Sequence[Cell], by_number: dict[int, Cell], cell_map: CellMap) -> _Found:
    """One question's answer, where it was found and any note."""
    number = cell_map.cell(f"question.{qid}")
    if number is None or number not in by_number:
        return _Found("", "", (f"{qid}: no markdown cell holds the question's template text; no answer read",))
    in_cell = after_answer_line(by_number[number].source)
    extra = [c for c in added_cells(cells, number, cell_map) if added_text(c)]
    notes: list[str] = []
    if in_cell is None:
        notes.append(f"{qid}: cell {number} has no Answer line; only cells added after it are read")
    if in_cell:
        if extra:
            # the text under the question wins: it is where the handout asks for the answer
            notes.append(
                f"{qid}: {cells_label([c.number for c in extra])} after the question also "
                f"{'holds' if len(extra) == 1 else 'hold'} text; the answer in cell {number} is used"
            )
        return _Found(in_cell, f"cell {number}, after the question's Answer line", tuple(notes))
    if extra:
        numbers = [c.number for c in extra]
        what = "a markdown cell" if len(extra) == 1 else "markdown cells"
        text = "\n\n".join(added_text(c) for c in extra)
        return _Found(text, f"{cells_label(numbers)}, {what} added after the question", tuple(notes))
    notes.append(f"{qid}: no answer found (cell {number}: nothing after the Answer line, no cell added after it)")
    return _Found("", "", tuple(notes))


def notebook_answers(cells: Iterable[tuple[int, str, str]], cell_map: CellMap, a: Assignment) -> NotebookAnswers:
    """Every question of ``a`` (config order) -> its answer in the notebook, where it was, and notes."""
    cells = [Cell(*c) for c in cells]
    by_number = {c.number: c for c in cells}
    answers, where, notes = {}, {}, []
    for q in a.questions:
        found = _answer(q.id, cells, by_number, cell_map)
        answers[q.id], where[q.id] = found.text, found.where
        notes.extend(found.notes)
    return NotebookAnswers(answers, where, tuple(notes))
