"""The trained items of ``harness grade``: ``ae_training``, ``vae_training``, ``beta_tuning``
and ``interpolation``, each judged against the reference trained under the same profile.

The sandbox returns what a training unit observed (``probes.probe_train``): the loop's
behaviour, its curves, and the trained model's outputs on fixed inputs. Every number that
decides points is computed here, in the harness's process: test MSE, KL and active units,
sample FID with the metrics classifier, interpolation path confidence. Thresholds come from
the assignment's ``[grading]`` table and are stated in the evidence (docs/checks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from harness.config.assignment import Assignment, GradingSpec
from harness.grading.rubric import ItemResult, PartScore, from_parts
from harness.ml import metrics
from harness.ml.loss_convention import COLLAPSE_RULE, PARAMETERISATIONS, LossConvention, collapsed
from harness.reference.beta_band import BetaBand
from harness.reference.measure import ReferenceResult, RunMeasure


@dataclass(frozen=True)
class Judge:
    """What a trained run is measured with: the metrics classifier and the real test set."""

    clf: metrics.Classifier
    test_images: Tensor
    real_features: Tensor
    a: Assignment


def measure(name: str, value: dict, judge: Judge, parameterisation: str | None) -> RunMeasure:
    """Measure a training unit's outputs as the reference's runs are measured (one type,
    ``harness.reference.measure.RunMeasure``); the posterior's scale column is read in the
    parameterisation that ``vae_model`` detected (log sigma unless it found log variance)."""
    a = judge.a
    quality = metrics.sample_quality(
        judge.clf, _finite(value["samples"]), judge.real_features, a.metrics.coverage_share
    )
    m = RunMeasure(
        name=name,
        test_mse=metrics.mse(value["reconstructions"], judge.test_images),
        sample_fid=quality.fid,
        sample_coverage=quality.coverage,
        sample_confidence=quality.confidence,
        seconds=float((value.get("run") or {}).get("seconds", 0.0)),
    )
    q = value["q"]
    if q.shape[1] == 2 * a.model.nz:
        factor = PARAMETERISATIONS.get(parameterisation or "log_sigma", 1.0)
        stats = metrics.posterior_stats(
            q[:, : a.model.nz].double(), factor * q[:, a.model.nz :].double(), a.metrics.active_unit_threshold
        )
        m.kl, m.active_units, m.kl_per_dim = stats.kl_per_image, stats.active_units, stats.kl_per_dim
    for (start, end), frames in zip(a.interpolation.pairs, value["paths"], strict=False):
        path = metrics.path_quality(judge.clf, _finite(frames))
        m.paths.append({"start": start, "end": end, "confidence": path.confidence, "max_step": path.max_step})
    return m


def _finite(x: Tensor) -> Tensor:
    return x.float().nan_to_num(0.0, 0.0, 0.0).clamp(0, 1)


# --------------------------------------------------------------------------- shared rules


def credit(ratio: float, full: float, zero: float) -> float:
    """1 up to ``full``, 0 from ``zero`` (and for NaN), linear in between."""
    if not math.isfinite(ratio) or ratio >= zero:
        return 0.0
    return 1.0 if ratio <= full else (zero - ratio) / (zero - full)


def ratio_part(part: str, what: str, mine: float, ref: float, full: float, zero: float) -> PartScore:
    r = mine / ref if ref > 0 else float("inf")
    share = credit(r, full, zero)
    text = f"{what} {mine:.4g}, reference {ref:.4g} ({r:.2f}x): full credit up to {full:g}x, none from {zero:g}x"
    return PartScore(part, share, text)


@dataclass(frozen=True)
class ShortRun:
    """The grade's profile, when it is shorter than the handout's protocol (``full``): a cheap
    estimate of that protocol, never a stricter judge of it (:func:`short_review`). ``stored``:
    the notebook's own log of each run, as printed (harness.submission.notebook_logs), by run name."""

    profile: str = "full"
    stored: dict[str, dict] | None = None

    @property
    def short(self) -> bool:
        return self.profile != "full"


FULL = ShortRun()


def short_review(part: PartScore, short: ShortRun, charged: str = "", stored: str = "") -> tuple[PartScore, bool]:
    """A result ``part`` that missed full credit under a short profile is not deducted where the
    handout's protocol could disagree: when the cause is already charged elsewhere (``charged``),
    when the notebook's stored log of that run shows it reached the quality asked (``stored``),
    or when the miss is short of the zero-credit ratio (a few hundred steps magnify details a
    handout leaves open). The part keeps its points and the item is left for review (True),
    quoting both; a miss beyond the zero-credit ratio with neither reason is deducted as before."""
    if not short.short or part.share >= 1:
        return part, False
    reasons = [r for r in (charged, stored) if r]
    if not reasons and part.share <= 0:
        return part, False
    why = "; ".join(reasons) or "short of the zero-credit ratio, which a run this short cannot tell from the protocol"
    text = (
        f"{part.evidence}; not deducted under the {short.profile} profile (a short estimate of the handout's "
        f"protocol): {why}; left for review (it would earn {part.share:.0%} of this part)"
    )
    return PartScore(part.part, 1.0, text), True


def steps_after_backward(observed: dict) -> int:
    """Optimizer steps that followed a backward pass reaching the model (``LoopWatch``); an older
    observation without that counter is read by its gradient count."""
    return int(observed.get("steps_after_backward", observed.get("steps_with_grad", 0)))


def contract_part(part: str, contract: dict | None, fn: str) -> PartScore:
    """Did the loop behave like the handout's in the short contract call? A loop none of whose
    steps followed a backward pass that reached the model (a made-up ``.grad``, or no step at
    all) earns nothing, whatever else it got right."""
    if contract is None:
        return PartScore(part, 0.0, f"{fn} was not observed (it did not run)")
    n, steps, after = contract["iterations"], contract["steps"], steps_after_backward(contract)
    rules = [
        (steps == n, f"an optimizer step per batch ({steps} steps for {n} batches)"),
        (
            after == steps and steps > 0,
            f"a backward pass before every step ({after} of {steps} steps followed a backward pass "
            "that reached the model)",
        ),
        (
            contract["carried"] == 0,
            f"gradients reset between steps ({contract['carried']} backward passes added to "
            "the previous step's gradients: zero_grad?)",
        ),
        (
            bool(contract["lrs"])
            and all(math.isclose(lr, contract["learning_rate"], rel_tol=1e-6) for lr in contract["lrs"]),
            f"the learning rate passed in is used (passed {contract['learning_rate']:g}, optimizer ran at "
            f"{', '.join(f'{lr:g}' for lr in contract['lrs']) or 'nothing'})",
        ),
        (contract["covered"] >= 1.0, f"the optimizer updates every parameter ({contract['covered']:.0%} of them)"),
        (
            bool(contract["returned_lengths"]) and all(k == n for k in contract["returned_lengths"]),
            f"one loss value per iteration returned (got {contract['returned_lengths'] or 'none'} for {n})",
        ),
        (
            bool(contract.get("params_changed", True)),
            "change of the weights (every parameter is as it was before the call)",
        ),
    ]
    bad = [text for ok, text in rules if not ok]
    if after == 0:
        text = (
            f"{fn} with {n} batches: {steps} optimizer steps, none after a backward pass "
            f"({contract.get('backwards', 0)} backward passes reached the model): the loop earns nothing"
        )
        others = [b for b in bad if not b.startswith("a backward pass before every step")]
        return PartScore(part, 0.0, text + ("; also " + "; ".join(f"no {b}" for b in others) if others else ""))
    if bad:
        return PartScore(
            part, 1 - len(bad) / len(rules), f"{fn} with {n} batches: " + "; ".join(f"no {b}" for b in bad)
        )
    return PartScore(part, 1.0, f"{fn}: one step per batch after a fresh backward pass, at the learning rate passed in")


def untrained(value: dict, fn: str) -> str:
    """Why a run's model was not trained by the loop's own backward passes ("" when it was): its
    weights did not change, or none of its optimizer steps followed a backward pass reaching it.
    A run of the harness's own loop (no watch) is judged by who trained it, elsewhere."""
    run = value.get("run") or {}
    if not run.get("params_changed"):
        return f"the weights did not change during {fn}: the model did not train"
    watch = run.get("watch")
    if watch is not None and steps_after_backward(watch) == 0:
        return (
            f"none of the {watch.get('steps', 0)} optimizer steps of {fn} followed a backward pass "
            f"({watch.get('backwards', 0)} backward passes reached the model): the weights moved without gradients"
        )
    return ""


def loop_trains(value: dict, fn: str) -> bool:
    """The student's loop trains a model by its own backward passes, in the contract call and in
    the run: it may train the tuned run (a loop with lesser defects is charged in its own item)."""
    contract = value.get("contract")
    return (
        contract is not None
        and steps_after_backward(contract) > 0
        and bool(contract.get("params_changed", True))
        and not untrained(value, fn)
    )


def curve_drop(values: list[float], drop: float = 0.0) -> tuple[bool, str]:
    """Finite, and the last tenth's mean at least ``drop`` (a share) below the first tenth's."""
    if not values:
        return False, "no loss values"
    if not all(math.isfinite(v) for v in values):
        return (
            False,
            "non-finite loss values "
            f"(first at iteration {next(i for i, v in enumerate(values) if not math.isfinite(v))})",
        )
    k = max(1, len(values) // 10)
    first, last = sum(values[:k]) / k, sum(values[-k:]) / k
    text = f"{first:.4g} over the first tenth -> {last:.4g} over the last"
    if last < first and first > 0:
        text += f" ({(1 - last / first):.0%} lower; at least {drop:.0%} expected)"
    return last < first and last <= first * (1 - drop), text


def curve_part(
    part: str, g: GradingSpec, curves: dict[str, list[float]], beta: float = 0.0, label: str = ""
) -> PartScore:
    total = [r + beta * k for r, k in zip(curves["rec"], curves.get("kl") or [0.0] * len(curves["rec"]), strict=False)]
    ok, text = curve_drop(total, g.curve_drop)
    return PartScore(part, 1.0 if ok else 0.0, f"{label}loss curve: {text}")


FOLLOW_MEDIAN = 0.01  # the returned values' median deviation from the observed losses, after fitting the scale
FOLLOW_MOST, FOLLOW_SHARE = 0.25, 0.8  # and this share of them within this deviation
FIT_TERMS_MIN = 8  # aligned points from which the two terms' own scales are fitted as well


def _aligned(returned: np.ndarray, observed: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The returned columns (``[n, c]``) and the observed losses at one length, each way a loop
    may legitimately report its losses: one per step, or one per group of steps (an epoch, every
    k-th iteration) as the group's mean, its first or its last loss; a longer returned list is
    averaged down to the steps."""
    n, m = len(returned), len(observed)
    if n == m:
        return [("per step", returned, observed)]
    if n > m:
        down = np.stack([b.mean(axis=0) for b in np.array_split(returned, m)])
        return [(f"{n} values averaged to {m} steps", down, observed)]
    groups = np.array_split(observed, n)
    per = f"per group of {m / n:.3g} steps"
    return [
        (f"{per}, its mean", returned, np.array([g.mean() for g in groups])),
        (f"{per}, its first", returned, np.array([g[0] for g in groups])),
        (f"{per}, its last", returned, np.array([g[-1] for g in groups])),
    ]


def _deviation(r: np.ndarray, o: np.ndarray) -> tuple[float, float, float] | None:
    """(scale, median deviation, the FOLLOW_SHARE quantile of the deviations) of ``r`` from
    ``scale * o``; one positive scale covers sums against means, per-image sums, epoch totals."""
    keep = np.isfinite(r) & np.isfinite(o)
    r, o = r[keep], o[keep]
    if not len(r):
        return None
    if np.all(o > 0):
        scale = float(np.median(r / o))
    else:
        scale = float(np.dot(r, o) / max(float(np.dot(o, o)), 1e-300))
    if not math.isfinite(scale) or scale <= 0:
        return None
    fitted = scale * o
    floor = 1e-12 + 1e-3 * float(np.median(np.abs(fitted)))
    d = np.abs(r - fitted) / np.maximum(np.abs(fitted), floor)
    return scale, float(np.median(d)), float(np.quantile(d, FOLLOW_SHARE))


def _fit_terms(rec: np.ndarray, kl: np.ndarray, o: np.ndarray) -> np.ndarray | None:
    """``a rec + b kl`` closest to ``o`` in relative terms (a, b > 0): the terms reported in
    scales of their own (the MSE summed, the KL averaged) against the total backpropagated."""
    keep = np.isfinite(rec) & np.isfinite(kl) & np.isfinite(o) & (o > 0)
    if keep.sum() < FIT_TERMS_MIN:
        return None
    x = np.stack([rec[keep], kl[keep]], axis=1) / o[keep, None]
    coef, *_ = np.linalg.lstsq(x, np.ones(int(keep.sum())), rcond=None)
    if not np.all(np.isfinite(coef)) or np.any(coef <= 0):
        return None  # one term alone: the single-scale candidates cover it
    return coef[0] * rec + coef[1] * kl


def _span(values: np.ndarray | list[float]) -> str:
    return f"{values[0]:.4g} -> {values[-1]:.4g}" if len(values) else "nothing"


def follows_observed(
    curves: dict[str, list[float]], observed: list[float] | None, beta: float = 0.0, steps: int | None = None
) -> tuple[bool, str]:
    """Do the returned curves follow the losses the harness saw backpropagated (``observed``,
    ``LoopWatch.observed_losses``: one per optimizer step, of ``steps`` seen in all)? Tolerant of
    how a loop reports: per iteration or per epoch (any grouping of steps: its mean, first or
    last), the total ``rec + beta * kl``, the reconstruction term alone, ``rec + kl``, or the two
    terms in scales of their own, sums or means (a fitted scale); strict about values no
    backward pass produced (a made-up or constant list): after the scale, the median deviation
    is at most FOLLOW_MEDIAN, and FOLLOW_SHARE of the values are within FOLLOW_MOST."""
    rec = np.asarray(curves["rec"], dtype=float)
    kl = np.asarray(curves.get("kl") or [], dtype=float)
    if not observed:
        return False, (
            f"no loss was seen backpropagated through the model, so the returned values "
            f"({_span(rec)}, {len(rec)} of them) are not the losses of any training"
        )
    obs = np.asarray(observed, dtype=float)
    two = len(kl) == len(rec) and len(rec) > 0
    columns = np.stack([rec, kl], axis=1) if two else rec[:, None]
    if steps and steps > len(obs):  # the watch kept the first steps only: compare those
        columns = columns[: max(1, round(len(columns) * len(obs) / steps))]
    best = None
    for how, r, o in _aligned(columns, obs) if len(columns) else []:
        if two:
            candidates = [("rec", r[:, 0]), ("rec + kl", r[:, 0] + r[:, 1])]
            if beta:
                candidates.insert(0, (f"rec + {beta:g} kl", r[:, 0] + beta * r[:, 1]))
            fitted = _fit_terms(r[:, 0], r[:, 1], o)
            if fitted is not None:
                candidates.append(("the two terms, each scaled", fitted))
        else:
            candidates = [("returned", r[:, 0])]
        for what, values in candidates:
            dev = _deviation(values, o)
            if dev is not None and (best is None or dev[1] < best[1][1]):
                best = (f"{what}, {how}", dev)
    seen = f"{len(obs)} steps: {_span(obs)}"
    if best is not None and best[1][1] <= FOLLOW_MEDIAN and best[1][2] <= FOLLOW_MOST:
        how, (scale, median, _) = best
        return True, (
            f"it follows the losses the harness saw backpropagated ({seen}; {how}, scale {scale:.3g}, "
            f"median deviation {median:.1%})"
        )
    closest = f"; closest: {best[0]}, scale {best[1][0]:.3g}, median deviation {best[1][1]:.0%}" if best else ""
    return False, (
        f"the returned values do not follow the losses the harness saw backpropagated: returned {_span(rec)} "
        f"({len(rec)} values), backpropagated {seen}{closest} (at most {FOLLOW_MEDIAN:.0%}, and "
        f"{FOLLOW_SHARE:.0%} of them within {FOLLOW_MOST:.0%}, expected)"
    )


def run_curve_part(part: str, g: GradingSpec, run: dict, beta: float = 0.0, label: str = "") -> PartScore:
    """A run's returned curves: finite and dropping (:func:`curve_part`), and the losses the
    harness saw backpropagated (:func:`follows_observed`): no curve points without them."""
    if run.get("curves") is None:
        return PartScore(part, 0.0, f"{label}{run.get('curve_error') or 'no loss values returned'}")
    dropping = curve_part(part, g, run["curves"], beta, label)
    watch = run.get("watch") or {}
    ok, text = follows_observed(run["curves"], run.get("observed_losses"), beta, watch.get("observed_steps"))
    return PartScore(part, dropping.share if ok else 0.0, f"{dropping.evidence}; {text}")


# --------------------------------------------------------------------------- items


def stored_reached(short: ShortRun, run: str, ref_mse: float) -> str:
    """Why the notebook's stored log of a run shows the quality asked ("" when it does not): its
    last printed reconstruction loss at or below the reference's test MSE under this profile."""
    log = (short.stored or {}).get(run)
    if not log or ref_mse <= 0 or not log.get("value", math.inf) <= ref_mse:
        return ""
    return (
        f"the notebook's stored log of its own run (cell {log['cell']}) ends at a reconstruction loss of "
        f"{log['value']:.4g}, at or below the reference's test MSE here ({ref_mse:.4g})"
    )


def score_ae_training(
    a: Assignment, value: dict, m: RunMeasure, ref: ReferenceResult, note: str = "", short: ShortRun = FULL
) -> ItemResult:
    g, item = a.grading, a.item("ae_training")
    fn = a.submission.names.train_autoencoder
    loop = contract_part("loop", value.get("contract"), fn)
    parts = [loop, run_curve_part("curve", g, value["run"])]
    why = untrained(value, fn)
    review = False
    if why:
        parts.append(PartScore("result", 0.0, why))
    else:
        ref_mse = ref.run(a.training.ae.name).test_mse
        result_part = ratio_part("result", "test MSE", m.test_mse, ref_mse, g.mse_full_credit, g.mse_zero_credit)
        charged = "the loop's defects, which slow training, are charged in its own part" if loop.share < 1 else ""
        result_part, review = short_review(
            result_part, short, charged, stored_reached(short, a.training.ae.name, ref_mse)
        )
        parts.append(result_part)
    result = from_parts(item, parts, {"run": m.to_json(), "observed": _observed(value)})
    if review:
        result.status = "needs_review"
    if note:
        result.evidence.insert(0, note)
    return result


def score_vae_training(
    a: Assignment, runs: dict[str, tuple[dict, RunMeasure]], ref: ReferenceResult, conv: LossConvention, note: str = ""
) -> ItemResult:
    """``runs`` maps the fixed run names (beta = 0 first, then beta = 10) to (unit value, measure);
    ``conv`` is the student's loss convention (``vae_model``), which reads beta = 10 in the reference's."""
    g, item, nz = a.grading, a.item("vae_training"), a.model.nz
    fn = a.submission.names.train_vae
    (n0, (v0, m0)), (n10, (v10, m10)) = list(runs.items())[:2]
    spec0, spec10 = a.training.fixed[0], a.training.fixed[1]
    parts = [contract_part("loop", v0.get("contract"), fn)]

    curve_scores = [
        run_curve_part("curves", g, v["run"], spec.beta, f"{name}: ")
        for name, spec, v in ((n0, spec0, v0), (n10, spec10, v10))
    ]
    parts.append(PartScore("curves", min(s.share for s in curve_scores), "; ".join(s.evidence for s in curve_scores)))

    ref0 = ref.run(spec0.name)
    want_units = math.ceil(g.active_share * nz)
    # Unregularised, the KL has no scale of its own: it can run away (variant-b's reference reaches
    # 1e30). Half the reference's, or else above the regularised (tuned) reference's, shows it is free.
    half, tuned_kl = 0.5 * (ref0.kl or 0), _tuned_kl(a, ref)
    floor = min(half, tuned_kl) if tuned_kl is not None else half
    ok0 = (m0.active_units or 0) >= want_units and (m0.kl or 0) >= floor
    bound = (
        f"at least half expected, or the tuned reference's {_num(tuned_kl)}"
        if tuned_kl is not None and tuned_kl < half
        else "at least half expected"
    )
    why0 = untrained(v0, f"{fn} (beta = {spec0.beta:g})")
    parts.append(
        PartScore(
            "beta0",
            1.0 if ok0 and not why0 else 0.0,
            f"beta = {spec0.beta:g}: KL {_num(m0.kl)} per image (reference {_num(ref0.kl)}; {bound}), "
            f"{m0.active_units}/{nz} active units (at least {want_units} expected: nothing "
            f"pulls the posterior to the prior); test MSE {m0.test_mse:.4f}, reference {ref0.test_mse:.4f}"
            + (f"; {why0}" if why0 else ""),
        )
    )

    beta10_ref = conv.to_reference(spec10.beta)
    if _collapses(ref, beta10_ref, g.collapse_kl):
        # Collapse is the KL's to show: under 1 nat per image the code carries next to nothing, and
        # a short run may leave a unit or two just over the active threshold (variant-b under smoke).
        few = math.floor((1 - g.active_share) * nz)
        ok10 = bool(collapsed(m10.kl, m10.active_units, g.collapse_kl)) and (m10.active_units or 0) <= few
        expect = f"a collapsed posterior ({COLLAPSE_RULE.format(kl=g.collapse_kl)}) and at most {few} active units"
    else:
        ok10 = m10.kl is not None and m0.kl is not None and m10.kl <= m0.kl
        expect = (
            f"in your loss convention beta = {spec10.beta:g} is {beta10_ref:.3g} in the reference's, too weak "
            f"to collapse the posterior: a KL below your beta = 0 run's ({_num(m0.kl)})"
        )
    why10 = untrained(v10, f"{fn} (beta = {spec10.beta:g})")
    parts.append(
        PartScore(
            "beta10",
            1.0 if ok10 and not why10 else 0.0,
            f"beta = {spec10.beta:g}: KL {_num(m10.kl)} per image, {m10.active_units}/{nz} active units; "
            f"expected {expect}" + (f"; {why10}" if why10 else ""),
        )
    )
    result = from_parts(item, parts, {"runs": {n0: m0.to_json(), n10: m10.to_json()}, "observed": _observed(v0)})
    if note:
        result.evidence.insert(0, note)
    return result


def _tuned_kl(a: Assignment, ref: ReferenceResult) -> float | None:
    """The KL per image of the reference's tuned VAE (a regularised posterior), None when unknown."""
    try:
        kl = ref.run(a.training.tuned.name).kl
    except (KeyError, StopIteration, ValueError):
        return None
    return kl if kl is not None and math.isfinite(kl) else None


def _collapses(ref: ReferenceResult, beta_ref: float, collapse_kl: float) -> bool:
    """Does the reference collapse at this beta? The smallest collapsed reference beta decides."""
    gone = [r.beta for r in ref.runs if r.beta and collapsed(r.kl, r.active_units, collapse_kl)]
    return bool(gone) and beta_ref >= min(gone)


def convention_text(beta: float, conv: LossConvention) -> str:
    """How the student's beta reads in the reference's convention, for the evidence."""
    if not conv.detected:
        return f"your beta {beta:g}, read in the handout's loss convention (yours could not be read from your loss)"
    if math.isclose(conv.factor, 1.0):
        return f"your beta {beta:g}, in the reference's convention"
    return (
        f"your beta {beta:g} with MSE {conv.rec_reduction} and KL {conv.kl_reduction} = "
        f"{conv.to_reference(beta):.3g} in the reference convention"
    )


@dataclass(frozen=True)
class BetaVerdict:
    """The two references a tuned beta is judged against (docs/reference.md#two-questions-two-references).

    ``band``: is it a good beta? The full-protocol search's band, or, when that has not been
    built, the grade profile's own search as a provisional answer (``provisional``).
    ``at_beta``: does the code train as well as ours at that beta? The reference trained as the
    tuned run at the student's own beta (reference convention) under the grade's profile."""

    band: BetaBand
    provisional: bool
    at_beta: RunMeasure
    profile: str


def band_part(beta_ref: float, v: BetaVerdict) -> PartScore:
    ok = v.band.contains(beta_ref)
    side = (
        ""
        if ok
        else (
            ": too small, the KL term barely shapes the posterior"
            if beta_ref < v.band.low
            else ": too large, the KL term drowns the reconstruction"
        )
    )
    where = "inside" if ok else "outside"
    text = f"beta {beta_ref:.3g} (reference convention) is {where} the band {v.band.low:.2g} .. {v.band.high:.2g}{side}"
    if v.provisional:
        text += (
            f" [provisional: no full-protocol search is cached for this assignment and data, so this is the "
            f"{v.profile} profile's own search (best {v.band.best:g}; short training favours a weak KL term); "
            f"run `harness reference --band` (or `--profile full`) and grade again]"
        )
    else:
        text += f" [{v.band.describe()}]"
    return PartScore("in_band", 1.0 if ok else 0.0, text)


def score_beta_tuning(
    a: Assignment,
    tuned_beta: float,
    m: RunMeasure | None,
    v: BetaVerdict,
    conv: LossConvention,
    note: str = "",
    stand_in: bool = False,
    loop_stand_in: bool = False,
    untrained_why: str = "",
    short: ShortRun = FULL,
) -> ItemResult:
    """Two questions: is the beta good (``in_band``, plus ``not_collapsed`` on the student's run),
    and does the student's run at that beta match the reference's run at the same beta
    (``samples``, ``reconstructions``). Those two earn points only from a model the student's
    own code trained. With ``stand_in`` the reference VAE trained at the student's beta, with
    ``loop_stand_in`` the harness's loop trained the student's VAE (their loop does not train):
    the beta is still judged, but the model's quality is the reference's work, so those parts
    earn nothing and an instructor reviews the item. ``untrained_why``: the student's loop ran
    but did not train the model (``untrained``), so its posterior judges nothing either."""
    g, item = a.grading, a.item("beta_tuning")
    head = convention_text(tuned_beta, conv)
    if m is None:
        return from_parts(item, [PartScore(p.id, 0.0, "the tuned run did not finish") for p in item.parts], {})
    gone = collapsed(m.kl, m.active_units, g.collapse_kl)
    beta_ref = conv.to_reference(tuned_beta)
    ref = v.at_beta
    rule = COLLAPSE_RULE.format(kl=g.collapse_kl)
    parts = [
        PartScore(
            "not_collapsed",
            1.0 if gone is False else 0.0,
            f"KL {_num(m.kl)} per image, {m.active_units} active units"
            + (
                f": the posterior collapsed ({rule}: every code decodes to about the same image); beta is too large"
                if gone
                else f" (collapse: {rule})"
                if gone is False
                else ": the posterior could not be measured, so nothing shows it did not collapse"
            ),
        ),
        band_part(beta_ref, v),
    ]
    same = f"the reference trained at your beta ({beta_ref:.3g}, {v.profile} profile)"
    samples = ratio_part(
        "samples", "sample FID (MNIST classifier)", m.sample_fid, ref.sample_fid, g.fid_full_credit, g.fid_zero_credit
    )
    samples.evidence = samples.evidence.replace("reference", same, 1) + (
        f"; coverage {m.sample_coverage:.0%} (reference {ref.sample_coverage:.0%})"
    )
    parts.append(samples)
    recon = ratio_part("reconstructions", "test MSE", m.test_mse, ref.test_mse, g.mse_full_credit, g.mse_zero_credit)
    recon.evidence = recon.evidence.replace("reference", same, 1)
    parts.append(recon)
    review = False
    if not (stand_in or loop_stand_in or untrained_why):
        stored = stored_reached(short, a.training.tuned.name, ref.test_mse)
        for n, part in enumerate(parts[2:4], start=2):
            parts[n], held = short_review(part, short, "", stored)
            review = review or held
        samples, recon = parts[2], parts[3]
    fn = a.submission.names.train_vae
    if stand_in or loop_stand_in:
        whose = (
            "the reference VAE stood in for yours"
            if stand_in
            else f"the reference's training loop stood in for your {fn}, which does not train"
        )
        for part in (samples, recon):
            part.share = 0.0
            part.evidence = f"not credited: {whose}, so this measures its work and earns no points ({part.evidence})"
    elif untrained_why:
        for part in (parts[0], samples, recon):
            part.share = 0.0
            part.evidence = f"not credited: {untrained_why}, so this earns no points ({part.evidence})"
    metrics_ = {
        "run": m.to_json(),
        "beta": tuned_beta,
        "collapsed": gone,
        "beta_reference_convention": beta_ref,
        "convention": conv.to_json(),
        "short_review": review,  # a result part missed under a short profile, left for review
        "reference_beta": v.band.best,
        "band": [v.band.low, v.band.high],
        "band_provisional": v.provisional,
        "reference_at_beta": ref.to_json(),
    }
    result = from_parts(item, parts, metrics_)
    result.evidence.insert(0, head)
    if note:
        result.evidence.insert(1, note)
    if v.provisional or review:  # never a silent verdict: an instructor confirms it
        result.status = "needs_review"
    if stand_in or loop_stand_in:
        result.status = "needs_review"
        result.evidence.insert(
            1,
            "needs review: your VAE could not run, so the reference VAE trained at your beta; "
            "only the choice of beta is credited"
            if stand_in
            else f"needs review: your {fn} does not train, so the harness's loop trained your VAE at your beta; "
            "only the choice of beta is credited",
        )
    return result


def score_interpolation(
    a: Assignment,
    ae: RunMeasure,
    vae: RunMeasure,
    ref_vae: RunMeasure,
    answer: ItemResult | None,
    vae_stand_in: str = "",
    short: ShortRun = FULL,
    tuned_reviewed: bool = False,
) -> ItemResult:
    """The handout's paths on the student's AE and tuned VAE (reference stand-ins when theirs are
    unusable; that failure is charged to its own item), against the reference VAE trained at the
    student's own beta (so a beta choice is charged once, under beta_tuning), plus the answer.
    The paths earn points only from a tuned VAE the student's own code trained: ``vae_stand_in``
    says what stood in for it (the reference's VAE or loop), and the part earns nothing."""
    g, item = a.grading, a.item("interpolation")
    mine = sum(p["confidence"] for p in vae.paths) / max(1, len(vae.paths))
    theirs = sum(p["confidence"] for p in ref_vae.paths) / max(1, len(ref_vae.paths))
    ae_conf = sum(p["confidence"] for p in ae.paths) / max(1, len(ae.paths))
    pairs = ", ".join(f"{p['start']}->{p['end']}" for p in vae.paths)
    ok = len(vae.paths) == len(a.interpolation.pairs) and mine >= g.path_confidence_share * theirs
    text = (
        f"pairs {pairs}: VAE path frames are digits with mean classifier confidence {mine:.2f} (reference "
        f"{ref_vae.name}: {theirs:.2f}; at least {g.path_confidence_share:.0%} of it expected); AE path {ae_conf:.2f}"
    )
    stand_ins = [
        f"the {w} path uses the reference's {w} (yours is charged under its own item)"
        for w, m in (("AE", ae), ("VAE", vae))
        if m.source == "reference" and not (w == "VAE" and vae_stand_in)
    ]
    if stand_ins:
        text += "; " + "; ".join(stand_ins)
    if vae_stand_in:
        text += f"; not credited: {vae_stand_in}, so the path earns no points"
    paths = PartScore("paths", 1.0 if ok and not vae_stand_in else 0.0, text)
    review = False
    if not vae_stand_in and tuned_reviewed:  # the paths are the tuned VAE's: as short a run as its samples
        charged = "the tuned VAE's sample quality, which the paths show, is left for review under beta_tuning"
        paths, review = short_review(paths, short, charged)
    parts = [paths]
    if answer is None:
        parts.append(PartScore("answer", 0.0, "no answer"))
        status_review = False
    else:
        share = answer.points / answer.max_points if answer.max_points else 0.0
        parts.append(PartScore("answer", share, "answer: " + "; ".join(answer.evidence)))
        status_review = answer.status == "needs_review"
    result = from_parts(
        item, parts, {"ae": ae.to_json(), "vae": vae.to_json(), "answer": answer.metrics if answer else {}}
    )
    if status_review or review:
        result.status = "needs_review"
    return result


def _observed(value: dict) -> dict:
    run = value.get("run") or {}
    return {
        "contract": value.get("contract"),
        "watch": run.get("watch"),
        "iterations": run.get("iterations"),
        "params_changed": run.get("params_changed"),
    }


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"
