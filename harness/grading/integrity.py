"""Integrity flags: results no honest submission reaches, and code that is not the student's own.

Student code is hostile by assumption. The rubric's checks measure what a submission's models
do; they cannot tell a model that learned from one that hands back the harness's reference or
the training images themselves. This module looks for the signatures of those two attacks and
holds the items they would earn for an instructor (``hold``): such an item scores 0 points with
status ``needs_review`` and keeps its suggested points, so a flagged attack never earns more than
its honest twin, and an instructor's override in ``overrides.csv`` restores the points when the
flag is a false alarm.

- provenance (``check`` and ``grade``): the student's code imports the harness's own package,
  whose reference models and loops would pass every check (:func:`provenance_flags`);
- the loop (``grade``): optimizer steps with no backward pass behind them, or weights that never
  moved (:func:`loop_flags`); the training items already charge both, so nothing more is held;
- the status stream (``check`` and ``grade``): lines the harness did not write (:func:`status_flags`);
- plausibility (``grade``): a training run far beyond the reference trained the same way,
  measured three ways (:func:`plausibility_flags`).

Each flag is one entry of the result's ``integrity`` list (docs/result-schema.md#integrity).
The functions are pure: they read what grading measured and return flags; nothing runs.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from harness.config.assignment import Assignment
from harness.grading.code import CODE_ITEMS, TRAINED_ITEMS
from harness.grading.rubric import ItemResult
from harness.submission.contents import CodeSource, Submission

if TYPE_CHECKING:
    import numpy as np
    import torch

PACKAGE = "harness"
IMPORTS_HARNESS = "imports-harness"
MSE_FAR_BELOW = "mse-far-below-reference"
FID_AT_FLOOR = "fid-at-real-floor"
COPIES_TRAINING = "samples-copy-training-images"
HARNESS_TAMPERED = "harness-tampered"
NOT_EXPORTED = "not-exported"
ARCHITECTURE_MISMATCH = "architecture-mismatch"
MODEL_MISMATCH = "model-mismatch"
STEPS_WITHOUT_BACKWARD = "steps-without-backward"
DID_NOT_TRAIN = "did-not-train"
STATUS_WRITTEN = "status-stream-written"
# Largest pixel difference (images in [0, 1]) between a trained model's reconstructions in its
# own training unit and its exported graph's of the same 8 images: the same operators on the same
# weights agree to about 1e-7 on a CPU (the example's AE: 6e-8), so 1e-3 leaves room for a GPU's
# kernels; a model that is something else in its own process differs by far more.
MODEL_MISMATCH_TOLERANCE = 1e-3
CODES = (
    IMPORTS_HARNESS,
    HARNESS_TAMPERED,
    NOT_EXPORTED,
    ARCHITECTURE_MISMATCH,
    MODEL_MISMATCH,
    STEPS_WITHOUT_BACKWARD,
    DID_NOT_TRAIN,
    STATUS_WRITTEN,
    MSE_FAR_BELOW,
    FID_AT_FLOOR,
    COPIES_TRAINING,
)

# Calibrated on the MNIST stand-in (8,000 training images) with variant A; the numbers below are
# what ``python benchmarks/integrity_thresholds.py --band`` prints (smoke reference, classifier and
# the full-protocol search built in its cache).
#
# A run's test MSE under MSE_FACTOR x the lowest test MSE of the reference's runs is flagged. The
# lowest, not the run's namesake: the smoke reference's beta-0 run is barely trained (test MSE
# 0.0888 beside the AE's 0.0206 and the tuned run's 0.0188; beta-10 0.0992), so an honest beta-0
# run that trains longer, or a beta-10 run in a loss convention that weighs the KL less, beats
# its namesake by far. The best honest number is the full protocol's (every image, every epoch):
# its search reaches 0.0076 (beta 1e-5), 0.40x the smoke reference's lowest, so 0.2x leaves a
# factor of 2 for a student who trains longer than asked; returning the input, or the training
# image nearest to it, scores near 0.
MSE_FACTOR = 0.2
# A run's sample FID is at the real-data floor when it is at most FID_FLOOR_FACTOR x real_fid (the
# FID of real training images against the test images at the same sample count: what handing back
# training images scores) and at most FID_REFERENCE_FACTOR x the reference's best. Measured:
# real_fid 7.40; the smoke reference's sample FID 171 (ae), 536 (beta-0), 511 (beta-10), 181
# (tuned); the full-protocol search's best 115 (15.6x real_fid). Honest runs stay far above 2x.
FID_FLOOR_FACTOR = 2.0
FID_REFERENCE_FACTOR = 0.5
# A sample is a near-copy when its per-pixel MSE to the nearest training image (images in [0, 1])
# is under COPY_MSE; a run is flagged when at least COPY_SHARE of its samples are. Measured on the
# stand-in against the smoke profile's 2,000 training images: the smoke reference's decoded prior
# samples (1,000 per run) are never closer than 0.0126 (tuned; ae 0.0152, beta-0 0.0495, beta-10
# 0.0580; medians 0.037 to 0.061); the 2,000 held-out test images are at least 0.0022 away (1st
# percentile 0.0043, median 0.0385, 1.8% under 0.005), and against all 8,000 training images at
# least 0.0018 (median 0.0318, 3.4% under 0.005). Attacks: a training image with uniform noise
# of +-0.1 added is 0.0015 to 0.0018 from its original (all under 0.005); one shifted by a pixel
# is a new image to this test (median 0.0327). Real digits never have half their number under
# 0.005; copies, even noisy ones, all do.
COPY_MSE = 0.005
COPY_SHARE = 0.5
NN_CHUNK = 4096  # training images per matrix product: [samples, NN_CHUNK] floats at a time


@dataclass(frozen=True)
class Flag:
    """One integrity finding: what was found (``code``, one of :data:`CODES`), the harness's
    sentence about it, the lines that show it, and the rubric items held for review because of it."""

    code: str
    message: str
    evidence: tuple[str, ...]
    items: tuple[str, ...]  # rubric item ids held for review

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "evidence": list(self.evidence), "items": list(self.items)}


# --------------------------------------------------------------------------- provenance


@dataclass(frozen=True)
class HarnessImport:
    """Where a piece of code imports the harness: its line and the statement as written."""

    line: int
    statement: str


def _is_harness(name: object) -> bool:
    return isinstance(name, str) and (name == PACKAGE or name.startswith(PACKAGE + "."))


def _call_name(func: ast.expr) -> str:
    """``importlib.import_module`` -> "import_module"; ``__import__`` -> "__import__"."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _imports_in_tree(tree: ast.AST) -> list[int]:
    """Lines of ``import harness...``, ``from harness... import``, ``importlib.import_module("harness...")``
    and ``__import__("harness...")``. A name in a string or a comment is not an import."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(_is_harness(a.name) for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_harness(node.module):
            lines.append(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and _call_name(node.func) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and _is_harness(node.args[0].value)
        ):
            lines.append(node.lineno)
    return sorted(set(lines))


# Code that does not parse is read line by line; only a line that starts with an import of the
# package, or calls an importer with its name as the literal first argument, counts, so that
# text that merely names the harness is not flagged.
_LINE_IMPORT = re.compile(
    r"^\s*(?:import\s+harness(?:\.\w+)*\b|from\s+harness(?:\.\w+)*\s+import\b)"
    r"|\b(?:import_module|__import__)\(\s*[rbu]?['\"]harness(?:\.[\w.]*)?['\"]"
)


def harness_imports(text: str) -> list[HarnessImport]:
    """Where ``text`` (one file or notebook cell) imports the harness package: by ``ast``, else
    (code that does not parse) by a conservative pattern on each line without a comment."""
    source = text.splitlines()
    try:
        lines = _imports_in_tree(ast.parse(text))
    except (SyntaxError, ValueError):
        lines = [n for n, line in enumerate(source, 1) if _LINE_IMPORT.search(line.split("#", 1)[0])]
    return [HarnessImport(n, source[n - 1].strip() if n <= len(source) else "") for n in lines]


def _where(sub: Submission, code: CodeSource) -> str:
    """How a message names a piece of code: ``submission.py`` or ``homework.ipynb cell 12``."""
    if sub.notebook is not None and code.number:
        return f"{sub.notebook.file} cell {code.number}"
    return code.label


def held_for_code(a: Assignment) -> tuple[str, ...]:
    """Every rubric item but the written answers: what code that is not the student's own could earn.
    An answer item is a question's item that no code scores (``interpolation`` has both, so is held)."""
    answers_only = {q.rubric_item for q in a.questions if q.rubric_item} - set(CODE_ITEMS) - set(TRAINED_ITEMS)
    return tuple(r.id for r in a.rubric if r.id not in answers_only)


def provenance_flags(sub: Submission, a: Assignment) -> list[Flag]:
    """``imports-harness`` when the student's code (the module file, or a notebook's code cells)
    imports the harness's package. The harness's reference models and loops pass every check, so
    code that reaches them may earn points that are not the student's: every item but the written
    answers is held. The import is read from the source, whatever it does when it runs (in the
    sandbox or on the student's own machine)."""
    found = [(code, imp) for code in sub.code for imp in harness_imports(code.text)]
    if not found:
        return []
    places = [f"{_where(sub, code)} line {imp.line}" for code, imp in found]
    shown = ", ".join(places[:3]) + (f" and {len(places) - 3} more" if len(places) > 3 else "")
    message = (
        f"{shown} import{'s' if len(places) == 1 else ''} the harness's own package `{PACKAGE}`, whose "
        "reference models and training loops pass the checks: what the code earns may not be the student's work"
    )
    evidence = tuple(f"{p}: {imp.statement}" for p, (_, imp) in zip(places, found, strict=True))
    return [Flag(IMPORTS_HARNESS, message, evidence, held_for_code(a))]


# --------------------------------------------------------------------------- measurement


def measurement_flags(runs: Mapping[str, Mapping[str, Any]], a: Assignment) -> list[Flag]:
    """Flags of how the trained models were measured (docs/sandbox.md#trusted-measurement), from
    the result's ``runs``:

    - ``harness-tampered``: a unit's code rebound or rewrote the harness's own functions
      (``runs.<name>.tampered``); like an import of the harness, every item but the answers is held;
    - ``not-exported``: a trained model could not be exported, so it was measured in a unit that
      ran the submission's class definitions (``measured_in: "definitions"``); nothing is held;
    - ``architecture-mismatch``: the architecture check's trace, in the student's process, gave
      other points than the trained AE's exported graph, whose points count; nothing is held;
    - ``model-mismatch``: a trained model reconstructs the same images differently in its training
      unit than as its graph (``runs.<name>.mismatch``); the graph is measured; nothing is held."""
    flags = []
    tampered = {name: run["tampered"] for name, run in runs.items() if run.get("tampered")}
    if tampered:
        names = sorted({n for found in tampered.values() for n in found})
        message = (
            f"the submission's code rebound or rewrote the harness's own functions ({', '.join(names[:5])}) "
            "while its training ran: the harness used its own copies, and what the code earns may not be its own"
        )
        evidence = tuple(f"{name}: {', '.join(found)}" for name, found in tampered.items())
        flags.append(Flag(HARNESS_TAMPERED, message, evidence, held_for_code(a)))
    definitions = {
        name: run.get("export_error", "") for name, run in runs.items() if run.get("measured_in") == "definitions"
    }
    if definitions:
        message = (
            f"{len(definitions)} trained model(s) could not be exported as a graph, so they were measured in a unit "
            "that loaded the submission's class definitions (its own code ran there): a less trustworthy measurement"
        )
        evidence = tuple(f"{name}: {why or 'no reason given'}" for name, why in definitions.items())
        flags.append(Flag(NOT_EXPORTED, message, evidence, ()))
    differ = {
        name: run["mismatch"] for name, run in runs.items() if (run.get("mismatch") or -1) > MODEL_MISMATCH_TOLERANCE
    }
    if differ:
        message = (
            f"{len(differ)} trained model(s) reconstruct images differently in the submission's own process than "
            "as their exported graph: the graph was measured, not what the code does when it runs"
        )
        evidence = tuple(f"{name}: largest pixel difference {d:.3g}" for name, d in differ.items())
        flags.append(Flag(MODEL_MISMATCH, message, evidence, ()))
    for name, run in runs.items():
        arch = run.get("architecture_check") or {}
        graph, trace = arch.get("graph_points"), arch.get("trace_points")
        if graph is not None and trace is not None and abs(graph - trace) > 1e-9:
            top = arch.get("max_points", 0)
            message = (
                f"the architecture check's trace in the submission's process gave {trace:g} of {top:g}, the trained "
                f"AE's exported graph {graph:g}: the graph, the model that was measured, counts"
            )
            flags.append(Flag(ARCHITECTURE_MISMATCH, message, (f"{name}: trace {trace:g}, graph {graph:g}",), ()))
    return flags


def loop_flags(runs: Mapping[str, Mapping[str, Any]]) -> list[Flag]:
    """Flags of what the student's loop did, from each run's ``loop`` record (runs.loop_record):

    - ``steps-without-backward``: the loop took optimizer steps, none after a backward pass that
      reached the model (weights moved on gradients the loop made up);
    - ``did-not-train``: the model's weights were the same after the loop as before it.

    The training items charge both (the loop part, the stand-in that earns nothing), so the flag
    holds nothing: it tells the instructor that the loop's work was not what it claims."""
    no_backward = {
        name: loop
        for name, run in runs.items()
        if (loop := run.get("loop")) and loop["steps"] > 0 and loop["steps_after_backward"] == 0
    }
    still = {name: loop for name, run in runs.items() if (loop := run.get("loop")) and not loop["params_changed"]}
    flags = []
    if no_backward:
        message = (
            f"{len(no_backward)} run(s) took optimizer steps without a backward pass reaching the model: the "
            "weights moved on gradients the loop did not compute from a loss"
        )
        evidence = tuple(
            f"{name}: {loop['steps']} optimizer steps, {loop['backwards']} backward passes reached the model"
            for name, loop in no_backward.items()
        )
        flags.append(Flag(STEPS_WITHOUT_BACKWARD, message, evidence, ()))
    if still:
        message = f"{len(still)} run(s) left the model's weights as they were: the training loop did not train"
        evidence = tuple(
            f"{name}: {loop['steps']} optimizer steps, {loop['backwards']} backward passes; weights unchanged"
            for name, loop in still.items()
        )
        flags.append(Flag(DID_NOT_TRAIN, message, evidence, ()))
    return flags


def status_flags(foreign: Mapping[str, int]) -> list[Flag]:
    """``status-stream-written``: a unit's status stream (the harness's channel for where a unit
    is) held lines the harness did not write, ``foreign`` mapping each such unit to how many. Those
    lines never reach the evidence (harness.sandbox.host.read_phase); nothing is held."""
    if not foreign:
        return []
    total = sum(foreign.values())
    message = (
        f"the submission's code wrote {total} line(s) to the harness's status stream, which only the harness "
        "writes: they were set aside, and the harness's own account of each unit stands"
    )
    evidence = tuple(f"unit {unit}: {n} line(s) the harness did not write" for unit, n in foreign.items())
    return [Flag(STATUS_WRITTEN, message, evidence, ())]


# --------------------------------------------------------------------------- plausibility

RUN_ITEMS = {
    "ae": ("ae_training", "interpolation"),
    "fixed": ("vae_training",),
    "tuned": ("beta_tuning", "interpolation"),
}


def nearest_mse(samples: torch.Tensor, images: torch.Tensor, chunk: int = NN_CHUNK) -> torch.Tensor:
    """Per-pixel MSE from each sample to its nearest image, ``[m]``: both ``[*, 1, H, W]`` (or
    flat) in [0, 1]. ``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b`` by matrix products over ``chunk``
    images at a time, in float64 so an exact copy gives 0, so memory stays ``m x chunk``."""
    import torch

    a = samples.reshape(len(samples), -1).double()
    d = a.shape[1]
    best = torch.full((len(a),), float("inf"), dtype=torch.float64)
    a2 = (a * a).sum(1, keepdim=True)
    for start in range(0, len(images), chunk):
        b = images[start : start + chunk].reshape(-1, d).double()
        dist = (a2 + (b * b).sum(1)[None, :] - 2 * a @ b.T).clamp_min(0)
        best = torch.minimum(best, dist.min(1).values)
    return best / d


def _number(x: object) -> float | None:
    return float(x) if isinstance(x, (int, float)) and x == x else None


@dataclass(frozen=True)
class Floors:
    """What a run is held against: the reference's best test MSE and best sample FID over the runs
    it is given, and the real-vs-real FID (the floor of sample FID at this sample size)."""

    test_mse: float | None
    sample_fid: float | None
    real_fid: float | None

    @classmethod
    def of(cls, reference_runs: Iterable[Mapping[str, Any]], real_fid: float | None) -> Floors:
        runs = list(reference_runs)
        mses = [v for r in runs if (v := _number(r.get("test_mse"))) is not None and v > 0]
        fids = [v for r in runs if (v := _number(r.get("sample_fid"))) is not None and v > 0]
        return cls(min(mses, default=None), min(fids, default=None), _number(real_fid))


def run_flags(
    name: str,
    role: str,
    measure: Mapping[str, Any],
    floors: Floors,
    samples: np.ndarray | None,
    train_images: torch.Tensor | None,
) -> list[Flag]:
    """The plausibility flags of one run: its ``measure`` (``RunMeasure.to_json``) against the
    reference's best (``floors``), and its decoded prior samples (uint8 ``[m, 1, H, W]``, the run
    artefacts' ``run/<name>/samples``) against the training images (floats in [0, 1])."""
    items = RUN_ITEMS.get(role, ())
    flags = []
    mse, best_mse = _number(measure.get("test_mse")), floors.test_mse
    if mse is not None and best_mse and mse < MSE_FACTOR * best_mse:
        flags.append(
            Flag(
                MSE_FAR_BELOW,
                f"run {name}: test MSE {mse:.3g} is {mse / best_mse:.2g}x the reference's best {best_mse:.3g}, "
                f"far below what training the handout's model reaches (flagged under {MSE_FACTOR:g}x)",
                (f"run {name}: test MSE {mse:.4g}; the reference's lowest on this profile {best_mse:.4g}",),
                items,
            )
        )
    fid, best_fid, real_fid = _number(measure.get("sample_fid")), floors.sample_fid, floors.real_fid
    if (
        fid is not None
        and real_fid
        and best_fid
        and fid <= FID_FLOOR_FACTOR * real_fid
        and fid <= FID_REFERENCE_FACTOR * best_fid
    ):
        flags.append(
            Flag(
                FID_AT_FLOOR,
                f"run {name}: sample FID {fid:.3g} is at the real-data floor ({real_fid:.3g}, real images against "
                f"real images), far better than the reference's best {best_fid:.3g}",
                (
                    f"run {name}: sample FID {fid:.4g}; real-vs-real FID {real_fid:.4g}; "
                    f"the reference's best {best_fid:.4g}",
                ),
                items,
            )
        )
    if samples is not None and train_images is not None and len(samples) and len(train_images):
        import torch

        nn = nearest_mse(torch.from_numpy(samples).double() / 255.0, train_images)
        close = int((nn < COPY_MSE).sum())
        if close / len(nn) >= COPY_SHARE:
            flags.append(
                Flag(
                    COPIES_TRAINING,
                    f"run {name}: {close} of {len(nn)} samples are near-copies of training images (per-pixel MSE "
                    f"to the nearest under {COPY_MSE:g}, which a model's own samples do not reach)",
                    (
                        f"run {name}: per-pixel MSE from each sample to its nearest training image: "
                        + ", ".join(f"{v:.2g}" for v in nn.tolist()),
                    ),
                    items,
                )
            )
    return flags


def plausibility_flags(
    runs: Mapping[str, Mapping[str, Any]],
    reference_runs: Iterable[Mapping[str, Any]],
    real_fid: float | None,
    arrays: Mapping[str, np.ndarray],
    train_images: torch.Tensor | None,
) -> list[Flag]:
    """``grade``'s plausibility flags, one per run and finding, over every run of the result's
    ``runs`` that ended ``ok`` with a measure. A run is held against the best of the reference's
    runs (``reference_runs``, ``RunMeasure.to_json`` each: the profile's runs and the reference at
    the student's beta), not only its namesake: an honest run in another loss convention, or one
    that trains longer than asked, may beat its namesake by far (the smoke beta-0 reference is
    barely trained), but not the best the handout's model reaches. Its samples are held against
    ``train_images`` (``g.train_images``). A run the harness's loop trained on the reference model
    holds nothing of the student's and is skipped. A run's flags hold the items it feeds
    (:data:`RUN_ITEMS`)."""
    floors = Floors.of(reference_runs, real_fid)
    flags = []
    for name, run in runs.items():
        measure = run.get("measure")
        if run.get("status") != "ok" or not measure:
            continue
        if run.get("trainer") == "harness" and run.get("model") == "reference":
            continue
        samples = arrays.get(f"run/{name}/samples")
        flags += run_flags(name, str(run.get("role", "")), measure, floors, samples, train_images)
    return flags


# --------------------------------------------------------------------------- holding


def hold(items: list[ItemResult], flags: list[Flag]) -> list[ItemResult]:
    """The items with every item a flag names held for review: status ``needs_review``, 0 points
    (a flagged attack can never earn more than its honest twin), the points it would have earned
    in ``metrics["suggested_points"]`` and the flags' codes in ``metrics["integrity"]``, and one
    evidence line per flag first. New ItemResults; the others are returned as they are."""
    out = []
    for item in items:
        mine = [f for f in flags if item.id in f.items]
        if not mine:
            out.append(item)
            continue
        suggested = item.metrics.get("suggested_points", item.points)
        lines = [
            f"held for review: {f.message} (suggested {suggested:g} of {item.max_points:g}; an instructor's "
            "override in overrides.csv restores it)"
            for f in mine
        ]
        metrics = {**item.metrics, "suggested_points": suggested, "integrity": [f.code for f in mine]}
        out.append(replace(item, points=0.0, status="needs_review", evidence=[*lines, *item.evidence], metrics=metrics))
    return out
