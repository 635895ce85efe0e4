"""The package layout as tests (README, "Layout"): one package per pipeline stage, data flowing
one way, the commands side by side, and the light modules free of torch.

Every module under harness/ is parsed with ``ast``; its imports of harness modules are read
wherever they are (module level, inside functions, under ``if TYPE_CHECKING``), in each form:
``import harness.x.y``, ``from harness.x import y``, ``from harness import x`` and relative
imports. Nothing is imported, except in the torch test, which imports in a fresh process."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "harness"

# The stages in the order data flows; a module may import modules of its own stage and of
# stages to its left, never to its right. io and progress are helpers every stage may use.
STAGES = [
    ("io", "progress"),
    ("config",),
    ("submission",),
    ("ml",),
    ("reference",),
    ("sandbox",),
    ("grading",),
    ("documents",),
    ("course",),
    ("cli", "__main__"),
]
LEVEL = {name: level for level, names in enumerate(STAGES) for name in names}

# The commands: siblings, which only the command line and the course level (a batch of grades)
# start.
COMMANDS = (
    "harness.grading.check",
    "harness.grading.grade",
    "harness.grading.write_up",
    "harness.grading.stored_write_up",  # report --stored
)
COMMAND_CALLERS = ("harness.cli", "harness.course")

# Importing these must not import torch (a config, a file write or a write-up from a notebook's stored
# outputs should not cost torch's start-up).
LIGHT = (
    "harness.config.assignment",
    "harness.config.plan",
    "harness.io",
    "harness.grading.stored_write_up",
    "harness.course.entries",
    "harness.course.similarity",
)


@dataclass(frozen=True)
class Import:
    path: Path  # the importing file
    importer: str  # its module name
    line: int
    module: str  # the harness module imported
    in_function: bool  # inside a function (a lazy import) rather than at module level

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def harness_imports(source: str, path: Path, name: str, is_package: bool, known: set[str]) -> list[Import]:
    """The harness modules ``source`` (module ``name``) imports. ``from P import x`` imports the
    module ``P.x`` when there is one (``known``), else names from ``P``."""
    found: list[Import] = []

    def record(node: ast.AST, module: str, in_function: bool) -> None:
        if module == "harness" or module.startswith("harness."):
            found.append(Import(path, name, node.lineno, module, in_function))

    def visit(node: ast.AST, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                record(node, alias.name, in_function)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            submodules = (f"{module}.{alias.name}" for alias in node.names)
            for imported in dict.fromkeys(m if m in known else module for m in submodules):  # once a line
                record(node, imported, in_function)
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source, str(path)), False)
    return found


def all_imports() -> list[Import]:
    files = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(f) for f in files}
    return [i for f in files for i in harness_imports(f.read_text(), f, module_name(f), f.name == "__init__.py", known)]


IMPORTS = all_imports()
MODULES = {module_name(f) for f in PACKAGE.rglob("*.py")}


def stage(module: str) -> str | None:
    """The stage of a harness module: its first component below harness (None for harness itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def is_within(module: str, parent: str) -> bool:
    return module == parent or module.startswith(parent + ".")


# --------------------------------------------------------------------------- the reader itself


def test_the_reader_finds_every_form_of_import():
    source = textwrap.dedent(
        """
        import os
        import harness.config.assignment
        from harness.ml import models
        from harness.ml.models import AutoEncoder, VAE
        from harness import io
        from . import plan
        from .. import progress
        from ..ml.data import load_mnist
        from .cache import make_key

        def lazy():
            from harness.sandbox.host import Sandbox
            return lambda: __import__("harness")
        """
    )
    known = {"harness.config.assignment", "harness.ml.models", "harness.io", "harness.progress", "harness.ml.data"}
    known |= {"harness.reference.plan", "harness.reference.cache"}
    path = PACKAGE / "reference" / "build.py"
    found = [
        (i.line, i.module, i.in_function)
        for i in harness_imports(source, path, "harness.reference.build", False, known)
    ]
    assert found == [
        (3, "harness.config.assignment", False),
        (4, "harness.ml.models", False),
        (5, "harness.ml.models", False),
        (6, "harness.io", False),
        (7, "harness.reference.plan", False),
        (8, "harness.progress", False),
        (9, "harness.ml.data", False),
        (10, "harness.reference.cache", False),
        (13, "harness.sandbox.host", True),
    ]
    in_package = harness_imports(
        "from . import plan\n", PACKAGE / "config" / "__init__.py", "harness.config", True, set()
    )
    assert [i.module for i in in_package] == ["harness.config"]


def test_every_module_is_read_and_every_stage_is_known():
    assert "harness.cli" in MODULES and any(i.importer == "harness.cli" for i in IMPORTS)
    unknown = sorted({stage(m) for m in MODULES} - set(LEVEL) - {None})
    assert not unknown, f"packages or modules under harness/ in no stage of this test's STAGES: {unknown}"


# --------------------------------------------------------------------------- layering


def test_each_stage_imports_only_its_own_stage_and_earlier_ones():
    violations = []
    for i in IMPORTS:
        here, there = stage(i.importer), stage(i.module)
        if there is None:  # the harness package itself: its version
            continue
        if here is None:
            violations.append(f"{i.where()}: the harness package imports {i.module}")
        elif LEVEL.get(there, len(STAGES)) > LEVEL[here]:
            allowed = ", ".join(n for names in STAGES[: LEVEL[here] + 1] for n in names)
            violations.append(
                f"{i.where()}: {here} imports {i.module} ({there} comes later; {here} may import {allowed})"
            )
    assert not violations, "imports against the flow of data:\n" + "\n".join(violations)


def test_io_and_progress_import_nothing_of_harness():
    found = [f"{i.where()}: imports {i.module}" for i in IMPORTS if i.importer in ("harness.io", "harness.progress")]
    assert not found, "\n".join(found)


# --------------------------------------------------------------------------- the commands


def test_the_commands_exist():
    assert set(COMMANDS) <= MODULES


def test_the_commands_import_none_of_each_other():
    found = [
        f"{i.where()}: {i.importer} imports {i.module}"
        for i in IMPORTS
        for command in COMMANDS
        if is_within(i.module, command) and any(is_within(i.importer, c) for c in COMMANDS if c != command)
    ]
    assert not found, "the commands are siblings; shared work belongs below them:\n" + "\n".join(found)


def test_only_the_command_line_and_the_course_import_the_commands():
    found = [
        f"{i.where()}: {i.importer} imports {i.module}"
        for i in IMPORTS
        for command in COMMANDS
        if is_within(i.module, command)
        and not is_within(i.importer, command)
        and not any(is_within(i.importer, c) for c in (*COMMANDS, *COMMAND_CALLERS))
    ]
    assert not found, f"only {' and '.join(COMMAND_CALLERS)} may import a command:\n" + "\n".join(found)


# --------------------------------------------------------------------------- no torch where it is not needed

WATCH_TORCH = """
import json, sys, traceback
from pathlib import Path

PACKAGE = str(Path({package!r}).resolve())


class Watch:
    via = None

    def find_spec(self, name, path=None, target=None):
        if name == "torch" and self.via is None:
            frames = traceback.extract_stack()[:-1]
            self.via = [f"{{f.filename}}:{{f.lineno}}" for f in frames if f.filename.startswith(PACKAGE)]
        return None


watch = Watch()
sys.meta_path.insert(0, watch)
import {modules}

print(json.dumps({{"torch": "torch" in sys.modules, "via": watch.via}}))
"""


def test_the_light_modules_import_no_torch():
    code = WATCH_TORCH.format(package=str(PACKAGE), modules=", ".join(LIGHT))
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    via = " <- ".join(reversed(seen["via"] or []))
    assert not seen["torch"], f"import {', '.join(LIGHT)} imports torch, first from {via}"


@pytest.mark.parametrize("module", LIGHT)
def test_the_light_modules_exist(module):
    assert module in MODULES
