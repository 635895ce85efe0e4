"""``vae_model``: forward output, reparameterisation, loss terms and ``reconstruct``.

The probe first watches one call of the student's own loop (how forward returns the posterior,
how ``loss`` is called), then feeds the student's VAE known posteriors in its own form and calls
``loss`` as the loop does; this module recomputes every expected number itself. Each part is
scored on its own: a test that raised costs its part only. Both log sigma and log variance are
accepted, as are the usual reductions; the detected convention is recorded (``metrics.convention``,
a :class:`~harness.ml.loss_convention.LossConvention`) so that ``grade`` reads the student's beta
in the reference's convention (MSE averaged over pixels + beta * KL summed over latent dims and
averaged over the batch): ``beta_reference = LossConvention.to_reference(beta_student)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from harness.config.assignment import Assignment
from harness.grading.rubric import ItemResult, PartScore, from_parts
from harness.ml.loss_convention import PARAMETERISATIONS, LossConvention, flatten_q, q_format
from harness.ml.models import kl_to_prior

KNOWN_MU, KNOWN_LOG_SCALE = 2.0, -1.5
LOSS_PARTS = ("loss_scalar", "rec_term", "kl_term", "beta_weighting")


def _close(a: float, b: float, rel: float = 1e-3) -> bool:
    return math.isfinite(a) and abs(a - b) <= rel * max(1e-8, abs(b))


def _scalar(x) -> float | None:
    return float(x.item()) if isinstance(x, Tensor) and x.numel() == 1 else None


def rec_candidates(rec: Tensor, x: Tensor) -> dict[str, float]:
    """Reduction -> the MSE under it (scales between reductions: :func:`beta_factor`)."""
    sq = (rec.double() - x.double()) ** 2
    b = x.shape[0]
    return {
        "mean over all elements": sq.mean().item(),
        "sum over pixels, mean over batch": sq.sum().item() / b,
        "sum over all elements": sq.sum().item(),
    }


def kl_candidates(q: Tensor, nz: int) -> dict[tuple[str, str], float]:
    """(parameterisation, reduction) -> KL(q || N(0, I)) under it; reduction "REVERSED" is KL(N(0, I) || q)."""
    q = q.double()
    mu, s = q[:, :nz], q[:, nz:]
    out = {}
    for name, factor in PARAMETERISATIONS.items():
        kl = kl_to_prior(mu, factor * s)
        out[(name, "sum over latent dims, mean over batch")] = kl.sum(1).mean().item()
        out[(name, "mean over all elements")] = kl.mean().item()
        out[(name, "sum over all elements")] = kl.sum().item()
        reverse = torch.log(torch.exp(factor * s)) + (1 + mu**2) / (2 * torch.exp(factor * s) ** 2) - 0.5
        out[(name, "REVERSED")] = reverse.sum(1).mean().item()
    return out


def _common(matches: list[list]):
    """The first convention that matched in every call, else None."""
    if not matches or not all(matches):
        return None
    for m in matches[0]:
        if all(m in other for other in matches[1:]):
            return m
    return None


def _fmt(x) -> str:
    v = _scalar(x)
    return f"{v:.5g}" if v is not None else (f"of shape {list(x.shape)}" if isinstance(x, Tensor) else repr(x)[:40])


def _split(result) -> tuple[Tensor | None, dict | None]:
    if isinstance(result, (list, tuple)) and len(result) == 2 and isinstance(result[1], dict):
        return result[0], result[1]
    return None, None


def loss_parts(obs: list[dict], nz: int, param: str | None) -> tuple[list[PartScore], dict]:
    """The loss's four parts from its calls on known outputs (the probe's ``loss``), and the
    reductions and parameterisation they show (empty when the terms are not both found)."""
    metrics: dict = {}
    totals, recs, kls = [], [], []
    shape_problem = None
    for o in obs:
        total, terms = _split(o["result"])
        if total is None:
            shape_problem = "loss(x, outputs) must return (total, {'rec_loss': ..., 'kl_loss': ...})"
            break
        totals.append(total)
        recs.append(terms.get("rec_loss"))
        kls.append(terms.get("kl_loss"))
    if shape_problem:
        return [
            PartScore(p, 0.0, shape_problem) for p in ("loss_scalar", "rec_term", "kl_term", "beta_weighting")
        ], metrics
    not_scalar = [
        name
        for name, xs in (("total", totals), ("rec_loss", recs), ("kl_loss", kls))
        if any(_scalar(v) is None for v in xs)
    ]
    parts = [
        PartScore(
            "loss_scalar",
            0.0 if not_scalar else 1.0,
            f"{', '.join(not_scalar)} not a scalar tensor" if not_scalar else "loss terms are scalars",
        )
    ]

    # Reconstruction term: MSE with one reduction in every call.
    rec_found = _common(
        [
            [k for k, v in rec_candidates(o["rec"], o["x"]).items() if _scalar(r) is not None and _close(_scalar(r), v)]
            for o, r in zip(obs, recs, strict=False)
        ]
    )
    if rec_found:
        parts.append(PartScore("rec_term", 1.0, f"rec_loss is the MSE ({rec_found})"))
    else:
        want = rec_candidates(obs[0]["rec"], obs[0]["x"])["mean over all elements"]
        parts.append(
            PartScore(
                "rec_term",
                0.0,
                f"rec_loss {_fmt(recs[0])} is no reduction of the MSE between rec "
                f"and x (the mean over elements would be {want:.5g})",
            )
        )

    # KL term: KL(q || N(0, I)) with one parameterisation and reduction in every call.
    matches = []
    for o, k in zip(obs, kls, strict=False):
        value = _scalar(k)
        cands = kl_candidates(o["q"], nz)
        matches.append([key for key, v in cands.items() if value is not None and _close(value, v)])
    preferred = [[m for m in ms if param is None or m[0] == param] or ms for ms in matches]
    kl_found = _common(preferred)
    if kl_found is None or kl_found[1] == "REVERSED":
        ref = kl_candidates(obs[0]["q"], nz)[(param or "log_sigma", "sum over latent dims, mean over batch")]
        why = "KL(N(0, I) || q), the reverse order" if kl_found else "not KL(q || N(0, I)) under any usual reduction"
        parts.append(
            PartScore(
                "kl_term",
                0.0,
                f"kl_loss {_fmt(kls[0])} is {why} (for these inputs KL(q || N(0, I)) "
                f"summed over latent dims and averaged over the batch is {ref:.5g})",
            )
        )
    else:
        parts.append(PartScore("kl_term", 1.0, f"kl_loss is KL(q || N(0, I)), {kl_found[1]}, q holds {kl_found[0]}"))

    # total = rec + beta * kl for every beta.
    wrong = []
    for o, t, r, k in zip(obs, totals, recs, kls, strict=False):
        tv, rv, kv = _scalar(t), _scalar(r), _scalar(k)
        consistent = None not in (tv, rv, kv) and (
            _close(tv, rv + o["beta"] * kv, 1e-4) or abs(tv - rv - o["beta"] * kv) <= 1e-6
        )
        if not consistent:
            wrong.append(f"beta = {o['beta']:g}: total {tv}, rec + beta * kl = {(rv or 0) + o['beta'] * (kv or 0):.5g}")
    parts.append(
        PartScore(
            "beta_weighting",
            0.0 if wrong else 1.0,
            "total != rec_loss + beta * kl_loss (" + "; ".join(wrong[:2]) + ")"
            if wrong
            else "total = rec_loss + beta * kl_loss for beta in " + ", ".join(sorted({f"{o['beta']:g}" for o in obs})),
        )
    )
    if rec_found and kl_found and kl_found[1] != "REVERSED":
        metrics = {"parameterisation": kl_found[0], "rec_reduction": rec_found, "kl_reduction": kl_found[1]}
    return parts, metrics


def reparam_parts(obs: dict, nz: int) -> tuple[list[PartScore], str | None]:
    if "reparameterisation_error" in obs:
        return [PartScore("reparameterisation", 0.0, f"reparameterisation: {obs['reparameterisation_error']}")], None
    seen = obs.get("reparameterisation") or {}
    zs = seen.get("z") or []
    param, problems = None, []
    if not zs or not isinstance(zs[0], Tensor) or zs[0].shape[-1] != nz:
        problems.append("the decoder did not receive an [B, nz] latent from the injected posterior")
    else:
        z = zs[0].double()
        mean, std = z.mean().item(), z.std().item()
        for name, factor in PARAMETERISATIONS.items():
            if (
                abs(mean - KNOWN_MU) < 0.05
                and abs(std - math.exp(factor * KNOWN_LOG_SCALE)) < 0.05 * math.exp(factor * KNOWN_LOG_SCALE) + 0.01
            ):
                param = name
        if param is None:
            hint = " (sigma used without exp?)" if abs(std - abs(KNOWN_LOG_SCALE)) < 0.1 else ""
            hint = " (no noise: z is the mean)" if std < 1e-6 else hint
            problems.append(
                f"with mu = {KNOWN_MU:g} and log sigma = {KNOWN_LOG_SCALE:g} the decoder received "
                f"mean {mean:.3f}, std {std:.3f}; expected std {math.exp(KNOWN_LOG_SCALE):.3f} "
                f"(log sigma) or {math.exp(0.5 * KNOWN_LOG_SCALE):.3f} (log variance){hint}"
            )
    g_mu, g_s = seen.get("grad_norms", [0.0, 0.0])
    if not (g_mu > 0 and g_s > 0):
        problems.append(f"gradients reach the mean half: {g_mu > 0}, the scale half: {g_s > 0} (both must)")
    f1, f2 = obs.get("forward") or (None, None)
    r1, r2 = (f.get("rec") if isinstance(f, dict) else None for f in (f1, f2))
    if isinstance(r1, Tensor) and isinstance(r2, Tensor) and r1.shape == r2.shape and torch.equal(r1, r2):
        problems.append("two forward passes gave identical reconstructions: no sampling")
    if problems:
        return [PartScore("reparameterisation", 0.0, "reparameterisation: " + "; ".join(problems))], param
    return [
        PartScore(
            "reparameterisation",
            1.0,
            f"reparameterised sampling z = mu + sigma * eps ({param}); "
            "gradients reach mean and scale; samples differ between calls",
        )
    ], param


def q_part(obs: dict, nz: int, batch: int, shape: tuple[int, ...]) -> PartScore:
    """forward(x) returns the posterior and the reconstructions: q in any form the harness reads
    (a [B, 2nz] or [B, 2, nz] tensor, a (mean, scale) pair, a dict of both), rec of the image's shape."""
    if "forward_error" in obs:
        return PartScore("q_shape", 0.0, obs["forward_error"])
    f = obs["forward"][0]
    if not isinstance(f, dict) or not {"q", "rec"} <= set(f):
        return PartScore("q_shape", 0.0, f"forward(x) must return a dict with 'q' and 'rec', got {type(f).__name__}")
    q, rec = f["q"], f["rec"]
    problems = []
    fmt = q_format(q, nz)
    try:
        q_batch = flatten_q(q, nz).shape[0] if fmt else None
    except RuntimeError:  # a pair or dict whose halves hold different batches
        q_batch = None
    if q_batch != batch:
        seen = list(q.shape) if isinstance(q, Tensor) else type(q).__name__
        problems.append(
            f"'q' is {seen}, expected [{batch}, {2 * nz}], [{batch}, 2, {nz}], "
            f"or a (mean, scale) pair or dict of [{batch}, {nz}]"
        )
    if not isinstance(rec, Tensor) or tuple(rec.shape) != (batch, *shape):
        problems.append(
            f"'rec' is {list(rec.shape) if isinstance(rec, Tensor) else type(rec).__name__}, expected {[batch, *shape]}"
        )
    if problems:
        return PartScore("q_shape", 0.0, "; ".join(problems))
    return PartScore(
        "q_shape", 1.0, f"forward(x) gives q ({_FORMS.get(fmt, 'a dict of mean and scale')}) and rec {[batch, *shape]}"
    )


_FORMS = {
    "flat": "[B, 2nz]",
    "stacked": "[B, 2, nz]",
    "pair": "a (mean, scale) pair",
}


def reconstruct_part(obs: dict) -> PartScore:
    if "reconstruct_error" in obs:
        return PartScore("reconstruct", 0.0, obs["reconstruct_error"])
    r1, r2, mean_rec = obs["reconstruct"]
    if not all(isinstance(t, Tensor) for t in (r1, r2)):
        return PartScore("reconstruct", 0.0, "reconstruct(x) did not return a tensor")
    if r1.shape != r2.shape or not torch.equal(r1, r2):
        return PartScore(
            "reconstruct", 0.0, "reconstruct(x) is not deterministic: it samples instead of decoding the mean"
        )
    if not isinstance(mean_rec, Tensor) or mean_rec.shape != r1.shape or not torch.allclose(r1, mean_rec, atol=1e-5):
        return PartScore("reconstruct", 0.0, "reconstruct(x) differs from decoder(posterior mean)")
    return PartScore("reconstruct", 1.0, "reconstruct(x) is deterministic and decodes the posterior mean")


def loop_note(loop: dict, train_vae: str) -> str:
    """What one call of the student's own loop showed (how the tests were called), for the evidence."""
    if not loop:
        return ""
    if loop.get("error"):
        return f"your {train_vae} could not be watched calling loss ({loop['error']}): tested as the handout calls it"
    if not loop.get("loss_called"):
        return f"your {train_vae} did not call the model's loss: tested as the handout calls it, loss(x, outputs)"
    call = ", ".join([*loop.get("arguments", []), *(f"{k}={r}" for k, r in (loop.get("keywords") or {}).items())])
    return f"your {train_vae} calls loss({call}): the loss was tested that way"


def convention(metrics: dict, obs: dict, a: Assignment) -> LossConvention:
    """The loss convention the tests found, or the handout's where a part could not show it."""
    loop, pixels = obs.get("loop") or {}, a.data.image_channels * a.data.image_size**2
    found = bool(metrics)
    roles = (obs.get("loss") or [{}])[0].get("arguments") or ["x", "outputs"]
    return LossConvention(
        parameterisation=metrics.get("parameterisation", "log_sigma"),
        rec_reduction=metrics.get("rec_reduction", LossConvention.rec_reduction),
        kl_reduction=metrics.get("kl_reduction", LossConvention.kl_reduction),
        arguments=tuple(roles),
        q_format=(obs.get("formats") or {}).get("q") or loop.get("q_format") or "flat",
        nz=a.model.nz,
        pixels=pixels,
        batch=a.training.batch_size,
        detected=found,
    )


def score(a: Assignment, obs: dict, substituted: list[str]) -> ItemResult:
    """Each part on its own: a test that raised costs its part only (the probe's ``<test>_error``)."""
    item = a.item("vae_model")
    nz = a.model.nz
    shape = (a.data.image_channels, a.data.image_size, a.data.image_size)
    reparam, param = reparam_parts(obs, nz)
    if "loss" in obs:
        loss, metrics = loss_parts(obs["loss"], nz, param)
    else:
        loss, metrics = [PartScore(p, 0.0, obs.get("loss_error", "the loss was not tested")) for p in LOSS_PARTS], {}
    parts = [q_part(obs, nz, 64, shape), *reparam, *loss, reconstruct_part(obs)]
    conv = convention(metrics, obs, a)
    metrics = {
        **metrics,
        "beta_factor": conv.factor if conv.detected else None,
        "convention": conv.to_json(),
        "failed_parts": [p.part for p in parts if p.share < 1],  # what a training run must not rely on
    }
    result = from_parts(item, parts, metrics)
    note = loop_note(obs.get("loop") or {}, a.submission.names.train_vae)
    if note:
        result.evidence.append(note)
    result.evidence.append(conv.describe())
    for key in substituted:
        result.evidence.append(f"tested with the reference {key} because yours did not produce the right shapes")
    return result
