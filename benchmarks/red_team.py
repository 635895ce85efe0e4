"""The red team's table: each attack of tests/test_red_team.py (and of the loop and integrity
tests) beside its honest twin, graded by a harness checkout through its command line.

    HARNESS_DATA=<MNIST root> python benchmarks/red_team.py --cache DIR [--harness PATH]
        [--formats folder,notebook] [--profile smoke] [--only TEXT]

The cases are built here from the example submission and, for notebooks, from the 2020 handout
(tests/notebooks.py; ../shared/handouts). Each is graded with ``python -m harness grade`` of the
checkout at ``--harness`` (default: this one), so the same script measures an older version (a
clone at an older commit) against this one: "before" and "after". It prints, per format, each
case's total, its points on the items it aims at, the twin's, and the integrity codes. The
cache should hold the profile's reference and the beta band (the test suite's session cache
does), or the first grade builds them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import notebooks as nbs  # noqa: E402
from tests import test_loop_contract_attacks as loops  # noqa: E402
from tests import test_red_team as red  # noqa: E402
from tests.helpers import copy_example  # noqa: E402

IMPORTS_REFERENCE = (
    "from harness.config.assignment import load_assignment as _load\n"
    "from harness.ml.models import AutoEncoder as _ReferenceAE\n\n\n"
    "class AutoEncoder(_ReferenceAE):\n"
    "    def __init__(self, nz):\n"
    "        super().__init__(_load('variant-a'))\n"
)
SAMPLING_DOC = '    """Decode n latent vectors drawn from N(0, I); returns a [n, 1, 28, 28] tensor."""\n'


def folder_cases() -> dict[str, dict]:
    """name -> how to build it (copy_example's arguments) and the items it aims at."""
    injection = red.STATUS_INJECTION.replace("\n", "\n    ")
    return {
        "honest twin (the example)": {"items": []},
        "probe functions replaced, lazy AE loop": {
            "append": red.PROBE_REPLACEMENT,
            "replace": red.LAZY_FOLDER,
            "items": ["ae_training"],
        },
        "memorising model": {"append": red.MEMORISER, "items": ["ae_training", "vae_training", "interpolation"]},
        "MLP forging a conv architecture": {"append": red.MLP_FORGER, "items": ["ae_architecture"]},
        "status text, forged result, os._exit(0)": {
            "replace": [(SAMPLING_DOC, SAMPLING_DOC + injection + "\n")],
            "items": ["ae_sampling"],
        },
        "made-up gradients, made-up losses": {
            "replace": loops.MADE_UP_GRADIENT_LOOPS,
            "items": ["ae_training", "vae_training", "beta_tuning"],
        },
        "training functions return at once": {
            "replace": loops.RETURN_AT_ONCE,
            "items": ["ae_training", "vae_training", "beta_tuning", "interpolation"],
        },
        "the harness's reference AE imported": {"append": IMPORTS_REFERENCE, "items": ["ae_architecture"]},
    }


def notebook_cases() -> dict[str, dict]:
    made_up = (
        "    rec_loss.backward()\n    opt.step()\n",
        "    for _p in ae_model.parameters():\n      _p.grad = torch.randn_like(_p) * 1e-3\n    opt.step()\n",
    )
    return {
        "honest twin (the 2020 notebook)": {"items": []},
        "probe functions replaced (a cell)": {"cell": red.PROBE_REPLACEMENT, "items": ["ae_training"]},
        "memorising model (a cell)": {"cell": red.MEMORISER, "items": ["ae_training", "vae_training"]},
        "MLP forging a conv architecture (a cell)": {"cell": red.MLP_FORGER, "items": ["ae_architecture"]},
        "status text, forged result, os._exit(0) (a cell)": {"cell": red.STATUS_INJECTION, "items": []},
        "made-up gradients in the AE loop": {"edits": [made_up], "items": ["ae_training"]},
        "VAE loop that never trains": {
            "edits": [("    total_loss.backward()\n    opt.step()\n", "    pass\n")],
            "items": ["vae_training", "beta_tuning", "interpolation"],
        },
        "the harness's reference AE imported (a cell)": {
            "cell": IMPORTS_REFERENCE,
            "items": ["ae_architecture"],
        },
    }


def build(fmt: str, case: dict, where: Path) -> Path:
    if fmt == "folder":
        return copy_example(where / "case", list(case.get("replace", [])), append=case.get("append", ""))
    nb = nbs.complete("2020")
    for old, new in case.get("edits", []):
        nbs.replace_once(nb, old, new)
    if "cell" in case:
        nb.cells.append(nbformat.v4.new_code_cell(case["cell"]))
    where.mkdir(parents=True, exist_ok=True)
    return nbs.write(nb, where / "doejane_12345_678901_vae.ipynb")


def grade(harness: Path, path: Path, cache: str, profile: str, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(harness)}
    cmd = [sys.executable, "-m", "harness", "grade", str(path), "--profile", profile, "--device", "cpu"]
    cmd += ["--cache", cache, "--out", str(out), "--no-report", "-q"]
    subprocess.run(cmd, cwd=harness, env=env, capture_output=True, text=True, timeout=1800)
    found = list(out.rglob("result.json"))
    return json.loads(found[0].read_text()) if found else {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--harness", default=str(ROOT))
    p.add_argument("--cache", required=True)
    p.add_argument("--profile", default="smoke")
    p.add_argument("--formats", default="folder,notebook")
    p.add_argument("--only", default="", help="grade only the cases whose name holds this text (and the twin)")
    args = p.parse_args()
    harness = Path(args.harness).resolve()
    print(f"red team graded by {harness} under {args.profile}")
    for fmt in args.formats.split(","):
        if fmt == "notebook" and not nbs.HANDOUTS.is_dir():
            print("notebook: ../shared/handouts not found, skipped")
            continue
        cases = folder_cases() if fmt == "folder" else notebook_cases()
        print(f"\n{fmt}\n| case | total | aimed-at items | integrity |\n| --- | --- | --- | --- |")
        twin: dict = {}
        for name, case in cases.items():
            if args.only and args.only not in name and "twin" not in name:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                result = grade(harness, build(fmt, case, Path(tmp) / "in"), args.cache, args.profile, Path(tmp) / "out")
            if not result:
                print(f"| {name} | (no result) | | |")
                continue
            points = {i["id"]: i["points"] for i in result["items"]}
            twin = twin or points
            aimed = ", ".join(f"{i} {points[i]:g}/{twin.get(i, 0):g}" for i in case["items"])
            codes = ", ".join(sorted({f["code"] for f in result.get("integrity", [])})) or "-"
            print(f"| {name} | {result['total']:g} | {aimed} | {codes} |", flush=True)


if __name__ == "__main__":
    main()
