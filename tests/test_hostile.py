"""Hostile and broken submissions: each is confined to its own result.

The harness survives, other submissions' results stay intact, and every item the
hostile code does not touch keeps its points (code that kills its own import
costs the code items, never the answers).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from harness.grading.code import CODE_ITEMS
from harness.grading.result import write_result
from tests.helpers import EXAMPLE, copy_example

TIMEOUT_S = 8.0
MEMORY_MB = 2500

AT_IMPORT = {
    "infinite-loop-at-import": ("while True:\n    pass\n", "timeout"),
    "os-exit-at-import": ("import os\nos._exit(3)\n", "error"),
    "sys-exit-at-import": ("import sys\nsys.exit(4)\n", "error"),
    "missing-module": ("import a_module_that_does_not_exist\n", "error"),
    "syntax-error": ("def broken(:\n    pass\n", "error"),
}

IN_SAMPLING = {
    "infinite-loop-in-function": ("while True:\n        pass", "timeout"),
    "memory-hog-in-function": ("hog = []\n    while True:\n        hog.append(b'x' * 50_000_000 + bytes(1))", "error"),
    "os-exit-in-function": ("import os\n    os._exit(5)", "error"),
    "sys-exit-in-function": ("import sys\n    sys.exit(6)", "error"),
}
SAMPLING_BODY = "    model.to(device)\n    model.eval()  # BatchNorm uses its running statistics\n"


def points(result) -> dict[str, float]:
    return {i.id: i.points for i in result.items}


def status(result, item_id: str) -> str:
    return next(i.status for i in result.items if i.id == item_id)


@pytest.mark.parametrize("name", sorted(AT_IMPORT))
def test_code_that_breaks_its_import_costs_the_code_items_never_the_answers(name, tmp_path, run_check, example_points):
    code, expected = AT_IMPORT[name]
    folder = copy_example(tmp_path / name, [("import torch\n", "import torch\n" + code)])
    result = run_check(folder, timeout_s=TIMEOUT_S)
    for item in result.items:
        if item.id in CODE_ITEMS:
            assert (item.points, item.status) == (0, expected), item.evidence
            assert "importing submission.py" in item.evidence[0]
        else:
            assert item.points == example_points[item.id]


def test_syntax_error_is_reported_with_its_line_not_a_harness_traceback(tmp_path, run_check):
    folder = copy_example(tmp_path / "syntax", [("import torch\n", "import torch\ndef broken(:\n")])
    evidence = "\n".join(next(i for i in run_check(folder).items if i.id == "ae_architecture").evidence)
    assert "SyntaxError" in evidence and "submission.py" in evidence


@pytest.mark.parametrize("name", sorted(IN_SAMPLING))
def test_hostile_function_costs_only_its_own_item(name, tmp_path, run_check, example_points):
    code, expected = IN_SAMPLING[name]
    folder = copy_example(tmp_path / name, [(SAMPLING_BODY, f"    {code}\n" + SAMPLING_BODY)])
    timeout = 30 if "memory" in name else TIMEOUT_S  # room to reach the cap on a busy machine
    result = run_check(folder, timeout_s=timeout, memory_mb=MEMORY_MB)
    assert points(result)["ae_sampling"] == 0 and status(result, "ae_sampling") == expected
    assert {k: v for k, v in points(result).items() if k != "ae_sampling"} == {
        k: v for k, v in example_points.items() if k != "ae_sampling"
    }


def test_memory_hog_is_stopped_at_the_cap_and_says_so(tmp_path, run_check):
    code = IN_SAMPLING["memory-hog-in-function"][0]
    folder = copy_example(tmp_path / "hog", [(SAMPLING_BODY, f"    {code}\n" + SAMPLING_BODY)])
    item = next(i for i in run_check(folder, timeout_s=30, memory_mb=MEMORY_MB).items if i.id == "ae_sampling")
    assert f"the limit is {MEMORY_MB} MB" in item.evidence[0]


def test_patching_torch_functions_changes_no_grade(tmp_path, run_check):
    """A copy with a reversed KL that also patches the functions a grader might compare with."""
    patch = (
        "import torch as _t\nimport torch.nn.functional as _F\n"
        "_t.allclose = lambda *a, **k: True\n_t.equal = lambda *a, **k: True\n_t.isclose = lambda *a, **k: True\n"
        "_t.testing.assert_close = lambda *a, **k: None\n_F.mse_loss = lambda *a, **k: _t.tensor(0.0)\n"
        "_F.kl_div = lambda *a, **k: _t.tensor(0.0)\n"
    )
    bug = ("kl_divergence(mu, log_sigma, zeros, zeros)", "kl_divergence(zeros, zeros, mu, log_sigma)")
    own_mse = ("rec_loss = F.mse_loss(rec, x)", "rec_loss = ((rec - x) ** 2).mean()")
    plain = run_check(copy_example(tmp_path / "plain", [bug, own_mse]))
    patched = run_check(copy_example(tmp_path / "patched", [bug, own_mse], append=patch))
    assert points(patched) == points(plain)
    assert points(patched)["vae_model"] < 7


def test_gigabytes_on_stdout_are_capped_and_cost_nothing(tmp_path, run_check, example_points):
    flood = (
        "import sys\n    line = 'x' * (1 << 20) + '\\n'\n    for _ in range(2048):\n        sys.stdout.write(line)\n"
    )
    folder = copy_example(tmp_path / "flood", [(SAMPLING_BODY, "    " + flood + SAMPLING_BODY)])
    result = run_check(folder, timeout_s=120)
    assert points(result) == example_points


def _processes_with(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


def test_processes_left_running_in_a_new_session_are_killed(tmp_path, run_check, example_points):
    marker = "4242.123"
    spawn = (
        "import subprocess as _sp, os as _os\n"
        f"_sp.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        "if _os.fork() == 0:\n    _os.setsid()\n    _os.execvp('sleep', ['sleep', '" + marker + "'])\n"
    )
    result = run_check(copy_example(tmp_path / "daemon", append=spawn))
    assert points(result) == example_points
    assert _processes_with(marker) == []


def test_signals_to_the_parent_do_not_stop_the_harness(tmp_path, run_check, example_points):
    kill = (
        "import os as _os, signal as _sig\nfor _s in (_sig.SIGTERM, _sig.SIGINT, _sig.SIGKILL):\n"
        "    try:\n        _os.kill(_os.getppid(), _s)\n    except OSError:\n        pass\n"
    )
    result = run_check(copy_example(tmp_path / "signals", append=kill))
    assert points(result) == example_points


def test_rewriting_result_files_fails_and_the_results_stay_the_harness_s(tmp_path, run_check, example_points):
    reports = tmp_path / "reports"
    other = run_check(EXAMPLE)
    write_result(reports / "other" / "check.json", other)
    before = (reports / "other" / "check.json").read_bytes()
    write_result(reports / "vandal" / "check.json", other)  # its own earlier result
    vandal = (
        "import json as _j, pathlib as _p\n"
        f"for _f in [_p.Path({str(reports / 'other' / 'check.json')!r}),"
        f" _p.Path({str(reports / 'vandal' / 'check.json')!r})]:\n"
        "    try:\n        _f.write_text(_j.dumps({'total': 999}))\n    except OSError:\n        pass\n"
        f"    try:\n        (_p.Path({str(reports)!r}) / 'planted.json').write_text('x')\n"
        "    except OSError:\n        pass\n"
    )
    result = run_check(copy_example(tmp_path / "vandal", append=vandal))
    assert (reports / "other" / "check.json").read_bytes() == before
    assert not (reports / "planted.json").exists()
    assert json.loads((reports / "vandal" / "check.json").read_text())["total"] == other.total
    assert points(result) == example_points


def test_missing_files_and_wrong_names_get_clear_messages(tmp_path, run_check, example_points):
    no_code = copy_example(tmp_path / "no-code")
    os.remove(no_code / "submission.py")
    result = run_check(no_code)
    assert any("submission.py is missing" in p for p in result.problems)
    assert all(i.points == 0 for i in result.items if i.id in CODE_ITEMS)
    assert all(i.points == example_points[i.id] for i in result.items if i.id not in CODE_ITEMS)

    no_answers = copy_example(tmp_path / "no-answers")
    os.remove(no_answers / "answers.md")
    result = run_check(no_answers)
    assert any("answers.md is missing" in p for p in result.problems)
    assert all(i.points == example_points[i.id] for i in result.items if i.id in CODE_ITEMS)

    renamed = copy_example(tmp_path / "renamed", [("def generate_samples(", "def gen_samples(")])
    item = next(i for i in run_check(renamed).items if i.id == "ae_sampling")
    assert (
        item.points == 0 and "defines no `generate_samples`" in item.evidence[0] and "gen_samples" in item.evidence[0]
    )


def test_hostile_suite_is_large_enough():
    assert len(AT_IMPORT) + len(IN_SAMPLING) + 5 >= 8


def test_forged_observations_cost_only_the_forging_item(tmp_path, run_check, example_points):
    """A unit that overwrites its own output file with junk gets an error on that item, no crash."""
    forge = (
        "    import torch as _t, pathlib as _p\n"
        "    _t.save({'ok': True, 'decoder_inputs': 'junk', 'samples': 3}, _p.Path('../out/sampling.pt'))\n"
        "    import os as _os\n    _os._exit(0)\n"
    )
    folder = copy_example(tmp_path / "forger", [(SAMPLING_BODY, forge + SAMPLING_BODY)])
    result = run_check(folder)
    assert points(result)["ae_sampling"] == 0
    assert {k: v for k, v in points(result).items() if k != "ae_sampling"} == {
        k: v for k, v in example_points.items() if k != "ae_sampling"
    }
