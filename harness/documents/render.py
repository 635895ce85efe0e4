"""Documents: the student's write-up and the instructor's report, as HTML and PDF.

Both are rendered from a result and the run artefacts it names (``harness.grading.artifacts``):
by default the reports folder's result file (``write-up.json`` from ``harness report``,
``result.json`` from ``harness grade``), or a result the caller passes in (a
:class:`DocumentInput`: the instructor report with the instructor's overrides merged in by
``harness.course.reports``). No model is loaded and nothing is trained, so
``harness render reports/<id>`` reproduces a document at any later time; this module writes
only the documents.

Figures are PNGs embedded as ``data:`` URIs (``harness.documents.views``) and the stylesheet is
inlined, so the HTML is one file with no external reference. The PDF comes from WeasyPrint in a
child process (``python -m harness.documents.render``) that exits afterwards: WeasyPrint keeps
the memory of its layouts, which a long batch run must not accumulate. A given input reaches
the child as JSON on its stdin. The HTML is written first, so a failed PDF still leaves the
HTML, and the failure is reported.

Templates: ``templates/`` at the repository's top level, shipped inside the installed
package as ``harness/templates`` (docs/reports.md).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from harness.documents.views import (
    grader_views,
    interpolation_views,
    num,
    pdf_views,
    run_views,
    slot_views,
    stored_views,
)
from harness.io import write_bytes_atomic

ENV_TEMPLATES = "HARNESS_TEMPLATES"
DOCUMENTS = {  # document -> (result file, template)
    "write-up": ("write-up.json", "write-up.html.j2"),
    "report": ("result.json", "report.html.j2"),
}
STDIN_FLAG = "--stdin"  # the child reads its DocumentInput as JSON on stdin


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


@dataclass(frozen=True)
class DocumentInput:
    """A document's result when the caller has it already (plain JSON, as stored): for the
    instructor report, the result with the instructor's overrides merged in, and why they could
    not be applied (``""``: they were, or there are none; the report then shows the automatic
    points and says why)."""

    result: dict[str, Any]
    overrides_error: str = ""


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


# --------------------------------------------------------------------------- documents


def context(document: str, result: dict, arrays: dict[str, np.ndarray], css: str, overrides_error: str = "") -> dict:
    """Everything a template reads: the result (for the report, with the instructor's overrides
    merged in by the caller: harness.course.reports), plus figures and views."""
    runs = run_views(result, arrays)
    paths = interpolation_views(runs, arrays)
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
        "paths": paths,
        "questions": by_section,
        "extra": grader_views(result, arrays) if document == "report" else {},
        "stored": stored_views(result, arrays, runs, paths) if document == "report" else [],
        "pdf_figures": pdf_views(result, arrays) if document == "report" else [],
        # the write-up: a notebook's own figures beside the re-run ones, and why a slot is empty
        "slots": slot_views(result, arrays) if document == "write-up" else {},
        "missing_slots": (result.get("notebook") or {}).get("missing_figures", {}) if document == "write-up" else {},
        # --stored only: a re-run write-up has the harness's figure wherever the notebook has none
        "checklist": checklist_lines(result) if document == "write-up" and result.get("profile") == "stored" else [],
        "css": css,
        "overrides_error": overrides_error,  # the report: why overrides.csv could not be applied
    }


def checklist_lines(result: dict) -> list[str]:
    """The write-up's closing checklist: what a notebook's stored outputs do not hold, and why."""
    from harness.submission.notebook_figures import checklist

    missing = (result.get("notebook") or {}).get("missing_figures") or {}
    labels = {
        name: "AE"
        if run.get("role") == "ae"
        else "tuned β"
        if run.get("role") == "tuned"
        else f"β = {num(run.get('beta'))}"
        for name, run in (result.get("runs") or {}).items()
    }
    return checklist(missing, labels)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["num"] = num
    return env


def stored_input(folder: Path, document: str) -> DocumentInput:
    """The document's result file in ``folder``, as stored."""
    from harness.grading.result import load_result

    return DocumentInput(load_result(Path(folder) / DOCUMENTS[document][0]))


def render_html(folder: Path, document: str, given: DocumentInput | None = None) -> str:
    """The document's HTML, from ``given`` (default: the folder's result file) and the folder's artefacts."""
    from harness.grading.artifacts import load_artifacts

    source = given or stored_input(folder, document)
    result = source.result
    arrays = (
        load_artifacts(folder / result["artifacts"])
        if result.get("artifacts") and (folder / result["artifacts"]).is_file()
        else {}
    )
    css = (templates_dir() / "style.css").read_text(encoding="utf-8")
    template = environment().get_template(DOCUMENTS[document][1])
    return template.render(**context(document, result, arrays, css, source.overrides_error))


def render_here(folder: Path, document: str, given: DocumentInput | None = None) -> Rendered:
    """Render one document in this process: HTML first, then the PDF from it."""
    out = Rendered(document)
    started = time.perf_counter()
    try:
        html = render_html(folder, document, given)
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
    overrides_error = given.overrides_error if given else ""
    if overrides_error:  # both files are written, with the automatic points; the report says why
        out.error = "; ".join(
            filter(
                None,
                [out.error, f"overrides.csv is invalid, so the report shows the automatic points: {overrides_error}"],
            )
        )
    return out


def render_folder(
    folder: Path,
    documents: list[str] | None = None,
    timeout_s: float = 600.0,
    given: Mapping[str, DocumentInput] | None = None,
) -> list[Rendered]:
    """Render the folder's documents (default: every one it has data for), each in a child
    process that exits afterwards; a document in ``given`` from that input, the others from
    the folder's result files."""
    folder = Path(folder)
    given = given or {}
    results = []
    # the child imports this same harness, installed or not
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")])
        ),
    }
    for document in documents or documents_in(folder):
        source = given.get(document)
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "harness.documents.render", str(folder), document]
                + ([STDIN_FLAG] if source else []),
                input=json.dumps(asdict(source)) if source else None,
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
    """The child: ``FOLDER DOCUMENT [--stdin]``; render one document (from the :class:`DocumentInput`
    JSON on stdin with ``--stdin``) and print a JSON line describing what it wrote."""
    folder, document = Path(argv[0]), argv[1]
    given = DocumentInput(**json.loads(sys.stdin.read())) if STDIN_FLAG in argv[2:] else None
    out = render_here(folder, document, given)
    out.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(out).items()}
    print(json.dumps(data))
    return 0 if not out.error else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
