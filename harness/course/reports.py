"""Rendering a reports folder's documents with the instructor's overrides merged into the report.

``harness.documents`` renders a result as it is given. The instructor report of
``<out>/<id>/`` shows ``<out>/overrides.csv`` applied (``harness.course.overrides``), so this
module merges the overrides into the stored result first (bringing the submission's basis file,
``overrides.json``, up to date) and hands the merged result to the renderer. An invalid
``overrides.csv`` leaves the automatic points, and the report and the rendering's error say
why. The write-up is rendered from its result file as stored.

Every command that renders goes through :func:`render_documents`: ``grade`` (one submission
or a course), ``report`` and ``render``.
"""

from __future__ import annotations

from pathlib import Path

from harness.course.overrides import report_overrides
from harness.documents.render import DocumentInput, Rendered, documents_in, render_folder, stored_input


def report_input(folder: Path) -> DocumentInput:
    """The instructor report's input for ``<out>/<id>/``: its stored result with
    ``<out>/overrides.csv`` applied, or as stored with the reason when that file is invalid."""
    stored = stored_input(folder, "report")
    result, problem = report_overrides(folder, stored.result)
    return DocumentInput(result, problem)


def render_documents(folder: Path, documents: list[str] | None = None, timeout_s: float = 600.0) -> list[Rendered]:
    """``harness.documents.render.render_folder`` (default: every document the folder has data
    for), the instructor report with the overrides merged in just before it is rendered. When
    the report's input cannot be prepared (e.g. an unreadable result), it is not rendered and
    the failure is its error, worded as the renderer words one."""
    folder = Path(folder)
    out = []
    for document in documents or documents_in(folder):
        if document != "report":
            out += render_folder(folder, [document], timeout_s)
            continue
        try:
            given = report_input(folder)
        except Exception as e:  # noqa: BLE001 - any failure is reported, never hidden
            out.append(Rendered(document, error=f"the HTML could not be rendered ({type(e).__name__}: {e})"))
            continue
        out += render_folder(folder, [document], timeout_s, {document: given})
    return out
