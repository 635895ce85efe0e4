"""Which betas are good betas: the reference's beta search under the handout's own protocol.

Short profiles cannot answer "is this a good beta?": after a few hundred steps a weak KL term
always looks best (under ``smoke`` and ``quick`` the reference's pick is 1e-4, while students
who train as the handout says land near 1e-3). So the question is answered once per assignment
and data, under the ``full`` profile, and the answer is cached as a *band*:

- every searched beta is measured as in the reference (test MSE, sample FID, KL, active units);
- ``best`` is the search's pick (the tuned-beta criterion of ``harness.reference.trainer``);
- a searched beta *passes* when its posterior has not collapsed (harness.ml.loss_convention.collapsed)
  and its samples are as good as the best's: sample FID within the ``[grading]`` full-credit ratio
  of the best's (``fid_full_credit``, the threshold the grade uses for a student's samples). Its
  test MSE is shown, not judged: reconstruction error always grows with beta, so a rule on it
  would punish exactly the trade the handout asks a student to make (docs/reference.md has the
  stand-in's table);
- the band is the run of passing betas around ``best``, widened by half a search step at each
  end (on a log scale): a beta belongs to the band when its nearest searched beta passes.

The band depends on the assignment's trained sections and the data, not on the device or the
library versions, so a band built on a GPU serves every grader of the same assignment and data.
It is built by ``harness reference --profile full`` (from that reference's own search, no extra
training) or alone by ``harness reference --band`` (the AE and the search only). Cache layout
and the measured cost: docs/reference.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from harness.config.assignment import Assignment, GradingSpec
from harness.io import write_json_atomic
from harness.ml.loss_convention import COLLAPSE_RULE, collapsed
from harness.reference.cache import building, make_key

BAND_SCHEMA = 1
PROFILE = "full"  # the handout's protocol


@dataclass(frozen=True)
class SearchedBeta:
    """One run of the full-protocol search and whether it passes."""

    beta: float
    test_mse: float
    sample_fid: float
    kl: float | None
    active_units: int | None
    passes: bool
    why: str  # what decided it, in words


@dataclass(frozen=True)
class BetaBand:
    """The full-protocol search's verdict on betas (all in the reference's loss convention)."""

    assignment_id: str
    data_fingerprint: str
    best: float
    low: float  # the band's edges, half a search step beyond the outermost passing betas
    high: float
    searched: tuple[SearchedBeta, ...]
    source: str  # "reference full" or "band": which build produced it
    rule: str = "searched betas not collapsed whose sample FID is within the full-credit ratio of the best's"

    def contains(self, beta: float) -> bool:
        return math.isfinite(beta) and beta > 0 and self.low <= beta <= self.high

    def describe(self) -> str:
        passing = ", ".join(f"{s.beta:g}" for s in self.searched if s.passes) or "none"
        return (
            f"full-protocol search: best {self.best:g}, passing {passing}; band {self.low:.2g} .. {self.high:.2g} "
            f"(a beta passes when its nearest searched beta does)"
        )

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def judge_search(
    runs: list[tuple[float, float, float, float | None, int | None]],
    best: float,
    g: GradingSpec,
    assignment_id: str = "",
    data_fingerprint: str = "",
    source: str = "",
) -> BetaBand:
    """The band from searched (beta, test MSE, sample FID, KL, active units) rows and the pick."""
    rows = sorted(runs)
    ref = next(r for r in rows if math.isclose(r[0], best))
    searched = []
    for beta, mse, fid, kl, active in rows:
        gone = collapsed(kl, active, g.collapse_kl)
        mse_r, fid_r = mse / ref[1], fid / ref[2]
        ok = gone is False and fid_r <= g.fid_full_credit
        why = (
            f"collapsed ({COLLAPSE_RULE.format(kl=g.collapse_kl)})"
            if gone
            else "the posterior was not measured"
            if gone is None
            else f"sample FID {fid_r:.2f}x the best's (full credit up to {g.fid_full_credit:g}x); "
            f"test MSE {mse_r:.2f}x the best's (shown, not judged)"
        )
        searched.append(SearchedBeta(beta, mse, fid, kl, active, ok, why))
    i = next(n for n, s in enumerate(searched) if math.isclose(s.beta, best))
    lo = hi = i
    if not searched[i].passes:  # the pick always anchors the band, even at a strict threshold
        searched[i] = dataclasses.replace(searched[i], passes=True, why="the search's pick")
    while lo > 0 and searched[lo - 1].passes:
        lo -= 1
    while hi < len(searched) - 1 and searched[hi + 1].passes:
        hi += 1
    betas = [s.beta for s in searched]
    low = _half_step(betas, lo, -1)
    high = _half_step(betas, hi, +1)
    return BetaBand(assignment_id, data_fingerprint, best, low, high, tuple(searched), source)


def _half_step(betas: list[float], i: int, direction: int) -> float:
    """Half a search step (log scale) beyond ``betas[i]``; the outer neighbour's step at the ends."""
    j = i + direction
    if not 0 <= j < len(betas):
        j = i - direction
    if not 0 <= j < len(betas) or j == i:
        return betas[i] * (10**0.5) ** direction
    step = abs(math.log10(betas[j]) - math.log10(betas[i]))
    return betas[i] * 10 ** (direction * step / 2)


# --------------------------------------------------------------------------- cache


def band_key(a: Assignment, data_fingerprint: str) -> str:
    """What the search's numbers depend on; the thresholds are applied when the band is read."""
    parts = {"schema": BAND_SCHEMA, "assignment": a.training_digest, "data": data_fingerprint, "seed": a.training.seed}
    return make_key(parts)


def band_path(a: Assignment, data_fingerprint: str, cache: Path) -> Path:
    return cache / "beta-band" / f"{a.meta.id}-{band_key(a, data_fingerprint)}.json"


def load_band(a: Assignment, data_fingerprint: str, cache: Path) -> BetaBand | None:
    """The band for this assignment and data under its current ``[grading]`` thresholds, or
    None when the full-protocol search has not been built."""
    try:
        d = json.loads(band_path(a, data_fingerprint, cache).read_text())
        rows = [(r["beta"], r["test_mse"], r["sample_fid"], r["kl"], r["active_units"]) for r in d["searched"]]
        return judge_search(rows, d["best"], a.grading, a.meta.id, data_fingerprint, d["source"])
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return None


def save_search(
    a: Assignment, data_fingerprint: str, cache: Path, best: float, rows: list[tuple], source: str, seconds: float
) -> Path:
    """Cache a full-protocol search: its pick and one row per searched beta."""
    path = band_path(a, data_fingerprint, cache)
    keys = ("beta", "test_mse", "sample_fid", "kl", "active_units")
    payload = {
        "schema": BAND_SCHEMA,
        "assignment_id": a.meta.id,
        "data": data_fingerprint,
        "best": best,
        "source": source,
        "build_seconds": round(seconds, 1),
        "searched": [dict(zip(keys, r, strict=False)) for r in rows],
    }
    write_json_atomic(path, payload)
    return path


def search_rows(runs) -> list[tuple]:
    """(beta, test MSE, sample FID, KL, active units) of the search runs among reference ``runs``."""
    return [(r.beta, r.test_mse, r.sample_fid, r.kl, r.active_units) for r in runs if r.search]


def estimate_seconds(a: Assignment, runs, train_images: int) -> float | None:
    """How long building the band should take on this machine: the full profile's AE and search
    (``train_images`` images each epoch) at the rate the given reference runs trained (seconds
    per image-epoch, each run's ``seconds``, ``epochs`` and ``train_images``); None without runs."""
    from harness.config.plan import run_plan, search_plan

    done = [(r.seconds, r.epochs * (r.train_images or train_images)) for r in runs if r.seconds and r.epochs]
    work = sum(w for _, w in done)
    if not work:
        return None
    full = a.profile(PROFILE)
    plans = [p for p in run_plan(a, full) if p.role == "ae"] + search_plan(a, full)
    return sum(s for s, _ in done) / work * sum(p.epochs * train_images for p in plans)


def ensure_band(a: Assignment, data, device, cache: Path, quiet: bool = False) -> BetaBand:
    """The cached band, else train the AE and the search under the full profile and cache them."""
    from harness.reference.build import train_search

    band = load_band(a, data.fingerprint, cache)
    if band is not None:
        return band
    path = band_path(a, data.fingerprint, cache)
    with building(path, quiet):
        if load_band(a, data.fingerprint, cache) is None:  # else built by the process this one waited for
            started = time.perf_counter()
            best, rows = train_search(a, a.profile(PROFILE), data, device, cache, quiet)
            save_search(a, data.fingerprint, cache, best, rows, "band", time.perf_counter() - started)
    return load_band(a, data.fingerprint, cache)
