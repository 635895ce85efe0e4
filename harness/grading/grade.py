"""``harness grade``: every rubric item of one submission, graded against the reference.

Order: the fast checks of ``harness check`` (same units, same sandbox), then four
training units in the sandbox, each a fresh child with the training time limit:

    train-ae       the student's train_autoencoder on their AutoEncoder
    train-<beta0>  the student's train_vae with beta = 0   } vae_training
    train-<beta10> the student's train_vae with beta = 10  }
    train-tuned    train_vae at the submission's tuned_beta  -> beta_tuning

then ``interpolation`` from the AE and tuned units' paths plus its answer, and
the written answers. Failure isolation: a loop runs on the student's model when
that model passed its checks, otherwise on the reference model; the tuned run uses
the harness's own loop when the student's VAE loop is broken; a missing AE or VAE
path uses the reference's. The evidence says which stood in. The student's loops
get an in-memory dataset with torchvision MNIST's items ``(image in [0, 1], label)``
(``harness.ml.data.TensorMNIST``) and ``num_workers=0``: the images are already
decoded, so worker processes would only copy them (docs/checks.md).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.config.assignment import Assignment, Profile
from harness.grading import artifacts
from harness.grading.check import (
    TRAINED_ITEMS,
    CheckOptions,
    CodeOutcome,
    code_items,
    missing_name,
    new_result,
    no_code_items,
    open_sandbox,
    probe_inputs,
    score_answers,
    scored,
    unit_failure,
)
from harness.grading.items import training
from harness.grading.result import Result
from harness.grading.rubric import ItemResult, failed
from harness.ml import metrics
from harness.ml.data import Mnist, pair_images, subset
from harness.progress import Progress
from harness.reference import beta_band
from harness.reference.beta_band import BetaBand
from harness.reference.build import (
    PRIOR_SEED_OFFSET,
    ReferenceResult,
    RunRecord,
    load_model,
    load_or_train_classifier,
    reference_at_beta,
)
from harness.sandbox.host import Limits, UnitOutcome
from harness.submission.folder import Submission, load_submission

MAX_REFERENCE_BETA = 1e3  # beyond this (reference convention) every run has long collapsed: none is trained


@dataclass(frozen=True)
class GradeOptions:
    device: str = "cpu"  # a resolved device name, passed to the student's loops
    check: CheckOptions = CheckOptions()
    train_timeout_s: float | None = None  # per training unit; default from the assignment's [sandbox]
    threads: int = 0  # torch threads per training unit; 0: as many as this process uses
    quiet: bool = False


@dataclass(frozen=True)
class Grader:
    """What every submission of a course is graded with: built once, reused per submission."""

    a: Assignment
    profile: Profile
    data: Mnist
    reference: ReferenceResult
    judge: training.Judge
    train_images: torch.Tensor
    train_labels: torch.Tensor
    reference_arrays: dict[str, np.ndarray]  # what the reports show of the reference (harness.grading.artifacts)
    band: BetaBand | None  # the full-protocol beta band; None until `harness reference --band` built it
    cache: Path  # where the reference at each student's beta is trained once and kept
    device: torch.device


def make_grader(
    a: Assignment, profile: Profile, data: Mnist, reference: ReferenceResult, cache: Path, device: torch.device
) -> Grader:
    clf, _ = load_or_train_classifier(data, a, cache, device, quiet=True)
    clf = clf.cpu()
    real = metrics.classify(clf, data.test_images)[0]
    images, labels = subset(data.train_images, data.train_labels, profile.train_images, a.training.seed)
    judge = training.Judge(clf, eval_images(a, data), real, a)
    reference = on_eval_images(reference, a, judge.test_images, device)
    band = beta_band.load_band(a, data.fingerprint, cache)
    arrays = reference_arrays(reference, a, data, device)
    return Grader(a, profile, data, reference, judge, images, labels, arrays, band, cache, device)


def beta_verdict(g: Grader, beta_ref: float) -> training.BetaVerdict:
    """The two references a tuned beta (reference convention) is judged against: the full-protocol
    band (else, provisionally, this profile's own search) and the reference trained at that beta."""
    a = g.a
    band = g.band or beta_band.judge_search(
        beta_band.search_rows(g.reference.runs),
        g.reference.tuned_beta,
        a.grading,
        a.meta.id,
        g.data.fingerprint,
        f"reference {g.profile.name}",
    )
    if math.isfinite(beta_ref) and 0 < beta_ref <= MAX_REFERENCE_BETA:
        run, model = reference_at_beta(a, g.profile, g.data, g.device, g.cache, beta_ref)
        at_beta = training.reference_measure(remeasured(run, model, a, g.judge.test_images))
    else:  # no sensible model trains there: the profile's tuned run stands in, and the band fails the beta
        at_beta = training.reference_measure(g.reference.run(a.training.tuned.name))
    return training.BetaVerdict(band, g.band is None, at_beta, g.profile.name)


def reference_arrays(ref: ReferenceResult, a: Assignment, data: Mnist, device: torch.device) -> dict[str, np.ndarray]:
    """The reference's samples (the students' prior draws, decoded by each reference model) and
    per-dimension KL, for the reports; plus the shown test inputs and evaluation labels."""
    z = fixed_prior(a)[: a.sampling.n]
    test = eval_images(a, data)
    out = artifacts.test_arrays(test, data.test_labels[: len(test)], a.interpolation.pairs, a.sampling.grid)
    for run in ref.runs:
        if not run.search:
            with torch.no_grad():
                out[f"reference/{run.name}/samples"] = artifacts.to_u8(
                    load_model(ref, run.name, a, device).decoder(z.to(device))
                )
            if run.kl_per_dim is not None:
                out[f"reference/{run.name}/kl_per_dim"] = np.asarray(run.kl_per_dim, dtype=np.float32)
    return out


def on_eval_images(ref: ReferenceResult, a: Assignment, images: torch.Tensor, device: torch.device) -> ReferenceResult:
    """The reference with its non-search runs' test MSE, KL and active units re-measured on the
    grading evaluation images, so student and reference numbers come from the same images
    (sample FID and paths do not depend on them)."""
    runs = [run if run.search else remeasured(run, load_model(ref, run.name, a, device), a, images) for run in ref.runs]
    return dataclasses.replace(ref, runs=runs)


def remeasured(run: RunRecord, model: torch.nn.Module, a: Assignment, images: torch.Tensor) -> RunRecord:
    """A reference run with its test MSE (and a VAE's KL and active units) measured on ``images``."""
    run = dataclasses.replace(run, test_mse=metrics.test_mse(model, images))
    if run.model == "vae":
        stats = metrics.latent_stats(model, images, a.metrics.active_unit_threshold)
        run = dataclasses.replace(
            run, kl=stats.kl_per_image, active_units=stats.active_units, kl_per_dim=stats.kl_per_dim
        )
    return run


def fixed_prior(a: Assignment) -> torch.Tensor:
    """The prior draws every trained model decodes: the reference's sample-FID codes."""
    return metrics.prior_draws(a.metrics.fid_samples, a.model.nz, PRIOR_SEED_OFFSET + a.training.seed)


def eval_images(a: Assignment, data: Mnist) -> torch.Tensor:
    """The test images trained runs are measured on: the first ``[grading] eval_images``."""
    return data.test_images[: a.grading.eval_images or len(data.test_images)]


def training_inputs(
    a: Assignment, data: Mnist, train_images: torch.Tensor, train_labels: torch.Tensor, n_prior: int
) -> dict[str, torch.Tensor]:
    """What a training unit reads: the training subset and the evaluation images as bytes
    (exactly MNIST's), the first ``n_prior`` of the fixed prior draws (the reference's) and the
    interpolation ends. ``grade`` and ``report`` both use it, so a write-up shows the grade's runs."""
    return {
        "train_u8": train_images.mul(255).round().to(torch.uint8),
        "train_labels": train_labels,
        "test_u8": eval_images(a, data).mul(255).round().to(torch.uint8),
        "prior_z": fixed_prior(a)[:n_prior],
        "pair_images": pair_images(data.test_images, data.test_labels, a.interpolation.pairs),
    }


def grading_inputs(g: Grader) -> dict[str, torch.Tensor]:
    """What the sandbox's units read: the check images plus the training units' inputs, with
    every prior draw (sample FID decodes all of them)."""
    return {
        **probe_inputs(g.data),
        **training_inputs(g.a, g.data, g.train_images, g.train_labels, g.a.metrics.fid_samples),
    }


def unit_name(name: str, role: str) -> str:
    """A training run's sandbox unit: train-ae, train-<fixed run name>, train-tuned."""
    return f"train-{role if role in ('ae', 'tuned') else name}"


def tuned_beta_missing(sub: Submission, a: Assignment) -> str:
    """Why a submission has no usable tuned_beta, in the loader's words (beta = 0 explained)."""
    why = next((p for p in sub.problems if "`tuned_beta`" in p), f"no tuned_beta in {a.submission.meta}")
    if why.endswith(("got 0", "got 0.0")):
        why += (
            ": beta = 0 switches the KL term off, which is the beta = 0 experiment, not a tuned VAE (beta is too small)"
        )
    return why


def grade_submission(
    folder: Path, g: Grader, options: GradeOptions = GradeOptions(), artifacts_path: Path | None = None
) -> Result:
    """Grade one submission; with ``artifacts_path``, also store what its reports show there
    (``harness.grading.artifacts``), named in the result's ``artifacts`` field."""
    a = g.a
    started = time.perf_counter()
    sub = load_submission(folder, a)
    check_limits = Limits(
        options.check.timeout_s or a.sandbox.check_timeout_s,
        options.check.memory_mb or a.sandbox.memory_mb,
        a.sandbox.output_cap_kb,
    )
    threads = options.threads or torch.get_num_threads()
    train_limits = Limits(
        a.sandbox.train_timeout_s, options.check.memory_mb or a.sandbox.memory_mb, a.sandbox.output_cap_kb, threads
    )
    timings: dict[str, float] = {}
    answer_items, answers_json = score_answers(a, sub)
    runs: dict[str, dict] = {}
    arrays: dict[str, np.ndarray] = dict(g.reference_arrays)

    if sub.has_code:
        with open_sandbox(sub, a, grading_inputs(g)) as box:
            code = code_items(box, a, check_limits, timings)
            trained = training_items(
                box, sub, g, code, train_limits, options, timings, answer_items.get("interpolation"), runs, arrays
            )
    else:
        code = CodeOutcome(no_code_items(a))
        trained = {i: failed(a.item(i), "fail", [f"{a.submission.module} is missing"]) for i in TRAINED_ITEMS}
        runs = {n: skipped_record(r, k, b, f"{a.submission.module} is missing") for n, r, k, b in planned_runs(a)}

    by_id = {i.id: i for i in code.items} | {k: v for k, v in answer_items.items() if k not in TRAINED_ITEMS} | trained
    items = [by_id[r.id] for r in a.rubric if r.id in by_id]
    timings["total"] = round(time.perf_counter() - started, 2)
    ref = g.reference
    reference = {
        "key": ref.key,
        "profile": ref.profile,
        "tuned_beta": ref.tuned_beta,
        "real_fid": ref.real_fid,
        "criterion": ref.criterion,
        "classifier_accuracy": ref.classifier_accuracy,
        "runs": {r.name: training.reference_measure(r).to_json() for r in ref.runs if not r.search},
        "search": [
            {"beta": r.beta, "test_mse": r.test_mse, "sample_fid": r.sample_fid, "kl": r.kl}
            for r in ref.runs
            if r.search
        ],
        "band": g.band.to_json() if g.band else None,
    }
    pending = [r.id for r in a.rubric if r.id not in by_id]
    result = new_result("grade", sub, a, g.profile.name, items, pending, answers_json, timings, reference)
    result.runs = runs
    if artifacts_path is not None:
        artifacts.write_artifacts(artifacts_path, arrays)
        result.artifacts = artifacts_path.name
    return result


def run_training_unit(
    box, sub_id: str, unit: str, args: dict, limits: Limits, total_steps: int, quiet: bool, timings: dict
) -> UnitOutcome:
    """One training unit in the sandbox, with a progress bar fed by the steps the unit reports."""
    with Progress(total=total_steps, desc=f"{sub_id} {unit}", unit="step", disable=quiet, leave=False) as bar:
        done = threading.Event()

        def poll() -> None:
            while not done.wait(0.5):
                bar.update(max(0, min(box.progress(unit), total_steps) - bar.n))

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        outcome = box.run(unit, "train", limits, args)
        done.set()
        poller.join()
    timings[unit] = outcome.seconds
    timings[f"peak_mb:{unit}"] = round(outcome.peak_memory_mb, 1)
    return outcome


def training_limits(
    base: Limits, a: Assignment, reference_s: float | None, explicit_s: float | None, student_loop: bool
) -> Limits:
    """A training unit's limits: ``[sandbox] train_time_multiple`` x the reference's own time for
    the same run (``reference_s``), at least ``train_floor_s`` and at most ``train_timeout_s``;
    ``explicit_s`` (``--train-timeout``) wins. The stall watchdog watches the student's loop only:
    the harness's loop reports no steps."""
    s = a.sandbox
    stall = s.stall_s if student_loop else 0.0
    if explicit_s:
        return dataclasses.replace(base, timeout_s=explicit_s, stall_s=stall, why="set by --train-timeout")
    if not reference_s:
        return dataclasses.replace(
            base, timeout_s=s.train_timeout_s, stall_s=stall, why="the assignment's train_timeout_s"
        )
    limit = min(s.train_timeout_s, max(s.train_floor_s, s.train_time_multiple * reference_s))
    why = (
        f"{s.train_time_multiple:g} x the reference's {reference_s:.0f} s for this run, "
        f"at least {s.train_floor_s:.0f} s"
    )
    return dataclasses.replace(base, timeout_s=round(limit), stall_s=stall, why=why)


def run_record(role: str, args: dict, o: UnitOutcome, m: training.RunMeasure | None = None) -> dict:
    """A training run as the result's ``runs`` entry: its role (ae, fixed, tuned), what ran,
    how it ended, what was measured."""
    rec = {
        "role": role,
        "kind": args["kind"],
        "beta": args.get("beta"),
        "epochs": args["epochs"],
        "learning_rate": args["learning_rate"],
        "unit": o.unit,
        "status": o.status,
        "error": "" if o.ok else o.describe(),
        "traceback": o.traceback,
        "seconds": round(o.seconds, 2),
        "trainer": args.get("trainer", "student"),
        "model": "reference" if args.get("reference_model") else "student",
        "time_limit_s": o.limits.timeout_s if o.limits else None,
        "time_limit": o.limits.why if o.limits else "",
    }
    if m is not None:
        rec["measure"] = m.to_json()
    return rec


def skipped_record(role: str, kind: str, beta: float | None, why: str) -> dict:
    """A run that could not start (a missing function, no tuned_beta): the documents say why."""
    return {"role": role, "kind": kind, "beta": beta, "status": "not run", "error": why, "traceback": ""}


def planned_runs(a: Assignment) -> list[tuple[str, str, str, float | None]]:
    """(name, role, kind, beta) of every run the documents show, in their order."""
    t = a.training
    return (
        [(t.ae.name, "ae", "ae", None)]
        + [(s.name, "fixed", "vae", s.beta) for s in t.fixed]
        + [(t.tuned.name, "tuned", "vae", None)]
    )


def training_items(
    box,
    sub: Submission,
    g: Grader,
    code: CodeOutcome,
    limits: Limits,
    options: GradeOptions,
    timings: dict,
    interpolation_answer: ItemResult | None,
    runs: dict[str, dict] | None = None,
    arrays: dict | None = None,
) -> dict[str, ItemResult]:
    """The four trained items; ``runs`` and ``arrays``, when given, receive each run's record
    and its report artefacts."""
    runs = {} if runs is None else runs
    arrays = {} if arrays is None else arrays
    roles = {name: role for name, role, _, _ in planned_runs(g.a)}
    a, profile, ref, t = g.a, g.profile, g.reference, g.a.training
    names = a.submission.names
    vm = code.vae_metrics
    factor, parameterisation = vm.get("beta_factor"), vm.get("parameterisation")
    common = {
        "batch_size": t.batch_size,
        "num_workers": 0,
        "seed": t.seed,
        "device": options.device,
        "steps": a.interpolation.steps,
        "harness_loader": "data_loader" in code.broken,
    }
    loader_note = (
        f"your {names.data_loader} did not pass its check, so the harness's DataLoader fed your loop"
        if common["harness_loader"]
        else ""
    )
    batches = -(-len(g.train_images) // t.batch_size)

    def run(name: str, args: dict) -> UnitOutcome:
        unit = unit_name(name, roles[name])
        reference_s = next((r.seconds for r in ref.runs if r.name == name), None)
        lim = training_limits(limits, a, reference_s, options.train_timeout_s, args.get("trainer") != "harness")
        return run_training_unit(
            box, sub.id, unit, {**common, **args}, lim, args["epochs"] * batches, options.quiet, timings
        )

    def measured(name: str, o: UnitOutcome, args: dict) -> training.RunMeasure | None:
        m = None
        if o.ok:
            try:
                m = training.measure(name, o.value, g.judge, parameterisation)
                m.source = "reference" if args.get("reference_model") else "student"  # whose model the loop trained
                arrays.update(
                    artifacts.run_arrays(
                        name,
                        o.value,
                        args["kind"],
                        a.model.nz,
                        a.sampling.n,
                        m.kl_per_dim,
                        embed=roles[name] in ("ae", "tuned"),
                    )
                )
            except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError) as e:
                o.status, o.error = (
                    "error",
                    f"the trained model's outputs could not be measured ({type(e).__name__}: {e})",
                )
                m = None
        runs[name] = run_record(roles[name], args, o, m)
        return m

    out: dict[str, ItemResult] = {}
    # ---- the AE loop, on the student's AE when it passed its checks
    ae_model_ok = code.item("ae_architecture").status == "pass" and not (
        {"autoencoder", "encoder", "decoder"} & code.broken
    )
    note = "" if ae_model_ok else "your AutoEncoder did not pass its checks, so your loop trained the reference AE"
    note = "; ".join(n for n in (note, loader_note) if n)
    ae_m = None
    if not code.has("train_autoencoder"):
        out["ae_training"] = missing_name(a, "ae_training", names.train_autoencoder, [])
        runs[t.ae.name] = skipped_record("ae", "ae", None, out["ae_training"].evidence[0])
    else:
        args = {
            "kind": "ae",
            "epochs": profile.epochs(t.ae.epochs),
            "learning_rate": t.ae.learning_rate,
            "contract": True,
            "reference_model": not ae_model_ok,
        }
        o = run(t.ae.name, args)
        ae_m = measured(t.ae.name, o, args)
        if ae_m is None:
            out["ae_training"] = unit_failure("ae_training", a, o, f"training with {names.train_autoencoder}")
        else:
            out["ae_training"] = scored(
                "ae_training", a, lambda: training.score_ae_training(a, o.value, ae_m, ref, note)
            )

    # ---- the VAE loop at the fixed betas, on the student's VAE when it passed its checks
    vae_model_ok = code.item("vae_model").status == "pass" and "vae" not in code.broken
    substitute = sorted(k for k in ("encoder", "decoder") if k in code.broken and code.has(k))
    vae_args = {"kind": "vae", "reference_model": not vae_model_ok, "substitute": substitute}
    note = "" if vae_model_ok else "your VAE did not pass its checks, so your loop trained the reference VAE"
    note = "; ".join(n for n in (note, loader_note) if n)
    fixed: dict[str, tuple[dict, training.RunMeasure]] = {}
    loop_ok = False
    if not code.has("train_vae"):
        out["vae_training"] = missing_name(a, "vae_training", names.train_vae, [])
        runs.update({s.name: skipped_record("fixed", "vae", s.beta, out["vae_training"].evidence[0]) for s in t.fixed})
    else:
        failure = None
        for n, spec in enumerate(t.fixed):
            args = {
                **vae_args,
                "beta": spec.beta,
                "epochs": profile.epochs(spec.epochs),
                "learning_rate": spec.learning_rate,
                "contract": n == 0,
            }
            o = run(spec.name, args)
            m = measured(spec.name, o, args)
            if m is None:
                failure = failure or (o, spec.name)
            else:
                fixed[spec.name] = (o.value, m)
        if failure:
            o, name = failure
            out["vae_training"] = unit_failure("vae_training", a, o, f"{names.train_vae} for {name}")
        else:
            out["vae_training"] = scored(
                "vae_training", a, lambda: training.score_vae_training(a, fixed, ref, factor, note)
            )
            first = next(iter(fixed.values()))[0]
            loop_ok = (
                training.contract_part("loop", first.get("contract"), "").share >= 1 and first["run"]["params_changed"]
            )

    # ---- the tuned beta: the student's loop when it works, else the harness's, on their VAE
    tuned_beta = sub.tuned_beta
    tuned_m, at_beta = None, None
    if tuned_beta is None:
        why = tuned_beta_missing(sub, a)
        out["beta_tuning"] = failed(a.item("beta_tuning"), "fail", [why])
        runs[t.tuned.name] = skipped_record("tuned", "vae", None, why)
    else:
        beta = (
            tuned_beta if vae_model_ok else tuned_beta * (factor or 1.0)
        )  # the reference VAE reads the reference convention
        trainer = "student" if loop_ok else "harness"
        args = {
            **vae_args,
            "beta": beta,
            "epochs": profile.epochs(t.tuned.epochs),
            "learning_rate": t.tuned.learning_rate,
            "trainer": trainer,
        }
        o = run(t.tuned.name, args)
        tuned_m = measured(t.tuned.name, o, args)
        notes = [
            n
            for n in (
                note,
                "your VAE loop did not pass its checks, so the harness's loop trained the tuned run"
                if trainer == "harness"
                else "",
            )
            if n
        ]
        verdict = beta_verdict(g, tuned_beta * (factor or 1.0))
        at_beta = verdict.at_beta
        if tuned_m is None:
            out["beta_tuning"] = unit_failure("beta_tuning", a, o, f"the tuned run (beta = {tuned_beta:g})")
        else:
            out["beta_tuning"] = scored(
                "beta_tuning",
                a,
                lambda: training.score_beta_tuning(
                    a,
                    tuned_beta,
                    tuned_m,
                    verdict,
                    factor,
                    vm.get("kl_reduction"),
                    "; ".join(notes),
                    stand_in=not vae_model_ok,
                ),
            )

    # ---- interpolation: the student's paths where their models are usable, else the reference's;
    # judged against the reference at the student's own beta (the beta itself is beta_tuning's)
    ref_tuned = at_beta or training.reference_measure(ref.run(t.tuned.name))
    ae_path = ae_m if ae_m is not None and ae_m.source == "student" else training.reference_measure(ref.run(t.ae.name))
    vae_path = tuned_m if tuned_m is not None and tuned_m.source == "student" else ref_tuned
    out["interpolation"] = scored(
        "interpolation", a, lambda: training.score_interpolation(a, ae_path, vae_path, ref_tuned, interpolation_answer)
    )
    return out
