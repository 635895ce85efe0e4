"""``harness grade``: every rubric item of one submission, graded against the reference.

Order: the code items (``harness.grading.code``, the same units as ``harness check``), then four
training units in the sandbox, each a fresh child with the training time limit:

    train-ae       the student's train_autoencoder on their AutoEncoder      -> ae_training
    train-<beta0>  the student's train_vae with beta = 0   } vae_training
    train-<beta10> the student's train_vae with beta = 10  }
    train-tuned    train_vae at the submission's tuned_beta                  -> beta_tuning

then ``interpolation`` from the AE and tuned units' paths plus its answer, and the written
answers. Failure isolation: a loop runs on the student's model when that model passed its
checks, otherwise on the reference model; the tuned run uses the harness's own loop when the
student's VAE loop is broken; a missing AE or VAE path uses the reference's. The evidence says
which stood in. The student's loops get an in-memory dataset with torchvision MNIST's items
``(image in [0, 1], label)`` (``harness.ml.data.TensorMNIST``) and ``num_workers=0``: the
images are already decoded, so worker processes would only copy them (docs/checks.md).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from harness.config.assignment import Assignment
from harness.config.plan import RunPlan, run_plan
from harness.grading import artifacts, integrity
from harness.grading.code import (
    TRAINED_ITEMS,
    CodeOutcome,
    code_items,
    missing_name,
    no_code_items,
    probe_inputs,
    scored,
    unit_failure,
)
from harness.grading.grader import Grader, beta_verdict
from harness.grading.handin import check_handin
from harness.grading.items import architecture, training
from harness.grading.items.answers import score_answers
from harness.grading.result import Result
from harness.grading.rubric import ItemResult, failed
from harness.grading.runs import (
    base_request,
    evaluation_inputs,
    run_record,
    skipped_record,
    total_steps,
    training_inputs,
    tuned_beta_missing,
    unit_name,
)
from harness.grading.session import (
    RunOptions,
    check_limits,
    new_result,
    open_sandbox,
    run_training_unit,
    training_limits,
)
from harness.ml.loss_convention import LossConvention
from harness.sandbox.host import UnitOutcome
from harness.sandbox.requests import TrainRequest
from harness.submission.contents import Submission
from harness.submission.detect import load

RESULT_NAME, ARTIFACTS_NAME = "result.json", "runs.npz"


def grading_inputs(g: Grader) -> dict[str, torch.Tensor]:
    """What the sandbox's check and training units read: the check images and the training
    subset. The evaluation inputs (with every prior draw: sample FID decodes all of them) go to
    each evaluation unit alone (``harness.grading.session.evaluate_trained``)."""
    return {**probe_inputs(g.data), **training_inputs(g.a, g.train_images, g.train_labels)}


def grade_submission(folder: Path, g: Grader, options: RunOptions = RunOptions()) -> Result:
    """Grade one submission; with ``options.out``, also store what its reports show there
    (``runs.npz``, ``harness.grading.artifacts``), named in the result's ``artifacts`` field."""
    a = g.a
    started = time.perf_counter()
    sub = load(folder, a, options.name_pattern)
    timings: dict[str, float] = {}
    answer_items, answers_json = score_answers(a, sub)
    plans = run_plan(a, g.profile)
    at_beta = None  # the reference trained at the student's beta, among those the runs are held against

    if sub.has_code:
        with open_sandbox(sub, a, grading_inputs(g)) as box:
            code = code_items(box, a, check_limits(a, options), timings)
            evaluation = evaluation_inputs(a, g.data, a.metrics.fid_samples)
            t = Training(box, sub, g, code, options, timings, plans, evaluation, arrays=dict(g.reference_arrays))
            trained = {
                "ae_training": grade_ae_training(t),
                "vae_training": grade_vae_training(t),
                "beta_tuning": grade_beta_tuning(t),
            }
            trained["interpolation"] = grade_interpolation(t, answer_items.get("interpolation"))
            runs, arrays, at_beta = t.runs, t.arrays, t.at_beta
        foreign_status = dict(box.foreign_status)
    else:
        code = CodeOutcome(no_code_items(a, sub.label))
        trained = {i: failed(a.item(i), "fail", [f"{sub.label} is missing"]) for i in TRAINED_ITEMS}
        runs = {p.name: skipped_record(p, f"{sub.label} is missing") for p in plans}
        arrays = dict(g.reference_arrays)
        foreign_status = {}

    by_id = {i.id: i for i in code.items} | {k: v for k, v in answer_items.items() if k not in TRAINED_ITEMS} | trained
    items = [by_id[r.id] for r in a.rubric if r.id in by_id]
    # results no honest run reaches, code that imports or rewrites the harness: their items held for review
    reference_runs = [r.to_json() for r in g.reference.runs if not r.search] + ([at_beta.to_json()] if at_beta else [])
    flags = (
        integrity.provenance_flags(sub, a)
        + integrity.measurement_flags(runs, a)
        + integrity.loop_flags(runs)
        + integrity.status_flags(foreign_status)
        + integrity.plausibility_flags(runs, reference_runs, g.reference.real_fid, arrays, g.train_images)
    )
    items = integrity.hold(items, flags)
    if sub.notebook is not None:  # what the student saw, beside what the harness re-ran (the report)
        arrays.update(artifacts.stored_arrays(sub.notebook.figures))
    pdf_started = time.perf_counter()
    pdf_check, thumbnails = check_handin(sub, a, arrays, runs)  # flags for review; no points change
    arrays.update(thumbnails)
    if pdf_check:
        timings["pdf_check"] = round(time.perf_counter() - pdf_started, 2)
    timings["total"] = round(time.perf_counter() - started, 2)
    pending = [r.id for r in a.rubric if r.id not in by_id]
    result = new_result(
        "grade", sub, a, g.profile.name, items, pending, answers_json, timings, reference_summary(g), code.cells
    )
    result.runs, result.pdf_check = runs, pdf_check
    result.integrity = [f.to_json() for f in flags]
    if options.out is not None:
        artifacts.write_artifacts(options.out / ARTIFACTS_NAME, arrays)
        result.artifacts = ARTIFACTS_NAME
    return result


def item_table(result: Result) -> str:
    """The final table of a grade: one row per item, its points and the first line of evidence."""
    sub = result.submission
    lines = [
        f"{result.assignment['title']} - grade of {sub['id']} ({sub['student'] or 'no name'}), "
        f"profile {result.profile}",
        "",
    ]
    for p in result.problems:
        lines.append(f"  ! {p}")
    w = max([len(i.id) for i in result.items] + [5]) + 1
    head = f"{'item':<{w}}{'points':>11}  {'status':<13}evidence"
    lines += [head, "-" * 100]
    for item in result.items:
        first = next((str(e).splitlines()[0] for e in item.evidence if str(e).startswith("x ")), None)
        first = first or (str(item.evidence[0]).splitlines()[0] if item.evidence else "")
        if len(first) > 70:
            first = first[:67] + "..."
        lines.append(f"{item.id:<{w}}{item.points:>5g} / {item.max_points:<3g}  {item.status:<13}{first}")
    lines += [
        "-" * 100,
        f"{'total':<{w}}{result.total:>5g} / {result.max_total:<3g}"
        f"  (answers are suggestions until an instructor reviews them)",
        "",
    ]
    lines.append(f"per-item evidence: result.json (docs/result-schema.md); took {result.timings.get('total', 0):.1f} s")
    return "\n".join(lines)


def reference_summary(g: Grader) -> dict:
    """The result's ``reference`` field: what the submission was measured against."""
    ref = g.reference
    return {
        "key": ref.key,
        "profile": ref.profile,
        "tuned_beta": ref.tuned_beta,
        "real_fid": ref.real_fid,
        "criterion": ref.criterion,
        "classifier_accuracy": ref.classifier_accuracy,
        "runs": {r.name: r.to_json() for r in ref.runs if not r.search},
        "search": [
            {"beta": r.beta, "test_mse": r.test_mse, "sample_fid": r.sample_fid, "kl": r.kl}
            for r in ref.runs
            if r.search
        ],
        "band": g.band.to_json() if g.band else None,
    }


TRAINING_NEEDS_NOT = {"reconstruct"}  # vae_model parts no training run uses


@dataclass
class Training:
    """What the four trained items share while they run: the sandbox, the submission, the grader,
    the code items' outcome, and where each run's record and report artefacts go."""

    box: object
    sub: Submission
    g: Grader
    code: CodeOutcome
    options: RunOptions
    timings: dict[str, float]
    plans: list[RunPlan]  # the AE, the fixed betas, the tuned run (harness.config.plan)
    evaluation: dict[str, torch.Tensor]  # what each evaluation unit measures a trained model on
    runs: dict[str, dict] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    ae: training.RunMeasure | None = None  # set by ae_training, read by interpolation
    tuned: training.RunMeasure | None = None  # set by beta_tuning, read by interpolation
    at_beta: training.RunMeasure | None = None  # the reference at the student's beta
    loop_ok: bool = False  # the student's VAE loop kept its contract: it may train the tuned run
    tuned_reviewed: bool = False  # beta_tuning left the tuned run's quality for review (a short profile)

    def plan(self, role: str) -> RunPlan:
        return next(p for p in self.plans if p.role == role)

    @property
    def a(self) -> Assignment:
        return self.g.a

    @property
    def loader_note(self) -> str:
        if not self.harness_loader:
            return ""
        loader = self.a.submission.names.data_loader
        return f"your {loader} did not pass its check, so the harness's DataLoader fed your loop"

    @property
    def harness_loader(self) -> bool:
        return "data_loader" in self.code.broken

    def request(self, plan: RunPlan, **changes) -> TrainRequest:
        """The unit's request for ``plan``, fed by the harness's loader when the student's failed."""
        base = base_request(self.a, plan, self.options.device)
        return dataclasses.replace(base, harness_loader=self.harness_loader, **changes)

    def train(self, plan: RunPlan, request: TrainRequest) -> tuple[UnitOutcome, training.RunMeasure | None]:
        """Run one training unit and measure what it returns; the run's record and artefacts are kept."""
        unit = unit_name(plan)
        reference_s = next((r.seconds for r in self.g.reference.runs if r.name == plan.name), None)
        limits = training_limits(self.a, self.options, reference_s, request.trainer != "harness")
        steps = total_steps(request, len(self.g.train_images))
        o = run_training_unit(
            self.box, unit, request, limits, steps, self.sub.id, self.options.quiet, self.timings, self.evaluation
        )
        m = self.measure(plan, request, o)
        self.runs[plan.name] = run_record(plan, request, o)
        if plan.role == "ae" and o.ok and not request.reference_model:
            self.runs[plan.name]["architecture_check"] = self.judge_architecture(o)
        if m is not None:
            self.runs[plan.name]["measure"] = m.to_json()
        return o, m

    def judge_architecture(self, o: UnitOutcome) -> dict:
        """``ae_architecture`` judged again on the exported graph of the trained AE, the model that
        was measured, so a model cannot be one thing when checked and another when measured; the
        check's trace (in the student's process) stands only where there is no graph, and says so.
        Returns the AE run's ``architecture_check`` record: the points of both."""
        item = self.code.item("ae_architecture")
        graph = o.value.get("architecture")
        if graph is None:
            why = o.value.get("export_error") or "the evaluation unit loaded your model's definitions"
            item.evidence.append(f"not confirmed on an exported graph of the trained AE ({why})")
            return {"trace_points": item.points, "graph_points": None, "max_points": item.max_points}
        ref_params = architecture.reference_parameters(self.a)
        judged = scored("ae_architecture", self.a, lambda: architecture.score(self.a, graph, ref_params))
        note = "judged on the exported graph of your trained AE (the model that was measured)"
        if judged.points != item.points:
            note += f"; the check's trace in your code's process gave {item.points:g} of {item.max_points:g}"
        judged.evidence.insert(0, note)
        self.code.items = [judged if i.id == "ae_architecture" else i for i in self.code.items]
        return {"trace_points": item.points, "graph_points": judged.points, "max_points": item.max_points}

    def measure(self, plan: RunPlan, request: TrainRequest, o: UnitOutcome) -> training.RunMeasure | None:
        if not o.ok:
            return None
        a = self.a
        try:
            # the reference VAE's scale half is log sigma; the student's, what vae_model read
            param = "log_sigma" if request.reference_model else self.convention.parameterisation
            m = training.measure(plan.name, o.value, self.g.judge, param)
            m.source = "reference" if request.reference_model else "student"  # whose model the loop trained
            embed = plan.role in ("ae", "tuned")
            kl = m.kl_per_dim
            self.arrays.update(
                artifacts.run_arrays(plan.name, o.value, request.kind, a.model.nz, a.sampling.n, kl, embed=embed)
            )
            return m
        except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError) as e:
            o.status, o.error = "error", f"the trained model's outputs could not be measured ({type(e).__name__}: {e})"
            return None

    @property
    def short(self) -> training.ShortRun:
        """The grade's profile, with the notebook's stored logs of its runs (a short profile's reviews)."""
        stored = self.sub.notebook.stored_losses if self.sub.notebook is not None else None
        return training.ShortRun(self.g.profile.name, stored)

    @property
    def convention(self) -> LossConvention:
        """The student's loss convention as ``vae_model`` read it (the handout's where it could not)."""
        return LossConvention.from_json(self.code.vae_metrics.get("convention"))

    @property
    def vae_model_ok(self) -> bool:
        """The student's VAE trains its own runs unless a part training relies on failed: the
        reference stands in only for a VAE broken under the student's own conventions (a wrong
        ``reconstruct``, which no run uses, is charged in vae_model alone)."""
        item = self.code.item("vae_model")
        if "vae" in self.code.broken or item.status in ("error", "timeout"):
            return False
        failed = item.metrics.get("failed_parts")
        if failed is None:
            return item.status == "pass"
        return set(failed) <= TRAINING_NEEDS_NOT

    def vae_request(self, plan: RunPlan, **changes) -> TrainRequest:
        """A VAE run's request: the student's VAE (with reference parts where theirs failed) when
        it passed its checks, else the reference VAE."""
        substitute = tuple(sorted(k for k in ("encoder", "decoder") if k in self.code.broken and self.code.has(k)))
        return self.request(plan, reference_model=not self.vae_model_ok, substitute=substitute, **changes)

    def vae_note(self, *more: str) -> str:
        note = "" if self.vae_model_ok else "your VAE did not pass its checks, so your loop trained the reference VAE"
        return "; ".join(n for n in (note, self.loader_note, *more) if n)


def grade_ae_training(t: Training) -> ItemResult:
    """The student's AE loop, on their AE when it passed its checks."""
    a, code, plan = t.a, t.code, t.plan("ae")
    names = a.submission.names
    ae_model_ok = code.item("ae_architecture").status == "pass" and not (
        {"autoencoder", "encoder", "decoder"} & code.broken
    )
    note = "" if ae_model_ok else "your AutoEncoder did not pass its checks, so your loop trained the reference AE"
    note = "; ".join(n for n in (note, t.loader_note) if n)
    if not code.has("train_autoencoder"):
        item = missing_name(a, "ae_training", names.train_autoencoder, [], t.sub.label)
        t.runs[plan.name] = skipped_record(plan, item.evidence[0])
        return item
    o, t.ae = t.train(plan, t.request(plan, contract=True, reference_model=not ae_model_ok))
    if t.ae is None:
        return unit_failure("ae_training", a, o, f"training with {names.train_autoencoder}")
    ref = t.g.reference
    return scored("ae_training", a, lambda: training.score_ae_training(a, o.value, t.ae, ref, note, t.short))


def grade_vae_training(t: Training) -> ItemResult:
    """The student's VAE loop at the fixed betas, on their VAE when it passed its checks."""
    a, code = t.a, t.code
    names = a.submission.names
    fixed_plans = [p for p in t.plans if p.role == "fixed"]
    if not code.has("train_vae"):
        item = missing_name(a, "vae_training", names.train_vae, [], t.sub.label)
        t.runs.update({p.name: skipped_record(p, item.evidence[0]) for p in fixed_plans})
        return item
    fixed: dict[str, tuple[dict, training.RunMeasure]] = {}
    failure = None
    for n, plan in enumerate(fixed_plans):
        o, m = t.train(plan, t.vae_request(plan, contract=n == 0))
        if m is None:
            failure = failure or (o, plan.name)
        else:
            fixed[plan.name] = (o.value, m)
    # the tuned run is the student's loop's own when that loop trains (backward passes reach the
    # model, the weights change) in the contract call and the beta = 0 run; its other defects are
    # this item's, and the tuned run's results are measured on what it trains
    first = fixed.get(fixed_plans[0].name) if fixed_plans else None
    t.loop_ok = first is not None and training.loop_trains(first[0], names.train_vae)
    if failure:
        o, name = failure
        return unit_failure("vae_training", a, o, f"{names.train_vae} for {name}")
    note = t.vae_note()
    return scored("vae_training", a, lambda: training.score_vae_training(a, fixed, t.g.reference, t.convention, note))


def grade_beta_tuning(t: Training) -> ItemResult:
    """The tuned beta: the student's loop when it trains, else the harness's, on their VAE. Its
    results (samples, reconstructions) earn points only when the student's own code trained the
    student's own VAE; the choice of beta is judged either way."""
    a, sub, plan = t.a, t.sub, t.plan("tuned")
    conv = t.convention
    if sub.tuned_beta is None:
        why = tuned_beta_missing(sub, a)
        t.runs[plan.name] = skipped_record(plan, why)
        return failed(a.item("beta_tuning"), "fail", [why])
    # the reference VAE reads the reference convention
    beta = sub.tuned_beta if t.vae_model_ok else conv.to_reference(sub.tuned_beta)
    trainer = "student" if t.loop_ok else "harness"
    o, t.tuned = t.train(plan, t.vae_request(plan, beta=beta, trainer=trainer))
    harness_note = "your VAE loop does not train (see vae_training), so the harness's loop trained the tuned run"
    note = t.vae_note(harness_note if trainer == "harness" else "")
    verdict = beta_verdict(t.g, conv.to_reference(sub.tuned_beta))
    t.at_beta = verdict.at_beta
    if t.tuned is None:
        return unit_failure("beta_tuning", a, o, f"the tuned run (beta = {sub.tuned_beta:g})")
    untrained = training.untrained(o.value, a.submission.names.train_vae) if trainer == "student" else ""
    item = scored(
        "beta_tuning",
        a,
        lambda: training.score_beta_tuning(
            a,
            sub.tuned_beta,
            t.tuned,
            verdict,
            conv,
            note,
            stand_in=not t.vae_model_ok,
            loop_stand_in=trainer == "harness",
            untrained_why=untrained,
            short=t.short,
        ),
    )
    t.tuned_reviewed = bool(item.metrics.get("short_review"))
    return item


def grade_interpolation(t: Training, answer: ItemResult | None) -> ItemResult:
    """The student's paths where their models are usable, else the reference's; judged against
    the reference at the student's own beta (the beta itself is beta_tuning's). The paths earn
    points only from a tuned VAE of the student's that their own loop trained (the run's record:
    model "student", trainer "student"); what stood in is shown, and earns nothing."""
    a, ref = t.a, t.g.reference
    ref_tuned = t.at_beta or ref.run(t.plan("tuned").name)
    student_ae = t.ae is not None and t.ae.source == "student"
    ae_path = t.ae if student_ae else ref.run(t.plan("ae").name)
    vae_path = t.tuned if t.tuned is not None and t.tuned.source == "student" else ref_tuned
    run = t.runs.get(t.plan("tuned").name) or {}
    if t.tuned is None and run.get("status") == "not run":  # no usable tuned_beta: charged once, under beta_tuning
        why = ""
    elif t.tuned is None:
        why = f"the reference trained at your beta stood in for your tuned VAE (your tuned run: {run.get('status')})"
    elif t.tuned.source != "student" or run.get("model") == "reference":
        why = "the reference VAE stood in for yours (it did not pass its checks)"
    elif run.get("trainer") == "harness":
        why = f"the reference's training loop stood in for your {a.submission.names.train_vae}, which does not train"
    else:
        why = ""
    return scored(
        "interpolation",
        a,
        lambda: training.score_interpolation(a, ae_path, vae_path, ref_tuned, answer, why, t.short, t.tuned_reviewed),
    )
