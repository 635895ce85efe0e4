"""Reading a handed-in notebook safely (harness.submission.notebook): the real handouts, an
nbformat 3 upgrade, Colab's defects repaired and recorded, and every refusal's message.

The handouts are read from ``../shared/handouts`` (never committed here); the tests that need
them skip when it is absent. Every notebook written is under tmp_path.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import nbformat
import nbformat.v3
import pytest

from harness.submission.notebook import (
    WIDGET_STATE,
    NotebookError,
    code_cells,
    execution_counts,
    markdown_cells,
    output_bytes,
    read_notebook,
)

HANDOUTS = Path(__file__).parents[2] / "shared" / "handouts"
NAMES = ["handout-2020", "handout-2022", "handout-2026"]
needs_handouts = pytest.mark.skipif(
    not HANDOUTS.is_dir(), reason="../shared/handouts not found: the real handout notebooks are needed"
)
WIDGETS_DROPPED = 'the notebook\'s widget metadata had no "state" (a Colab defect): removed'


def handout_json(name: str) -> dict[str, Any]:
    return json.loads((HANDOUTS / f"{name}.ipynb").read_text(encoding="utf-8"))


def write_json(tmp_path: Path, data: Any, name: str = "nb.ipynb") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def minimal_v4(**overrides: Any) -> dict[str, Any]:
    nb = {"nbformat": 4, "nbformat_minor": 1, "metadata": {}, "cells": []}
    nb.update(overrides)
    return nb


def refused(path: Path, **kwargs: Any) -> str:
    with pytest.raises(NotebookError) as info:
        read_notebook(path, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- the real handouts


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_each_handout_reads_as_v4_without_validation_errors(name: str) -> None:
    nb = read_notebook(HANDOUTS / f"{name}.ipynb")
    assert nb.notebook.nbformat == 4
    assert nb.original_version.startswith("4.")
    assert nb.validation == ()
    # 2020/2022 carry Colab's widget metadata without its state; 2026 needs no repair.
    assert nb.repairs == ((WIDGETS_DROPPED,) if name != "handout-2026" else ())
    assert "widgets" not in nb.notebook.metadata
    nbformat.validate(nb.notebook)


@needs_handouts
def test_helpers_number_cells_as_colab_does() -> None:
    nb = read_notebook(HANDOUTS / "handout-2026.ipynb")
    cells = nb.notebook.cells
    code, markdown = code_cells(nb), markdown_cells(nb)
    assert len(code) + len(markdown) == len(cells)
    for number, source in code + markdown:
        assert cells[number - 1].source == source
    assert [n for n, _ in execution_counts(nb)] == [n for n, _ in code]
    # the 2026 release carries the staff's outputs for its first cells: counts from 1, the rest unrun
    assert execution_counts(nb)[0][1] == 1 and None in dict(execution_counts(nb)).values()
    assert output_bytes(nb) > 0
    assert output_bytes(read_notebook(HANDOUTS / "handout-2020.ipynb")) == 0


# --------------------------------------------------------------------------- upgrade and repairs


def test_nbformat_3_notebook_is_upgraded_and_says_so(tmp_path: Path) -> None:
    cells = [
        nbformat.v3.new_text_cell("markdown", source="# Problem 1"),
        nbformat.v3.new_code_cell(input="nz = 64", prompt_number=3, outputs=[]),
    ]
    v3 = nbformat.v3.new_notebook(worksheets=[nbformat.v3.new_worksheet(cells=cells)])
    path = tmp_path / "old.ipynb"
    path.write_text(nbformat.v3.writes_json(v3), encoding="utf-8")
    nb = read_notebook(path)
    assert nb.original_version == "3.0"
    assert nb.repairs == ("upgraded from nbformat 3 to 4",)
    assert nb.notebook.nbformat == 4 and nb.validation == ()
    assert code_cells(nb) == [(2, "nz = 64")]
    assert markdown_cells(nb) == [(1, "# Problem 1")]
    assert execution_counts(nb) == [(2, 3)]


@needs_handouts
def test_colab_defects_are_repaired_each_recorded_and_the_result_validates(tmp_path: Path) -> None:
    data = handout_json("handout-2026")
    data["nbformat_minor"] = 5  # Colab's 4.5 notebooks come without cell ids
    kinds = [c["cell_type"] for c in data["cells"]]
    first_code, first_md = kinds.index("code"), kinds.index("markdown")
    ran = data["cells"][first_code]["execution_count"]
    del data["cells"][first_code]["outputs"], data["cells"][first_code]["execution_count"]
    second_code = kinds.index("code", first_code + 1)
    del data["cells"][second_code]["outputs"]
    data["cells"][first_md]["outputs"] = []
    data["metadata"]["widgets"] = {WIDGET_STATE: {"0294efed": {"model_name": "LayoutModel", "state": {}}}}
    nb = read_notebook(write_json(tmp_path, data))
    count = data["cells"][second_code]["execution_count"]
    assert ran is not None and count is not None
    assert nb.repairs == (
        f"markdown cell {first_md + 1} carried outputs, which only code cells have: removed",
        f"code cell {first_code + 1} had no outputs and no execution count: added empty",
        f"code cell {second_code + 1} [{count}] had no outputs: added empty",
        f"cells 1-{len(kinds)} had no id: ids generated",
        WIDGETS_DROPPED,
    )
    assert nb.validation == ()
    nbformat.validate(nb.notebook)
    assert len({c.id for c in nb.notebook.cells}) == len(kinds)


def test_remaining_schema_errors_are_listed_not_raised(tmp_path: Path) -> None:
    cell = {"cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": [], "execution_count": "one"}
    nb = read_notebook(write_json(tmp_path, minimal_v4(cells=[cell])))
    assert len(nb.validation) == 1
    assert nb.validation[0].startswith("code cell 1: ") and "'one'" in nb.validation[0]
    assert execution_counts(nb) == [(1, None)]


# --------------------------------------------------------------------------- refusals


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert refused(tmp_path / "gone.ipynb") == "gone.ipynb: no such file; check the path and hand in the .ipynb file"


def test_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.ipynb").mkdir()
    assert "dir.ipynb is not a regular file" in refused(tmp_path / "dir.ipynb")


def test_symlink_is_refused(tmp_path: Path) -> None:
    target = write_json(tmp_path, minimal_v4(), "real.ipynb")
    (tmp_path / "link.ipynb").symlink_to(target)
    message = refused(tmp_path / "link.ipynb")
    assert message.startswith("link.ipynb is a symbolic link: the harness does not follow links")
    assert "hand in the notebook file itself" in message


def test_file_just_over_the_cap_is_refused_with_its_size(tmp_path: Path) -> None:
    path = tmp_path / "big.ipynb"
    path.write_bytes(b" " * 1001)
    assert refused(path, max_bytes=1000).startswith(
        "big.ipynb is 1001 bytes; the limit is 1000 bytes: clear the outputs"
    )
    path.write_bytes(b" " * 1000)  # at the cap: read (and refused only as empty)
    assert "the file is empty" in refused(path, max_bytes=1000)


def test_huge_file_is_refused_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.ipynb"
    with path.open("wb") as f:  # sparse: 4 GB on paper, nothing on disk
        f.truncate(4 * 1024**3)
    start = time.perf_counter()
    assert refused(path, max_bytes=1000).startswith("huge.ipynb is 4096.0 MB; the limit is 1000 bytes")
    assert time.perf_counter() - start < 1.0


def test_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin.ipynb"
    path.write_bytes(json.dumps(minimal_v4()).encode("utf-8").replace(b"{}", b'{"a": "\xe9"}'))
    assert refused(path).startswith("latin.ipynb is not a notebook: not UTF-8 (byte ")


def test_utf8_with_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.ipynb"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(minimal_v4()).encode())
    assert read_notebook(path).original_version == "4.1"


def test_not_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.ipynb"
    path.write_text('{\n  "cells": [,]\n}\n', encoding="utf-8")
    assert refused(path).startswith("bad.ipynb is not a notebook: not JSON (line 2, column 13); download it again")


@needs_handouts
def test_truncated_json_says_so(tmp_path: Path) -> None:
    text = (HANDOUTS / "handout-2020.ipynb").read_text(encoding="utf-8")
    for cut in (len(text) // 2, len(text) - 3):  # inside a string; between the last brackets
        path = tmp_path / "cut.ipynb"
        path.write_text(text[:cut], encoding="utf-8")
        message = refused(path)
        assert message.startswith("cut.ipynb is not a notebook: its JSON is truncated"), message
        assert "cut off" in message


def test_empty_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.ipynb").write_text("")
    assert refused(tmp_path / "empty.ipynb").startswith("empty.ipynb is not a notebook: the file is empty")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([1, 2], "its JSON is a list, not an object"),
        ({"name": "x"}, "JSON with no cells"),
        ({"cells": [], "metadata": {}}, 'JSON with no "nbformat" version'),
        (minimal_v4(cells={"a": 1}), 'nbformat 4 without a "cells" list'),
        ({"nbformat": 3, "nbformat_minor": 0, "metadata": {}}, 'nbformat 3 without a "worksheets" list'),
    ],
)
def test_json_that_is_not_a_notebook_is_refused(tmp_path: Path, data: Any, expected: str) -> None:
    message = refused(write_json(tmp_path, data))
    assert message.startswith("nb.ipynb is not a notebook: ") and expected in message


@pytest.mark.parametrize("major", [2, 5, "4"])
def test_unsupported_nbformat_major_is_refused(tmp_path: Path, major: Any) -> None:
    message = refused(write_json(tmp_path, minimal_v4(nbformat=major)))
    assert message.startswith(f"nb.ipynb is nbformat {major!r}, which the harness does not read (only 3 and 4)")


def test_reading_does_not_touch_the_file(tmp_path: Path) -> None:
    data = minimal_v4(nbformat_minor=5, cells=[{"cell_type": "markdown", "source": "hi", "metadata": {}}])
    path = write_json(tmp_path, data)
    before = path.read_bytes()
    nb = read_notebook(path)
    assert nb.repairs == ("cell 1 had no id: ids generated",)
    assert path.read_bytes() == before and copy.deepcopy(data) == json.loads(before)


def test_nbformat_3_notebook_that_cannot_be_upgraded_is_refused(tmp_path: Path) -> None:
    cell = {"cell_type": "code", "input": "x = 1", "metadata": {}}  # no outputs: the upgrade needs them
    data = {"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [{"cells": [cell], "metadata": {}}]}
    message = refused(write_json(tmp_path, data))
    assert message.startswith("nb.ipynb could not be read as nbformat 4 (")
    assert message.endswith("open it in Colab or Jupyter, save it and hand it in again")
