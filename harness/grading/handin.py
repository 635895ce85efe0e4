"""``grade``'s check of the student's hand-in PDF against their notebook and the harness's re-run.

The PDF is the one at the top of the submission's folder (the first by name when there are
several; a note names the others). What it is compared with:

- the notebook's stored figures, each with the write-up slot it fills
  (``harness.submission.notebook_figures``);
- the re-run's figures, drawn as the write-up draws them (``artifacts.tile``): each run's sample
  grid and reconstructions, and the interpolation paths (AE above VAE);
- the tuned beta as the code writes it, the interpolation digits the notebook's code uses (else
  the assignment's first pair) and the notebook's answers.

The comparison itself is ``harness.grading.pdf_check``. No points change: the result's
``pdf_check`` lists flags for an instructor to review, and the report shows them with
thumbnails (``pdf/<page>-<index>`` arrays).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.config.assignment import Assignment
from harness.grading.artifacts import tile
from harness.grading.pdf_check import Candidate, check_pdf
from harness.submission.contents import Submission
from harness.submission.handin_pdf import HandinPdf, figure_grey

PDF_SUFFIX = ".pdf"
READ_MEMORY_MB = 2048  # address space of the process reading a student's PDF (numpy, PIL, pypdf: ~0.5 GB)
READ_TIMEOUT_S = 120.0  # read_pdf stops itself after 60 s between pages; this catches one endless page


def read_pdf_isolated(path: Path, memory_mb: int = READ_MEMORY_MB, timeout_s: float = READ_TIMEOUT_S) -> HandinPdf:
    """``read_pdf`` in a child process (``python -m harness.submission.handin_pdf``) with an
    address-space cap and a time limit: a hostile PDF (a content stream that inflates to
    gigabytes, a page that never ends) costs the check of that PDF, never the grading process.
    A subprocess, not multiprocessing: a Dask worker is a daemon, which may not fork children."""
    import os
    import subprocess
    import sys
    import tempfile

    from harness.submission.handin_pdf import load_saved

    root = str(Path(__file__).resolve().parents[2])  # the child imports this same harness, installed or not
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        # one thread: BLAS reserves address space per thread, which would count against the cap
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    with tempfile.TemporaryDirectory(prefix="harness-pdf-") as tmp:
        out = Path(tmp) / "read.npz"
        command = [sys.executable, "-m", "harness.submission.handin_pdf", str(path), str(out), str(memory_mb)]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            why = f"reading it took longer than {timeout_s:.0f} s"
        else:
            if proc.returncode == 0 and out.is_file():
                return load_saved(out)
            tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            why = f"reading it stopped ({tail[:200]}); its memory cap is {memory_mb} MB"
    return HandinPdf(file=Path(path).name, pages=0, error=f"the PDF could not be read: {why}")


def handin_pdfs(sub: Submission) -> list[Path]:
    """The PDFs at the top of the submission's folder, by name."""
    return sorted(sub.path / f for f in sub.files if len(f.parts) == 1 and f.suffix.lower() == PDF_SUFFIX)


def notebook_candidates(sub: Submission) -> list[Candidate]:
    """The notebook's stored figures as grey images, with their slots."""
    if sub.notebook is None:
        return []
    found = []
    for f in sub.notebook.figures:
        grey = figure_grey(f.png)  # exactly as the PDF's images are read
        if grey is not None:
            found.append(Candidate("notebook", f.key, f.cell, f.slot, grey))
    return found


def rerun_candidates(arrays: dict[str, np.ndarray], runs: dict[str, dict]) -> list[Candidate]:
    """The re-run's image figures as the write-up draws them."""
    cols = int(arrays["test/grid"]) if "test/grid" in arrays and int(arrays["test/grid"]) > 0 else 4
    found = []
    for name in runs:
        p = f"run/{name}/"
        if p + "samples" in arrays:
            found.append(
                Candidate("rerun", f"{name}/samples", None, f"{name}/samples", tile(arrays[p + "samples"], cols))
            )
        if p + "reconstructions" in arrays and "test/inputs" in arrays:
            images = np.concatenate([arrays["test/inputs"], arrays[p + "reconstructions"]])
            found.append(
                Candidate(
                    "rerun", f"{name}/reconstructions", None, f"{name}/reconstructions", tile(images, len(images) // 2)
                )
            )
    ae = next((n for n, r in runs.items() if r.get("role") == "ae"), None)
    tuned = next((n for n, r in runs.items() if r.get("role") == "tuned"), None)
    ae_paths, vae_paths = arrays.get(f"run/{ae}/paths"), arrays.get(f"run/{tuned}/paths")
    if ae_paths is not None and vae_paths is not None:
        for i, (a, v) in enumerate(zip(ae_paths, vae_paths, strict=False), start=1):
            found.append(
                Candidate(
                    "rerun", f"interpolation/{i}", None, f"interpolation/{i}", tile(np.concatenate([a, v]), len(a))
                )
            )
    return found


def check_handin(
    sub: Submission, a: Assignment, arrays: dict[str, np.ndarray], runs: dict[str, dict]
) -> tuple[dict, dict[str, np.ndarray]]:
    """The result's ``pdf_check`` (``{}`` without a PDF) and the thumbnails of the PDF's images."""
    pdfs = handin_pdfs(sub)
    if not pdfs:
        return {}, {}
    pdf = read_pdf_isolated(pdfs[0])
    facts = sub.notebook
    tuned_cell = (facts.stored_runs.get(a.training.tuned.name) or {}).get("cell") if facts else None
    coded = (
        next((c for c in facts.comparisons if c.get("start") is not None and c.get("end") is not None), None)
        if facts
        else None
    )
    pair = (
        (coded["start"], coded["end"])
        if coded
        else (tuple(a.interpolation.pairs[0]) if a.interpolation.pairs else None)
    )
    checked = check_pdf(
        pdf,
        notebook_candidates(sub) + rerun_candidates(arrays, runs),
        sub.tuned_beta,
        tuned_cell,
        pair,
        {qid: text for qid, text in sub.answers.items() if text},
    )
    result = checked.to_json()
    if len(pdfs) > 1:
        others = ", ".join(p.name for p in pdfs[1:])
        result["notes"] = [*result["notes"], f"only {pdfs[0].name} was checked; not checked: {others}"]
    thumbs = {f"pdf/{f.page}-{f.index}": f.thumbnail for f in checked.figures}
    return result, thumbs
