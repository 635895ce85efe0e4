"""A notebook cell's code as the harness runs it, and the tuned beta the student wrote.

Colab cells hold IPython syntax that is not Python: line magics (``%matplotlib inline``), cell
magics (``%%time``) and shell lines (``!pip install ...``, ``files = !ls``). The harness never runs
them: :func:`runnable_source` puts ``pass`` in their place (same indentation, so blocks stay valid
and line numbers stay the student's) and says what it took out.

The tuned beta is the literal the student assigns in the tuned-beta slot: the last ``beta = ...``
of the last VAE-run cell that assigns one (2026: the cell after "Tuning the beta-factor"; 2020/2022:
the one VAE cell, re-run with the tuned beta last); the variable is the handout's ``[notebook.names]
beta``. Works on text only: no torch, no nbformat.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass

from harness.config.assignment import NotebookNames
from harness.submission.cells import Cell, CellMap

_MAGIC = re.compile(r"^(\s*)(%%?[A-Za-z_]\w*.*)$")  # %matplotlib inline, %%time
_SHELL = re.compile(r"^(\s*)(!.*)$")  # !pip install torch
_SHELL_ASSIGN = re.compile(r"^(\s*)([A-Za-z_]\w*\s*=\s*[!%].*)$")  # files = !ls, t = %timeit f()
_GET_IPYTHON = re.compile(r"^(\s*)(get_ipython\(\).*)$")  # what nbconvert writes for magics


@dataclass(frozen=True)
class RunnableCell:
    """A code cell's text with the IPython-only lines replaced by ``pass``, and those lines."""

    text: str
    removed: tuple[str, ...] = ()


def runnable_source(source: str) -> RunnableCell:
    """The cell as plain Python: a cell magic (``%%...`` on the first line) removes the whole
    cell, each line magic or shell line becomes ``pass``."""
    lines = source.splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    if first.startswith("%%"):
        return RunnableCell("", (f"{first} (cell magic: the whole cell)",))
    kept, removed = [], []
    for line in lines:
        m = _MAGIC.match(line) or _SHELL.match(line) or _SHELL_ASSIGN.match(line) or _GET_IPYTHON.match(line)
        if m and not _is_python(line):
            kept.append(f"{m.group(1)}pass")
            removed.append(m.group(2).strip())
        else:
            kept.append(line)
    return RunnableCell("\n".join(kept), tuple(removed))


def _is_python(line: str) -> bool:
    """``x = 5 % 3`` or ``a != b`` look like neither magic nor shell to these patterns' anchors,
    but ``y = !ls`` and ``%time f()`` do; only a line that fails to parse alone is IPython."""
    try:
        ast.parse(line.strip())
    except SyntaxError:
        return False
    return True


# --------------------------------------------------------------------------- the tuned beta

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
DEFAULT_NAMES = NotebookNames()


def _slot_line(name: str) -> re.Pattern[str]:
    """A top-level ``name = <expression>  # comment`` line, read without parsing the cell."""
    return re.compile(rf"^{re.escape(name)}\s*=\s*([^#]*?)\s*(?:#.*)?$")


def number(node: ast.expr) -> float | None:
    """The value of a numeric literal expression (``1e-4``, ``10 ** -4``, ``-0.5``, ``1 / 64``), None
    for anything else (a name, a call): the slot must say its beta outright."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = number(node.operand)
        return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
    if isinstance(node, ast.BinOp):
        left, right = number(node.left), number(node.right)
        if left is None or right is None:
            return None
        try:
            if isinstance(node.op, ast.Pow):
                value = left**right if abs(right) <= 64 else None
            else:
                op = _OPS.get(type(node.op))
                value = op(left, right) if op else None
        except (ZeroDivisionError, OverflowError):
            return None
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    return None


@dataclass(frozen=True)
class TunedBeta:
    """The tuned beta as written (None: not found or not a number), the cell it is in, and why
    there is none."""

    value: float | None
    cell: int | None = None
    text: str = ""  # the assignment as the student wrote it: "beta = 1e-4"
    problem: str = ""


def _assignments(text: str, name: str) -> list[tuple[str, float | None]]:
    """Each top-level ``name = ...`` of a cell, in order: its text and value (None: not a number).
    A cell that does not parse (an untouched ``beta =``) is read line by line."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        found = []
        line_re = _slot_line(name)
        for line in text.splitlines():
            if m := line_re.match(line):
                expr = m.group(1)
                try:
                    value = number(ast.parse(expr, mode="eval").body) if expr else None
                except SyntaxError:
                    value = None
                found.append((line.split("#")[0].strip(), value))
        return found
    return [
        (ast.get_source_segment(text, node) or f"{name} = ?", number(node.value))
        for node in tree.body
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id == name
    ]


def tuned_beta(cells: Sequence[Cell], cell_map: CellMap, names: NotebookNames = DEFAULT_NAMES) -> TunedBeta:
    """The tuned beta of the notebook: the last ``<names.beta> =`` of the last ``vae_runs`` cell that
    has one (``names``: the assignment's ``[notebook.names]``)."""
    slot = names.beta
    runs = [c for c in cells if c.number in cell_map.roles.get("vae_runs", ())]
    for cell in reversed(runs):
        found = _assignments(runnable_source(cell.source).text, slot)
        if not found:
            continue
        text, value = found[-1]
        if value is None:
            return TunedBeta(None, cell.number, text, f"cell {cell.number}: `{text}` does not set {slot} to a number")
        return TunedBeta(value, cell.number, text)
    return TunedBeta(None, problem=f"no VAE cell assigns `{slot} = ...`: the tuned beta is not set")
