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
from tests.handin_pdfs import student_pdf
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
    assert "Tuned β = 0.0001" in html and "written <code>beta = 1e-4</code> in cell" in html


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


# --------------------------------------------------------------------------- the hand-in PDF


def _stored_pngs(path: Path) -> dict[str, bytes]:
    """Slot -> the stored PNG of a notebook's figure in it."""
    from harness.submission.notebook_load import load

    sub = load(path, load_assignment("variant-a" if "2020" in str(path.parent) else "variant-b"))
    return {f.slot: f.png for f in sub.notebook.figures if f.slot}


def test_a_hand_in_pdf_of_the_notebooks_figures_matches_them_all(ran, tmp_path):
    from harness.grading.handin import check_handin
    from harness.submission.notebook_load import load

    a = load_assignment("variant-a")
    folder = ran["2020"].parent
    pdf = student_pdf(tmp_path / "mine.pdf", _stored_pngs(ran["2020"]), nbs.example_answers(), "1e-4", "5 to 8")
    target = tmp_path / "hand-in"
    target.mkdir()
    (target / NAME).write_bytes((folder / NAME).read_bytes())
    (target / "write-up.pdf").write_bytes(pdf.read_bytes())
    sub = load(target, a)
    check, thumbs = check_handin(sub, a, {}, {})
    assert check["flags"] == [], check
    assert [f["matched"] for f in check["figures"]] == ["notebook"] * 6
    # pasted unchanged, each is its stored figure: no margin lost to how either side is read
    assert min(f["similarity"] for f in check["figures"]) > 0.999, check["figures"]
    assert [f["slot"] for f in check["figures"]] == [
        "ae/samples",
        "tuned/curves",
        "tuned/reconstructions",
        "tuned/samples",
        "interpolation/1/ae",
        "interpolation/1/vae",
    ][: len(check["figures"])] or check
    assert set(thumbs) == {f"pdf/{f['page']}-{f['index']}" for f in check["figures"]}


def test_a_hand_in_pdf_with_four_planted_mismatches_raises_exactly_those_four_flags(ran, tmp_path, grader):
    from harness.course.summary import write_summary
    from harness.course.table import grade_rows
    from harness.grading.grade import grade_submission
    from harness.grading.result import write_result
    from harness.grading.session import RunOptions

    a = load_assignment("variant-a")
    figures = _stored_pngs(ran["2020"])
    figures["tuned/curves"] = _stored_pngs(ran["2026"])["tuned/curves"]  # a figure of another run
    answers = nbs.example_answers()
    first = answers["beta-10"].split(". ")[0]
    answers["beta-10"] = answers["beta-10"].replace(first, "I did not have time to look at this run closely")
    folder = tmp_path / "doejane_12345_678901_vae"
    folder.mkdir()
    (folder / NAME).write_bytes(ran["2020"].read_bytes())
    student_pdf(folder / "write-up.pdf", figures, answers, beta="0.5", pair="3 to 8")

    out = tmp_path / "reports" / folder.name
    out.mkdir(parents=True)
    result = grade_submission(folder, grader, RunOptions(quiet=True, out=out))
    check = result.pdf_check
    assert len(check["flags"]) == 4, check["flags"]
    image, beta, pair, answer = check["flags"]
    assert "image 1 on page 2 matches no figure" in image
    assert "tuned beta of 0.5" in beta and "cell" in beta
    assert "digits 3 and 8" in pair or "3 and 8" in pair, pair
    assert "beta-10" in answer and "differs" in answer
    assert result.total == result.max_total  # flags for review only: no points change
    assert [f["matched"] for f in check["figures"]][1] == "none"

    write_result(out / "result.json", result)
    row = grade_rows(out.parent, [folder.name], a).iloc[0]
    assert row["pdf"] == "4 mismatches" and row["flags"].count("PDF: ") == 4
    summary = write_summary(out.parent, grade_rows(out.parent, [folder.name], a), a, "smoke").read_text()
    assert "Hand-in PDFs to look at" in summary and "4 mismatches" in summary
    from harness.documents.render import render_folder

    (rendered,) = render_folder(out, ["report"])
    assert rendered.error == ""
    report = (out / "report.html").read_text()

    assert 'id="pdf-check"' in report
    assert report.count('class="thumb"') == 6 + 5  # each PDF image, and the notebook figure each matched one copies


def _pages(pdf: Path, scale: float = 0.5) -> list:
    """Each page of a PDF as a grey numpy image (pypdfium2: no system tools)."""
    import numpy as np
    import pypdfium2

    doc = pypdfium2.PdfDocument(str(pdf))
    try:
        return [np.asarray(doc[i].render(scale=scale).to_pil().convert("L")) for i in range(len(doc))]
    finally:
        doc.close()


def test_every_page_of_a_stored_write_up_keeps_its_content_inside_the_margins(ran, tmp_path, capsys):
    """Figures sized to the page, long text wrapped, nothing cut off: each page, looked at as an
    image, has nothing in its left, right and top margins, and no page is blank."""
    nb = nbformat.read(ran["2020"], as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "markdown" and ">**Answer" in c.source)
    cell.source += "\n\nSee https://example.org/" + "a-very-long-unbroken-path-segment" * 12 + " for details."
    path = nbs.write(nb, tmp_path / NAME)
    code, printed, _ = _stored(path, tmp_path / "out", capsys)
    assert code == 0, printed
    pages = _pages(tmp_path / "out" / path.stem / "write-up.pdf")
    points = 0.5 * 72 / 25.4  # pixels per mm at scale 0.5
    for number, page in enumerate(pages, start=1):
        side, top = int(15 * points), int(15 * points)  # A4 margins are 17 mm at the sides, 18 mm on top
        assert page[:, :side].min() > 200 and page[:, -side:].min() > 200, f"page {number}: ink in a side margin"
        assert page[:top, :].min() > 200, f"page {number}: ink in the top margin"
        assert (page[top:-top, side:-side] < 128).mean() > 0.002, f"page {number} is blank"


@pytest.mark.parametrize(
    ("make", "said"),
    [("not_a_pdf", "not a PDF"), ("encrypted_pdf", "encrypted"), ("empty_pdf", "no pages")],
)
def test_a_bad_hand_in_pdf_is_one_clear_flag_and_the_notebook_is_still_read(make, said, ran, tmp_path):
    from harness.grading.handin import check_handin
    from harness.submission.notebook_load import load
    from tests import handin_pdfs

    a = load_assignment("variant-a")
    (tmp_path / NAME).write_bytes(ran["2020"].read_bytes())
    getattr(handin_pdfs, make)(tmp_path / "write-up.pdf")
    sub = load(tmp_path, a)
    check, thumbs = check_handin(sub, a, {}, {})
    assert said in check["error"] and check["flags"] == [f"the PDF could not be checked: {check['error']}"]
    assert thumbs == {} and sub.notebook.stored_runs["tuned"]["cell"]  # the rest of the hand-in is intact
