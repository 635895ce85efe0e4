"""A notebook's cells as the harness runs them: IPython lines taken out, the tuned beta read,
setting lines substituted, and the definition pass (harness.sandbox.notebook_run) run in this
process on tiny cells: errors, exit(), endless loops, .cuda(), MNIST and plotting drift."""

from __future__ import annotations

import ast

import pytest
import torch

from harness.sandbox.notebook_run import RERUN_ROLES, Figures, Notebook, names_read_later, with_settings
from harness.submission.cells import Cell, CellMap
from harness.submission.notebook_code import number, runnable_source, tuned_beta
from tests import notebooks as nbs


def test_magics_and_shell_lines_become_pass_with_indentation_kept_and_are_listed():
    src = "%matplotlib inline\nimport os\nif True:\n    !rm -rf /\nfiles = !ls\nx = 5 % 3\n"
    cell = runnable_source(src)
    assert cell.text.splitlines() == ["pass", "import os", "if True:", "    pass", "pass", "x = 5 % 3"]
    assert cell.removed == ("%matplotlib inline", "!rm -rf /", "files = !ls")
    ast.parse(cell.text)


def test_a_cell_magic_removes_the_whole_cell():
    cell = runnable_source("%%time\nfor i in range(3):\n    print(i)\n")
    assert cell.text == "" and cell.removed == ("%%time (cell magic: the whole cell)",)


@pytest.mark.parametrize(
    "text, value", [("1e-4", 1e-4), ("10 ** -4", 1e-4), ("-0.5", -0.5), ("1 / 64", 1 / 64), ("beta0", None)]
)
def test_a_beta_literal_is_read_as_a_number_and_a_name_is_not(text, value):
    got = number(ast.parse(text, mode="eval").body)
    assert got == pytest.approx(value) if value is not None else got is None


def _runs(*sources: str) -> tuple[list[Cell], CellMap]:
    cells = [Cell(n, "code", s) for n, s in enumerate(sources, start=1)]
    return cells, CellMap({"vae_runs": tuple(c.number for c in cells)})


def test_the_tuned_beta_is_the_last_assignment_of_the_last_vae_cell_that_has_one():
    cells, cmap = _runs("beta = 0.0\nrun()", "beta = 10\nrun()", "epochs = 20\nbeta = 3e-3  # tuned\nrun()", "show()")
    found = tuned_beta(cells, cmap)
    assert (found.value, found.cell, found.text) == (3e-3, 3, "beta = 3e-3")


def test_a_blank_tuned_beta_slot_is_reported_with_its_cell():
    cells, cmap = _runs("beta = 0.0", "epochs =\nbeta =             # <--- Try different values of beta here!\n")
    found = tuned_beta(cells, cmap)
    assert found.value is None and found.cell == 2 and "does not set beta to a number" in found.problem


def test_setting_lines_take_the_harness_values_and_say_what_they_replaced():
    tree, done = with_settings("epochs = 10\nlr = 1\nfor ep in range(epochs):\n    epochs = 99\n", {"epochs": 2})
    ns: dict = {}
    exec(compile(tree, "<cell>", "exec"), ns)
    assert done == ["epochs = 10 -> 2"] and ns["lr"] == 1
    assert ns["epochs"] == 99  # lines inside blocks are the student's own, left as written


def test_loss_curves_are_found_by_their_axes_titles():
    figs = Figures()
    figs.kept = [
        {"cell": 3, "axes": [{"title": "samples", "lines": [], "images": 1}]},
        {
            "cell": 5,
            "axes": [
                {"title": "Reconstruction Loss", "lines": [[3.0, 2.0]], "images": 0},
                {"title": "KL Loss", "lines": [[1.0, 0.5]], "images": 0},
            ],
        },
    ]
    assert figs.curves(0) == {"rec": [3.0, 2.0], "kl": [1.0, 0.5]}
    assert figs.curves(2) == {}


def _inputs() -> dict[str, torch.Tensor]:
    return {"images": torch.rand(40, 1, 28, 28), "labels": torch.arange(40) % 10}


def _cells(*sources: str) -> list[dict]:
    return [{"number": n, "role": "", "text": s} for n, s in enumerate(sources, start=1)]


@pytest.fixture
def notebook():
    made: list[Notebook] = []

    def make(*sources: str, timeout: float = 5.0) -> Notebook:
        nb = Notebook(_cells(*sources), _inputs(), lambda phase: None, timeout)
        made.append(nb)
        return nb

    yield make
    for nb in reversed(made):  # each puts back what it found: the last made first
        nb.restore()


def test_a_failing_cell_is_recorded_and_the_next_one_still_runs(notebook):
    nb = notebook("x = 1", "raise ValueError('boom')", "exit(3)", "y = x + 1")
    nb.define()
    errors = [r.error for r in nb.runs]
    assert errors[0] == "" and errors[1] == "ValueError: boom" and errors[2].startswith("SystemExit")
    assert errors[3] == "" and nb.ns["y"] == 2


def test_a_cell_nested_past_python_s_limits_is_a_failed_cell_and_the_next_one_still_runs(notebook):
    deep_unary = "z = " + "-" * 100_000 + "1"  # the parser's stack: MemoryError
    deep_sum = "z = " + "+".join(["1"] * 100_000)  # the compiler's recursion: RecursionError
    nb = notebook("import torch\nm = torch.nn.Linear(2, 2)", deep_unary, deep_sum, "y = 2")
    nb.define()
    errors = [r.error for r in nb.runs]
    assert errors[1].startswith("MemoryError while compiling the cell: nested too deeply"), errors[1]
    assert errors[2].startswith("RecursionError while compiling the cell"), errors[2]
    assert errors[3] == "" and nb.ns["y"] == 2 and nb.freed == ["m"]


def test_a_cell_that_loops_forever_is_stopped_at_its_limit_and_marked_for_skipping(notebook):
    nb = notebook("while True:\n    try:\n        pass\n    except Exception:\n        pass", "z = 3", timeout=0.5)
    nb.define()
    assert nb.runs[0].timed_out and "per-cell time limit" in nb.runs[0].error
    assert nb.ns["z"] == 3
    again = notebook("while True: pass", "z = 4", timeout=0.5)
    again.define(skip=frozenset({1}))
    assert again.runs[0].error.startswith("skipped") and again.ns["z"] == 4


def test_mnist_comes_from_the_harness_and_cuda_is_a_no_op_without_a_gpu(notebook):
    if torch.cuda.is_available():
        pytest.skip("on a GPU machine .cuda() moves tensors as it should")
    nb = notebook(
        "import torch, torchvision\n"
        "ds = torchvision.datasets.MNIST(root='./data', train=True, download=True, "
        "transform=torchvision.transforms.ToTensor())\n"
        "img, label = ds[3]\n"
        "m = torch.nn.Linear(2, 2).cuda()\n"
        "t = torch.ones(2).cuda()\n"
    )
    nb.define()
    assert nb.runs[0].error == ""
    img, label = nb.ns["img"], nb.ns["label"]
    assert list(img.shape) == [1, 28, 28] and label == 3 and nb.ns["t"].device.type == "cpu"
    assert any("MNIST" in s for s in nb.runs[0].substituted) and any(".cuda()" in s for s in nb.runs[0].substituted)


def test_plotting_loss_tensors_that_require_grad_is_absorbed_and_the_curve_kept(notebook):
    nb = notebook(
        "import torch\nimport matplotlib.pyplot as plt\n"
        "w = torch.ones(1, requires_grad=True)\nrec_loss = [(w * k).sum() for k in (3.0, 2.0, 1.0)]\n"
        "fig = plt.figure()\nax = plt.subplot(121)\nax.plot(rec_loss)\nax.title.set_text('Reconstruction Loss')\n"
        "ax2 = plt.subplot(122)\nax2.plot([0.5, 0.25])\nax2.title.set_text('KL Loss')\nplt.savefig('fig.png')\n"
    )
    import os
    import tempfile

    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            nb.define()
        finally:
            os.chdir(here)
    assert nb.runs[0].error == ""
    assert any("detached" in s for s in nb.runs[0].substituted)
    assert nb.figures.curves(0) == {"rec": [3.0, 2.0, 1.0], "kl": [0.5, 0.25]}  # savefig, no show: still kept


def test_google_colab_and_get_ipython_are_stubs(notebook):
    nb = notebook("from google.colab import drive\ndrive.mount('/content/drive')\nget_ipython().system('ls')\n")
    nb.define()
    assert nb.runs[0].error == ""
    assert any("drive.mount" in s for s in nb.runs[0].substituted)


def test_dataloader_workers_are_capped_and_what_the_code_asked_for_is_kept(notebook):
    nb = notebook(
        "import torch\nds = torch.utils.data.TensorDataset(torch.zeros(8, 1))\n"
        "loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=8)\n"
        "small = torch.utils.data.DataLoader(ds, 4, False, None, None, 1)\n"
    )
    nb.define()
    loader, small = nb.ns["loader"], nb.ns["small"]
    assert (loader.num_workers, loader._harness_requested_workers) == (2, 8)
    assert (small.num_workers, small._harness_requested_workers) == (1, 1)
    assert any("num_workers 8 -> 2" in s for s in nb.runs[0].substituted)


def test_a_unit_s_torchvision_is_light_and_its_datasets_are_the_harness_s_mnist_only():
    import subprocess
    import sys

    script = """
import sys, torch
from harness.sandbox.notebook_run import Notebook
cells = [{"number": 1, "role": "", "text": (
    "import torch, torchvision\\n"
    "from torchvision.datasets import MNIST\\n"
    "ds = MNIST(root='./data', train=True, download=True, transform=torchvision.transforms.ToTensor())\\n"
    "grid = torchvision.utils.make_grid(torch.rand(16, 1, 28, 28), nrow=4, pad_value=1.)\\n"
    "v = torchvision.__version__\\n")},
    {"number": 2, "role": "", "text": "torchvision.datasets.CIFAR10('./data')"}]
nb = Notebook(cells, {"images": torch.rand(4, 1, 28, 28), "labels": torch.arange(4)}, lambda p: None, 5)
nb.define()
assert nb.runs[0].error == "", nb.runs[0].error
assert len(nb.ns["ds"]) == 4 and list(nb.ns["grid"].shape) == [3, 122, 122]
assert "only MNIST exists in the sandbox" in nb.runs[1].error
assert "torchvision.models" not in sys.modules
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_global_tensors_left_with_a_forward_pass_graph_are_kept_detached(notebook):
    nb = notebook("import torch\nw = torch.ones(3, requires_grad=True)\ny = (w * 2).sum()\n")
    nb.define()
    assert nb.ns["y"].grad_fn is None and float(nb.ns["y"]) == 6.0
    assert nb.ns["w"].requires_grad  # a leaf is not a graph: the student's parameter stays as it was


def test_a_scoped_run_s_names_are_put_back_as_they_were_when_it_ends(notebook):
    nb = notebook("x = 1\ny = 2\n")
    nb.define()
    with nb.scoped():
        nb.ns["x"], nb.ns["made"] = 10, [1, 2]
        del nb.ns["y"]
    assert (nb.ns["x"], nb.ns["y"]) == (1, 2) and "made" not in nb.ns


def _role_cells(*cells: tuple[str, str]) -> list[dict]:
    return [{"number": n, "role": role, "text": text} for n, (role, text) in enumerate(cells, start=1)]


def test_models_no_later_code_reads_are_freed_after_the_definition_pass_and_read_ones_kept():
    cells = _role_cells(
        (
            "",
            "import torch, weakref\nm = torch.nn.Linear(2, 2)\nw = weakref.ref(m)\n"
            "opt = torch.optim.SGD(m.parameters(), lr=0.1)\n"
            "used = torch.nn.Linear(2, 2)\nprev = torch.nn.Linear(2, 2)\n"
            "def f(x):\n    model = torch.nn.Linear(2, 2)\n    return used(model(x))\n",
        ),
        ("ae_training", "ae_model = torch.nn.Linear(3, 3)\nae_model = ae_model.train()\nold = prev\n"),
        ("", "print(m, ae_model)"),  # read at top level, but never run again after the definition pass
    )
    nb = Notebook(cells, _inputs(), lambda phase: None, 5.0)
    try:
        nb.define()  # no gc.collect(): the memory goes back when the names go
        assert sorted(nb.freed) == ["ae_model", "m", "old", "opt"]  # `old` is a name: `prev` keeps its model
        assert nb.ns["w"]() is None  # the weights are gone, not only the name
        assert {"used", "prev", "f"} <= set(nb.ns)  # a function reads `used`; the rerun AE cell reads `prev`
    finally:
        nb.restore()


def test_a_model_a_rerun_cell_deletes_or_a_function_declares_global_is_kept():
    cells = _role_cells(
        (
            "",
            "import torch\nmodel = torch.nn.Linear(2, 2)\nnet = torch.nn.Linear(2, 2)\nfree = torch.nn.Linear(2, 2)\n",
        ),
        ("", "def reset():\n    global net\n    net = None\n"),
        ("ae_training", "del model\nmodel = torch.nn.Linear(3, 3)\n"),
    )
    nb = Notebook(cells, _inputs(), lambda phase: None, 5.0)
    try:
        nb.define()
        assert nb.freed == ["free"] and {"model", "net"} <= set(nb.ns)
    finally:
        nb.restore()


MODEL = "import torch\nmodel = torch.nn.Linear(2, 2)\nspare = torch.nn.Linear(2, 2)\n"


@pytest.mark.parametrize(
    "role, text",
    [
        ("ae_training", "model: torch.nn.Module\nprint(model.weight.shape)"),  # an annotation binds nothing
        ("ae_training", "d = {}\nd[[0 for model in range(1)][0]] = 1\nprint(model)"),  # nor does a subscript
        ("ae_training", "class Cfg:\n    model = model"),  # a class body reads before it binds
        ("", "def f():\n    return f.__globals__['model']"),
        ("", "import builtins\ndef f():\n    return builtins.eval('model')"),
        ("", "import sys\ndef f():\n    return sys._getframe().f_globals['model']"),
    ],
    ids=["annotation", "subscript-target", "class-body", "__globals__", "builtins-eval", "f_globals"],
)
def test_a_model_later_code_may_still_read_is_kept(role, text):
    nb = Notebook(_role_cells(("", MODEL), (role, text)), _inputs(), lambda phase: None, 5.0)
    try:
        nb.define()
        assert "model" in nb.ns and "model" not in nb.freed
    finally:
        nb.restore()


def test_a_cell_that_raised_the_recursion_limit_does_not_crash_the_analysis():
    script = """
import torch
from harness.sandbox.notebook_run import Notebook
cells = [{"number": 1, "role": "", "text": "import torch\\nm = torch.nn.Linear(2, 2)"},
         {"number": 2, "role": "", "text": "x = a" + ".b" * 400000},
         {"number": 3, "role": "", "text": "import sys\\nsys.setrecursionlimit(10**6)"}]
nb = Notebook(cells, {"images": torch.rand(4, 1, 28, 28), "labels": torch.arange(4)}, lambda p: None, 5)
nb.define()
assert nb.runs[1].error.startswith("RecursionError while compiling"), nb.runs[1].error
assert nb.freed == ["m"], nb.freed
print("ok")
"""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().endswith("ok"), (proc.returncode, proc.stderr[-2000:])


def test_annotations_in_cells_are_evaluated_as_on_colab(notebook):
    nb = notebook("def f(x: undefined_name):\n    return x")  # the harness's own __future__ import must not leak in
    nb.define()
    assert nb.runs[0].error == "NameError: name 'undefined_name' is not defined"


def test_a_notebook_that_reads_globals_by_string_keeps_every_model():
    cells = _role_cells(
        ("", "import torch\nm = torch.nn.Linear(2, 2)\n"),
        ("", "def pick(name):\n    return globals()[name]\n"),
    )
    nb = Notebook(cells, _inputs(), lambda phase: None, 5.0)
    try:
        nb.define()
        assert nb.freed == [] and "m" in nb.ns
    finally:
        nb.restore()


RESTORE_SCRIPT = """
import sys, torch, matplotlib.pyplot as plt
if FULL:
    import torchvision, torchvision.datasets
from harness.sandbox.notebook_run import Notebook
before = (torch.Tensor.cuda, torch.nn.Module.cuda, torch.utils.data.DataLoader.__init__, plt.show,
          torchvision.datasets.MNIST if FULL else None)
inputs = {"images": torch.rand(4, 1, 28, 28), "labels": torch.arange(4)}
cell = {"number": 1, "role": "", "text": "import torchvision\\nds = torchvision.datasets.MNIST('.', download=True)"}
first = Notebook([cell], inputs, lambda p: None, 5)
second = Notebook([cell], inputs, lambda p: None, 5)
second.define()
assert len(second.ns["ds"]) == 4, second.runs[0].error
second.restore()
first.restore()
after = (torch.Tensor.cuda, torch.nn.Module.cuda, torch.utils.data.DataLoader.__init__, plt.show,
         torchvision.datasets.MNIST if FULL else None)
assert after == before, [a is b for a, b in zip(after, before)]
assert "google.colab" not in sys.modules
import torchvision.datasets
assert torchvision.datasets.MNIST.__module__ == "torchvision.datasets.mnist", torchvision.datasets.MNIST
print("ok")
"""


@pytest.mark.parametrize("full", [True, False], ids=["torchvision-imported-before", "light-torchvision"])
def test_notebooks_restored_last_made_first_leave_torch_torchvision_and_matplotlib_as_they_were(full):
    import subprocess
    import sys

    script = f"FULL = {full}\n" + RESTORE_SCRIPT
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


@pytest.mark.skipif(
    not nbs.HANDOUTS.is_dir(), reason="../shared/handouts not found: needed to build completed notebooks"
)
@pytest.mark.parametrize("year", ["2020", "2022", "2026"])
def test_a_completed_handout_frees_every_model_its_definition_pass_leaves(year, tmp_path):
    """The memory the freeing is for: the loader cell's encoder/decoder, ae_model, its optimizer,
    the last vae_model. A handout's own `model.eval()` is not a lookup by string."""
    from harness.config.assignment import load_assignment
    from harness.submission.notebook_load import load

    sub = load(nbs.write(nbs.drifted(year), tmp_path / "nb.ipynb"), load_assignment(nbs.CONFIG[year]))
    read = names_read_later([{"number": c.number, "role": c.role, "text": c.text} for c in sub.code], RERUN_ROLES)
    assert read is not None
    assert not {"encoder", "decoder", "ae_model", "opt", "vae_model"} & read
    assert {"nz", "device", "mnist_data_loader"} <= read  # what the rerun cells and functions do read
