"""Documents: rendered from a stored result fixture (no training), read back as a reader would.

The fixture (tests/fixtures/example-smoke/) is the example submission graded and written up
under the smoke profile: result.json + runs.npz from `grade`, write-up.json + write-up.npz
from `report` (tests/fixtures/README.md says how to regenerate it). One end-to-end test runs
`report` on the example under smoke.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from pypdf import PdfReader
from pypdf.generic import ContentStream

from harness.cli import main
from harness.documents import figures
from harness.documents.render import (
    DOCUMENTS,
    DocumentInput,
    documents_in,
    render_folder,
    render_html,
    templates_dir,
)
from harness.grading import artifacts
from tests.helpers import EXAMPLE, SMOKE_CPU, harness_command

FIXTURE = Path(__file__).parent / "fixtures" / "example-smoke"
ROOT = Path(__file__).resolve().parent.parent
SEED_ORDER = [
    "1. Auto-encoder samples",
    "2. VAE training curves, reconstructions and samples",
    "3. Answers to the VAE questions",
    "4. Interpolation: AE and VAE embeddings",
    "5. Interpolation answer",
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """Both documents rendered once from a copy of the fixture."""
    folder = tmp_path_factory.mktemp("reports") / "example"
    shutil.copytree(FIXTURE, folder)
    results = render_folder(folder)
    assert [r.document for r in results] == ["write-up", "report"]
    assert all(not r.error for r in results), [r.error for r in results]
    return folder


def pdf_text(path: Path) -> str:
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in PdfReader(path).pages))


def pdf_images(path: Path) -> int:
    """Images drawn on the pages (WeasyPrint shares one resource dictionary between pages, so
    count the content streams' ``Do`` operators that paint an image)."""
    reader, n = PdfReader(path), 0
    for page in reader.pages:
        xobjects = page["/Resources"].get("/XObject", {})
        for operands, op in ContentStream(page.get_contents(), reader).operations:
            n += op == b"Do" and xobjects[operands[0]].get_object()["/Subtype"] == "/Image"
    return n


def assert_in_order(text: str, needles: list[str]) -> None:
    """Each needle after the previous one (case-insensitive: the stylesheet capitalises some headings)."""
    text, at = text.lower(), 0
    for needle in (n.lower() for n in needles):
        found = text.find(needle, at)
        assert found >= 0, f"{needle!r} missing after position {at}: ...{text[at : at + 200]}..."
        at = found + len(needle)


def answer_openings(result: dict) -> list[str]:
    """The first six words of each answer, in the questions' order (enough to find it in the PDF)."""
    return [" ".join(a["text"].split()[:6]) for a in result["answers"].values()]


def seed_needles(result: dict) -> list[str]:
    """Headings, the tuned beta and each answer, in the seed's order."""
    ans = {k: " ".join(a["text"].split()[:6]) for k, a in result["answers"].items()}
    beta = f"{result['submission']['tuned_beta']:g}"
    return [
        SEED_ORDER[0],
        ans["ae-samples"],
        SEED_ORDER[1],
        "β = 0",
        "β = 10",
        f"Tuned β = {beta}",
        SEED_ORDER[2],
        ans["beta-0"],
        ans["beta-10"],
        ans["well-tuned"],
        SEED_ORDER[3],
        "Comparison 3",
        SEED_ORDER[4],
        ans["interpolation"],
    ]


def test_write_up_pdf_has_every_section_the_tuned_beta_and_each_answer_in_the_seeds_order(rendered):
    result = json.loads((rendered / "write-up.json").read_text())
    text = pdf_text(rendered / "write-up.pdf")
    assert_in_order(
        text, ["Write-up", result["assignment"]["title"], result["submission"]["student"], *seed_needles(result)]
    )
    for a in result["answers"].values():
        assert f"{a['words']} / {a['limit']} words" in text


def test_write_up_pdf_has_one_image_per_figure_of_the_seed(rendered):
    # AE samples; curves, reconstructions and samples for three betas; three interpolation comparisons
    assert pdf_images(rendered / "write-up.pdf") == 1 + 3 * 3 + 3


def test_report_pdf_has_the_total_rubric_metrics_write_up_and_evidence_in_order(rendered):
    result = json.loads((rendered / "result.json").read_text())
    text = pdf_text(rendered / "report.pdf")
    total = f"{result['total']:g} / {result['max_total']:g}"
    assert_in_order(
        text,
        [
            "Grade report",
            f"Total {total}",
            *(i["title"] for i in result["items"]),
            "Measured against the reference",
            "Student's β",
            *seed_needles(result),
            "Evidence per item",
            "Run details",
            "Protections in force",
            "Timings",
            "Versions",
        ],
    )


def test_report_pdf_adds_the_beta_search_kl_embedding_and_reference_sample_figures(rendered):
    assert pdf_images(rendered / "report.pdf") == pdf_images(rendered / "write-up.pdf") + 4


def test_html_documents_are_single_files_without_external_references(rendered):
    for document in DOCUMENTS:
        html = (rendered / f"{document}.html").read_text()
        sources = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)""", html)
        assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
        assert "<link" not in html and "url(" not in html and "@import" not in html


def test_pdf_metadata_names_the_document_and_the_student(rendered):
    for document in DOCUMENTS:
        meta = PdfReader(rendered / f"{document}.pdf").metadata
        assert "Ada Example" in meta.title and meta.author == "Ada Example"


def test_pdf_embeds_its_fonts(rendered):
    reader = PdfReader(rendered / "report.pdf")
    fonts = [f for page in reader.pages for f in page["/Resources"]["/Font"].values()]
    descriptors = [f.get_object()["/FontDescriptor"] for f in fonts if "/FontDescriptor" in f.get_object()]
    if not descriptors:  # Type0 fonts keep the descriptor in their descendant
        descriptors = [f.get_object()["/DescendantFonts"][0].get_object()["/FontDescriptor"] for f in fonts]
    assert descriptors and all(any(k in d for k in ("/FontFile", "/FontFile2", "/FontFile3")) for d in descriptors)


def test_a_failed_pdf_keeps_the_html_says_so_and_exits_non_zero(tmp_path, capsys):
    folder = tmp_path / "example"
    shutil.copytree(FIXTURE, folder)
    (folder / "write-up.pdf").mkdir()  # the PDF cannot be written where a folder stands
    assert main(["render", str(folder), "--document", "write-up"]) == 1
    err = capsys.readouterr().err
    assert "write-up: the PDF could not be written" in err
    assert (folder / "write-up.html").stat().st_size > 10_000


def test_render_refuses_a_folder_without_results(tmp_path, capsys):
    (tmp_path / "check.json").write_text("{}")
    assert main(["render", str(tmp_path)]) == 2
    assert "neither result.json" in capsys.readouterr().err


def test_a_run_that_did_not_finish_is_shown_with_its_reason_and_the_rest_still_renders(tmp_path):
    folder = tmp_path / "example"
    shutil.copytree(FIXTURE, folder)
    result = json.loads((folder / "write-up.json").read_text())
    result["runs"]["tuned"] = {**result["runs"]["tuned"], "status": "timeout", "error": "it ran past the limit (20 s)"}
    result["answers"]["beta-10"]["words"] = 250
    (folder / "write-up.json").write_text(json.dumps(result))
    arrays = {
        k: v for k, v in artifacts.load_artifacts(folder / "write-up.npz").items() if not k.startswith("run/tuned/")
    }
    artifacts.write_artifacts(folder / "write-up.npz", arrays)
    html = re.sub(r"\s+", " ", render_html(folder, "write-up"))
    assert "No training curves:</strong> the run ended: timeout — it ran past the limit (20 s)" in html
    assert "No interpolation comparisons" in html
    assert "over the limit by 50 words" in html
    assert html.count("<img") == 1 + 2 * 3  # the AE's samples and the two fixed betas' figures


def test_student_text_is_escaped_so_a_hostile_answer_cannot_inject_markup(tmp_path):
    folder = tmp_path / "example"
    shutil.copytree(FIXTURE, folder)
    result = json.loads((folder / "write-up.json").read_text())
    result["submission"]["student"] = "<b>Mallory</b>"
    result["answers"]["beta-0"]["text"] = '<script>alert(1)</script><img src="http://evil.example/x.png">'
    (folder / "write-up.json").write_text(json.dumps(result))
    html = render_html(folder, "write-up")
    assert "<script>" not in html and "http://evil" not in html.split("&lt;img")[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;Mallory&lt;/b&gt;" in html
    assert all(s.startswith("data:") for s in re.findall(r"""\bsrc\s*=\s*["']([^"']*)""", html))


def test_documents_render_the_result_given_or_as_stored_and_never_apply_overrides_themselves(tmp_path):
    folder = tmp_path / "example"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("write-up.*"))
    (tmp_path / "overrides.csv").write_text("submission,item,points,comment\nexample,ae_training,4,\n")
    stored = json.loads((folder / "result.json").read_text())
    assert "Total 45 / 45" in re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", render_html(folder, "report")))
    assert not (folder / "overrides.json").exists()  # merging overrides is harness.course's, not the renderer's
    given = DocumentInput({**stored, "total": 41.0}, overrides_error="a reason")
    html = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", render_html(folder, "report", given)))
    assert "Total 41 / 45" in html and "so the points below are the automatic ones: a reason" in html


def test_documents_in_lists_what_a_folder_has_data_for(tmp_path):
    assert documents_in(tmp_path) == []
    shutil.copy(FIXTURE / "write-up.json", tmp_path)
    assert documents_in(tmp_path) == ["write-up"]


def test_templates_come_from_the_environment_variable_when_set(tmp_path, monkeypatch):
    shutil.copytree(templates_dir(), tmp_path / "t")
    page = tmp_path / "t" / "write-up.html.j2"
    page.write_text(page.read_text().replace("Write-up", "Custom course title"))
    monkeypatch.setenv("HARNESS_TEMPLATES", str(tmp_path / "t"))
    assert "Custom course title" in render_html(FIXTURE, "write-up")


def test_every_template_file_ships_in_the_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"]["harness.templates"] == "templates" and "harness.templates" in config["packages"]
    patterns = config["package-data"]["harness.templates"]
    for f in (ROOT / "templates").iterdir():
        assert any(f.match(p) for p in patterns), f"{f.name} would be missing from an installed harness"


# --------------------------------------------------------------------------- artefacts and figures


def test_images_are_stored_as_uint8_with_nan_shown_black():
    x = torch.tensor([[[[0.0, 0.5], [1.0, float("nan")]]]])
    assert artifacts.to_u8(x).tolist() == [[[[0, 128], [255, 0]]]]


def test_projection_keeps_two_separated_clusters_apart_on_the_first_axis():
    codes = torch.cat([torch.randn(50, 8) * 0.1, torch.randn(50, 8) * 0.1 + 3.0])
    xy = artifacts.project_2d(codes)
    assert xy.shape == (100, 2) and (xy[:50, 0].max() < xy[50:, 0].min() or xy[50:, 0].max() < xy[:50, 0].min())


def test_artefacts_round_trip_and_refuse_pickled_objects(tmp_path):
    arrays = {"run/ae/samples": np.zeros((16, 1, 4, 4), np.uint8), "test/pairs": np.array([[5, 8]])}
    artifacts.write_artifacts(tmp_path / "a.npz", arrays)
    back = artifacts.load_artifacts(tmp_path / "a.npz")
    assert back.keys() == arrays.keys() and back["test/pairs"].tolist() == [[5, 8]]
    np.savez(tmp_path / "evil.npz", x=np.array([object()], dtype=object))
    with pytest.raises(ValueError):
        artifacts.load_artifacts(tmp_path / "evil.npz")


def test_run_arrays_keep_what_the_documents_show():
    value = {
        "samples": torch.rand(100, 1, 4, 4),
        "reconstructions": torch.rand(30, 1, 4, 4),
        "paths": torch.rand(3, 5, 1, 4, 4),
        "q": torch.randn(30, 4),
        "run": {"curves": {"rec": [1.0, float("nan")], "kl": [2.0, 1.0]}},
    }
    out = artifacts.run_arrays("tuned", value, "vae", 2, 16, [0.5, 0.1], embed=True)
    assert (
        out["run/tuned/samples"].shape == (16, 1, 4, 4)
        and out["run/tuned/reconstructions"].shape[0] == artifacts.SHOWN_INPUTS
    )
    assert np.isnan(out["run/tuned/curve_rec"][1]) and out["run/tuned/embedding"].shape == (30, 2)
    assert "run/tuned/embedding" not in artifacts.run_arrays("tuned", value, "vae", 2, 16)


def test_tile_lays_images_out_in_rows_with_white_gaps():
    images = np.stack([np.full((1, 2, 2), v, np.uint8) for v in (10, 20, 30)])
    mosaic = figures.tile(images, cols=2, gap=1)
    assert (
        mosaic.shape == (5, 5)
        and mosaic[0, 0] == 10
        and mosaic[0, 3] == 20
        and mosaic[3, 0] == 30
        and mosaic[0, 2] == 255
    )


def test_figures_are_png_images():
    png = figures.training_curves(np.linspace(1, 0.1, 40, dtype=np.float32), np.linspace(0, 5, 40, dtype=np.float32))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_trains_the_example_with_its_own_code_and_writes_the_write_up(tmp_path, session_cache, mnist):
    proc = subprocess.run(
        harness_command("report", EXAMPLE, *SMOKE_CPU, "--cache", session_cache, "--out", tmp_path, "-q"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "example"
    result = json.loads((folder / "write-up.json").read_text())
    assert result["kind"] == "write-up" and result["profile"] == "smoke"
    assert {n: r["status"] for n, r in result["runs"].items()} == {
        "ae": "ok",
        "beta-0": "ok",
        "beta-10": "ok",
        "tuned": "ok",
    }
    assert f"written: {folder / 'write-up.pdf'}" in proc.stdout
    assert_in_order(pdf_text(folder / "write-up.pdf"), seed_needles(result))
    assert pdf_images(folder / "write-up.pdf") == 1 + 3 * 3 + 3


def test_a_notebook_s_report_shows_its_cells_forensics_and_stored_figures_beside_the_re_run(tmp_path):
    import base64

    import numpy as np

    folder = tmp_path / "example"
    shutil.copytree(FIXTURE, folder)
    result = json.loads((folder / "result.json").read_text())
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    result["notebook"] = {
        "file": "doejane_1_2_vae.ipynb",
        "handout": "variant-a",
        "nbformat": "4.1",
        "roles": {"sampling": [18]},
        "repairs": [],
        "validation": [],
        "notes": [],
        "removed": ["cell 3: %matplotlib inline"],
        "untouched": [{"role": "vae_runs", "cell": 24, "lines": [5, 9], "placeholder": "opt = None"}],
        "forensics": ["execution counts out of document order (cell 18 [3] after cell 14 [9])"],
        "stored_figures": [{"cell": 18, "role": "sampling", "index": 0, "key": "cell-18-0"}],
        "cells": [
            {"number": 18, "role": "sampling", "seconds": 0.1, "substituted": [], "error": "", "traceback": ""},
            {
                "number": 24,
                "role": "vae_runs",
                "seconds": 0.0,
                "substituted": ["epochs = 5 -> 0"],
                "error": "SyntaxError: invalid syntax (line 30)",
                "traceback": "",
                "timed_out": False,
            },
        ],
    }
    (folder / "result.json").write_text(json.dumps(result))
    arrays = artifacts.load_artifacts(folder / "runs.npz")
    arrays["stored/cell-18-0"] = np.frombuffer(png, dtype=np.uint8)
    artifacts.write_artifacts(folder / "runs.npz", arrays)
    html = re.sub(r"\s+", " ", render_html(folder, "report"))
    assert "The notebook as handed in" in html and "execution counts out of document order" in html
    assert "cell 24 (vae runs), lines 5–9: <code>opt = None</code>" in html
    assert "SyntaxError: invalid syntax (line 30)" in html and "epochs = 5 -&gt; 0" in html
    assert "cell 18 (sampling), as stored" in html and "re-run by the harness, profile smoke: AE samples" in html
    assert "data:image/png;base64," + base64.b64encode(png).decode() in html
