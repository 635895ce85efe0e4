"""Documents: the student's write-up and the instructor's report, as HTML and PDF.

Both are rendered from a reports folder alone: a result file (``write-up.json`` from
``harness report``, ``result.json`` from ``harness grade``) and the run artefacts it
names (``harness.grading.artifacts``). No model is loaded and nothing is trained, so
``harness render reports/<id>`` reproduces a document at any later time. The instructor
report also applies the instructor's overrides in ``reports/overrides.csv`` (``harness.course.overrides``).

Figures are PNGs embedded as ``data:`` URIs and the stylesheet is inlined, so the HTML
is one file with no external reference. The PDF comes from WeasyPrint in a child
process (``python -m harness.documents.render``) that exits afterwards: WeasyPrint keeps the
memory of its layouts, which a long batch run must not accumulate. The HTML is
written first, so a failed PDF still leaves the HTML, and the failure is reported.

Templates: ``templates/`` at the repository's top level, shipped inside the installed
package as ``harness/templates`` (docs/reports.md).
"""

from __future__ import annotations

import base64
import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from harness.io import write_bytes_atomic

ENV_TEMPLATES = "HARNESS_TEMPLATES"
DOCUMENTS = {  # document -> (result file, template)
    "write-up": ("write-up.json", "write-up.html.j2"),
    "report": ("result.json", "report.html.j2"),
}


@dataclass
class Rendered:
    """What rendering one document produced."""

    document: str
    html: Path | None = None
    pdf: Path | None = None
    error: str = ""  # empty when both files were written
    html_seconds: float = 0.0
    pdf_seconds: float = 0.0
    peak_mb: float = 0.0  # the rendering process's peak resident memory


def templates_dir() -> Path:
    """``$HARNESS_TEMPLATES``, else the checkout's ``templates/``, else the installed package's copy."""
    if os.environ.get(ENV_TEMPLATES):
        return Path(os.environ[ENV_TEMPLATES]).expanduser()
    checkout = Path(__file__).resolve().parents[2] / "templates"
    if (checkout / "base.html.j2").is_file():
        return checkout
    return Path(str(resources.files("harness") / "templates"))


def documents_in(folder: Path) -> list[str]:
    """The documents a reports folder has the data for."""
    return [doc for doc, (source, _) in DOCUMENTS.items() if (folder / source).is_file()]


# --------------------------------------------------------------------------- figures


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def run_views(result: dict, arrays: dict[str, np.ndarray]) -> list[dict]:
    """Each run of the result with its figures (``data:`` URIs) and a label, in document order."""
    from harness.documents import figures

    views = []
    for name, run in result.get("runs", {}).items():
        p = f"run/{name}/"
        beta = run.get("beta")
        if run.get("role") == "tuned":
            beta = (result.get("submission") or {}).get("tuned_beta", beta)
        view = {
            "name": name,
            "run": run,
            "beta": beta,
            "figures": {},
            "label": "AE" if run.get("kind") == "ae" else f"β = {_num(beta)}",
        }
        if p + "samples" in arrays:
            samples = arrays[p + "samples"]
            cols = _columns(arrays, len(samples))
            view["figures"]["samples"] = _uri(figures.image_grid(samples, cols))
            view["samples_grid"] = f"{-(-len(samples) // cols)}x{cols}"
        if p + "reconstructions" in arrays and "test/inputs" in arrays:
            view["figures"]["reconstructions"] = _uri(
                figures.reconstructions(arrays["test/inputs"], arrays[p + "reconstructions"])
            )
        if run.get("kind") == "vae" and (p + "curve_rec" in arrays or p + "curve_kl" in arrays):
            view["figures"]["curves"] = _uri(
                figures.training_curves(arrays.get(p + "curve_rec"), arrays.get(p + "curve_kl"))
            )
        views.append(view)
    return views


def _columns(arrays: dict[str, np.ndarray], n: int) -> int:
    """The assignment's sample-grid width (stored with the artefacts), else about square."""
    if "test/grid" in arrays and int(arrays["test/grid"]) > 0:
        return int(arrays["test/grid"])
    return max(1, math.ceil(math.sqrt(n)))


def interpolation_views(runs: list[dict], arrays: dict[str, np.ndarray]) -> list[dict]:
    """AE path above the tuned VAE's, per configured pair (same start and end images)."""
    from harness.documents import figures

    ae = next((r for r in runs if r["run"].get("role") == "ae"), None)
    vae = next((r for r in runs if r["run"].get("role") == "tuned"), None)
    if ae is None or vae is None:
        return []
    ae_paths, vae_paths = arrays.get(f"run/{ae['name']}/paths"), arrays.get(f"run/{vae['name']}/paths")
    if ae_paths is None or vae_paths is None:
        return []
    pairs = arrays.get("test/pairs", np.zeros((len(ae_paths), 2), dtype=np.int64))
    return [
        {"start": int(s), "end": int(e), "figure": _uri(figures.interpolation(a, v))}
        for (s, e), a, v in zip(pairs, ae_paths, vae_paths, strict=False)
    ]


def grader_views(result: dict, arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """The instructor report's extra figures: beta search, KL per dimension, embeddings and the
    student's samples beside the reference's."""
    from harness.documents import figures

    out = {}
    ref = result.get("reference") or {}
    tuning = next((i for i in result.get("items", []) if i["id"] == "beta_tuning"), {})
    student_beta = (tuning.get("metrics") or {}).get("beta_reference_convention")
    search = sorted(ref.get("search", []), key=lambda r: r["beta"])
    if search:
        out["beta_search"] = _uri(
            figures.beta_search(
                [r["beta"] for r in search],
                [r["test_mse"] for r in search],
                [r["sample_fid"] for r in search],
                ref.get("tuned_beta"),
                student_beta,
            )
        )
    tuned = next((n for n, r in result.get("runs", {}).items() if r.get("role") == "tuned"), None)
    ae = next((n for n, r in result.get("runs", {}).items() if r.get("role") == "ae"), None)
    if tuned and f"run/{tuned}/kl_per_dim" in arrays:
        out["kl_per_dim"] = _uri(
            figures.kl_per_dimension(arrays[f"run/{tuned}/kl_per_dim"], arrays.get(f"reference/{tuned}/kl_per_dim"))
        )
    ae_xy, vae_xy = arrays.get(f"run/{ae}/embedding"), arrays.get(f"run/{tuned}/embedding")
    if (ae_xy is not None or vae_xy is not None) and "test/labels" in arrays:
        out["embeddings"] = _uri(figures.embeddings(ae_xy, vae_xy, arrays["test/labels"]))
    mine, theirs = arrays.get(f"run/{tuned}/samples"), arrays.get(f"reference/{tuned}/samples")
    if mine is not None and theirs is not None:
        out["samples_vs_reference"] = _uri(
            figures.side_by_side(mine, theirs, _columns(arrays, len(mine)), ("student", "reference"))
        )
    return out


# --------------------------------------------------------------------------- documents


def _num(x: Any, digits: int = 4) -> str:
    """Numbers as the documents print them; a missing value as a dash."""
    if x is None or isinstance(x, jinja2.Undefined):
        return "–"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def context(document: str, result: dict, arrays: dict[str, np.ndarray], css: str, overrides_error: str = "") -> dict:
    """Everything a template reads: the result (for the report, with the instructor's overrides
    merged: harness.course.overrides), plus figures and views."""
    runs = run_views(result, arrays)
    sub = result.get("submission") or {}
    answers = result.get("answers") or {}
    by_section: dict[str, list[dict]] = {}
    for qid, ans in answers.items():
        by_section.setdefault(ans.get("section", ""), []).append({"id": qid, **ans})
    title = (result.get("assignment") or {}).get("title", "")
    doc = {"write-up": "Write-up", "report": "Grade report"}[document]
    return {
        "document": document,
        "doc_title": f"{title}: {doc} of {sub.get('student') or sub.get('id', '')}",
        "r": result,
        "sub": sub,
        "runs": runs,
        "ae": next((v for v in runs if v["run"].get("role") == "ae"), None),
        "vae_runs": [v for v in runs if v["run"].get("kind") == "vae"],
        "tuned": next((v for v in runs if v["run"].get("role") == "tuned"), None),
        "paths": interpolation_views(runs, arrays),
        "questions": by_section,
        "extra": grader_views(result, arrays) if document == "report" else {},
        "css": css,
        "overrides_error": overrides_error,  # the report: why overrides.csv could not be applied
    }


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["num"] = _num
    return env


def render_html(folder: Path, document: str) -> str:
    """The document's HTML, from the folder's result and artefacts."""
    return _html(folder, document)[0]


def _html(folder: Path, document: str) -> tuple[str, str]:
    """The document's HTML and, for the report, why ``<folder>/../overrides.csv`` could not be
    applied (``""`` when it was, or there is none; the report then shows the automatic points
    and says why)."""
    from harness.course.overrides import report_overrides
    from harness.grading.artifacts import load_artifacts
    from harness.grading.result import load_result

    source, template = DOCUMENTS[document]
    result = load_result(folder / source)
    problem = ""
    if document == "report":
        result, problem = report_overrides(folder, result)
    arrays = (
        load_artifacts(folder / result["artifacts"])
        if result.get("artifacts") and (folder / result["artifacts"]).is_file()
        else {}
    )
    env = environment()
    css = (templates_dir() / "style.css").read_text(encoding="utf-8")
    return env.get_template(template).render(**context(document, result, arrays, css, problem)), problem


def render_here(folder: Path, document: str) -> Rendered:
    """Render one document in this process: HTML first, then the PDF from it."""
    out = Rendered(document)
    started = time.perf_counter()
    try:
        html, overrides_error = _html(folder, document)
    except Exception as e:  # noqa: BLE001 - any failure is reported, never hidden
        out.error = f"the HTML could not be rendered ({type(e).__name__}: {e})"
        return out
    out.html = folder / f"{document}.html"
    write_bytes_atomic(out.html, html.encode("utf-8"))
    out.html_seconds = time.perf_counter() - started
    started = time.perf_counter()
    try:
        from weasyprint import HTML

        pdf = HTML(string=html, base_url=str(folder)).write_pdf()
        out.pdf = folder / f"{document}.pdf"
        write_bytes_atomic(out.pdf, pdf)
    except Exception as e:  # noqa: BLE001
        out.error = f"the PDF could not be written ({type(e).__name__}: {e}); the HTML is {out.html}"
    out.pdf_seconds = time.perf_counter() - started
    if overrides_error:  # both files are written, with the automatic points; the report says why
        out.error = "; ".join(
            filter(
                None,
                [out.error, f"overrides.csv is invalid, so the report shows the automatic points: {overrides_error}"],
            )
        )
    return out


def render_folder(folder: Path, documents: list[str] | None = None, timeout_s: float = 600.0) -> list[Rendered]:
    """Render the folder's documents (default: every one it has data for), each in a child
    process that exits afterwards."""
    folder = Path(folder)
    results = []
    # the child imports this same harness, installed or not
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")])
        ),
    }
    for document in documents or documents_in(folder):
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "harness.documents.render", str(folder), document],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=env,
            )
        except subprocess.TimeoutExpired:
            results.append(Rendered(document, error=f"rendering took longer than {timeout_s:g} s"))
            continue
        line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        try:
            data = json.loads(line)
            results.append(Rendered(**{**data, "html": _path(data["html"]), "pdf": _path(data["pdf"])}))
        except (json.JSONDecodeError, TypeError, KeyError):
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            results.append(Rendered(document, error=f"the renderer exited with {proc.returncode}: {tail}"))
    return results


def _path(p: str | None) -> Path | None:
    return Path(p) if p else None


def main(argv: list[str]) -> int:
    """The child: render one document and print a JSON line describing what it wrote."""
    folder, document = Path(argv[0]), argv[1]
    out = render_here(folder, document)
    out.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(out).items()}
    print(json.dumps(data))
    return 0 if not out.error else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
