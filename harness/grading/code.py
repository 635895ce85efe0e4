"""The code items every run of a submission starts with: ``ae_architecture``, ``ae_forward``,
``ae_sampling`` and ``vae_model``, each from its own sandboxed unit (``harness check`` runs these
alone; ``harness grade`` runs them before training).

Order: import the code once (a unit of its own, so a module that hangs or exits at import costs
the code items once, not four timeouts), then the architecture, the forward pass, sampling and the
VAE. Where a later check needs a part that failed (the VAE test needs a working decoder), the
reference part stands in and the evidence says so.

A notebook cell that ends the import unit's process in the definition pass (``os._exit`` in
``vis_samples``, a segmentation fault, the memory limit) costs the items that need it, not all four:
the host skips it and runs the unit again (:func:`harness.sandbox.host.run_definition`), every later
unit skips it too, and each code item that then falls short names the cell in its evidence.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from harness.config.assignment import Assignment
from harness.grading.items import architecture, forward, sampling, vae
from harness.grading.rubric import ItemResult, failed
from harness.ml.data import Mnist
from harness.sandbox.host import FatalCell, Limits, UnitOutcome, run_definition

CODE_ITEMS = ("ae_architecture", "ae_forward", "ae_sampling", "vae_model")
TRAINED_ITEMS = ("ae_training", "vae_training", "beta_tuning", "interpolation")  # graded by `harness grade`
SAMPLES = 512
LOADER_PROBE = (32, 2)  # batch size and workers the loader test asks for (not the handout's, so ignoring them shows)
VAE_BETAS = [0.0, 0.5, 10.0]


def probe_inputs(data: Mnist) -> dict[str, torch.Tensor]:
    """The same fixed test images for every submission."""
    return {"images": data.test_images[:SAMPLES].clone(), "labels": data.test_labels[:SAMPLES].clone()}


def unit_failure(item_id: str, a: Assignment, outcome: UnitOutcome, what: str) -> ItemResult:
    status = "timeout" if outcome.status in ("timeout", "stalled") else "error"
    evidence = [f"{what}: {outcome.describe()}"]
    if outcome.traceback:
        evidence.append("traceback (last lines):\n" + outcome.traceback)
    return failed(a.item(item_id), status, evidence, {"unit_seconds": outcome.seconds})


def scored(item_id: str, a: Assignment, score: Callable[[], ItemResult]) -> ItemResult:
    """Score observations; ones that do not have the expected form (a unit that tampered with
    its own output, or a rubric whose parts do not match the check) cost this item only."""
    try:
        return score()
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError) as e:
        return failed(a.item(item_id), "error", [f"could not score the observations ({type(e).__name__}: {e})"])


def missing_name(a: Assignment, item_id: str, name: str, defined: list[str], label: str) -> ItemResult:
    close = difflib.get_close_matches(name, defined, n=1)
    hint = f" (did you mean to name `{close[0]}` `{name}`?)" if close else ""
    return failed(a.item(item_id), "fail", [f"{label} defines no `{name}`{hint}"])


@dataclass
class CodeOutcome:
    """The code items, plus what later (training) units need to know about the parts."""

    items: list[ItemResult]
    found: dict[str, str] = field(default_factory=dict)  # config key -> "ok" | "missing" | "not callable"
    broken: set[str] = field(default_factory=set)  # parts replaced by the reference's in later units
    vae_metrics: dict = field(default_factory=dict)  # loss convention detected by vae_model
    cells: list[dict] = field(default_factory=list)  # a notebook's cells as the definition pass ran them
    fatal: list[FatalCell] = field(default_factory=list)  # cells skipped for ending the process (notebooks)

    def has(self, key: str) -> bool:
        return self.found.get(key) == "ok"

    def item(self, item_id: str) -> ItemResult:
        return next(i for i in self.items if i.id == item_id)


def decoder_shape_ok(a: Assignment, traced: dict) -> bool:
    """Does the traced decoder end in images of the data's shape (channels, size, size)?"""
    try:
        shapes = [op["out_shape"] for op in traced["decoder_ops"] if op.get("out_shape")]
        want = [a.data.image_channels, a.data.image_size, a.data.image_size]
        return bool(shapes) and list(shapes[-1][1:]) == want
    except (KeyError, TypeError, IndexError):
        return False


def no_code_items(a: Assignment, label: str) -> list[ItemResult]:
    return [failed(a.item(i), "fail", [f"{label} is missing"]) for i in CODE_ITEMS]


def mark_fatal(cells: list[dict], fatal: list[FatalCell]) -> list[dict]:
    """The definition pass's cell runs with each fatal cell's entry saying how it ended the process
    (the unit that skipped it knows only that it stopped an earlier unit)."""
    how = {f.number: f.how for f in fatal}
    return [
        {**c, "error": f"ended the process ({how[c['number']]}); skipped from then on, the cells after it ran"}
        if c.get("number") in how
        else c
        for c in cells
    ]


def with_fatal_cells(item: ItemResult, fatal: list[FatalCell]) -> ItemResult:
    """An item that fell short names, first, each cell the checks ran without: what such a cell
    defines is missing from every unit, so it may be why (an item that passed did not need it)."""
    if item.status == "pass" or not fatal:
        return item
    notes = [f"{f.describe()}, so this check ran without what cell {f.number} defines" for f in fatal]
    item.evidence = notes + item.evidence
    return item


def code_items(box, a: Assignment, limits: Limits, timings: dict) -> CodeOutcome:
    names = {k: getattr(a.submission.names, k) for k in a.submission.names.__dataclass_fields__}
    label = box.submission.label  # how messages name the student's code ("submission.py")

    def run(unit: str, args: dict | None = None) -> UnitOutcome:
        outcome = box.run(unit, unit, limits, args)
        timings[unit] = outcome.seconds
        return outcome

    imp, fatal = run_definition(box, "import", limits)
    timings["import"] = round(imp.seconds + sum(f.seconds for f in fatal), 3)
    if not imp.ok:
        return CodeOutcome(
            [with_fatal_cells(unit_failure(i, a, imp, f"importing {label}"), fatal) for i in CODE_ITEMS],
            broken={"autoencoder", "encoder", "decoder", "data_loader", "vae"},
            fatal=fatal,
        )
    found, defined = imp.value["names"], imp.value["defined"]
    out = CodeOutcome([], found=found, cells=mark_fatal(list(imp.value.get("cells", [])), fatal), fatal=fatal)
    box.skip_cells([c["number"] for c in out.cells if c.get("timed_out")])

    def has(key: str) -> bool:
        return found.get(key) == "ok"

    results: dict[str, ItemResult] = {}
    broken = out.broken
    ref_params = architecture.reference_parameters(a)
    if not has("autoencoder"):
        results["ae_architecture"] = missing_name(a, "ae_architecture", names["autoencoder"], defined, label)
        broken.add("autoencoder")
    else:
        o = run("architecture")
        if o.ok:
            results["ae_architecture"] = scored(
                "ae_architecture", a, lambda: architecture.score(a, o.value, ref_params)
            )
            if not decoder_shape_ok(a, o.value):
                broken.add("decoder")
        else:
            results["ae_architecture"] = unit_failure("ae_architecture", a, o, "building and tracing your AutoEncoder")
            broken.add("autoencoder")

    batch, workers = LOADER_PROBE
    missing = [k for k in ("data_loader", "autoencoder") if not has(k)]
    if not has("data_loader"):
        broken.add("data_loader")
    if missing:
        results["ae_forward"] = missing_name(a, "ae_forward", names[missing[0]], defined, label)
    else:
        o = run("forward", {"batch_size": batch, "num_workers": workers})
        if o.ok:
            results["ae_forward"] = scored("ae_forward", a, lambda: forward.score(a, o.value, batch, workers))
            try:
                if forward.loader_part(o.value["loader"], batch, workers).share < 1:
                    broken.add("data_loader")
            except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError):
                broken.add("data_loader")
            z, rec = o.value.get("z"), o.value.get("rec")
            if not isinstance(z, torch.Tensor) or list(z.shape) != [batch, a.model.nz]:
                broken.add("encoder")
            if (
                not isinstance(rec, torch.Tensor)
                or rec.dim() != 4
                or list(rec.shape[1:]) != [a.data.image_channels, a.data.image_size, a.data.image_size]
            ):
                broken.add("decoder")
        else:
            results["ae_forward"] = unit_failure("ae_forward", a, o, "the data loader and forward-pass test")
            if not o.phase.startswith(f"call {names['data_loader']}") and "data loader" not in o.phase:
                broken |= {"encoder", "decoder"}  # the model itself failed: later checks use the reference parts
            else:
                broken.add("data_loader")

    if not has("generate_samples"):
        results["ae_sampling"] = missing_name(a, "ae_sampling", names["generate_samples"], defined, label)
    else:
        # The item judges the sampler; a decoder that failed its shape check is charged under
        # ae_architecture / ae_forward, so the reference auto-encoder stands in for it here.
        stand_in = next(
            (
                why
                for key, why in (("autoencoder", "could not be built"), ("decoder", "failed its output-shape check"))
                if key in broken
            ),
            "",
        )
        if not has("autoencoder"):
            stand_in = "is missing"
        use_ref = bool(stand_in)
        o = run("sampling", {"n": SAMPLES, "reference_model": use_ref, "seed": 0})
        results["ae_sampling"] = (
            scored("ae_sampling", a, lambda: sampling.score(a, o.value, SAMPLES, stand_in))
            if o.ok
            else unit_failure("ae_sampling", a, o, "generate_samples")
        )

    if not has("vae"):
        results["vae_model"] = missing_name(a, "vae_model", names["vae"], defined, label)
        broken.add("vae")
    else:
        substitute = sorted(k for k in ("encoder", "decoder") if k in broken and has(k))
        # one call of the student's own loop shows how its loss is called (items/vae.py)
        o = run("vae", {"betas": VAE_BETAS, "substitute": substitute, "observe_loop": has("train_vae")})
        if o.ok:
            results["vae_model"] = scored("vae_model", a, lambda: vae.score(a, o.value, substitute))
            out.vae_metrics = results["vae_model"].metrics
        else:
            results["vae_model"] = unit_failure("vae_model", a, o, "the VAE tests")
            broken.add("vae")
    out.items = [with_fatal_cells(results[i], fatal) for i in CODE_ITEMS]
    return out
