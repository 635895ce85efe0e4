"""Write-ups from the notebooks students hand in: ``report NOTEBOOK --stored`` (the notebook's own
stored figures and answers, nothing trained) and ``report NOTEBOOK`` (re-run, the stored figure
beside the harness's). The notebooks are built from the handouts (tests/notebooks.py) and really
run top to bottom with their outputs stored (tests/notebook_exec.py), so every stored figure is
one the notebook's code drew."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import nbformat
import pytest

from harness.cli import main
from harness.config.assignment import load_assignment
from harness.grading.result import load_result
from harness.submission.notebook_figures import slot_names
from tests import notebooks as nbs
from tests.notebook_exec import execute

pytestmark = pytest.mark.skipif(
    not nbs.HANDOUTS.is_dir(),
    reason="../shared/handouts not found: the handout notebooks are needed to build completed notebooks",
)

NAME = "doejane_12345_678901_vae.ipynb"  # Canvas's download name: the student is named by it


@pytest.fixture(scope="module")
def ran(tmp_path_factory, mnist):
    """Completed 2020 and 2026 notebooks, run with their outputs stored, each in its own folder."""
    root = tmp_path_factory.mktemp("ran")
    out = {}
    for year in ("2020", "2026"):
        folder = root / year
        folder.mkdir()
        blank = nbs.write(nbs.complete(year), root / f"{year}-blank.ipynb")
        out[year] = execute(blank, folder / NAME, mnist.source.root)
    return out


def _stored(path: Path, out: Path, capsys) -> tuple[int, str, dict]:
    code = main(["report", str(path), "--stored", "--out", str(out), "-q"])
    printed = capsys.readouterr().out
    folder = out / path.stem
    return code, printed, load_result(folder / "write-up.json") if (folder / "write-up.json").is_file() else {}


def test_stored_write_up_of_a_2026_notebook_with_every_output_has_every_section(ran, tmp_path, capsys):
    code, printed, result = _stored(ran["2026"], tmp_path, capsys)
    assert code == 0, printed
    a = load_assignment("variant-b")
    placed = {f["slot"] for f in result["notebook"]["stored_figures"] if f["slot"]}
    assert placed == set(slot_names(a)) and result["notebook"]["missing_figures"] == {}
    assert result["profile"] == "stored" and all(r["status"] == "stored" for r in result["runs"].values())
    assert result["submission"]["tuned_beta"] == 1e-4 and result["submission"]["student"]
    html = (tmp_path / ran["2026"].stem / "write-up.html").read_text()
    assert len(re.findall(r"<figcaption>[^<]*From the notebook: cell", html)) == len(placed)
    assert "Re-run by the harness" not in html and "What the notebook does not hold" not in html
    for n in (
        "1. Auto-encoder samples",
        "2. VAE training curves",
        "3. Answers",
        "4. Interpolation",
        "5. Interpolation",
    ):
        assert n in html
    assert "from digit 4 to digit 8" in html
    assert (tmp_path / ran["2026"].stem / "write-up.pdf").read_bytes().startswith(b"%PDF")


def test_stored_write_up_of_a_2020_notebook_lists_the_overwritten_beta_0_and_beta_10_runs(ran, tmp_path, capsys):
    code, printed, result = _stored(ran["2020"], tmp_path, capsys)
    assert code == 0, printed
    missing = result["notebook"]["missing_figures"]
    assert sorted(missing) == sorted(
        f"{r}/{w}" for r in ("beta-0", "beta-10") for w in ("curves", "reconstructions", "samples")
    )
    lines = [line for line in printed.splitlines() if line.startswith("  - missing:")]
    assert len(lines) == 2, printed
    assert "β = 0 training curves, reconstructions and samples: not in the notebook" in lines[0]
    assert "overwrote" in lines[0] and "re-run cell" in lines[0] and "without --stored" in lines[0]
    html = (tmp_path / ran["2020"].stem / "write-up.html").read_text()
    assert "What the notebook does not hold" in html and html.count("overwrote") >= 2
    assert "Tuned β = 0.0001" in html and "as the code sets it in cell" in html


def test_stored_write_up_of_a_folder_submission_is_refused_with_what_to_run(tmp_path, capsys):
    from tests.helpers import EXAMPLE

    assert main(["report", str(EXAMPLE), "--stored", "--out", str(tmp_path), "-q"]) == 2
    assert "without --stored" in capsys.readouterr().err


def test_stored_write_up_of_a_notebook_with_500_images_keeps_40_and_says_so(tmp_path, capsys):
    import io

    import numpy as np
    from PIL import Image

    nb = nbs.complete("2026")
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype("uint8")).save(buf, format="PNG")
    png = base64.b64encode(buf.getvalue()).decode("ascii")
    cell = next(c for c in nb.cells if c.cell_type == "code" and "def vis_samples(model):" in c.source)
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png}) for _ in range(500)]
    path = nbs.write(nb, tmp_path / NAME)
    code, printed, result = _stored(path, tmp_path / "out", capsys)
    assert code == 0, printed
    assert len(result["notebook"]["stored_figures"]) == 40
    assert any(re.search(r"hold 5\d\d images; the first 40 are kept", n) for n in result["notebook"]["notes"])
    assert "does not guess" in result["notebook"]["missing_figures"]["ae/samples"]  # 40 grids: ambiguous


def test_a_re_run_write_up_shows_each_stored_figure_beside_the_re_run_one_labelled(ran, tmp_path, capsys, mnist):
    code = main(
        [
            "report",
            str(ran["2026"]),
            "--out",
            str(tmp_path),
            "--profile",
            "smoke",
            "-q",
            "--data",
            str(mnist.source.root),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    folder = tmp_path / ran["2026"].stem
    result = json.loads((folder / "write-up.json").read_text())
    assert {r["status"] for r in result["runs"].values()} == {"ok"}
    html = (folder / "write-up.html").read_text()
    assert html.count('class="side-by-side"') >= 10  # AE samples, 3 runs x 3 (curves, reconstructions, samples)
    assert "From the notebook: cell" in html and "Re-run by the harness (profile smoke" in html
    assert "What the notebook does not hold" not in html
