"""Which handout a notebook follows and which cell plays which role, from its cells' text alone.

Works on ``(number, cell_type, source)`` triples (numbers 1-based, as Colab shows them), so it
needs neither nbformat nor torch. Cells are found by the anchor lines of the assignment's
``[notebook]`` table (docs/assignment-format.md), never by position: real notebooks gain badge
cells, answer cells and copied cells, but keep the template's own lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from harness.config.assignment import Assignment, CellRole, NotebookSpec


class Cell(NamedTuple):
    """One notebook cell: its 1-based number, ``"code"`` / ``"markdown"`` / ``"raw"``, its text."""

    number: int
    cell_type: str
    source: str


def _cells(cells: Iterable[tuple[int, str, str]]) -> list[Cell]:
    return [Cell(*c) for c in cells]


def has_line(source: str, anchor: str) -> bool:
    """Whether a line of ``source`` starts with ``anchor`` (leading spaces count; trailing ones do not)."""
    return any(line.rstrip().startswith(anchor.rstrip()) for line in source.splitlines())


# --------------------------------------------------------------------------- which handout


def assignment_name(a: Assignment) -> str:
    """The name people use: the TOML file's stem (``variant-a``), else the meta id."""
    return Path(a.source).stem if a.source else a.meta.id


def missing_markers(cells: Iterable[tuple[int, str, str]], spec: NotebookSpec) -> list[str]:
    """The markers no code cell holds, in the config's order."""
    code = [c.source for c in _cells(cells) if c.cell_type == "code"]
    return [m for m in spec.markers if not any(has_line(s, m) for s in code)]


def _matching(cells: list[Cell], assignments: Sequence[Assignment]) -> list[Assignment]:
    return [a for a in assignments if a.notebook is not None and not missing_markers(cells, a.notebook)]


def detect_handout(cells: Iterable[tuple[int, str, str]], assignments: Sequence[Assignment]) -> Assignment | None:
    """The one assignment whose markers all appear; None when none or several do
    (:func:`detection_problem` says which)."""
    found = _matching(_cells(cells), assignments)
    return found[0] if len(found) == 1 else None


def detection_problem(cells: Iterable[tuple[int, str, str]], assignments: Sequence[Assignment]) -> str:
    """Why :func:`detect_handout` found no handout, for a refusal message; ``""`` when it found one."""
    cells = _cells(cells)
    found = _matching(cells, assignments)
    if len(found) == 1:
        return ""
    if found:
        names = ", ".join(assignment_name(a) for a in found)
        return f"the notebook matches several handouts ({names}); pass the assignment explicitly"
    reasons = []
    for a in assignments:
        if a.notebook is None:
            reasons.append(f"{assignment_name(a)} has no [notebook] table")
        else:
            lacks = " and ".join(repr(m) for m in missing_markers(cells, a.notebook))
            reasons.append(f"no code line starts with {lacks} ({assignment_name(a)})")
    detail = "; ".join(reasons) if reasons else "no assignment was given"
    return f"the notebook follows none of the known handouts: {detail}"


# --------------------------------------------------------------------------- roles


@dataclass(frozen=True)
class CellMap:
    """Role -> the numbers of the cells that play it (1-based). ``missing`` lists the roles no
    cell plays; ``notes`` says where a one-cell role was found more than once (the first kept)."""

    roles: Mapping[str, tuple[int, ...]]
    missing: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def cell(self, role: str) -> int | None:
        """The (first) cell of a role, None when missing."""
        numbers = self.roles.get(role, ())
        return numbers[0] if numbers else None

    def role_of(self, number: int) -> str:
        """The role a cell plays, ``""`` for none (the first role in config order wins)."""
        return next((role for role, numbers in self.roles.items() if number in numbers), "")


def role_cells(cells: Sequence[Cell], role: CellRole) -> list[int]:
    """Every cell of the role's kind that holds one of its anchors, in notebook order."""
    return [
        c.number
        for c in cells
        if c.cell_type == role.kind and any(has_line(c.source, anchor) for anchor in role.anchors)
    ]


def map_roles(cells: Iterable[tuple[int, str, str]], spec: NotebookSpec) -> CellMap:
    """Find each role's cells by its anchors, wherever they are."""
    cells = _cells(cells)
    roles, missing, notes = {}, [], []
    for role in spec.roles:
        numbers = role_cells(cells, role)
        if not numbers:
            missing.append(role.name)
            continue
        if role.cells == "one" and len(numbers) > 1:
            notes.append(f"{role.name}: cells {', '.join(map(str, numbers))} all match; using cell {numbers[0]}")
            numbers = numbers[:1]
        roles[role.name] = tuple(numbers)
    return CellMap(roles, tuple(missing), tuple(notes))


# --------------------------------------------------------------------------- TODO regions

# The handouts frame a region as "#### TODO ####", an explanation in "# ... #" lines, a line of
# only "#", the code, then "#### END TODO ####"; the number of "#" varies from region to region.
_TODO = re.compile(r"^#+\s*TODO\s*#+$")
_END_TODO = re.compile(r"^#+\s*END TODO\s*#+$")
_RULE = re.compile(r"^#{3,}$")

# Placeholders the template leaves in a region, tried on each line with its comment removed.
_PLACEHOLDER_LINES = (
    re.compile(r"^for\s+None\s+in\s+None\s*:$"),  # the training loop's header
    re.compile(r"^[A-Za-z_][\w.]*\s*=\s*None$"),  # opt = None, self.encoder = None, q = None
    re.compile(r"^[A-Za-z_][\w.]*\s*=$"),  # 2026's blank epochs = / beta =
)
# nn.Sequential( with only comments up to its ")": the architecture regions' empty network.
_EMPTY_CALL = re.compile(r"([\w.]+)\(\s*\n\s*\)")


@dataclass(frozen=True)
class TodoRegion:
    """One TODO region of a cell: lines counted from 1 within the cell (``end`` is the END TODO
    line, or the cell's last line when it is not closed). ``placeholder`` is the template
    placeholder the code still holds (``""``: none), and ``untouched`` says whether there is one."""

    start: int
    end: int
    code: str
    placeholder: str = ""
    closed: bool = True

    @property
    def untouched(self) -> bool:
        return bool(self.placeholder)


def strip_comment(line: str) -> str:
    """A line without its ``#`` comment (a ``#`` inside quotes is kept) and outer spaces."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return line[:i].strip()
    return line.strip()


def _reassigned(target: str, later: list[str]) -> bool:
    """Whether a later line assigns ``target`` again (alone or in a tuple): a student who kept
    the template's ``q = None`` and assigned ``q`` on the next line filled the region."""
    name = re.escape(target)
    again = re.compile(rf"^(?:[\w.]+\s*,\s*)*{name}\s*(?:,\s*[\w.]+\s*)*(?:=(?!=)|[-+*/]=)")
    return any(again.match(line) for line in later)


def find_placeholder(code: str) -> str:
    """The first template placeholder in a region's code, ``""`` when it holds none. A
    ``name = None`` placeholder whose name a later line of the region assigns is no placeholder."""
    lines = [strip_comment(line) for line in code.splitlines()]
    for n, line in enumerate(lines):
        if any(p.match(line) for p in _PLACEHOLDER_LINES):
            target = line.split("=", 1)[0].strip()
            if "=" in line and not line.startswith("for ") and _reassigned(target, lines[n + 1 :]):
                continue
            return line
    if m := _EMPTY_CALL.search("\n".join(line for line in lines if line)):
        return f"{m.group(1)}() left empty"
    return ""


def todo_regions(source: str) -> list[TodoRegion]:
    """The TODO regions of a cell's source, in order."""
    lines = source.splitlines()
    regions, i = [], 0
    while i < len(lines):
        if not _TODO.match(lines[i].strip()):
            i += 1
            continue
        start = i
        # the explanation ends at the first line of only "#"; the code runs to END TODO
        j = i + 1
        while j < len(lines) and lines[j].strip().startswith("#") and not _END_TODO.match(lines[j].strip()):
            j += 1
            if _RULE.match(lines[j - 1].strip()):
                break
        end = j
        while end < len(lines) and not _END_TODO.match(lines[end].strip()):
            end += 1
        closed = end < len(lines)
        code = "\n".join(lines[j:end])
        last = end if closed else len(lines) - 1
        regions.append(TodoRegion(start + 1, last + 1, code, find_placeholder(code), closed))
        i = end + 1
    return regions


@dataclass(frozen=True)
class UntouchedTodo:
    """A TODO region that still holds the template's placeholder, with the cell and role it is in."""

    role: str  # "" when the cell plays no role
    cell: int
    region: TodoRegion


def untouched_todos(cells: Iterable[tuple[int, str, str]], cell_map: CellMap) -> list[UntouchedTodo]:
    """Every code cell's untouched TODO regions, in notebook order, with the cell's role."""
    return [
        UntouchedTodo(cell_map.role_of(c.number), c.number, region)
        for c in _cells(cells)
        if c.cell_type == "code"
        for region in todo_regions(c.source)
        if region.untouched
    ]


def untouched_by_role(todos: Iterable[UntouchedTodo]) -> dict[str, list[UntouchedTodo]]:
    """The report's grouping: role -> its untouched regions (``""`` for cells with no role)."""
    grouped: dict[str, list[UntouchedTodo]] = {}
    for todo in todos:
        grouped.setdefault(todo.role, []).append(todo)
    return grouped
