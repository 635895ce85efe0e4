"""Completed notebooks built from the course's real handouts, for tests that read or grade notebooks.

A plain helper module (not a test file). The handouts live outside the repository, in
``../shared/handouts`` (``HANDOUTS``); callers skip when it is absent. Nothing here is written into
the repository: :func:`complete` edits the handout's cells in memory.

- :func:`complete` fills every TODO region of a handout with correct code (the template's own lines,
  ``epochs = 10``, the loop headers, the plotting code, stay exactly as they are) and types a good
  answer (the example submission's ``answers.md``) after each question's Answer line. No outputs are
  added; cell ids and metadata are the handout's.
- Drift variants (``with_badge_cell``, ``with_answer_cells``, ...): ``f(nb) -> nb``, each returns an
  edited deep copy, as real notebooks drift from the template (handouts README).
- Planted bugs: :func:`bugs` ``(year)`` maps a bug name to (the rubric items it must cost, exact
  ``(old, new)`` edits of the completed notebook's code cells); :func:`planted` applies them, each
  ``old`` occurring exactly once across the code cells.
"""

from __future__ import annotations

import copy
import re
import uuid
from collections.abc import Callable
from functools import cache
from pathlib import Path

import nbformat

HANDOUTS = Path(__file__).parents[2] / "shared" / "handouts"
YEARS = ("2020", "2022", "2026")
CONFIG = {"2020": "variant-a", "2022": "variant-a", "2026": "variant-b"}
ANSWERS_MD = Path(__file__).parents[1] / "submissions" / "example" / "answers.md"

Edits = list[tuple[str, str]]


# --------------------------------------------------------------------------- reading


def handout(year: str) -> nbformat.NotebookNode:
    """The blank handout of ``year``, as released."""
    return nbformat.read(HANDOUTS / f"handout-{year}.ipynb", as_version=4)


def cells(nb: nbformat.NotebookNode) -> list[tuple[int, str, str]]:
    """``(number, cell_type, source)`` triples, numbered from 1, as harness.submission.cells takes them."""
    return [(i, c.cell_type, c.source) for i, c in enumerate(nb.cells, 1)]


@cache
def example_answers() -> dict[str, str]:
    """Question id -> the example submission's answer (full points), from its answers.md."""
    text = ANSWERS_MD.read_text()
    parts = re.split(r"^## (\S+)\s*$", text, flags=re.M)
    return {qid: body.strip() for qid, body in zip(parts[1::2], parts[2::2], strict=True)}


# --------------------------------------------------------------------------- editing


def replace_once(nb: nbformat.NotebookNode, old: str, new: str, kind: str = "code") -> None:
    """Replace ``old`` by ``new`` in the one ``kind`` cell holding it; ``old`` must occur exactly once
    across those cells."""
    found = [(c, c.source.count(old)) for c in nb.cells if c.cell_type == kind and old in c.source]
    total = sum(n for _, n in found)
    assert total == 1, f"{old!r} occurs {total} times in the notebook's {kind} cells"
    cell = found[0][0]
    cell.source = cell.source.replace(old, new)


def apply(nb: nbformat.NotebookNode, edits: Edits) -> nbformat.NotebookNode:
    """A deep copy of ``nb`` with the exact edits applied in order (each ``old`` once)."""
    nb = copy.deepcopy(nb)
    for old, new in edits:
        replace_once(nb, old, new)
    return nb


def _indent(block: str, spaces: int) -> str:
    return "\n".join((" " * spaces + line) if line else line for line in block.splitlines())


def _new_cell(nb: nbformat.NotebookNode, cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``cell`` made fit for ``nb``: no id before nbformat 4.5 (the handouts are 4.0 / 4.1), a fresh one after."""
    cell = copy.deepcopy(cell)
    if (nb.nbformat, nb.nbformat_minor) >= (4, 5):
        cell["id"] = uuid.uuid4().hex[:8]
    else:
        cell.pop("id", None)
    return cell


# --------------------------------------------------------------------------- the solution

# Layer geometry per config: (in, out, kernel, stride, padding[, output_padding]); shapes verified by
# running (28 -> 14 -> 7 -> 3 -> 1 and back for variant-a; 28 -> 13 -> 6 -> 2 -> 1 and back for variant-b).
ENCODER = {
    "variant-a": [(1, 32, 4, 2, 1), (32, 64, 4, 2, 1), (64, 128, 3, 2, 0), (128, 256, 3, 1, 0)],
    "variant-b": [(1, 48, 4, 2, 0), (48, 96, 4, 2, 1), (96, 192, 3, 2, 0), (192, 384, 3, 2, 1)],
}
DECODER = {
    "variant-a": [(256, 128, 3, 1, 0, 0), (128, 64, 3, 2, 0, 0), (64, 32, 4, 2, 1, 0), (32, 1, 4, 2, 1, 0)],
    "variant-b": [(384, 192, 3, 2, 1, 1), (192, 96, 4, 2, 0, 0), (96, 48, 4, 2, 1, 1), (48, 1, 4, 2, 0, 0)],
}


def _encoder_layers(config: str) -> str:
    lines = []
    for i, (cin, cout, k, s, p) in enumerate(ENCODER[config]):
        lines.append(f"nn.Conv2d({cin}, {cout}, kernel_size={k}, stride={s}, padding={p}),")
        if i > 0:
            lines.append(f"nn.BatchNorm2d({cout}),")
        lines.append("nn.LeakyReLU(0.2),")
    width = ENCODER[config][-1][1]
    lines += ["nn.Flatten(),", f"nn.Linear({width}, nz),"]
    return "\n".join(lines)


def _decoder_layers(config: str) -> str:
    width = DECODER[config][0][0]
    lines = [f"nn.BatchNorm2d({width}),", "nn.LeakyReLU(0.2),"]
    last = len(DECODER[config]) - 1
    for i, (cin, cout, k, s, p, op) in enumerate(DECODER[config]):
        extra = f", output_padding={op}" if op else ""
        lines.append(f"nn.ConvTranspose2d({cin}, {cout}, kernel_size={k}, stride={s}, padding={p}{extra}),")
        if i < last:
            lines += [f"nn.BatchNorm2d({cout}),", "nn.LeakyReLU(0.2),"]
    lines.append("nn.Sigmoid(),")
    return "\n".join(lines)


_EMPTY_NET = "    self.net = nn.Sequential(\n        # add your network layers here\n        # ...\n    )"

AE_LOOP = """\
for sample_img, _ in mnist_data_loader:
  sample_img = sample_img.to(device)
  rec = ae_model(sample_img)
  rec_loss = criterion(rec, sample_img)
  opt.zero_grad()
  rec_loss.backward()
  opt.step()"""

VAE_LOOP = """\
for sample_img, _ in mnist_data_loader:
  sample_img = sample_img.to(device)
  outputs = vae_model(sample_img)
  total_loss, losses = vae_model.loss(sample_img, outputs)
  opt.zero_grad()
  total_loss.backward()
  opt.step()"""

# The VAE cell's TODO code, keyed by the template's placeholder line (2-space indented class body).
VAE_FILLS = [
    (
        "    self.encoder = None\n    self.decoder = None",
        "    self.encoder = Encoder(2 * nz)\n    self.decoder = Decoder(nz)",
    ),
    (
        "    q = None       # output of encoder (concatenated mean and log_sigma)",
        "    q = self.encoder(x)       # output of encoder (concatenated mean and log_sigma)\n"
        "    mu, log_sigma = q[:, :nz], q[:, nz:]",
    ),
    (
        "    z = None       # batch of sampled embeddings",
        "    z = mu + torch.exp(log_sigma) * torch.randn_like(mu)       # batch of sampled embeddings",
    ),
    (
        "    reconstruction = None   # decoder reconstruction from embedding",
        "    reconstruction = self.decoder(z)   # decoder reconstruction from embedding",
    ),
    ("    rec_loss = None\n", "    rec_loss = nn.functional.mse_loss(outputs['rec'], x)\n"),
    (
        "    kl_loss = None      # make sure that this is a scalar, not a vector / array",
        "    mu, log_sigma = outputs['q'][:, :nz], outputs['q'][:, nz:]\n"
        "    kl_loss = kl_divergence(mu, log_sigma, torch.zeros_like(mu), torch.zeros_like(log_sigma))"
        ".sum(dim=1).mean()      # make sure that this is a scalar, not a vector / array",
    ),
    (
        "    reconstruction = None\n",
        "    reconstruction = self.decoder(self.encoder(x)[:, :nz])\n",
    ),
]


def solution_edits(year: str, tuned_beta: str = "1e-4") -> Edits:
    """The exact edits that turn the ``year`` handout's code cells into a correct solution."""
    config = CONFIG[year]
    new = year == "2026"
    map_line = "    self.map = None   # for initial Linear layer" + (
        " <-- Don't forget to fill this in too!" if new else ""
    )
    width = DECODER[config][0][0]
    opt_indent, loop_indent = (2, 4) if new else (0, 2)  # 2026's VAE loop sits inside run_with_beta
    sample = (
        "torch.randn(batch_size, nz, generator=gen).to(device)" if new else "torch.randn(batch_size, nz, device=device)"
    )
    edits: Edits = [
        # decoder first: its empty net follows the map line; the encoder's is then the only one left
        (
            f"{map_line}\n{_EMPTY_NET}",
            f"    self.map = nn.Linear(nz, {width})   # for initial Linear layer\n"
            f"    self.net = nn.Sequential(\n{_indent(_decoder_layers(config), 8)}\n    )",
        ),
        (_EMPTY_NET, f"    self.net = nn.Sequential(\n{_indent(_encoder_layers(config), 8)}\n    )"),
        (
            "mnist_data_loader = None\n",
            "mnist_data_loader = torch.utils.data.DataLoader(mnist_train, batch_size=batch_size, shuffle=True, "
            "num_workers=nworkers)\n",
        ),
        (
            "opt = None          # create optimizer instance\ncriterion = None    # create loss layer instance",
            "opt = torch.optim.Adam(ae_model.parameters(), lr=learning_rate)          # create optimizer instance\n"
            "criterion = nn.MSELoss()    # create loss layer instance",
        ),
        (
            "  for None in None:\n    # add training loop commands here\n    # ...\n",
            _indent(AE_LOOP, 2) + "\n",
        ),
        (
            "  sampled_embeddings = None    # sample batch of embedding from prior\n"
            "  decoded_samples = None       # decoder output images for sampled embeddings",
            f"  sampled_embeddings = {sample}    # sample batch of embedding from prior\n"
            "  decoded_samples = model.decoder(sampled_embeddings)    # decoder output images for sampled embeddings",
        ),
        *VAE_FILLS,
        (
            "\n" + " " * opt_indent + "opt = None\n",
            "\n" + " " * opt_indent + "opt = torch.optim.Adam(vae_model.parameters(), lr=learning_rate)\n",
        ),
        (
            _indent("for None in None:\n  # add VAE training loop commands here\n  # ...", loop_indent) + "\n",
            _indent(VAE_LOOP, loop_indent) + "\n",
        ),
    ]
    if new:
        edits += [
            (
                "beta =             # HINT: Set your beta to 10 here",
                "beta = 10          # HINT: Set your beta to 10 here",
            ),
            ("epochs =           # <--- Set your epochs here!", "epochs = 20        # <--- Set your epochs here!"),
            ("beta =             # <--- Try different values of beta here!", f"beta = {tuned_beta}"),
        ]
    else:
        # the one VAE cell, as the student leaves it after the last (tuned) run
        edits += [
            (
                "epochs = 5         # using 5 epochs is sufficient",
                "epochs = 20        # using 5 epochs is sufficient",
            ),
            ("\nbeta = 0.0\n", f"\nbeta = {tuned_beta}\n"),
        ]
    return edits


def _question_cells(nb: nbformat.NotebookNode, year: str) -> dict[str, int]:
    """Question id -> index (0-based) of its markdown cell, by the config's anchors."""
    from harness.config.assignment import load_assignment
    from harness.submission.cells import map_roles

    a = load_assignment(CONFIG[year])
    cell_map = map_roles(cells(nb), a.notebook)
    found = {}
    for q in a.questions:
        number = cell_map.cell(f"question.{q.id}")
        assert number is not None, f"{year}: no cell holds question {q.id}"
        found[q.id] = number - 1
    return found


def _with_answer(source: str, answer: str) -> str:
    """``source`` with ``answer`` typed on the lines after its Answer line."""
    from harness.submission.notebook_answers import answer_line

    index = answer_line(source)
    assert index is not None, f"no Answer line in {source[:80]!r}"
    lines = source.splitlines()
    return "\n".join([*lines[: index + 1], answer, *lines[index + 1 :]])


def complete(year: str, tuned_beta: str = "1e-4") -> nbformat.NotebookNode:
    """The ``year`` handout with every TODO region filled correctly and every question answered;
    2020/2022 end with the tuned run (epochs = 20, ``beta = tuned_beta``), 2026 has beta = 10 in its
    second run cell and epochs = 20, ``beta = tuned_beta`` in the tuning cell. Filled cells lose the
    outputs the handout shipped with (2026's loader cell holds the staff's TypeError); others keep them."""
    blank = handout(year)
    nb = apply(blank, solution_edits(year, tuned_beta))
    for cell, before in zip(nb.cells, blank.cells, strict=True):
        if cell.cell_type == "code" and cell.source != before.source:
            # 2026 ships staff outputs, among them a TypeError in the loader cell: stale once filled
            cell.outputs, cell.execution_count = [], None
    answers = example_answers()
    for qid, index in _question_cells(nb, year).items():
        nb.cells[index].source = _with_answer(nb.cells[index].source, answers[qid])
    return nb


def write(nb: nbformat.NotebookNode, path: Path) -> Path:
    """Write ``nb`` to ``path`` (nbformat), returning the path."""
    path = Path(path)
    nbformat.write(nb, str(path))
    return path


# --------------------------------------------------------------------------- drift variants


def _year_of(nb: nbformat.NotebookNode) -> str:
    """Which handout ``nb`` came from: 2026 has run_with_beta; 2020/2022 share the code (2020 is returned)."""
    return "2026" if any("def run_with_beta(" in c.source for c in nb.cells if c.cell_type == "code") else "2020"


def with_badge_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A markdown cell with a Colab badge inserted at index 0."""
    nb = copy.deepcopy(nb)
    badge = nbformat.v4.new_markdown_cell(
        '<a href="https://colab.research.google.com/github/student/hw/blob/main/VAE.ipynb" target="_parent">'
        '<img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>'
    )
    badge.metadata = {"id": "view-in-github", "colab_type": "text"}
    nb.cells.insert(0, _new_cell(nb, badge))
    return nb


def with_answer_cells(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Each answer moved into a new markdown cell right after its question cell, whose Answer line
    is left empty (the handout's question text)."""
    from harness.submission.notebook_answers import after_answer_line, answer_line

    nb = copy.deepcopy(nb)
    questions = _question_cells(nb, _year_of(nb))
    for index in sorted(questions.values(), reverse=True):
        cell = nb.cells[index]
        answer = after_answer_line(cell.source)
        lines = cell.source.splitlines()
        cell.source = "\n".join(lines[: answer_line(cell.source) + 1])
        nb.cells.insert(index + 1, _new_cell(nb, nbformat.v4.new_markdown_cell(answer)))
    return nb


def with_duplicated_interpolation(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The interpolation cell copied right after itself with other labels (1 -> 7)."""
    nb = copy.deepcopy(nb)
    index = next(
        i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "def interpolate_and_visualize(" in c.source
    )
    dup = _new_cell(nb, nb.cells[index])
    source = re.sub(r"^START_LABEL = \d+$", "START_LABEL = 1", dup.source, count=1, flags=re.M)
    dup.source = re.sub(r"^END_LABEL = \d+$", "END_LABEL = 7", source, count=1, flags=re.M)
    assert dup.source != nb.cells[index].source
    dup.outputs, dup.execution_count = [], None
    nb.cells.insert(index + 1, dup)
    return nb


def with_null_counts(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Every code cell's execution_count None."""
    nb = copy.deepcopy(nb)
    for c in nb.cells:
        if c.cell_type == "code":
            c.execution_count = None
            for o in c.get("outputs", []):
                if "execution_count" in o:
                    o.execution_count = None
    return nb


def stripped(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """All outputs (and execution counts) removed."""
    nb = copy.deepcopy(nb)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    return nb


def with_unguarded_cuda(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Unguarded ``.cuda()`` calls, as Colab students write: the models and every batch."""
    nb = copy.deepcopy(nb)
    replace_once(nb, "ae_model = AutoEncoder(nz).to(device)", "ae_model = AutoEncoder(nz).cuda()")
    replace_once(nb, "vae_model = VAE(nz, beta).to(device)", "vae_model = VAE(nz, beta).cuda()")
    changed = 0
    for c in nb.cells:
        if c.cell_type == "code" and "sample_img = sample_img.to(device)" in c.source:
            changed += c.source.count("sample_img = sample_img.to(device)")
            c.source = c.source.replace("sample_img = sample_img.to(device)", "sample_img = sample_img.cuda()")
    assert changed == 2, changed  # the AE loop and the VAE loop
    return nb


def with_savefig(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Every ``plt.show()`` replaced by ``plt.savefig("fig.png")``."""
    nb = copy.deepcopy(nb)
    for c in nb.cells:
        if c.cell_type == "code":
            c.source = c.source.replace("plt.show()", 'plt.savefig("fig.png")')
    return nb


def with_magics(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """IPython magics and shell lines added to some cells (2020/2022 already hold
    ``%matplotlib inline`` / ``%load_ext autoreload`` in their first code cell)."""
    nb = copy.deepcopy(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    first = code[0]
    if "%load_ext autoreload" not in first.source:
        first.source += "\n%load_ext autoreload\n%autoreload 2"
    data = next(c for c in code if "mnist_train = torchvision.datasets.MNIST(" in c.source)
    data.source = "!pip install torch torchvision\n" + data.source
    test = next(c for c in code if "for sample_img, sample_label in mnist_data_loader:" in c.source)
    test.source = test.source + "\n!ls ./data\n%time x = 1"
    return nb


VARIANTS: dict[str, Callable[[nbformat.NotebookNode], nbformat.NotebookNode]] = {
    "badge_cell": with_badge_cell,
    "answer_cells": with_answer_cells,
    "duplicated_interpolation": with_duplicated_interpolation,
    "null_counts": with_null_counts,
    "stripped": stripped,
    "unguarded_cuda": with_unguarded_cuda,
    "savefig": with_savefig,
    "magics": with_magics,
}


def drifted(year: str) -> nbformat.NotebookNode:
    """:func:`complete` with every real-world drift at once: a badge cell and answer cells inserted,
    the interpolation cell duplicated, no execution counts, no outputs, unguarded ``.cuda()``,
    ``savefig`` instead of ``show`` and magics (2020/2022 also plot loss tensors that require grad)."""
    nb = complete(year)
    for variant in (
        with_badge_cell,
        with_answer_cells,
        with_duplicated_interpolation,
        with_null_counts,
        stripped,
        with_unguarded_cuda,
        with_savefig,
        with_magics,
    ):
        nb = variant(nb)
    return nb


# --------------------------------------------------------------------------- planted bugs


def bugs(year: str) -> dict[str, tuple[tuple[str, ...], Edits]]:
    """Bug name -> (the one rubric item it must cost, exact edits of :func:`complete`'s code cells),
    mirroring the folder-format bugs of tests/test_checks.py and tests/test_grade_planted.py. The same
    bugs for every year; the edit strings follow each handout's layers and indentation."""
    config = CONFIG[year]
    vae = "    " if year == "2026" else "  "  # the VAE loop header's indentation (its body is 2 deeper)
    c3 = ENCODER[config][2][1]  # e.g. 128
    enc3 = "nn.Conv2d({}, {}, kernel_size={}, stride={}, padding={}),".format(*ENCODER[config][2])
    d2 = DECODER[config][1]  # e.g. (128, 64, 3, 2, 0, 0)
    d3 = DECODER[config][2]
    wrong = d2[1] - 16  # 48 instead of 64 (variant-a), 80 instead of 96 (variant-b)

    def convt(cin: int, cout: int, k: int, s: int, p: int, op: int) -> str:
        extra = f", output_padding={op}" if op else ""
        return f"nn.ConvTranspose2d({cin}, {cout}, kernel_size={k}, stride={s}, padding={p}{extra}),"

    dec_block = f"{convt(*d2)}\n        nn.BatchNorm2d({d2[1]}),\n        nn.LeakyReLU(0.2),\n        {convt(*d3)}"
    dec_wrong = (
        f"{convt(d2[0], wrong, *d2[2:])}\n        nn.BatchNorm2d({wrong}),\n        nn.LeakyReLU(0.2),\n"
        f"        {convt(wrong, *d3[1:])}"
    )
    return {
        "no-zero-grad": (
            ("ae_training",),
            [("    opt.zero_grad()\n    rec_loss.backward()", "    rec_loss.backward()")],
        ),
        "no-optimizer-step": (
            ("ae_training",),
            [("    rec_loss.backward()\n    opt.step()", "    rec_loss.backward()")],
        ),
        "hard-coded-lr": (
            ("ae_training",),
            [
                (
                    "torch.optim.Adam(ae_model.parameters(), lr=learning_rate)",
                    "torch.optim.Adam(ae_model.parameters(), lr=0.01)",
                )
            ],
        ),
        "loader-not-shuffled": (("ae_forward",), [("shuffle=True", "shuffle=False")]),
        "uniform-prior-draws": (
            ("ae_sampling",),
            [("sampled_embeddings = torch.randn(", "sampled_embeddings = torch.rand(")],
        ),
        "missing-batch-norm": (
            ("ae_architecture",),
            [(f"{enc3}\n        nn.BatchNorm2d({c3}),\n", f"{enc3}\n")],
        ),
        "wrong-decoder-channels": (("ae_architecture",), [(dec_block, dec_wrong)]),
        "sigma-without-exp": (
            ("vae_model",),
            [("z = mu + torch.exp(log_sigma) * torch.randn_like(mu)", "z = mu + log_sigma * torch.randn_like(mu)")],
        ),
        "kl-reversed": (
            ("vae_model",),
            [
                (
                    "kl_divergence(mu, log_sigma, torch.zeros_like(mu), torch.zeros_like(log_sigma))",
                    "kl_divergence(torch.zeros_like(mu), torch.zeros_like(log_sigma), mu, log_sigma)",
                )
            ],
        ),
        "l1-reconstruction": (
            ("vae_model",),
            [("nn.functional.mse_loss(outputs['rec'], x)", "nn.functional.l1_loss(outputs['rec'], x)")],
        ),
        "reconstruct-samples": (
            ("vae_model",),
            [("reconstruction = self.decoder(self.encoder(x)[:, :nz])", "reconstruction = self.forward(x)['rec']")],
        ),
        # the harness's loop then trains the tuned VAE: its results are not the student's (docs/checks.md)
        "vae-loop-without-backward": (
            ("vae_training", "beta_tuning", "interpolation"),
            [(f"\n{vae}  total_loss.backward()", "")],
        ),
    }


def planted(year: str, bug: str) -> nbformat.NotebookNode:
    """:func:`complete` ``(year)`` with the bug's edits applied (each ``old`` exactly once)."""
    return apply(complete(year), bugs(year)[bug][1])
