"""A handed-in notebook's cells, run inside a sandbox unit the way the probes need them.

The notebook's code cells run in one namespace (a module's ``__dict__``), in document order, as
on Colab. The harness changes no student logic; it substitutes through the notebook's globals:

- ``torchvision.datasets.MNIST`` gives the harness's images at the profile's size: ``download=True``
  never reaches the network (:class:`HarnessMNIST`).
- The handout's setting lines (``epochs = 10``, ``learning_rate = 1e-3``, ``beta = 0.0``,
  ``batch_size = 64``, ``nworkers = 4``) take the harness's values where a run needs them
  (:func:`with_settings`); every other line runs as written. These and every other name of the
  handout's that the adapters bind or read are the assignment's ``[notebook.names]``
  (:class:`~harness.config.assignment.NotebookNames`), sent in the cells file.
- ``.cuda()`` is a no-op without a GPU; matplotlib draws nowhere (Agg) and each figure's plotted
  data is kept (:class:`Figures`); a list of loss tensors that still require grad is plotted
  detached, as Colab's numpy allowed (the failure current numpy raises is recorded, not charged);
  ``google.colab`` and ``get_ipython`` are stubs.
- A cell that raises, exits or runs past its time limit is recorded and the next one runs. A cell
  that ends the unit's process (``os._exit``, a segmentation fault, the memory limit) cannot be:
  the host records it and runs the unit again with that cell skipped
  (:func:`harness.sandbox.host.run_definition`), as later units skip a cell that ran past its limit.

:class:`Notebook` first runs every cell once with no training (every ``epochs`` is 0): the
*definition pass*, which leaves the classes, functions, loader and globals that later cells and
the probes use. It then exposes the folder format's names (``harness.sandbox.probes``) on the
module, each an adapter that runs the notebook's own cell or function:

    make_data_loader(dataset, batch, workers)   the loader cell, with the handout's dataset = dataset
    train_autoencoder(model, loader, epochs, lr, device)
                                                the AE training cell, AutoEncoder(...) giving model
    generate_samples(model, n, nz, device)      the sampling cell's function, with batch_size = n
    train_vae(model, loader, epochs, lr, device)
                                                2026: the VAE-run function; 2020/2022: the VAE cell

A unit keeps no more than a folder's unit would: after the definition pass (and the loader cell's
rerun) global tensors holding a forward pass's autograd history are kept detached
(:meth:`Notebook.drop_graphs`); models and optimizers no later code reads are freed
(:meth:`Notebook.free_unread`); a training run's top-level names are scoped to the run, as a
folder's training function's locals are (:meth:`Notebook.scoped`); and the C heap's free pages
go back to the system after each (:func:`release_memory`).

Cells come from the host as JSON (``harness.submission.notebook_load.CELLS_FILE``).
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import signal
import symtable
import sys
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from harness.config.assignment import NotebookNames, notebook_names

MAX_POINTS = 100_000  # of one plotted line kept
MAX_WORKERS = 2  # DataLoader worker processes a notebook may start: the unit's cores, not Colab's
TRACEBACK_LINES = 8


class CellTimeout(BaseException):  # noqa: N818  (BaseException: a student's `except Exception` must not swallow it)
    """A cell ran past its time limit."""


class CellError(Exception):
    """A notebook cell the harness ran on the probes' behalf failed; the message names the cell."""


@dataclass
class CellRun:
    """What running one cell did: its number and role, seconds, what the harness substituted,
    the error and the last lines of its traceback ("" when it ran)."""

    number: int
    role: str
    seconds: float = 0.0
    substituted: list[str] = field(default_factory=list)
    error: str = ""
    traceback: str = ""
    timed_out: bool = False  # later units skip the cell (harness.sandbox.host.Sandbox.skip_cells)

    def to_json(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- data


class HarnessMNIST(torch.utils.data.Dataset):
    """MNIST as torchvision's ``MNIST(..., transform=ToTensor())`` gives it, from the harness's
    tensors: ``(image [1, 28, 28] in [0, 1], int label)``."""

    def __init__(self, images: Tensor, labels: Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x = self.images[i]
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        return x.reshape(1, *x.shape[-2:]), int(self.labels[i])


def datasets(inputs: dict[str, Tensor]) -> tuple[HarnessMNIST, HarnessMNIST]:
    """The (train, test) sets a unit's inputs give: a training unit's subset and the check's
    fixed test images (never the evaluation images: a training unit does not receive them), or
    the check's test images for both."""
    test = HarnessMNIST(inputs["images"], inputs["labels"])
    if "train_u8" in inputs:
        return HarnessMNIST(inputs["train_u8"], inputs["train_labels"]), test
    return test, test


# --------------------------------------------------------------------------- figures


class Figures:
    """Every matplotlib figure the cells make: shown, saved or left open, its axes' titles and
    plotted data are kept (no image is drawn) and the figure is closed."""

    def __init__(self):
        self.kept: list[dict] = []
        self.cell = 0

    def take(self) -> None:
        import matplotlib.pyplot as plt

        for num in plt.get_fignums():
            fig = plt.figure(num)
            axes = []
            for ax in fig.get_axes():
                lines = [[float(v) for v in line.get_ydata()[:MAX_POINTS]] for line in ax.get_lines()]
                axes.append({"title": ax.get_title(), "lines": lines, "images": len(ax.get_images())})
            self.kept.append({"cell": self.cell, "axes": axes})
        plt.close("all")

    def curves(self, since: int) -> dict[str, list[float]]:
        """The loss curves plotted since figure ``since``: axes titled like the handout's
        ("Reconstruction Loss", "KL Loss"), else a figure's first two single-line axes."""
        found: dict[str, list[float]] = {}
        for fig in self.kept[since:]:
            for ax in fig["axes"]:
                title = ax["title"].lower()
                if not ax["lines"]:
                    continue
                if "kl" in title:
                    found["kl"] = ax["lines"][0]
                elif "rec" in title:
                    found["rec"] = ax["lines"][0]
            plotted = [ax["lines"][0] for ax in fig["axes"] if ax["lines"]]
            if "rec" not in found and len(plotted) >= 2:
                found = {"rec": plotted[0], "kl": plotted[1]}
        return found


def _plain(x: Any, drift: list[bool]) -> Any:
    if isinstance(x, Tensor):
        drift[0] |= x.requires_grad
        return x.detach().cpu().numpy()
    if isinstance(x, (list, tuple)) and x and any(isinstance(v, Tensor) for v in x):
        drift[0] |= any(isinstance(v, Tensor) and v.requires_grad for v in x)
        return [v.detach().cpu().item() if isinstance(v, Tensor) and v.numel() == 1 else _plain(v, drift) for v in x]
    return x


# --------------------------------------------------------------------------- settings


def with_settings(source: str, settings: dict[str, Any]) -> tuple[ast.Module, list[str]]:
    """The cell's code with its top-level ``name = ...`` lines for ``settings`` assigning the
    harness's values, and what was substituted (``epochs = 10 -> 2``). Raises SyntaxError."""
    tree = ast.parse(source)
    done = []
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in settings
        ):
            name = node.targets[0].id
            was = ast.get_source_segment(source, node.value) or "?"
            node.value = ast.copy_location(ast.Constant(settings[name]), node.value)
            done.append(f"{name} = {was} -> {settings[name]!r}")
    return tree, done


def defines_function(source: str, name: str) -> bool:
    """Whether a cell defines the top-level function ``name`` (the 2026 ``run_with_beta``); a cell
    that does not parse defines nothing."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body)


def _tail(tb: str) -> str:
    lines = [ln for ln in tb.rstrip().splitlines() if ln.strip()]
    return "\n".join(lines[-TRACEBACK_LINES:])


def _describe(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"SystemExit (exit({e.code!r}))"
    if isinstance(e, CellTimeout):
        return str(e)
    return f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------- the notebook


class Cells(list):
    """The cells the host wrote (cell dicts, as :class:`Notebook` takes them) and the handout's
    names they came with."""

    def __init__(self, cells: list[dict], names: NotebookNames):
        super().__init__(cells)
        self.names = names


class Notebook:
    """The notebook's namespace (``module``), its cells and what running them did (``runs``).
    ``handout``: the handout's names (default: those ``cells`` came with, else the defaults)."""

    def __init__(
        self,
        cells: list[dict],
        inputs: dict[str, Tensor],
        phase: Callable[[str], None],
        cell_timeout_s: float,
        handout: NotebookNames | None = None,
    ):
        self.cells = list(cells)
        self.handout = handout or (cells.names if isinstance(cells, Cells) else NotebookNames())
        self.phase = phase
        self.cell_timeout_s = cell_timeout_s
        self.train_set, self.test_set = datasets(inputs)
        self.module = types.ModuleType("submission")
        self.ns = self.module.__dict__
        self.ns["__builtins__"] = __builtins__
        self.runs: list[CellRun] = []
        self.figures = Figures()
        self.names: dict[str, str] = {}  # config key -> the folder format's name (set by expose)
        self._current: CellRun | None = None
        self.defined = 0  # how many runs the definition pass made: later ones ran for a probe
        self.freed: list[str] = []  # globals the definition pass left and free_unread freed
        self.uncompiled: set[int] = set()  # cells Python could not compile: they never run
        self.skipped: frozenset[int] = frozenset()  # cells the definition pass did not run (define's skip)
        self._patch()

    # -- the environment

    def _note(self, text: str) -> None:
        if self._current is not None and text not in self._current.substituted:
            self._current.substituted.append(text)

    def _patch(self) -> None:
        os.environ["MPLBACKEND"] = "Agg"
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.axes
        import matplotlib.pyplot as plt

        self._made_light = "torchvision" not in sys.modules
        torchvision = light_torchvision()
        nb = self
        plot = matplotlib.axes.Axes.plot

        def plot_detached(ax, *args, **kwargs):
            drift = [False]
            args = tuple(_plain(a, drift) for a in args)
            if drift[0]:
                nb._note("plotted tensors that require grad, detached (current numpy refuses them; Colab's did not)")
            return plot(ax, *args, **kwargs)

        self._undo = [
            (matplotlib.axes.Axes, "plot", plot),
            (plt, "show", plt.show),
            (torch.Tensor, "cuda", torch.Tensor.cuda),
            (torch.nn.Module, "cuda", torch.nn.Module.cuda),
        ]
        matplotlib.axes.Axes.plot = plot_detached
        plt.show = lambda *a, **k: nb.figures.take()

        def mnist(root: Any = "", train: bool = True, download: bool = False, transform: Any = None, **kw: Any):
            nb._note("torchvision MNIST: the harness's images (no download)")
            return nb.train_set if train else nb.test_set

        if getattr(torchvision, LIGHT, False):  # no torchvision.datasets of its own: the stub is the only one
            datasets_stub = types.ModuleType("torchvision.datasets")
            datasets_stub.MNIST = mnist
            datasets_stub.__getattr__ = _only_mnist
            self._modules = {"torchvision.datasets": sys.modules.get("torchvision.datasets")}
            sys.modules["torchvision.datasets"] = torchvision.datasets = datasets_stub
        else:  # torchvision was imported whole before (a test's process): patch its MNIST
            self._undo.append((torchvision.datasets, "MNIST", torchvision.datasets.MNIST))
            torchvision.datasets.MNIST = mnist
        if not torch.cuda.is_available():

            def no_cuda_tensor(t, *a, **k):
                nb._note(".cuda(): no GPU here, kept on the CPU")
                return t

            def no_cuda_module(m, *a, **k):
                nb._note(".cuda(): no GPU here, kept on the CPU")
                return m

            torch.Tensor.cuda, torch.nn.Module.cuda = no_cuda_tensor, no_cuda_module
        loader_init = torch.utils.data.DataLoader.__init__

        def capped_init(loader, *args, **kwargs):
            asked = kwargs.get("num_workers", args[5] if len(args) > 5 else 0)
            if isinstance(asked, int) and asked > MAX_WORKERS:
                nb._note(f"DataLoader num_workers {asked} -> {MAX_WORKERS} (capped in the sandbox)")
                if "num_workers" in kwargs:
                    kwargs["num_workers"] = MAX_WORKERS
                else:
                    args = (*args[:5], MAX_WORKERS, *args[6:])
            loader_init(loader, *args, **kwargs)
            loader._harness_requested_workers = asked  # what the forward-pass check judges

        torch.utils.data.DataLoader.__init__ = capped_init
        self._undo.append((torch.utils.data.DataLoader, "__init__", loader_init))
        colab = types.ModuleType("google.colab")
        colab.drive = types.SimpleNamespace(mount=lambda *a, **k: nb._note("google.colab.drive.mount: skipped"))
        colab.files = types.SimpleNamespace(
            download=lambda *a, **k: nb._note("google.colab.files.download: skipped"),
            upload=lambda *a, **k: {},
        )
        google = sys.modules.get("google") or types.ModuleType("google")
        google.colab = colab
        sys.modules.setdefault("google", google)
        sys.modules["google.colab"] = colab

        class IPythonStub:
            def __getattr__(self, name: str) -> Callable:
                return lambda *a, **k: nb._note(f"get_ipython().{name}: skipped")

        self.ns["get_ipython"] = IPythonStub

    def restore(self) -> None:
        """Undo the substitutions in torch, torchvision and matplotlib (a unit's process ends
        instead; tests that run a notebook in their own process call this). Each notebook puts
        back what it found when it was made: several in one process are restored last made first."""
        for owner, name, value in self._undo:
            setattr(owner, name, value)
        for name, module in getattr(self, "_modules", {}).items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        if self._made_light:  # the process imports the real torchvision next time, not this one's stubs
            for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
                del sys.modules[name]
        sys.modules.pop("google.colab", None)

    # -- running cells

    def run_cell(self, cell: dict, settings: dict[str, Any], timeout_s: float | None) -> CellRun:
        """Run one cell in the namespace with ``settings``; never raises (the run records errors)."""
        run = CellRun(int(cell["number"]), str(cell.get("role", "")))
        self._current = run
        self.figures.cell = run.number
        self.phase(f"cell {run.number}")
        started = time.perf_counter()
        try:
            tree, run.substituted = with_settings(cell["text"], settings)
            code = compile(tree, f"<cell {run.number}>", "exec", dont_inherit=True)  # not this module's __future__
        except SyntaxError as e:
            run.error = f"SyntaxError: {e.msg} (line {e.lineno})"
        except UNCOMPILABLE as e:  # nested past the parser's or compiler's limits: Python cannot read it
            run.error = f"{type(e).__name__} while compiling the cell: {str(e) or 'nested too deeply'}"
        if run.error:
            self.uncompiled.add(run.number)
            self.runs.append(run)
            self._current = None
            return run
        if timeout_s:
            signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            exec(code, self.ns)  # noqa: S102  (student code, inside the sandbox unit)
        except BaseException as e:  # noqa: BLE001  (a cell may raise anything, exit() included)
            run.error = _describe(e)
            run.traceback = _tail(traceback.format_exc())
            run.timed_out = isinstance(e, CellTimeout)
        finally:
            if timeout_s:
                signal.setitimer(signal.ITIMER_REAL, 0)
            self.figures.take()
        run.seconds = round(time.perf_counter() - started, 3)
        self.runs.append(run)
        self._current = None
        return run

    def _on_alarm(self, signum, frame) -> None:
        raise CellTimeout(f"stopped after {self.cell_timeout_s:g} s (the per-cell time limit)")

    def define(self, skip: frozenset[int] = frozenset()) -> None:
        """The definition pass: every cell once, in order, no training (``epochs = 0``, no loader
        workers); ``skip``: cells that stopped an earlier unit (ran past their limit, or ended its
        process: the host knows which and says so)."""
        self.skipped = frozenset(skip)
        h = self.handout
        for cell in self.cells:
            if cell["number"] in skip:
                why = "skipped: it stopped an earlier unit (ran past its limit or ended the process)"
                self.runs.append(CellRun(cell["number"], cell.get("role", ""), error=why))
                continue
            self.run_cell(cell, {h.epochs: 0, h.workers: 0}, self.cell_timeout_s)
        self.defined = len(self.runs)
        self.drop_graphs()
        self.free_unread()
        release_memory()

    def drop_graphs(self) -> None:
        """Global tensors that a cell's forward pass left with their autograd history (the loader
        cell's ``enc = encoder(sample_img)``, ``dec = decoder(enc)``) keep every saved activation
        of that pass alive for the rest of the unit. Later cells see the same values, detached:
        the probes never differentiate through another cell's result."""
        for k, v in list(self.ns.items()):
            if isinstance(v, Tensor) and v.grad_fn is not None:
                self.ns[k] = v.detach()

    def free_unread(self) -> None:
        """Models and optimizers the definition pass left in globals that no later code reads by
        name (the loader cell's ``encoder``/``decoder``, the AE cell's ``ae_model`` and ``opt``,
        the last ``vae_model``: untrained instances, two to four models' weights) are freed: a
        folder's unit holds only the model it trains. Kept when any code may read them, or when
        some code looks globals up dynamically (:func:`names_read_later`); ``freed`` lists them."""
        read = names_read_later([c for c in self.cells if c["number"] not in self.uncompiled], RERUN_ROLES)
        if read is None:
            return
        for k, v in list(self.ns.items()):
            if k not in read and isinstance(v, HEAVY):
                del self.ns[k]
                self.freed.append(k)

    # -- the folder format's names, as adapters

    def role_cells(self, role: str) -> list[dict]:
        return [c for c in self.cells if c.get("role") == role]

    @contextlib.contextmanager
    def bound(self, names: dict[str, Any]):
        """Bind ``names`` in the namespace for a probe's call only, then put back what was there."""
        saved = {k: self.ns.get(k, _MISSING) for k in names}
        self.ns.update(names)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is _MISSING:
                    self.ns.pop(k, None)
                else:
                    self.ns[k] = v

    @contextlib.contextmanager
    def scoped(self):
        """A training run's globals are its own, as a folder's training function's locals are: every
        name the run binds, rebinds or deletes is put back as it was when the run ends. What the run
        made (its optimizer and state, the last batch's outputs, loss lists that keep each step's
        autograd graph) is then freed before the probe evaluates the model, as in a folder's unit,
        instead of living on in the namespace beside the evaluation's own memory."""
        saved = dict(self.ns)
        try:
            yield
        finally:
            for k in [k for k in self.ns if k not in saved]:
                del self.ns[k]
            for k, v in saved.items():
                if self.ns.get(k, _MISSING) is not v:
                    self.ns[k] = v
            del saved
            release_memory()

    def _fail(self, run: CellRun) -> None:
        raise CellError(f"cell {run.number} raised {run.error}" + (f"\n{run.traceback}" if run.traceback else ""))

    def make_data_loader(self, dataset, batch_size: int, num_workers: int):
        h = self.handout
        cell = self.role_cells("forward_test")[0]
        with self.bound({h.dataset: dataset, h.loader: None}):
            run = self.run_cell(cell, {h.batch_size: batch_size, h.workers: num_workers}, None)
            loader = self.ns.get(h.loader)
        self.drop_graphs()  # the loader cell's own forward test, run again
        if loader is None:
            if run.error:
                self._fail(run)
            raise CellError(f"cell {run.number} did not build `{h.loader}`")
        return loader

    def _losses(self) -> tuple[list[float], Callable[[], None]]:
        """Record every scalar loss a backward pass starts from (the AE cell keeps no list of them)."""
        seen: list[float] = []
        original = torch.Tensor.backward

        def backward(t, *args, **kwargs):
            if t.numel() == 1:
                seen.append(float(t.detach().cpu()))
            return original(t, *args, **kwargs)

        torch.Tensor.backward = backward
        return seen, lambda: setattr(torch.Tensor, "backward", original)

    def train_autoencoder(self, model, loader, epochs: int, learning_rate: float, device: str):
        h = self.handout
        cell = self.role_cells("ae_training")[0]
        name = self.names["autoencoder"]
        seen, restore = self._losses()
        try:
            with self.scoped(), self.bound({name: _always(model), h.loader: loader}):
                run = self.run_cell(cell, {h.epochs: int(epochs), h.learning_rate: float(learning_rate)}, None)
        finally:
            restore()
        if run.error:
            self._fail(run)
        return seen

    def generate_samples(self, model, n: int, nz: int, device: str):
        h = self.handout
        fn_name = h.sample_function
        fn = self.ns.get(fn_name)
        if not callable(fn):
            cell = self.role_cells("sampling")[0]["number"]
            if cell in self.skipped:
                raise CellError(f"the sampling cell (cell {cell}) was skipped, so `{fn_name}` is not defined")
            raise CellError(f"the sampling cell (cell {cell}) defines no function `{fn_name}`")
        out: list[Tensor] = []
        handle = model.decoder.register_forward_hook(lambda m, i, o: out.append(o))
        # the samples of whatever decodes the drawn latents (a global model's decoder, say): the
        # output of the first module called on a [*, nz] tensor, outermost first
        first: list[torch.nn.Module] = []
        elsewhere: list[Tensor] = []

        def pre(m, args):
            if not first and args and isinstance(args[0], Tensor) and args[0].dim() == 2 and args[0].shape[1] == nz:
                first.append(m)

        def post(m, args, o):
            if first and m is first[0] and not elsewhere:
                elsewhere.append(o)

        hooks = [
            torch.nn.modules.module.register_module_forward_pre_hook(pre),
            torch.nn.modules.module.register_module_forward_hook(post),
        ]
        self.phase(f"call {fn_name}")
        try:
            with self.bound({h.batch_size: int(n), h.nz: int(nz), h.device: torch.device(device)}):
                fn(model)
        except BaseException as e:  # noqa: BLE001  (the samples may be decoded before the plotting fails)
            if not out and not elsewhere:
                raise CellError(f"{fn_name}(model) raised {_describe(e)}\n{_tail(traceback.format_exc())}") from None
        finally:
            handle.remove()
            for hook in hooks:
                hook.remove()
            self.figures.take()
        if out:
            return out[0]
        return elsewhere[0] if elsewhere else None

    def train_vae(self, model, loader, epochs: int, learning_rate: float, device: str):
        h = self.handout
        beta = float(getattr(model, "beta", 0.0))
        name = self.names["vae"]
        since = len(self.figures.kept)
        seen = {"rec": [], "kl": []}
        cells = self.role_cells("vae_runs")
        function = h.run_function
        defining = next((c for c in cells if function and defines_function(c["text"], function)), None)
        keep = {name: _always(model), h.loader: loader}
        if defining is not None and callable(self.ns.get(function)):
            call = f"{function}({h.epochs}={epochs}, {h.learning_rate}={learning_rate:g}, {h.beta}={beta:g})"
            run = CellRun(int(defining["number"]), "vae_runs", substituted=[f"called {call}"])
            self.phase(f"call {function}")
            started = time.perf_counter()
            settings = {h.epochs: int(epochs), h.learning_rate: float(learning_rate), h.beta: beta}
            try:
                with self.scoped(), self.bound(keep):
                    self.ns[function](**settings)
            except BaseException as e:  # noqa: BLE001
                run.error, run.traceback = _describe(e), _tail(traceback.format_exc())
                raise CellError(f"{call} raised {run.error}\n{run.traceback}") from None
            finally:
                self.figures.take()
                run.seconds = round(time.perf_counter() - started, 3)
                self.runs.append(run)
        else:
            cell = next((c for c in cells if h.beta in c["text"]), cells[0])
            with self.scoped(), self.bound(keep):
                run = self.run_cell(
                    cell, {h.epochs: int(epochs), h.learning_rate: float(learning_rate), h.beta: beta}, None
                )
                # 2020/2022 keep the lists as globals: the plotted ones are the same values
                for key, var in zip(("rec", "kl"), h.loss_lists, strict=True):
                    values = self.ns.get(var)
                    if isinstance(values, list):
                        seen[key] = values
            if run.error:
                self._fail(run)
        plotted = self.figures.curves(since)
        return plotted.get("rec") or seen["rec"], plotted.get("kl") or seen["kl"]

    # -- what the probes see

    def expose(self, names: dict[str, str]) -> types.ModuleType:
        """The module with the folder format's names bound to adapters, for the cells that exist."""
        self.names = names
        for key, (role, method) in ADAPTERS.items():
            if self.role_cells(role):
                self.ns[names[key]] = getattr(self, method)
        return self.module

    def cell_runs(self) -> list[dict]:
        return [r.to_json() for r in self.runs]


_MISSING = object()
UNCOMPILABLE = (ValueError, MemoryError, RecursionError)  # beside SyntaxError: what compile() raises on a cell

# What free_unread may free: a model's weights, an optimizer (it holds the weights too).
HEAVY = (torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)
# The folder format's name each adapter stands for -> the role of the cells it runs and its method
# (harness.config.assignment.REQUIRED_ROLES: a [notebook] without one of these roles does not load).
ADAPTERS = {
    "data_loader": ("forward_test", "make_data_loader"),
    "train_autoencoder": ("ae_training", "train_autoencoder"),
    "generate_samples": ("sampling", "generate_samples"),
    "train_vae": ("vae_runs", "train_vae"),
}
RERUN_ROLES = ("forward_test", "ae_training", "vae_runs")  # the cells expose()'s adapters run again
DYNAMIC = frozenset({"globals", "vars", "locals", "dir", "eval", "exec", "__import__", "__builtins__"})
ANALYSIS_RECURSION_LIMIT = 1000  # Python's default


def names_read_later(cells: list[dict], rerun_roles: tuple[str, ...]) -> set[str] | None:
    """Every global name code run after the definition pass may read: a name any function,
    lambda or class body of any cell reads as a global (``symtable``: locals such as
    ``run_with_beta``'s own ``vae_model`` are not reads), and a name a rerun cell's top-level code
    reads before the cell itself binds it (the AE cell's ``ae_model = AutoEncoder(nz)`` reads
    ``AutoEncoder`` and ``nz``; its later ``ae_model.train()`` reads its own). ``None`` when some
    cell looks globals up by string (``globals()``, ``eval``, ``f.__globals__``): then any name may
    be read; also when a cell is too deep to analyse. ``cells``: those that compiled."""
    limit = sys.getrecursionlimit()
    try:
        # a cell may have raised the limit: symtable's C recursion must not overflow the stack
        sys.setrecursionlimit(min(limit, ANALYSIS_RECURSION_LIMIT))
        return _names_read(cells, rerun_roles)
    except (SyntaxError, *UNCOMPILABLE):  # a cell that compiled, too deep under the analysis's limit
        return None
    finally:
        sys.setrecursionlimit(limit)


def _names_read(cells: list[dict], rerun_roles: tuple[str, ...]) -> set[str] | None:
    read: set[str] = set()
    for cell in cells:
        table = symtable.symtable(cell["text"], f"<cell {cell['number']}>", "exec")
        tree = ast.parse(cell["text"])
        if any(_looks_up_by_string(node) for node in ast.walk(tree)):
            return None
        scopes = list(table.get_children())
        while scopes:
            scope = scopes.pop()
            for sym in scope.get_symbols():
                if (
                    (sym.is_referenced() and sym.is_global())
                    or sym.is_declared_global()  # `global x; del x`
                    or (scope.get_type() == "class" and sym.is_referenced())  # `model = model` in a class body
                ):
                    read.add(sym.get_name())
            scopes.extend(scope.get_children())
        if cell.get("role") in rerun_roles:
            read |= _read_before_bound(tree)
    return read


def _looks_up_by_string(node: ast.AST) -> bool:
    """``globals()``, ``builtins.eval``, ``f.__globals__``, ``frame.f_globals``, ``from builtins import ...``."""
    if isinstance(node, ast.Name):
        return node.id in DYNAMIC
    if isinstance(node, ast.Attribute):  # not `model.eval()`: `builtins.eval` needs `import builtins`
        return node.attr in ("__globals__", "f_globals")
    if isinstance(node, ast.ImportFrom):
        return node.module == "builtins"
    if isinstance(node, ast.Import):
        return any(a.name == "builtins" for a in node.names)
    return False


def _read_before_bound(tree: ast.Module) -> set[str]:
    """Names top-level statements read before an earlier top-level statement bound them for
    sure (an assignment, import, def or class; a name bound inside a block may not be)."""
    bound: set[str] = set()
    read: set[str] = set()
    for stmt in tree.body:
        read |= _top_level_loads(stmt) - bound
        if isinstance(stmt, ast.Assign):
            bound |= {name for t in stmt.targets for name in _bound_by(t)}
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:  # `x: int` alone binds nothing
            bound |= set(_bound_by(stmt.target))
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in stmt.names}
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(stmt.name)
    return read


def _bound_by(target: ast.expr) -> list[str]:
    """The names an assignment target binds: ``a``, ``a, *b``; not ``a.x`` or ``d[k]``."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for t in target.elts for name in _bound_by(t)]
    if isinstance(target, ast.Starred):
        return _bound_by(target.value)
    return []


def _top_level_loads(node: ast.AST) -> set[str]:
    """Names ``node`` loads when it runs, leaving out function and class bodies (symtable's part).
    A stack, not recursion: a student's expression may nest deeper than Python's recursion limit."""
    loads: set[str] = set()
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, (ast.Load, ast.Del)):  # `del model` needs it there too
                loads.add(node.id)
            continue
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            loads.add(node.target.id)  # `x += 1` reads x
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            parts = [*getattr(node, "decorator_list", []), *node.args.defaults, *node.args.kw_defaults]
        elif isinstance(node, ast.ClassDef):
            parts = [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]
        else:
            parts = list(ast.iter_child_nodes(node))
        stack.extend(p for p in parts if p is not None)
    return loads


def release_memory() -> None:
    """Give the pages the C heap holds free back to the system (glibc's ``malloc_trim``): what a
    notebook's cells freed (the definition pass's figures and batches, a training run's loss lists
    and optimizer) would otherwise stay in the unit's memory beside what the next step allocates."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _always(model) -> Callable:
    """Stands in for the notebook's model class while a probe trains: ``AutoEncoder(nz)`` in the
    training cell gives the probe's model, whatever its arguments."""
    return lambda *args, **kwargs: model


def load_cells(path: Path) -> Cells:
    """The cells the host wrote (``harness.sandbox.host.write_cells``), with the handout's names."""
    written = json.loads(Path(path).read_text())
    return Cells(written["cells"], notebook_names(written.get("names", {}), str(path)))


LIGHT = "__harness_light__"  # marks the light torchvision package (light_torchvision)


def light_torchvision() -> types.ModuleType:
    """torchvision for a notebook unit, without running its package ``__init__``: that imports
    every model and ``torch._dynamo`` (150 MB and a second per unit) for notebooks that use
    ``transforms.ToTensor`` and ``utils.make_grid``. Its sub-modules load from the real package
    on first use (``import torchvision.models`` still works). A torchvision already imported is
    returned as it is."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    import importlib
    import importlib.metadata
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    package = types.ModuleType("torchvision")
    package.__path__ = list(spec.submodule_search_locations or [])
    package.__file__ = spec.origin
    package.__version__ = importlib.metadata.version("torchvision")
    setattr(package, LIGHT, True)
    package.__getattr__ = lambda name: importlib.import_module(f"torchvision.{name}")
    sys.modules["torchvision"] = package
    import torchvision.transforms  # noqa: F401
    import torchvision.utils  # noqa: F401

    return package


def _only_mnist(name: str):
    raise AttributeError(
        f"torchvision.datasets.{name}: only MNIST exists in the sandbox, from the harness's images (no network)"
    )


def preload() -> None:
    """What every notebook unit imports, imported once by the supervisor before it forks them."""
    os.environ["MPLBACKEND"] = "Agg"
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot  # noqa: F401

    light_torchvision()
    # The handout builds an optimizer in its AE cell, run in every unit's definition pass; the first
    # optimizer a process builds imports torch._dynamo (a second and 150 MB): once, here.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
