"""A student's VAE loss convention, and the one rule for a collapsed posterior.

Students write a correct beta-VAE in many conventions the handout never shows: ``q`` as one
``[B, 2nz]`` tensor, a ``[B, 2, nz]`` view, a ``(mu, log_sigma)`` pair or a dict; the scale half
as log sigma or log variance; the MSE and the KL summed or averaged over different axes; and
``loss(x, outputs)`` called the other way round by their own loop. The harness learns the
convention from the student's code (harness.grading.items.vae) and reads every beta through it:
:meth:`LossConvention.to_reference` gives the beta that weighs the KL against the MSE as the
reference's loss does (MSE averaged over pixels + beta * KL summed over latent dims and averaged
over the batch).

The posterior forms (:func:`flatten_q`, :func:`q_format`, :func:`to_format`) run in the sandbox
too: they are small and import nothing of the harness.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

REFERENCE_REC = "mean over all elements"
REFERENCE_KL = "sum over latent dims, mean over batch"
PARAMETERISATIONS = {"log_sigma": 1.0, "log_variance": 0.5}  # sigma = exp(factor * s)
# How a dict names the posterior's halves: a key holding one of these words (case aside)
MEAN_WORDS = ("mu", "mean", "loc")
SCALE_WORDS = ("logvar", "log_var", "var", "sigma", "std", "scale")


@dataclass(frozen=True)
class LossConvention:
    """How a student's ``loss`` reads its inputs and weighs its terms.

    ``detected`` False: the convention could not be read from the code (a part of the VAE is
    broken), and the handout's own is assumed, which the evidence says."""

    parameterisation: str = "log_sigma"  # what q's scale half holds: log_sigma or log_variance
    rec_reduction: str = REFERENCE_REC
    kl_reduction: str = REFERENCE_KL
    arguments: tuple[str, ...] = ("x", "outputs")  # the roles of loss's positional arguments
    q_format: str = "flat"  # how forward returns q: flat, stacked, pair, dict:<mean key>,<scale key>
    nz: int = 64
    pixels: int = 784
    batch: int = 64
    detected: bool = True

    @property
    def factor(self) -> float:
        """beta_reference = beta_student * factor: the KL's scale over the MSE's, each relative to
        the reference's reduction; a sum over the batch uses the assignment's batch size."""
        rec = {
            REFERENCE_REC: 1.0,
            "sum over pixels, mean over batch": float(self.pixels),
            "sum over all elements": float(self.pixels * self.batch),
        }
        kl = {REFERENCE_KL: 1.0, "mean over all elements": 1.0 / self.nz, "sum over all elements": float(self.batch)}
        return kl[self.kl_reduction] / rec[self.rec_reduction]

    def to_reference(self, beta: float) -> float:
        """The student's beta in the reference's convention."""
        return beta * self.factor

    def describe(self) -> str:
        """One line for the evidence."""
        how = "read from your code" if self.detected else "the handout's, assumed: yours could not be read"
        return (
            f"loss convention ({how}): loss({', '.join(self.arguments)}); q {self.q_format}, scale half "
            f"{self.parameterisation}; MSE {self.rec_reduction}; KL {self.kl_reduction}; "
            f"your beta x {self.factor:.4g} = the reference's beta"
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "arguments": list(self.arguments), "factor": self.factor}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> LossConvention:
        """The convention a result recorded (None or {}: the handout's, not detected)."""
        if not d:
            return cls(detected=False)
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "arguments": tuple(known.get("arguments", ("x", "outputs")))})


COLLAPSE_RULE = "KL per image <= {kl:g} nats, or no active unit"  # what collapsed() says, for the evidence


def collapsed(kl: float | None, active_units: int | None, collapse_kl: float) -> bool | None:
    """Has the posterior collapsed? Yes when the KL per image is at most ``collapse_kl`` nats or
    no latent unit is active; when the KL was not measured, the active units decide; None when
    neither was measured (unknown: no rule may read that as either)."""
    if kl is not None and kl == kl:
        return kl <= collapse_kl or active_units == 0
    if active_units is not None:
        return active_units == 0
    return None


# --------------------------------------------------------------------------- posterior forms


def _halves_of_dict(q: dict) -> tuple[str, str] | None:
    keys = [k for k, v in q.items() if isinstance(k, str) and isinstance(v, Tensor)]
    mean = next((k for k in keys if any(w == k.lower() or k.lower().startswith(w) for w in MEAN_WORDS)), None)
    scale = next((k for k in keys if k != mean and any(w in k.lower() for w in SCALE_WORDS)), None)
    if mean is None or scale is None:
        return None
    return mean, scale


def q_format(q: Any, nz: int) -> str | None:
    """The form of a posterior as a student's code gives it (None: none the harness reads)."""
    if isinstance(q, Tensor):
        if q.dim() == 2 and q.shape[1] == 2 * nz:
            return "flat"
        if q.dim() == 3 and tuple(q.shape[1:]) == (2, nz):
            return "stacked"
        return None
    if isinstance(q, (list, tuple)) and len(q) == 2 and all(isinstance(t, Tensor) for t in q):
        return "pair" if all(t.dim() == 2 and t.shape[1] == nz for t in q) else None
    if isinstance(q, dict):
        halves = _halves_of_dict(q)
        if halves and all(q[k].dim() == 2 and q[k].shape[1] == nz for k in halves):
            return f"dict:{halves[0]},{halves[1]}"
    return None


def flatten_q(q: Any, nz: int) -> Tensor:
    """Any posterior form :func:`q_format` reads, as one ``[B, 2nz]`` tensor: mean, then scale."""
    fmt = q_format(q, nz)
    if fmt is None:
        shape = list(q.shape) if isinstance(q, Tensor) else type(q).__name__
        raise ValueError(
            f"q is {shape}: expected a [B, {2 * nz}] or [B, 2, {nz}] tensor, a (mean, scale) pair or a dict of both"
        )
    if fmt == "flat":
        return q
    if fmt == "stacked":
        return q.reshape(q.shape[0], 2 * nz)
    if fmt == "pair":
        return torch.cat([q[0], q[1]], dim=1)
    mean, scale = fmt.removeprefix("dict:").split(",")
    return torch.cat([q[mean], q[scale]], dim=1)


def to_format(flat: Tensor, fmt: str, nz: int) -> Any:
    """A ``[B, 2nz]`` posterior in the form ``fmt`` (:func:`q_format`) a student's code uses."""
    if fmt == "stacked":
        return flat.reshape(flat.shape[0], 2, nz)
    if fmt == "pair":
        return [flat[:, :nz], flat[:, nz:]]
    if fmt.startswith("dict:"):
        mean, scale = fmt.removeprefix("dict:").split(",")
        return {mean: flat[:, :nz], scale: flat[:, nz:]}
    return flat
