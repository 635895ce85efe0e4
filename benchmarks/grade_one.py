"""What grading one submission costs, per profile, and how far `quick` agrees with `full`.

    HARNESS_DATA=<MNIST root> python benchmarks/grade_one.py [--profiles smoke,quick,full]
        [--agreement quick,full] [--cache DIR]

For each profile: the reference is built first (or read from the cache) and timed on its
own; then the example submission is graded and timed with the reference cached, which is
the cost per submission in a course. Peak memory is the harness process's maximum
resident set size and the largest peak (PSS) of any sandboxed unit.

``--notebooks 2020,2022,2026`` grades a completed notebook built from each course handout
(tests/notebooks.py; the handouts are read from ../shared/handouts) and, side by side in the same
run, its *folder twin*: a submission.py holding the same model cells and the same training loops
as functions. It prints each one's grade time, its training speed (images per second of the
training loops) and the largest unit's peak memory, and the notebook's ratios to the twin
(targets: grade <= 60 s under quick with the reference cached, speed >= 90 %, memory within 10 %).
A unit's peak varies run to run (tens of MB): ``--repeat N`` grades each N times and prints the
median grade times and peaks (the speed of the last run); ``--units`` prints every training unit's
peak of every run.

``--agreement A,B`` grades the planted-bug and variant suites of tests/test_checks.py and
tests/test_grade.py under both profiles and prints the share of items that earn the same
points (target: >= 95%); ``--suites example,grade`` keeps the training suites only. Under
``full`` on a CPU that is hours per submission; use a GPU (--device cuda).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.config.assignment import load_assignment  # noqa: E402
from harness.grading.grade import grade_submission  # noqa: E402
from harness.grading.grader import make_grader  # noqa: E402
from harness.grading.session import RunOptions  # noqa: E402
from harness.ml.data import load_mnist  # noqa: E402
from harness.ml.training import resolve_device  # noqa: E402
from harness.reference.build import build_reference  # noqa: E402
from harness.reference.cache import cache_root  # noqa: E402


def suites(tmp: Path) -> dict[str, Path]:
    """Every planted bug and legitimate variant of the test suites, as submission folders."""
    from tests.helpers import EXAMPLE, copy_example
    from tests.test_checks import PLANTED as CHECK_PLANTED
    from tests.test_checks import VARIANTS as CHECK_VARIANTS
    from tests.test_grade import PLANTED, VARIANTS, _planted

    folders = {"example": EXAMPLE}
    for name, (_, code, answers) in CHECK_PLANTED.items():
        folders[f"check:{name}"] = copy_example(tmp / f"check-{name}", code, answers=answers)
    for name, edits in CHECK_VARIANTS.items():
        folders[f"check-variant:{name}"] = copy_example(tmp / f"check-variant-{name}", edits)
    for name, (_, edits, tuned, _) in PLANTED.items():
        folders[f"grade:{name}"] = _planted(tmp, f"grade-{name}", edits, tuned)
    for name, (edits, tuned) in VARIANTS.items():
        folders[f"grade-variant:{name}"] = _planted(tmp, f"grade-variant-{name}", edits, tuned)
    return folders


TWIN_FUNCTIONS = """

def make_data_loader(dataset, batch_size, num_workers):
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers)


def train_autoencoder(model, data_loader, epochs, learning_rate, device):
    ae_model, mnist_data_loader = model.to(device).train(), data_loader
    opt = torch.optim.Adam(ae_model.parameters(), lr=learning_rate)
    criterion = nn.MSELoss()
    losses = []
    for ep in range(epochs):
{ae_loop}
          losses.append(rec_loss.item())
    return losses


def generate_samples(model, n, nz, device):
    return model.decoder(torch.randn(n, nz, device=device))


def train_vae(model, data_loader, epochs, learning_rate, device):
    vae_model, mnist_data_loader = model.to(device).train(), data_loader
    opt = torch.optim.Adam(vae_model.parameters(), lr=learning_rate)
    rec_loss, kl_loss = [], []
    for ep in range(epochs):
{vae_loop}
          {append}
    return rec_loss, kl_loss
"""


def folder_twin(nb, a, dest: Path) -> Path:
    """The notebook's code as a submission folder: its model cells verbatim and its training loops
    (tests/notebooks.py's AE_LOOP and VAE_LOOP, with the handout's own line that keeps the losses)
    as the folder format's functions."""
    import textwrap

    from harness.submission.cells import map_roles
    from tests import notebooks as nbs
    from tests.helpers import EXAMPLE

    cells = nbs.cells(nb)
    roles = map_roles(cells, a.notebook)
    wanted = [roles.cell(r) for r in ("encoder_decoder", "autoencoder", "vae_model")]
    models = "\n\n".join(src for n, kind, src in cells if n in wanted)
    loops = {
        k: textwrap.indent(textwrap.dedent(v), " " * 8)
        for k, v in (("ae_loop", nbs.AE_LOOP), ("vae_loop", nbs.VAE_LOOP))
    }
    # the handout's own line that keeps the losses: 2020/2022 keep the tensors (and so their graphs)
    vae_cells = [src for n, kind, src in cells if n in roles.roles.get("vae_runs", ())]
    loops["append"] = next(line.strip() for src in vae_cells for line in src.splitlines() if "rec_loss.append(" in line)
    dest.mkdir(parents=True)
    code = f"import torch\nimport torch.nn as nn\n\nnz = {a.model.nz}\n\n{models}\n" + TWIN_FUNCTIONS.format(**loops)
    (dest / "submission.py").write_text(code)
    for name in ("answers.md", "submission.toml"):
        (dest / name).write_text((EXAMPLE / name).read_text())
    return dest


def _speed(result, profile) -> float:
    """Training images per second of the training loops themselves (the probe times each loop:
    the unit's start, a notebook's definition pass and the evaluation are left out)."""
    runs = [r for r in result.runs.values() if r.get("status") == "ok" and "seconds" in r.get("measure", {})]
    images = sum(r["epochs"] * profile.train_images for r in runs)
    seconds = sum(r["measure"]["seconds"] for r in runs)
    return images / seconds if seconds else 0.0


def _peak(result) -> float:
    return max((v for k, v in result.timings.items() if k.startswith("peak_mb:")), default=0.0)


def notebook_cases(
    years: list[str], profile_name: str, device, cache: Path, data, repeat: int = 1, units: bool = False
) -> None:
    from tests import notebooks as nbs

    print(f"\nnotebooks vs their folder twins, profile {profile_name} (reference cached; speed: training images/s)")
    print(
        f"{'handout':<9}{'grade nb (s)':>13}{'grade twin (s)':>15}{'speed nb':>10}{'speed twin':>11}{'ratio':>7}"
        f"{'peak nb (MB)':>13}{'peak twin':>10}{'ratio':>7}{'points nb':>11}{'twin':>7}"
    )
    for year in years:
        a = load_assignment(nbs.CONFIG[year])
        profile = a.profile(profile_name)
        ref = build_reference(a, profile, data, device, cache, quiet=True)
        g = make_grader(a, profile, data, ref, cache, device)
        with tempfile.TemporaryDirectory() as tmp:
            nb = nbs.complete(year)
            path = nbs.write(nb, Path(tmp) / f"student_1_1_handout-{year}.ipynb")
            twin = folder_twin(nb, a, Path(tmp) / "twin")
            timed: dict[str, list] = {"twin": [], "nb": []}
            for _ in range(repeat):
                for label, sub in (("twin", twin), ("nb", path)):
                    t0 = time.perf_counter()
                    result = grade_submission(sub, g, RunOptions(device=str(device), quiet=True))
                    timed[label].append((time.perf_counter() - t0, result))
        if units:
            for label in ("twin", "nb"):
                for _, r in timed[label]:
                    peaks = {k[len("peak_mb:") :]: v for k, v in r.timings.items() if k.startswith("peak_mb:")}
                    print(f"  {year} {label:<5}" + " ".join(f"{k}={v:.0f}" for k, v in sorted(peaks.items())))
        (nb_s, nb_r), (tw_s, tw_r) = timed["nb"][-1], timed["twin"][-1]
        nb_s, tw_s = (statistics.median(s for s, _ in timed[k]) for k in ("nb", "twin"))
        speed = (_speed(nb_r, profile), _speed(tw_r, profile))
        peak = tuple(statistics.median(_peak(r) for _, r in timed[k]) for k in ("nb", "twin"))
        print(
            f"{year:<9}{nb_s:>13.1f}{tw_s:>15.1f}{speed[0]:>10.0f}{speed[1]:>11.0f}{speed[0] / speed[1]:>7.2f}"
            f"{peak[0]:>13.0f}{peak[1]:>10.0f}{peak[0] / peak[1]:>7.2f}"
            f"{nb_r.total:>7g}/{nb_r.max_total:<3g}{tw_r.total:>5g}/{tw_r.max_total:<3g}"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profiles", default="smoke,quick")
    p.add_argument("--agreement", default="", help="two profiles, e.g. quick,full")
    p.add_argument(
        "--suites", default="", help="only submissions whose label starts with one of these (e.g. example,grade)"
    )
    p.add_argument("--assignment", default="variant-a")
    p.add_argument("--device", default="auto")
    p.add_argument("--cache")
    p.add_argument(
        "--notebooks", default="", help="handout years to grade as notebooks and folder twins: 2020,2022,2026"
    )
    p.add_argument("--notebook-profile", default="quick")
    p.add_argument(
        "--repeat", type=int, default=1, help="grade each notebook and twin N times; print median times and peaks"
    )
    p.add_argument("--units", action="store_true", help="print every unit's peak memory (PSS, MB) of each run")
    args = p.parse_args()

    a = load_assignment(args.assignment)
    data = load_mnist()
    device = resolve_device(args.device)
    cache = cache_root(args.cache)
    example = ROOT / "submissions" / "example"
    graders = {}
    print(f"device {device}, {torch.get_num_threads()} torch threads, data {data.source.root}")
    print(
        f"{'profile':<8}{'reference (s)':>15}{'grade (s)':>11}{'training (s)':>14}{'points':>9}"
        f"{'harness RSS (MB)':>18}{'unit PSS (MB)':>15}"
    )
    for name in [n for n in args.profiles.split(",") if n]:
        profile = a.profile(name)
        t0 = time.perf_counter()
        ref = build_reference(a, profile, data, device, cache, quiet=True)
        ref_s = time.perf_counter() - t0
        graders[name] = make_grader(a, profile, data, ref, cache, device)
        t0 = time.perf_counter()
        result = grade_submission(example, graders[name], RunOptions(device=str(device), quiet=True))
        grade_s = time.perf_counter() - t0
        train_s = sum(v for k, v in result.timings.items() if k.startswith("train-"))
        unit_peak = max((v for k, v in result.timings.items() if k.startswith("peak_mb:")), default=0.0)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cached = " (cached)" if ref.from_cache else ""
        print(
            f"{name:<8}{ref_s:>9.1f}{cached:<6}{grade_s:>11.1f}{train_s:>14.1f}{result.total:>5g}/{result.max_total:<3g}"
            f"{rss:>18.0f}{unit_peak:>15.0f}"
        )

    if args.notebooks:
        years = [y for y in args.notebooks.split(",") if y]
        notebook_cases(years, args.notebook_profile, device, cache, data, args.repeat, args.units)

    if args.agreement:
        first, second = args.agreement.split(",")
        for n in (first, second):
            if n not in graders:
                graders[n] = make_grader(
                    a,
                    a.profile(n),
                    data,
                    build_reference(a, a.profile(n), data, device, cache, quiet=True),
                    cache,
                    device,
                )
        same = total = 0
        with tempfile.TemporaryDirectory() as tmp:
            wanted = tuple(s for s in args.suites.split(",") if s)
            for label, folder in suites(Path(tmp)).items():
                if wanted and not label.startswith(wanted):
                    continue
                points = [
                    {
                        i.id: i.points
                        for i in grade_submission(folder, graders[n], RunOptions(device=str(device), quiet=True)).items
                    }
                    for n in (first, second)
                ]
                differ = [k for k in points[0] if points[0][k] != points[1].get(k)]
                same += len(points[0]) - len(differ)
                total += len(points[0])
                print(f"  {label:<48} {'same' if not differ else 'differs: ' + ', '.join(differ)}")
        print(f"agreement {first} vs {second}: {same}/{total} items = {same / total:.1%} (target >= 95%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
