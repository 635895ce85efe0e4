"""Course-wide similarity (harness.course.similarity): the copied hand-ins an instructor must see.

Every case is built from the three real handouts (tests/notebooks.py): a completed notebook and
its copy with renamed variables and reworded comments, answers or stored figures pasted from
another student, two independent correct solutions written differently, untouched templates,
the harness's reference implementation pasted into a notebook, two uploads of one student, and
bad input (an empty course, files that are no notebook, a 300 MB notebook). Nothing here runs
student code or trains: the comparison reads files.
"""

from __future__ import annotations

import base64
import copy
import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from harness.config.assignment import load_assignment
from harness.course import similarity as S
from tests import notebooks as N

pytestmark = pytest.mark.skipif(not N.HANDOUTS.is_dir(), reason="the course's handouts are not in ../shared/handouts")

ROOT = Path(__file__).parents[1]

# --------------------------------------------------------------------------- building cases

RENAMES = {  # what a student who copies renames (across every code cell, so the notebook stays consistent)
    "sample_img": "batch_images",
    "rec_loss": "loss_reconstruction",
    "log_sigma": "log_std",
    "mu": "mean",
    "q": "posterior_params",
    "opt": "optimizer",
    "criterion": "loss_fn",
    "sampled_embeddings": "z_prior",
    "decoded_samples": "generated",
    "total_loss": "objective",
}
REWORDED = {  # the solution's comments, reworded
    "# create optimizer instance": "# Adam with the lr given above",
    "# create loss layer instance": "# mean squared error",
    "# output of encoder (concatenated mean and log_sigma)": "# encoder gives both halves",
    "# batch of sampled embeddings": "# reparameterisation trick",
    "# decoder reconstruction from embedding": "# decode the latent",
    "# sample batch of embedding from prior": "# draw from N(0, I)",
    "# for initial Linear layer": "# project the code up",
}


def renamed_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` as a student who copied it hands it in: variables renamed, comments reworded, a
    comment line of their own at the top of each filled region."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        text = cell.source
        for old, new in REWORDED.items():
            text = text.replace(old, new)
        for old, new in RENAMES.items():
            text = re.sub(rf"(?<!['\"\w]){old}\b(?!['\"])", new, text)
        text = re.sub(r"(#+ END TODO #+)", r"# (checked against the slides)\n\1", text)
        cell.source = text
    return nb


OTHER_ANSWERS = {
    "ae-samples": "The samples look like smudges and only rarely like a number. My guess is that the auto-encoder "
    "never learned where its codes should live: training only asks for good reconstructions, so the latent "
    "vectors of real digits occupy some odd corner of the space and the Gaussian we draw from mostly hits "
    "places the decoder never visited while training.",
    "beta-0": "Setting the weight of the KL part to zero leaves pure reconstruction, so the VAE turns into a plain "
    "auto-encoder with noise. Reconstructions came out crisp, the KL number just kept rising, and decoding random "
    "codes again gave nonsense shapes because nothing ties the posterior to the prior any more.",
    "beta-10": "A weight of ten makes matching the prior far more important than reconstructing. The encoder gives "
    "up and outputs the prior for every input, the KL drops to about zero and all reconstructions look like the "
    "same grey average figure. Sampling also returns that one blurry shape over and over.",
    "well-tuned": "I would hope for reconstructions that keep each digit recognisable with only mild blur and "
    "for samples that look hand-written, varied across all ten classes and styles, since the training codes "
    "should then cover the whole prior.",
    "interpolation": "Going from a 4 to an 8 the VAE changes gradually and every frame is a believable digit, "
    "while the AE fades one image into the other with ghostly overlaps halfway. The regularised latent space of "
    "the VAE is packed densely around the origin, so straight lines stay on the data; that also makes its "
    "features nicer for classifiers or nearest neighbour search later.",
}


def _alternative(new: str) -> str:
    """One correct solution rewritten the way another student writes it: positional layer
    arguments, torch.nn spelled out, keyword optimiser calls, other loops and sampling calls."""
    text = re.sub(r"kernel_size=(\d+), stride=(\d+), padding=(\d+)", r"\1, \2, \3", new)
    text = text.replace(", output_padding=", ", ")
    text = text.replace("nn.LeakyReLU(0.2)", "torch.nn.LeakyReLU(negative_slope=0.2, inplace=True)")
    text = text.replace("nn.BatchNorm2d(", "torch.nn.BatchNorm2d(num_features=")
    text = text.replace("nn.Flatten(),", "torch.nn.Flatten(start_dim=1),")
    text = text.replace(
        "torch.utils.data.DataLoader(mnist_train, batch_size=batch_size, shuffle=True, num_workers=nworkers)",
        "torch.utils.data.DataLoader(dataset=mnist_train, shuffle=True, num_workers=nworkers, batch_size=batch_size)",
    )
    text = re.sub(
        r"torch\.optim\.Adam\((\w+)\.parameters\(\), lr=learning_rate\)",
        r"torch.optim.Adam(lr=learning_rate, params=list(\1.parameters()))",
        text,
    )
    text = text.replace("criterion = nn.MSELoss()", "criterion = torch.nn.MSELoss(reduction='mean')")
    text = text.replace(N.AE_LOOP.splitlines()[0], "for images, _labels in iter(mnist_data_loader):")
    for old, new_line in (
        (
            "  sample_img = sample_img.to(device)\n  rec = ae_model(sample_img)\n"
            "  rec_loss = criterion(rec, sample_img)\n  opt.zero_grad()\n  rec_loss.backward()\n  opt.step()",
            "  opt.zero_grad()\n  images = images.to(device)\n"
            "  rec_loss = criterion(ae_model.forward(images), images)\n  rec_loss.backward(); opt.step()",
        ),
        (
            "  sample_img = sample_img.to(device)\n  outputs = vae_model(sample_img)\n"
            "  total_loss, losses = vae_model.loss(sample_img, outputs)\n  opt.zero_grad()\n  total_loss.backward()\n"
            "  opt.step()",
            "  opt.zero_grad()\n  images = images.to(device)\n  out = vae_model.forward(images)\n"
            "  total_loss, losses = vae_model.loss(images, out)\n  total_loss.backward(); opt.step()",
        ),
    ):
        for indent in ("  ", "    ", "      "):
            text = text.replace(
                "\n".join(indent[2:] + line for line in old.splitlines()),
                "\n".join(indent[2:] + line for line in new_line.splitlines()),
            )
    text = text.replace(
        "torch.randn(batch_size, nz, generator=gen).to(device)",
        "torch.normal(0.0, 1.0, size=(batch_size, nz), generator=gen).to(device)",
    )
    text = text.replace(
        "torch.randn(batch_size, nz, device=device)", "torch.normal(0.0, 1.0, (batch_size, nz)).to(device)"
    )
    text = text.replace("model.decoder(sampled_embeddings)", "model.decoder.forward(sampled_embeddings)")
    text = text.replace("Encoder(2 * nz)", "Encoder(nz + nz)")
    text = text.replace("mu, log_sigma = q[:, :nz], q[:, nz:]", "mu, log_sigma = torch.chunk(q, 2, dim=1)")
    text = text.replace(
        "z = mu + torch.exp(log_sigma) * torch.randn_like(mu)",
        "eps = torch.randn_like(log_sigma)\n    z = eps * log_sigma.exp() + mu",
    )
    text = text.replace("nn.functional.mse_loss(outputs['rec'], x)", "((outputs['rec'] - x) ** 2).mean()")
    text = text.replace(
        "mu, log_sigma = outputs['q'][:, :nz], outputs['q'][:, nz:]",
        "mu, log_sigma = torch.chunk(outputs['q'], 2, dim=1)",
    )
    text = text.replace(".sum(dim=1).mean()", ".sum(-1).mean(0)")
    text = text.replace("self.decoder(self.encoder(x)[:, :nz])", "self.decoder(torch.chunk(self.encoder(x), 2, 1)[0])")
    return text


def independent(year: str) -> nbformat.NotebookNode:
    """Another correct solution of the ``year`` handout, written independently (other calls,
    other loop, other argument style) and answered in the student's own words."""
    edits = [(old, _alternative(new)) for old, new in N.solution_edits(year)]
    blank = N.handout(year)
    nb = N.apply(blank, edits)
    for cell, before in zip(nb.cells, blank.cells, strict=True):
        if cell.cell_type == "code" and cell.source != before.source:
            cell.outputs, cell.execution_count = [], None
    for qid, index in N._question_cells(nb, year).items():
        nb.cells[index].source = N._with_answer(nb.cells[index].source, OTHER_ANSWERS[qid])
    return nb


def _png_output(png: bytes) -> nbformat.NotebookNode:
    return nbformat.from_dict(
        {
            "output_type": "display_data",
            "metadata": {},
            "data": {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": "<Figure size 720x720>"},
        }
    )


def _figures_of(source: str) -> list[str]:
    """The figures a handout cell draws when run, in order: its top-level calls of the handout's
    plotting functions and the VAE run's curves."""
    kinds = []
    for line in source.splitlines():
        if line.startswith("interpolate_and_visualize("):
            kinds.append("strip")
        elif line.startswith("vis_reconstruction("):
            kinds.append("reconstruction")
        elif line.startswith("vis_samples("):
            kinds.append("samples")
        elif line.startswith(("vae_model = run_with_beta(", "ax1.plot(rec_loss)")):
            kinds.append("curves")
    return kinds


def executed(nb: nbformat.NotebookNode, digits, run: int) -> nbformat.NotebookNode:
    """``nb`` with the image outputs one run of its cells stores (handout-style figures drawn as
    Colab stores them, tests/handin_pdfs.py): ``run`` decides which digits its samples and
    interpolations show, its models' reconstructions of the (fixed) first test digits and its
    loss curves. Two runs of one notebook draw other figures; the same run draws the same."""
    from tests.handin_pdfs import blurred, curves_png, interpolation_png, reconstruction_png, samples_png

    images, labels = digits
    rng = np.random.default_rng(run)
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for kind in _figures_of(cell.source):
            seed = int(rng.integers(1 << 30))
            if kind == "reconstruction":
                png = reconstruction_png(images[:5], blurred(blurred(images[:5], seed), seed + 1))
            elif kind == "samples":
                png = samples_png(blurred(blurred(images[rng.choice(len(images), 16)], seed), seed + 1))
            elif kind == "curves":
                png = curves_png(seed)
            else:
                start, end = (rng.choice(np.flatnonzero(labels == d)) for d in (4, 8))
                png = interpolation_png(images[start], blurred(images[end][None], seed)[0], "Auto-Encoder")
            outputs.append(_png_output(png))
        if outputs:
            cell.outputs = outputs
    return nb


@pytest.fixture(scope="module")
def digits(mnist):
    """Test digits of the data the harness reads (HARNESS_DATA) as float arrays, and their labels."""
    return mnist.test_images[:600, 0].numpy().astype(np.float64), mnist.test_labels[:600].numpy()


def with_answers(nb: nbformat.NotebookNode, year: str, answers: dict[str, str]) -> nbformat.NotebookNode:
    """``nb`` with each question's Answer line followed by ``answers`` (the handout's question cells)."""
    nb = copy.deepcopy(nb)
    blank = N.handout(year)
    for qid, index in N._question_cells(nb, year).items():
        nb.cells[index].source = N._with_answer(blank.cells[index].source, answers[qid])
    return nb


def pasted_figures(into: nbformat.NotebookNode, source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``into`` with the stored outputs of ``source``'s cells pasted into its cells (same handout)."""
    into = copy.deepcopy(into)
    for mine, theirs in zip(into.cells, source.cells, strict=True):
        if mine.cell_type == "code" and theirs.get("outputs"):
            mine.outputs = copy.deepcopy(theirs.outputs)
    return into


def with_reference(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` with the harness's reference implementation pasted into a code cell of its own."""
    nb = copy.deepcopy(nb)
    text = "\n\n".join((ROOT / "harness" / rel).read_text() for rel in S.REFERENCE_FILES)
    nb.cells.append(nbformat.v4.new_code_cell(text))
    return nb


def course(folder: Path, notebooks: dict[str, nbformat.NotebookNode]) -> Path:
    """A course folder as Canvas downloads it: ``notebooks`` maps ``<name>_<student id>`` to a notebook."""
    folder.mkdir(parents=True, exist_ok=True)
    for n, (who, nb) in enumerate(notebooks.items()):
        nbformat.write(nb, str(folder / f"{who}_{700 + n}_vae.ipynb"))
    return folder


def compared(tmp_path: Path, year: str, notebooks: dict[str, nbformat.NotebookNode]) -> S.Comparison:
    return S.compare_course(course(tmp_path / "course", notebooks), load_assignment(N.CONFIG[year]), tmp_path / "out")


def pair(comparison: S.Comparison, a: str, b: str) -> S.Pair | None:
    return next((p for p in comparison.pairs if {p.a, p.b} == {a, b}), None)


# --------------------------------------------------------------------------- the signals


@pytest.mark.parametrize("year", N.YEARS)
def test_a_notebook_and_its_copy_with_renamed_variables_and_reworded_comments_is_flagged_on_code(tmp_path, year):
    done = N.complete(year)
    short = {qid: f"No time left for {qid}, sorry." for qid in N.example_answers()}
    copied = with_answers(renamed_copy(done), year, short)  # only the code is the other's
    found = compared(tmp_path, year, {"doe_111": done, "roe_222": copied, "kim_333": independent(year)})
    p = pair(found, "111", "222")
    assert p is not None and p.signals == ["code"], found.pairs
    assert p.code > 0.9 and p.answers < 0.1
    assert "cell" in p.evidence and "~" in p.evidence  # the matching regions of both, by cell
    assert [q.signals for q in found.pairs if {q.a, q.b} != {"111", "222"} and q.flagged] == []


@pytest.mark.parametrize("year", N.YEARS)
def test_answers_pasted_into_another_students_notebook_are_flagged_on_answers(tmp_path, year):
    own = independent(year)
    pasted = with_answers(own, year, N.example_answers())
    found = compared(tmp_path, year, {"doe_111": N.complete(year), "roe_222": pasted, "kim_333": own})
    p = pair(found, "111", "222")
    assert p is not None and p.signals == ["answers"], found.pairs
    assert p.answers == pytest.approx(1.0)
    assert {q for q, _, _ in p.answer_regions} == set(N.example_answers())
    assert pair(found, "111", "333") is None  # the same code, other answers: nothing in common above the floor


def test_another_students_stored_figures_pasted_in_are_flagged_on_figures(tmp_path, digits):
    year = "2026"
    theirs = executed(N.complete(year), digits, run=1)
    mine = pasted_figures(independent(year), theirs)
    found = compared(
        tmp_path, year, {"doe_111": theirs, "roe_222": mine, "kim_333": executed(independent(year), digits, 2)}
    )
    p = pair(found, "111", "222")
    assert p is not None and p.signals == ["figures"], found.pairs
    assert p.figures == 1.0 and all(d == 0 for _, _, d in p.figure_matches)
    assert "figures: cell" in p.evidence


@pytest.mark.parametrize("year", ["2020", "2026"])
def test_the_same_run_pasted_twice_matches_but_two_runs_of_the_same_notebook_do_not(tmp_path, digits, year):
    a = load_assignment(N.CONFIG[year])
    nb = independent(year)
    runs = {
        name: N.write(executed(nb, digits, run), tmp_path / f"{name}.ipynb") for name, run in (("one", 1), ("two", 2))
    }
    one, two = (S.read_member(path, name, a) for name, path in runs.items())
    assert len(one.figures) >= 7  # reconstructions, samples, curves and strips from the AE's training on
    assert S.compare_figures(one.figures, one.figures)[0] == 1.0
    value, matched, _ = S.compare_figures(one.figures, two.figures)
    assert value < S.FIGURES_FLAG and matched < S.MIN_FIGURES_MATCHED


@pytest.mark.parametrize("year", N.YEARS)
def test_independent_correct_solutions_and_untouched_templates_are_not_flagged(tmp_path, year):
    found = compared(
        tmp_path,
        year,
        {
            "doe_111": N.complete(year),
            "kim_333": independent(year),
            "lee_444": N.handout(year),
            "may_555": N.handout(year),
        },
    )
    assert found.flagged == []
    template = pair(found, "444", "555")
    assert template is None or template.code == 0.0  # the handout's own lines are never compared
    solutions = pair(found, "111", "333")
    assert solutions is None or solutions.code < S.CODE_FLAG / 2


@pytest.mark.parametrize("year", ["2022", "2026"])
def test_the_reference_implementation_pasted_into_a_notebook_is_flagged_against_the_reference(tmp_path, year):
    found = compared(tmp_path, year, {"doe_111": N.complete(year), "roe_222": with_reference(independent(year))})
    p = pair(found, "222", S.REFERENCE_ID)
    assert p is not None and p.signals == ["code"] and p.code > 0.9
    assert "harness/ml/models.py" in p.evidence or "cell" in p.evidence
    assert pair(found, "111", S.REFERENCE_ID) is None  # a student's own solution is not the reference's


def test_two_uploads_of_one_student_are_one_submission_never_a_pair(tmp_path):
    folder = tmp_path / "course"
    folder.mkdir()
    nb = N.complete("2020")
    for file_id in (678901, 678902):  # Canvas: the larger file id is the later upload
        nbformat.write(nb, str(folder / f"doejane_12345_{file_id}_vae.ipynb"))
    nbformat.write(independent("2020"), str(folder / "kim_333_678903_vae.ipynb"))
    found = S.compare_course(folder, load_assignment("variant-a"), tmp_path / "out")
    assert sorted(found.members) == ["12345", "333"]
    assert found.flagged == []
    assert any("12345: 2 uploads" in n for n in found.notes)


# --------------------------------------------------------------------------- bad input


def test_an_empty_course_or_one_without_submissions_is_refused_with_a_clear_message(tmp_path, capsys):
    from harness.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["similarity", str(empty), "--out", str(tmp_path / "out")]) == 2
    assert f"no submission in {empty}: it is empty" in capsys.readouterr().err
    (empty / "notes.txt").write_text("not a hand-in")
    assert main(["similarity", str(empty), "--out", str(tmp_path / "out")]) == 2
    assert "it holds notes.txt and no notebook or submission folder" in capsys.readouterr().err
    assert main(["similarity", str(empty / "notes.txt")]) == 2
    assert "is a file: give a course folder" in capsys.readouterr().err


def test_a_file_that_is_no_notebook_is_skipped_with_its_reason_and_the_rest_compared(tmp_path):
    folder = course(tmp_path / "course", {"doe_111": N.complete("2026"), "roe_222": renamed_copy(N.complete("2026"))})
    (folder / "broken_333_9_vae.ipynb").write_text('{"cells": [')  # an upload cut off
    (folder / "photo_444_9_vae.ipynb").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (folder / "notes.txt").write_text("ignored: not a hand-in")
    found = S.compare_course(folder, load_assignment("variant-b"), tmp_path / "out")
    reasons = {s.name: s.why for s in found.skipped}
    assert set(reasons) == {"broken_333_9_vae.ipynb", "photo_444_9_vae.ipynb"}
    assert "truncated" in reasons["broken_333_9_vae.ipynb"]
    assert "not a notebook" in reasons["photo_444_9_vae.ipynb"]
    assert [(p.a, p.b) for p in found.flagged] == [("111", "222")]


# The CLI in a child that reports its own peak resident memory at the end (VmHWM: the high-water
# mark of this program's memory; getrusage's maxrss would also count the pytest process it forked from)
MEASURED = (
    "import re, sys; from harness.cli import main; code = main(sys.argv[1:]); "
    "print('peak', int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024); "
    "sys.exit(code)"
)


def test_the_cli_skips_a_300_mb_notebook_by_its_size_before_reading_it_and_writes_the_csv(tmp_path):
    folder = course(tmp_path / "course", {"doe_111": N.complete("2026"), "roe_222": renamed_copy(N.complete("2026"))})
    big = folder / "big_333_9_vae.ipynb"
    with open(big, "wb") as f:  # 300 MB on disk (sparse): reading it would cost 300 MB and more
        f.truncate(300 * 2**20)
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-c", MEASURED, "similarity", str(folder), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert (
        "skipped big_333_9_vae.ipynb: big_333_9_vae.ipynb is 300.0 MB; notebooks over 64.0 MB are not read"
        in run.stdout
    )
    assert int(re.search(r"^peak (\d+)$", run.stdout, re.M).group(1)) < 300  # never read whole
    with open(out / S.CSV_NAME, newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == S.CSV_COLUMNS
    assert [(r["a"], r["b"], r["flagged"]) for r in rows] == [("111", "222", "true")]
    assert all(0.0 <= float(r[c]) <= 1.0 for r in rows for c in ("code", "answers", "figures", "score"))
    assert float(rows[0]["score"]) >= S.FLOOR and rows[0]["evidence"].startswith("code: cell")


# --------------------------------------------------------------------------- where the flags go


def _graded(out: Path, ids: list[str]) -> None:
    """Stored results for ``ids`` (the example's, graded under smoke) as a graded course leaves them."""
    fixture = ROOT / "tests" / "fixtures" / "example-smoke"
    for sid in ids:
        (out / sid).mkdir(parents=True)
        for name in ("result.json", "runs.npz"):
            shutil.copy(fixture / name, out / sid / name)


def test_a_flagged_pair_reaches_both_results_their_reports_and_the_summary_with_its_regions(tmp_path):
    from harness.course.summary import write_summary
    from harness.course.table import grade_rows
    from harness.documents.render import render_html

    year = "2026"
    found = compared(
        tmp_path,
        year,
        {"doe_111": N.complete(year), "roe_222": renamed_copy(N.complete(year)), "kim_333": independent(year)},
    )
    out = tmp_path / "out"
    _graded(out, ["111", "222", "333"])
    path, failures = S.publish(out, found, render=False)
    assert path == out / S.CSV_NAME and failures == []
    result = json.loads((out / "111" / "result.json").read_text())
    assert [(e["with"], e["signals"]) for e in result["similarity"]] == [("222", ["code", "answers"])]
    assert json.loads((out / "333" / "result.json").read_text()).get("similarity", []) == []
    assert result["total"] == json.loads((ROOT / "tests/fixtures/example-smoke/result.json").read_text())["total"]
    report = render_html(out / "222", "report")
    assert 'id="similarity"' in report and "111" in report and "no points change" in report
    assert S.update_results(out, found) == []  # unchanged: nothing to draw again
    a = load_assignment(N.CONFIG[year])
    html = write_summary(out, grade_rows(out, found.ids, a), a, "smoke", S.summary_view(found)).read_text()
    section = html[html.index('id="similarity"') : html.index("<h2>Submissions</h2>")]
    assert "111/report.html#similarity" in section and "222/report.html#similarity" in section
    assert "<pre>" in section and "nn.Sequential(" in section  # the regions, side by side
    assert "kim" not in section and "333/report" not in section


def test_a_failed_comparison_in_a_course_grade_is_reported_and_the_batch_goes_on(tmp_path):
    from harness.course.batch import BatchOptions, BatchSummary, course_similarity

    summary = BatchSummary()
    view = course_similarity(tmp_path / "gone", tmp_path / "out", load_assignment("variant-a"), BatchOptions(), summary)
    assert summary.similarity is None and "not a folder of submissions" in summary.similarity_error
    assert view["error"] == summary.similarity_error and view["flagged"] == []
    folder = course(tmp_path / "course", {"doe_111": N.complete("2020"), "roe_222": renamed_copy(N.complete("2020"))})
    summary = BatchSummary()
    view = course_similarity(
        folder, tmp_path / "out", load_assignment("variant-a"), BatchOptions(render=False), summary
    )
    assert summary.similarity == tmp_path / "out" / S.CSV_NAME and summary.similarity_error == ""
    assert [(f["a"], f["b"]) for f in view["flagged"]] == [("111", "222")]
    assert any(line.startswith("similar: 111 ~ 222") for line in summary.similarity_lines)
