"""How far correct implementations land from the reference under a short profile: the spread
that a profile's full-credit ratios must cover so that every correct implementation keeps its
points (docs/checks.md#short-profiles).

    HARNESS_DATA=<MNIST root> python benchmarks/profile_ratios.py [--profile smoke] [--betas 1e-4,1e-3]
        [--implementations example,2020,2022,2026] [--cache DIR]

Each correct implementation (the bundled example folder, and the completed notebook of each
course handout built by tests/notebooks.py from ../shared/handouts) is graded at each beta; the
script prints, per run, the ratios the trained items judge (the AE's test MSE to the reference
AE's; the tuned run's sample FID and test MSE to the reference trained at the same beta), whether
a part missed its full-credit ratio and what the grade made of it (kept for review or deducted),
and the largest ratio of each kind beside the configured full-credit ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.config.assignment import load_assignment  # noqa: E402
from harness.grading.grade import grade_submission  # noqa: E402
from harness.grading.grader import make_grader  # noqa: E402
from harness.grading.session import RunOptions  # noqa: E402
from harness.ml.data import load_mnist  # noqa: E402
from harness.reference.beta_band import ensure_band  # noqa: E402
from harness.reference.build import build_reference  # noqa: E402
from harness.reference.cache import cache_root  # noqa: E402


def implementation(name: str, beta: str, tmp: Path) -> tuple[Path, str]:
    """A correct submission at ``beta`` and the assignment it follows."""
    from tests import notebooks as nbs
    from tests.helpers import notebook_in, planted_copy

    if name == "example":
        return planted_copy(tmp / f"example-{beta}", [], f"tuned_beta = {beta}"), "variant-a"
    folder = tmp / f"{name}-{beta}"
    folder.mkdir()
    return notebook_in(folder, nbs.complete(name, tuned_beta=beta)), nbs.CONFIG[name]


def ratios(result, ae_ref_mse: float) -> dict[str, float]:
    items = {i.id: i for i in result.items}
    ae = (items["ae_training"].metrics.get("run") or {}).get("test_mse")
    tuning = items["beta_tuning"].metrics
    run, ref = tuning.get("run") or {}, tuning.get("reference_at_beta") or {}
    out = {}
    if ae and ae_ref_mse:
        out["ae test MSE"] = ae / ae_ref_mse
    if run.get("sample_fid") and ref.get("sample_fid"):
        out["tuned sample FID"] = run["sample_fid"] / ref["sample_fid"]
    if run.get("test_mse") and ref.get("test_mse"):
        out["tuned test MSE"] = run["test_mse"] / ref["test_mse"]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="smoke")
    p.add_argument("--betas", default="1e-4,1e-3")
    p.add_argument("--implementations", default="example,2020,2022,2026")
    p.add_argument("--cache", help="cache folder (default: the user cache)")
    args = p.parse_args()
    torch.set_num_threads(2)
    data, cache = load_mnist(None), cache_root(args.cache)
    graders = {}
    rows, worst = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.implementations.split(","):
            for beta in args.betas.split(","):
                path, config = implementation(name, beta, Path(tmp))
                if config not in graders:
                    a = load_assignment(config)
                    profile = a.profile(args.profile)
                    ensure_band(a, data, torch.device("cpu"), cache, quiet=True)
                    ref = build_reference(a, profile, data, torch.device("cpu"), cache, quiet=True)
                    graders[config] = make_grader(a, profile, data, ref, cache, torch.device("cpu"))
                g = graders[config]
                result = grade_submission(path, g, RunOptions(quiet=True))
                found = ratios(result, g.reference.run(g.a.training.ae.name).test_mse)
                reviewed = [i.id for i in result.items if any("not deducted under" in e for e in i.evidence)]
                lost = {i.id: i.max_points - i.points for i in result.items if i.points < i.max_points}
                rows.append((name, beta, found, reviewed, lost, result.total))
                for k, v in found.items():
                    worst[k] = max(worst.get(k, 0.0), v)
                shown = ", ".join(f"{k} {v:.2f}x" for k, v in found.items())
                print(f"{name:8} beta {beta:6} {shown}; total {result.total:g}; reviewed {reviewed}; lost {lost}")
    g = next(iter(graders.values())).a.grading
    print(f"\nprofile {args.profile}: largest ratios over {len(rows)} correct runs")
    for k, v in worst.items():
        full = g.fid_full_credit if "FID" in k else g.mse_full_credit
        zero = g.fid_zero_credit if "FID" in k else g.mse_zero_credit
        print(f"  {k:18} {v:.2f}x  (full credit up to {full:g}x, none from {zero:g}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
