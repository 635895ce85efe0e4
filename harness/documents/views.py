"""What the templates show of a result's stored arrays: each run with its figures, the
interpolation comparisons and the instructor report's extra figures.

Pure functions of a result (plain JSON, as stored) and its run artefacts
(``harness.grading.artifacts``): figures are drawn with ``harness.documents.figures`` and
returned as PNG ``data:`` URIs, so a document embeds them and has no external reference.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import jinja2
import numpy as np


def num(x: Any, digits: int = 4) -> str:
    """Numbers as the documents print them (the templates' ``num`` filter); a missing value as a dash."""
    if x is None or isinstance(x, jinja2.Undefined):
        return "–"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def uri(png: bytes) -> str:
    """A PNG as a ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def grid_columns(arrays: dict[str, np.ndarray], n: int) -> int:
    """The assignment's sample-grid width (stored with the artefacts), else about square."""
    if "test/grid" in arrays and int(arrays["test/grid"]) > 0:
        return int(arrays["test/grid"])
    return max(1, math.ceil(math.sqrt(n)))


def run_views(result: dict, arrays: dict[str, np.ndarray]) -> list[dict]:
    """Each run of the result with its figures (``data:`` URIs) and a label, in document order."""
    from harness.documents import figures  # matplotlib: imported when a document is drawn

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
            "label": "AE" if run.get("kind") == "ae" else f"β = {num(beta)}",
            "origin": rerun_origin(result, run),
        }
        if p + "samples" in arrays:
            samples = arrays[p + "samples"]
            cols = grid_columns(arrays, len(samples))
            view["figures"]["samples"] = uri(figures.image_grid(samples, cols))
            view["samples_grid"] = f"{-(-len(samples) // cols)}x{cols}"
        if p + "reconstructions" in arrays and "test/inputs" in arrays:
            view["figures"]["reconstructions"] = uri(
                figures.reconstructions(arrays["test/inputs"], arrays[p + "reconstructions"])
            )
        if run.get("kind") == "vae" and (p + "curve_rec" in arrays or p + "curve_kl" in arrays):
            view["figures"]["curves"] = uri(
                figures.training_curves(arrays.get(p + "curve_rec"), arrays.get(p + "curve_kl"))
            )
        views.append(view)
    return views


def rerun_origin(result: dict, run: dict) -> str:
    """Where a re-run figure comes from, for its caption: "re-run by the harness (profile quick:
    2 epochs, 5,000 images)"; empty for a run that did not train."""
    if run.get("status") != "ok":
        return ""
    images = run.get("images")
    shown = "all training images" if images == 0 else f"{images:,} images" if isinstance(images, int) else ""
    epochs = run.get("epochs")
    parts = [f"{epochs} epoch{'s' if epochs != 1 else ''}" if isinstance(epochs, int) else "", shown]
    detail = ", ".join(p for p in parts if p)
    return f"Re-run by the harness (profile {result.get('profile', '')}{': ' + detail if detail else ''})."


def cropped(png: bytes, margin: float = 0.03) -> bytes:
    """The PNG cut to its content plus a small margin: the handout's figures are drawn on tall
    canvases (``figsize=(20, 50)`` around a 2x5 strip) that are mostly white. Unreadable: as given."""
    import io

    from PIL import ImageOps

    from harness.submission.images import open_png

    flat = open_png(png)
    if flat is None:
        return png
    box = ImageOps.invert(flat.convert("L")).point(lambda v: 255 if v > 12 else 0).getbbox()
    if box is None:
        return png
    pad = int(margin * max(box[2] - box[0], box[3] - box[1]))
    box = (max(0, box[0] - pad), max(0, box[1] - pad), min(flat.width, box[2] + pad), min(flat.height, box[3] + pad))
    out = io.BytesIO()
    flat.crop(box).save(out, format="PNG", optimize=False)
    return out.getvalue()


def slot_views(result: dict, arrays: dict[str, np.ndarray]) -> dict[str, dict]:
    """A notebook's stored figures by write-up slot (``harness.submission.notebook_figures``):
    ``{"src", "origin", "cell"}`` each; empty for a folder submission."""
    notebook = result.get("notebook") or {}
    coded = notebook.get("stored_runs") or {}
    views = {}
    for f in notebook.get("stored_figures", []):
        if not f.get("slot") or f"stored/{f['key']}" not in arrays:
            continue
        run = coded.get(f["slot"].split("/")[0]) or {}
        epochs = run.get("epochs")
        trained = f"; its code trains {num(epochs)} epoch{'s' if epochs != 1 else ''}" if epochs is not None else ""
        views[f["slot"]] = {
            "src": uri(cropped(arrays[f"stored/{f['key']}"].tobytes())),
            "origin": f"From the notebook: cell {f['cell']}, as stored{trained}.",
            "cell": f["cell"],
        }
    return views


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
        {"start": int(s), "end": int(e), "figure": uri(figures.interpolation(a, v))}
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
        out["beta_search"] = uri(
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
        out["kl_per_dim"] = uri(
            figures.kl_per_dimension(arrays[f"run/{tuned}/kl_per_dim"], arrays.get(f"reference/{tuned}/kl_per_dim"))
        )
    ae_xy, vae_xy = arrays.get(f"run/{ae}/embedding"), arrays.get(f"run/{tuned}/embedding")
    if (ae_xy is not None or vae_xy is not None) and "test/labels" in arrays:
        out["embeddings"] = uri(figures.embeddings(ae_xy, vae_xy, arrays["test/labels"]))
    mine, theirs = arrays.get(f"run/{tuned}/samples"), arrays.get(f"reference/{tuned}/samples")
    if mine is not None and theirs is not None:
        out["samples_vs_reference"] = uri(
            figures.side_by_side(mine, theirs, grid_columns(arrays, len(mine)), ("student", "reference"))
        )
    return out


# The report's comparison of the notebook's stored figures with the harness's re-run, by section.
STORED_SECTIONS = (
    ("Auto-encoder", ("data", "forward_test", "ae_training", "reconstruction", "sampling")),
    ("VAE", ("vae_model", "vae_runs")),
    ("Interpolation", ("interpolation",)),
)


def stored_views(result: dict, arrays: dict[str, np.ndarray], runs: list[dict], paths: list[dict]) -> list[dict]:
    """Per section, the figures the handed-in notebook carries (``data:`` URIs, with their cells)
    beside the harness's re-run ones; empty for a folder submission."""
    notebook = result.get("notebook") or {}
    stored = [f for f in notebook.get("stored_figures", []) if f"stored/{f['key']}" in arrays]
    if not notebook:
        return []
    ae = next((r for r in runs if r["run"].get("role") == "ae"), None)
    tuned = next((r for r in runs if r["run"].get("role") == "tuned"), None)
    rerun = {
        "Auto-encoder": [(ae["figures"].get("samples"), "AE samples")] if ae else [],
        "VAE": [(tuned["figures"].get(k), f"tuned VAE {k}") for k in ("curves", "samples")] if tuned else [],
        "Interpolation": [(paths[0]["figure"], "AE (top) and VAE (bottom) paths")] if paths else [],
    }
    placed: set[str] = set()
    sections = []
    for title, roles in STORED_SECTIONS:
        mine = [f for f in stored if f["role"] in roles]
        placed |= {f["key"] for f in mine}
        sections.append(
            {
                "title": title,
                "stored": [_stored(f, arrays) for f in mine],
                "rerun": [{"src": src, "caption": cap} for src, cap in rerun[title] if src],
            }
        )
    rest = [f for f in stored if f["key"] not in placed]
    if rest:
        sections.append({"title": "Other cells", "stored": [_stored(f, arrays) for f in rest], "rerun": []})
    return sections


def _stored(f: dict, arrays: dict[str, np.ndarray]) -> dict:
    role = f" ({f['role'].replace('_', ' ')})" if f["role"] else ""
    return {"src": uri(arrays[f"stored/{f['key']}"].tobytes()), "caption": f"cell {f['cell']}{role}, as stored"}


def pdf_views(result: dict, arrays: dict[str, np.ndarray]) -> list[dict]:
    """The hand-in PDF's images for the report: each one's thumbnail beside the notebook figure
    it matched (``data:`` URIs), with where it is and how alike they are."""
    from harness.documents import figures

    check = result.get("pdf_check") or {}
    stored = {f["key"]: f for f in (result.get("notebook") or {}).get("stored_figures", [])}
    views = []
    for f in check.get("figures", []):
        thumb = arrays.get(f"pdf/{f['page']}-{f['index']}")
        match = stored.get(f["key"]) if f["matched"] == "notebook" else None
        twin = arrays.get(f"stored/{match['key']}") if match else None
        views.append(
            {
                **f,
                "src": uri(figures.mosaic_png(thumb, scale=1)) if thumb is not None and thumb.ndim == 2 else None,
                "match_src": uri(cropped(twin.tobytes())) if twin is not None else None,
            }
        )
    return views
