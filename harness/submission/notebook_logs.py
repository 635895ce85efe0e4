"""What a handed-in notebook's stored training logs say: the last reconstruction loss that each
training run's cell printed, as the student's own run of the handout's protocol left it.

The handouts print ``It 40: Reconstruction Loss: 0.0123`` (the AE) and ``... Rec Loss: 0.0131,
KL Loss: ...`` (the VAE) while they train; the value may be a float or a tensor's repr
(``tensor(0.0123, device='cuda:0', grad_fn=<...>)``). A short grading profile cannot tell a slow
but fine choice from a defect; the stored log of the student's full run can, and a grade under
such a profile quotes it (harness.grading.items.training.short_review). Nothing here runs code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# what the handouts print before a reconstruction loss ([notebook] printed_losses), and the number
# after it: a float, or a tensor's repr
LABELS = ("Reconstruction Loss:", "Rec Loss:")
NUMBER = r"\s*(?:tensor\(\s*)?([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"


def loss_pattern(labels: Iterable[str] = LABELS) -> re.Pattern:
    """The printed losses' pattern: one of ``labels``, then the number."""
    return re.compile("(?:" + "|".join(re.escape(label) for label in labels) + ")" + NUMBER)


MAX_TEXT = 2_000_000  # characters of one cell's stored stream output read (a runaway log is cut)


def stream_text(outputs: Iterable[Mapping]) -> str:
    """A code cell's stored stream outputs (stdout, stderr) as one text, capped at MAX_TEXT."""
    parts, size = [], 0
    for o in outputs:
        if o.get("output_type") != "stream":
            continue
        text = o.get("text", "")
        text = "".join(text) if isinstance(text, list) else str(text)
        parts.append(text[: MAX_TEXT - size])
        size += len(parts[-1])
        if size >= MAX_TEXT:
            break
    return "".join(parts)


def last_loss(text: str, pattern: re.Pattern | None = None) -> dict | None:
    """The last printed reconstruction loss in ``text``: its value, how many were printed and the
    line it is on (shortened); None when the text prints none."""
    found = list((pattern or loss_pattern()).finditer(text))
    if not found:
        return None
    last = found[-1]
    start = text.rfind("\n", 0, last.start()) + 1
    end = text.find("\n", last.end())
    line = text[start : end if end >= 0 else len(text)].strip()
    return {"value": float(last.group(1)), "lines": len(found), "text": line[:200]}


def stored_losses(
    cells: list[Mapping], run_cells: Mapping[str, int], labels: Iterable[str] = LABELS
) -> dict[str, dict]:
    """Run name -> the last loss its cell's stored output printed (``cell`` added), for each run
    whose cell (``run_cells``: run name -> 1-based cell number) printed one after one of
    ``labels``. ``cells``: the notebook's cells as nbformat dicts, in document order."""
    pattern = loss_pattern(labels)
    out = {}
    for run, number in run_cells.items():
        if not isinstance(number, int) or not 1 <= number <= len(cells):
            continue
        cell = cells[number - 1]
        if cell.get("cell_type") != "code":
            continue
        found = last_loss(stream_text(cell.get("outputs", [])), pattern)
        if found is not None:
            out[run] = {"cell": number, **found}
    return out
