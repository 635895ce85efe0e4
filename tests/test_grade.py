"""Integration: `harness grade` under the smoke profile on real digits, with real training in the sandbox.

The example earns 45/45 through the CLI. Each legitimate variant (another loss convention
with its tuned beta written in that convention) keeps 45/45; a hanging training loop costs
only its own item. Planted training bugs: test_grade_planted.py.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from pypdf import PdfReader

from tests.helpers import EXAMPLE, EXAMPLE_TUNED, SMOKE_CPU, copy_example, harness_command, planted_copy


@pytest.fixture(scope="session")
def example_grade(assignment, session_cache, tmp_path_factory, grader):
    """The example graded through the CLI, as an instructor runs it (with a Gradescope export);
    after ``grader``, so the session cache holds the beta band and the smoke reference."""
    out = tmp_path_factory.mktemp("reports")
    proc = subprocess.run(
        harness_command("grade", EXAMPLE, *SMOKE_CPU, "--cache", session_cache, "--out", out, "--gradescope", "-q"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out / "example"


def test_example_earns_45_of_45_under_smoke(example_grade, assignment):
    proc, folder = example_grade
    result = json.loads((folder / "result.json").read_text())
    assert result["kind"] == "grade" and result["profile"] == "smoke" and result["pending"] == []
    assert (result["total"], result["max_total"]) == (45, 45), [
        i["evidence"] for i in result["items"] if i["points"] < i["max_points"]
    ]
    assert [i["id"] for i in result["items"]] == [r.id for r in assignment.rubric]
    assert "total" in proc.stdout and "45 / 45" in proc.stdout  # the final table
    assert "no full-protocol beta band" not in proc.stderr
    assert "building the full-protocol beta band" not in proc.stderr  # cached: built once, never again


def test_grade_evidence_states_measurements_thresholds_and_the_beta_conversion(example_grade):
    _, folder = example_grade
    items = {i["id"]: i for i in json.loads((folder / "result.json").read_text())["items"]}
    text = " ".join(items["ae_training"]["evidence"])
    assert "test MSE" in text and "reference" in text and "full credit up to 1.5x" in text
    tuning = items["beta_tuning"]
    assert tuning["evidence"][0] == "your beta 0.0001, in the reference's convention" and tuning["status"] == "pass"
    assert any("inside the band" in e and "full-protocol search" in e for e in tuning["evidence"]), tuning["evidence"]
    assert any("the reference trained at your beta (0.0001, smoke profile)" in e for e in tuning["evidence"])
    vae = items["vae_training"]["metrics"]["runs"]
    assert vae["beta-10"]["active_units"] == 0 and vae["beta-0"]["active_units"] == 64
    assert len(items["interpolation"]["metrics"]["vae"]["paths"]) == 3


def test_gradescope_export_has_one_test_per_item(example_grade, assignment):
    _, folder = example_grade
    gs = json.loads((folder / "results.json").read_text())
    assert gs["score"] == 45 and len(gs["tests"]) == len(assignment.rubric)
    assert {"name", "score", "max_score", "output", "visibility"} <= set(gs["tests"][0])


def test_grade_writes_the_instructor_report_as_html_and_pdf(example_grade):
    proc, folder = example_grade
    assert {"report.html", "report.pdf", "runs.npz"} <= {p.name for p in folder.iterdir()}
    assert f"written: {folder / 'report.pdf'}" in proc.stdout
    text = " ".join(page.extract_text() for page in PdfReader(folder / "report.pdf").pages)
    assert "45 / 45" in text and "Evidence per item" in text


# Another loss convention with the same tuned beta written in it: in fact fine.
VARIANTS = {
    "kl-mean-over-dims": ([(".sum(dim=1).mean()", ".mean()")], "tuned_beta = 0.0064"),
    "sums-over-everything": (
        [
            (".sum(dim=1).mean()", ".sum()"),
            ("rec_loss = F.mse_loss(rec, x)", 'rec_loss = F.mse_loss(rec, x, reduction="sum")'),
        ],
        "tuned_beta = 0.0784",
    ),
    "log-variance": (
        [
            ("z = mu + torch.exp(log_sigma) * eps", "z = mu + torch.exp(0.5 * log_sigma) * eps"),
            ("kl_divergence(mu, log_sigma, zeros, zeros)", "kl_divergence(mu, 0.5 * log_sigma, zeros, zeros)"),
        ],
        EXAMPLE_TUNED,
    ),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_other_loss_convention_with_its_own_beta_keeps_45(name, tmp_path, run_grade):
    edits, tuned = VARIANTS[name]
    result = run_grade(planted_copy(tmp_path / name, edits, tuned if tuned != EXAMPLE_TUNED else None))
    assert result.total == 45, {i.id: i.evidence for i in result.items if i.points < i.max_points}
    beta = next(i for i in result.items if i.id == "beta_tuning")
    assert beta.metrics["beta_reference_convention"] == pytest.approx(1e-4)


def test_a_hanging_train_autoencoder_costs_ae_training_only(tmp_path, run_grade):
    folder = copy_example(
        tmp_path / "hang",
        [
            (
                "    model.to(device)\n    model.train()\n"
                "    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)\n    losses = []",
                "    while True:\n        pass",
            )
        ],
    )
    result = run_grade(folder, train_timeout_s=40)  # the other units, on one core beside a busy one, finish well inside
    items = {i.id: i for i in result.items}
    assert items["ae_training"].status == "timeout" and items["ae_training"].points == 0
    assert {i.id for i in result.items if i.points < i.max_points} == {"ae_training"}
    assert any("the AE path uses the reference's AE" in e for e in items["interpolation"].evidence)
