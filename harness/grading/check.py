"""``harness check``: the fast checks of one submission, and its result.

The code items (``harness.grading.code``) run in the sandbox; the answers are read as text in
this process, so broken code never costs them. Nothing is trained: the trained items stay pending.
"""

from __future__ import annotations

import time
from pathlib import Path

from harness.config.assignment import Assignment
from harness.grading.code import TRAINED_ITEMS, code_items, no_code_items, probe_inputs
from harness.grading.integrity import hold, provenance_flags, status_flags
from harness.grading.items.answers import score_answers
from harness.grading.result import Result
from harness.grading.session import RunOptions, check_limits, new_result, open_sandbox
from harness.ml.data import Mnist
from harness.submission.detect import load


def check_submission(folder: Path, a: Assignment, data: Mnist, options: RunOptions = RunOptions()) -> Result:
    started = time.perf_counter()
    sub = load(folder, a, options.name_pattern)
    limits = check_limits(a, options)
    timings: dict[str, float] = {}
    cells: list[dict] = []
    foreign_status: dict[str, int] = {}
    if sub.has_code:
        with open_sandbox(sub, a, probe_inputs(data)) as box:
            code = code_items(box, a, limits, timings)
            items, cells = code.items, code.cells
        foreign_status = dict(box.foreign_status)
    else:
        items = no_code_items(a, sub.label)
    scored_answers, answers_json = score_answers(a, sub)
    # The interpolation answer is scored with its code by `grade`.
    answer_items = [item for item_id, item in scored_answers.items() if item_id not in TRAINED_ITEMS]
    graded = {i.id for i in items} | {i.id for i in answer_items}
    pending = [r.id for r in a.rubric if r.id not in graded]
    order = {r.id: n for n, r in enumerate(a.rubric)}
    all_items = sorted(items + answer_items, key=lambda i: order.get(i.id, 99))
    # code that imports the harness, lines it wrote to the status stream; check trains nothing to judge
    flags = provenance_flags(sub, a) + status_flags(foreign_status)
    all_items = hold(all_items, flags)
    timings["total"] = round(time.perf_counter() - started, 2)
    result = new_result("check", sub, a, "", all_items, pending, answers_json, timings, cells=cells)
    result.integrity = [f.to_json() for f in flags]
    return result


def checklist(result: Result) -> str:
    """The checklist a student reads: one line per item, evidence indented below."""
    marks = {
        "pass": "PASS",
        "partial": "PART",
        "fail": "FAIL",
        "error": "ERR ",
        "timeout": "TIME",
        "needs_review": "REVW",
    }
    sub = result.submission
    lines = [f"{result.assignment['title']} - check of {sub['id']} ({sub['student'] or 'no name'})", ""]
    for p in result.problems:
        lines.append(f"  ! {p}")
    for f in result.integrity:  # held for review: harness.grading.integrity
        held = f"; held for review: {', '.join(f['items'])}" if f["items"] else ""
        lines.append(f"  ! integrity ({f['code']}): {f['message']}{held}")
    lines += notebook_lines(result.notebook)
    for item in result.items:
        lines.append(f"[{marks[item.status]}] {item.title}: {item.points:g} / {item.max_points:g}")
        for e in item.evidence:
            for i, text in enumerate(str(e).splitlines()):
                lines.append(("      " if i == 0 else "        ") + text)
    lines.append("")
    lines.append(
        f"total of these checks: {result.total:g} / {result.max_total:g} "
        f"(answers are suggestions until reviewed; graded by `harness grade`: {', '.join(result.pending)})"
    )
    lines.append(f"took {result.timings.get('total', 0):.1f} s")
    return "\n".join(lines)


def notebook_lines(notebook: dict) -> list[str]:
    """What a student acts on in a notebook before the items: untouched TODO regions, cells that
    failed in the harness's run (as Colab numbers them), what the harness substituted or took out."""
    if not notebook:
        return []
    lines = [f"notebook {notebook['file']} (handout {notebook['handout']}):"]
    for u in notebook.get("untouched", []):
        where = f" ({u['role'].replace('_', ' ')})" if u["role"] else ""
        lines.append(
            f"  ! cell {u['cell']}{where}, lines {u['lines'][0]}-{u['lines'][1]}: TODO region untouched "
            f"(`{u['placeholder']}`)"
        )
    for c in notebook.get("cells", []):
        if c["error"]:
            role = f" ({c['role'].replace('_', ' ')})" if c["role"] else ""
            lines.append(f"  ! cell {c['number']}{role} failed: {c['error']}")
    subs = sorted({s for c in notebook.get("cells", []) for s in c["substituted"] if "->" not in s})
    for s in subs:
        lines.append(f"  - substituted: {s}")
    if notebook.get("removed"):
        lines.append(f"  - not run (IPython only): {'; '.join(notebook['removed'][:6])}")
    for f in notebook.get("forensics", []):
        lines.append(f"  - {f}")
    lines.append("")
    return lines
