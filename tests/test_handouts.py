"""Each bundled config against the real handout notebook it follows, line by line.

The notebooks live outside the repository, in ``../shared/handouts`` (never committed here).
Nothing below hard-codes a handout value: the expected values are parsed from the notebook's
cells, found by their content (``class Encoder``, ``ae_model = AutoEncoder``, ``START_LABEL``,
``Inline Question``), never by position, and compared with the loaded Assignment. A
disagreement names the config key and the handout line that says otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from harness.config.assignment import Assignment, LayerSpec, load_assignment

HANDOUTS = Path(__file__).parents[2] / "shared" / "handouts"
if not HANDOUTS.is_dir():
    pytest.skip(
        "../shared/handouts not found: the handout notebooks are needed to check the bundled configs",
        allow_module_level=True,
    )

CONFIGS = {"handout-2020": "variant-a", "handout-2022": "variant-a", "handout-2026": "variant-b"}
NAMES = sorted(CONFIGS)

# The section headings' [Npt] belong to these rubric items (headings are matched by their words,
# the points are read from the notebook). A heading with points that is not listed here fails.
HEADING_ITEMS = {
    "Defining the Auto-Encoder Architecture": "ae_architecture",
    "Testing the Auto-Encoder Forward Pass": "ae_forward",
    "Setting up the Auto-Encoder Training Loop": "ae_training",
    "Sampling from the Auto-Encoder": "ae_sampling",
    "Defining the VAE Model": "vae_model",
    "Setting up the VAE Training Loop": "vae_training",
    "Tuning the beta-factor": "beta_tuning",
    "Embedding Space Interpolation": "interpolation",
}
ACTIVATIONS = {"LeakyReLU": "leaky_relu", "ReLU": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}


# --------------------------------------------------------------------------- notebook access


@dataclass
class Handout:
    name: str
    cells: list  # nbformat cells

    def sources(self, kind: str = "code") -> list[str]:
        return [c.source for c in self.cells if c.cell_type == kind]

    def cell(self, *needles: str, kind: str = "code") -> str:
        """The one cell of this kind that contains every needle."""
        found = [s for s in self.sources(kind) if all(n in s for n in needles)]
        assert len(found) == 1, f"{self.name}: {len(found)} {kind} cells contain {needles!r}, expected one"
        return found[0]


_loaded: dict[str, Handout] = {}


def handout(name: str) -> Handout:
    if name not in _loaded:
        nb = nbformat.read(HANDOUTS / f"{name}.ipynb", as_version=4)
        _loaded[name] = Handout(name, list(nb.cells))
    return _loaded[name]


def assignment_for(name: str) -> Assignment:
    return load_assignment(CONFIGS[name])


def assignment_line(source: str, name: str) -> tuple[str, str]:
    """``name = value  # comment`` at the start of a line: (value, the whole line); value "" when blank."""
    m = re.search(rf"^[ \t]*{re.escape(name)}[ \t]*=(?!=)[ \t]*([^#\n]*?)[ \t]*(#.*)?$", source, flags=re.MULTILINE)
    assert m, f"no `{name} =` line in the handout cell that starts {source[:60]!r}"
    return m.group(1), m.group(0).strip()


class Mismatches:
    """Collects every disagreement so one run lists them all."""

    def __init__(self, handout_name: str):
        self.name, self.config, self.lines = handout_name, CONFIGS[handout_name], []

    def check(self, key: str, config_value, handout_value, handout_line: str) -> None:
        if config_value != handout_value:
            self.lines.append(
                f"{self.config}.toml {key} = {config_value!r}, "
                f"but {self.name} says {handout_value!r} in {handout_line!r}"
            )

    def fail(self, message: str) -> None:
        self.lines.append(message)

    def done(self) -> None:
        assert not self.lines, "\n".join(self.lines)


# --------------------------------------------------------------------------- layer tables


@dataclass
class TableLayer:
    """One layer of the handout's comment table, with the lines that state it."""

    kind: str
    out_channels: int | str  # "nz" for the encoder's latent head
    out_resolution: int | None
    kernel: int | None
    lines: list[str]
    batch_norm: bool = False
    activation: str = "none"
    stated_after: bool = True  # False when "..." follows: its batch norm and activation are not stated


@dataclass
class Table:
    entries: list = field(default_factory=list)  # TableLayer, or "..." for an elided line


CORE = re.compile(
    r"^(?P<op>Conv2d|ConvT2d|Linear), (?:hidden|output) units: (?P<units>\w+)"
    r"(?: \(.*\))?(?:, output resolution: (?P<res>\d+)x(?P=res))?(?:, kernel: (?P<kernel>\d+))?$"
)


def parse_table(source: str, title: str) -> Table:
    """The ``#   - ...`` lines under ``# <title>:`` of the model cell."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"# {title}"))
    table, layer = Table(), None
    for raw in lines[start + 1 :]:
        m = re.match(r"^#\s+-\s+(.*?)\s*#$", raw)
        if not m:
            break
        text = m.group(1)
        if text == "...":
            if layer is not None:
                layer.stated_after = False
            table.entries.append("...")
            layer = None
        elif core := CORE.match(text):
            op, units = core["op"], core["units"]
            kind = {"Conv2d": "conv", "ConvT2d": "conv_transpose", "Linear": "linear"}[op]
            res = int(core["res"]) if core["res"] else (1 if kind == "linear" else None)
            layer = TableLayer(
                kind,
                int(units) if units.isdigit() else units,
                res,
                int(core["kernel"]) if core["kernel"] else None,
                [text],
            )
            table.entries.append(layer)
        elif shape := re.match(r"^Reshape, output shape: \((\d+), (\d+), (\d+)\)$", text):
            c, h, w = map(int, shape.groups())
            assert layer is not None and layer.kind == "linear" and h == w, f"unexpected reshape line {raw!r}"
            assert layer.out_channels == c * h * w, f"reshape {raw!r} does not match {layer.lines[0]!r}"
            layer.out_channels, layer.out_resolution = c, h
            layer.lines.append(text)
        elif text == "BatchNorm2d":
            assert layer is not None, raw
            layer.batch_norm = True
            layer.lines.append(text)
        elif (name := text.split(" ")[0]) in ACTIVATIONS:
            assert layer is not None, raw
            layer.activation = ACTIVATIONS[name]
            layer.lines.append(text)
        elif text == "Flatten":
            continue  # before the encoder's latent head; a linear layer flattens anyway
        else:
            raise AssertionError(f"unknown line in the handout's {title} table: {raw!r}")
    return table


def compare_layer(check: Mismatches, key: str, spec: LayerSpec, row: TableLayer) -> None:
    where = " / ".join(row.lines)
    check.check(f"{key}.kind", spec.kind, row.kind, where)
    check.check(f"{key}.out_channels", spec.out_channels, row.out_channels, where)
    check.check(f"{key}.out_resolution", spec.out_resolution, row.out_resolution, where)
    if row.kernel is not None:
        check.check(f"{key}.kernel", spec.kernel, row.kernel, where)
    if row.stated_after:
        check.check(f"{key}.batch_norm", spec.batch_norm, row.batch_norm, where)
        check.check(f"{key}.activation", spec.activation, row.activation, where)
    # a field the handout states is not open
    stated = {"kernel"} if row.kernel is not None else set()
    if row.stated_after:
        stated.add("batch_norm")
    for name in sorted(stated & set(spec.open)):
        check.fail(f"{check.config}.toml {key}.open lists {name!r}, but {check.name} states it: {where!r}")


@pytest.mark.parametrize("name", NAMES)
def test_encoder_table_matches_the_config(name):
    h, a = handout(name), assignment_for(name)
    source = h.cell("class Encoder", "class Decoder")
    table = parse_table(source, "Encoder Architecture")
    check = Mismatches(name)
    assert "..." not in table.entries, f"{name}: the encoder table elides a line; the test cannot place it"
    *layers, head = table.entries
    check.check("model.nz (encoder head)", "nz", head.out_channels, head.lines[0])
    nz = assignment_line(h.cell("mnist_data_loader = ", "batch_size ="), "nz")
    check.check("model.nz", a.model.nz, int(nz[0]), nz[1])
    if len(layers) != len(a.model.encoder):
        check.fail(f"{check.config}.toml model.encoder has {len(a.model.encoder)} layers, {name}'s table {len(layers)}")
    for i, (spec, row) in enumerate(zip(a.model.encoder, layers, strict=False)):
        compare_layer(check, f"model.encoder[{i}]", spec, row)
    check.done()


@pytest.mark.parametrize("name", NAMES)
def test_decoder_table_matches_the_config_and_elided_layers_are_open(name):
    h, a = handout(name), assignment_for(name)
    source = h.cell("class Encoder", "class Decoder")
    table = parse_table(source, "Decoder Architecture")
    check = Mismatches(name)
    entries = table.entries
    gap = [i for i, e in enumerate(entries) if e == "..."]
    before = [e for e in entries[: gap[0] if gap else len(entries)] if e != "..."]
    after = [e for e in entries[gap[-1] + 1 :]] if gap else []
    decoder = a.model.decoder
    elided = decoder[len(before) : len(decoder) - len(after)]
    if gap and not elided:
        check.fail(f"{check.config}.toml model.decoder has no layer for the handout's '...' lines")
    if not gap and len(decoder) != len(before):
        check.fail(f"{check.config}.toml model.decoder has {len(decoder)} layers, {name}'s table {len(before)}")
    for i, row in enumerate(before):
        compare_layer(check, f"model.decoder[{i}]", decoder[i], row)
    for j, row in enumerate(after):
        i = len(decoder) - len(after) + j
        compare_layer(check, f"model.decoder[{i}]", decoder[i], row)

    # what "..." stands for: the mirror of the encoder ("Decoder Architecture (mirrors encoder
    # architecture)"), its kernel and batch norm unstated and so open in the config
    assert "mirrors encoder" in source
    mirror = [(s.out_channels, s.out_resolution) for s in reversed(a.model.encoder)][1:]
    for k, spec in enumerate(elided):
        i = len(before) + k
        key = f"model.decoder[{i}]"
        if i - 1 < len(mirror):
            check.check(
                f"{key} (out_channels, out_resolution)",
                (spec.out_channels, spec.out_resolution),
                mirror[i - 1],
                "the table's '...' lines, read as the encoder's mirror",
            )
        unstated = {"kernel", "batch_norm"} if spec.kind != "linear" else {"batch_norm"}
        if missing := sorted(unstated - set(spec.open)):
            check.fail(f"{check.config}.toml {key}.open lacks {missing}: {name} writes this layer as '...'")
    for i, spec in enumerate(decoder):
        if spec.open and spec not in elided:
            check.fail(f"{check.config}.toml model.decoder[{i}].open = {list(spec.open)}, but {name} states that layer")
    check.done()


# --------------------------------------------------------------------------- training


def vae_run_cells(h: Handout) -> list[str]:
    """The cells that set a VAE run's epochs / learning rate / beta (2020: the one training cell;
    2026: the calls of run_with_beta), in notebook order."""
    return [
        s
        for s in h.sources()
        if re.search(r"^beta\s*=", s, flags=re.MULTILINE)
        and ("VAE(nz, beta)" in s or re.search(r"^\S.*run_with_beta\(", s, flags=re.MULTILINE))
    ]


def cell_beta(source: str) -> tuple[float | None, str]:
    """A cell's beta: the literal, else the one its hint names ("Set your beta to 10")."""
    value, line = assignment_line(source, "beta")
    if value:
        return float(value), line
    hint = re.search(r"beta to (\d+(?:\.\d+)?)", line)
    return (float(hint.group(1)) if hint else None), line


@pytest.mark.parametrize("name", NAMES)
def test_ae_run_batch_size_and_workers_match(name):
    h, a = handout(name), assignment_for(name)
    check = Mismatches(name)
    ae_cell = h.cell("ae_model = AutoEncoder(nz)")
    for key, var, cast, value in (
        ("training.ae.epochs", "epochs", int, a.training.ae.epochs),
        ("training.ae.learning_rate", "learning_rate", float, a.training.ae.learning_rate),
    ):
        text, line = assignment_line(ae_cell, var)
        check.check(key, value, cast(text), line)
    loader = h.cell("mnist_data_loader = ", "batch_size =")
    for key, var, value in (
        ("training.batch_size", "batch_size", a.training.batch_size),
        ("training.num_workers", "nworkers", a.training.num_workers),
    ):
        text, line = assignment_line(loader, var)
        check.check(key, value, int(text), line)
    check.done()


@pytest.mark.parametrize("name", NAMES)
def test_vae_runs_match(name):
    h, a = handout(name), assignment_for(name)
    check = Mismatches(name)
    cells = vae_run_cells(h)
    assert cells, f"{name}: no VAE training cell found"
    by_beta = {}
    for source in cells:
        beta, _ = cell_beta(source)
        if beta is not None:
            by_beta.setdefault(beta, source)
    markdown = "\n".join(h.sources("markdown"))
    for i, run in enumerate(a.training.fixed):
        key = f"training.fixed[{i}]"
        source = by_beta.get(run.beta)
        if source is None:
            # 2020/2022: "Let's repeat the same experiment for $\beta = 10$ ... modify the $\beta$
            # value in the cell above and rerun it": the one VAE cell runs this beta too
            said = re.search(rf"\$\\beta = {run.beta:g}\$.*cell above and rerun it", markdown)
            if not said or len(cells) != 1:
                check.fail(f"{check.config}.toml {key}.beta = {run.beta:g}: {name} has no VAE run with that beta")
                continue
            source = cells[0]
        for var, cast, value in (("epochs", int, run.epochs), ("learning_rate", float, run.learning_rate)):
            text, line = assignment_line(source, var)
            check.check(f"{key}.{var}", value, cast(text), line)

    # the tuning run: the cell after the "Tuning the beta-factor" heading, else the last VAE cell
    # (2020/2022 tune in the same cell); its blank epochs default to the "N epochs are appropriate" hint
    tuned = cells[-1]
    text, line = assignment_line(tuned, "learning_rate")
    for key, value in (
        ("training.tuned.learning_rate", a.training.tuned.learning_rate),
        ("training.search.learning_rate", a.training.search.learning_rate),
    ):
        check.check(key, value, float(text), line)
    text, line = assignment_line(tuned, "epochs")
    hint = re.search(r"(\d+) epochs are appropriate", tuned)
    if text and len(cells) > 1:
        check.check("training.tuned.epochs", a.training.tuned.epochs, int(text), line)
    else:
        assert hint, f"{name}: the tuning cell gives neither epochs nor the 'N epochs are appropriate' hint"
        check.check("training.tuned.epochs", a.training.tuned.epochs, int(hint.group(1)), hint.group(0))
    check.done()


# --------------------------------------------------------------------------- sampling, interpolation


@pytest.mark.parametrize("name", NAMES)
def test_sampling_and_interpolation_match(name):
    h, a = handout(name), assignment_for(name)
    check = Mismatches(name)
    samples = h.cell("def vis_samples")
    seed = re.search(r"torch\.Generator\(\)\.manual_seed\((\d+)\)", samples)
    check.check(
        "sampling.seed",
        a.sampling.seed,
        int(seed.group(1)) if seed else None,
        seed.group(0) if seed else "vis_samples draws without a generator",
    )
    grid = re.search(r"decoded_samples\[:(\d+)\], nrow=(\d+)", samples)
    check.check("sampling.n", a.sampling.n, int(grid.group(1)), grid.group(0))
    check.check("sampling.grid", a.sampling.grid, int(grid.group(2)), grid.group(0))

    interp = h.cell("START_LABEL =", "END_LABEL =")
    start, start_line = assignment_line(interp, "START_LABEL")
    end, end_line = assignment_line(interp, "END_LABEL")
    check.check(
        "interpolation.pairs[0]", tuple(a.interpolation.pairs[0]), (int(start), int(end)), f"{start_line} / {end_line}"
    )
    steps, line = assignment_line(interp, "N_INTER_STEPS")
    check.check("interpolation.steps", a.interpolation.steps, int(steps), line)
    if len(a.interpolation.pairs) < 3:
        check.fail(
            f"{check.config}.toml interpolation.pairs: the write-up shows three comparisons, config has "
            f"{len(a.interpolation.pairs)}"
        )
    check.done()


# --------------------------------------------------------------------------- questions and points


def plain(markdown: str) -> str:
    """Markdown/LaTeX noise off: bold, quote marks, line breaks, $\\beta$ -> beta."""
    text = markdown.replace("**", "").replace("\\\\", " ")
    text = re.sub(r"^\s*>", "", text, flags=re.MULTILINE)
    text = re.sub(r"\$([^$]*)\$", lambda m: m.group(1).replace("\\beta", "beta").strip(), text)
    return re.sub(r"\s+", " ", text).strip()


@dataclass
class HandoutQuestion:
    prompt: str
    word_limit: int
    points: int | None
    text: str


def handout_questions(h: Handout) -> list[HandoutQuestion]:
    found = []
    for source in h.sources("markdown"):
        for chunk in source.split("Inline Question:")[1:]:
            text = plain(chunk.split("Answer")[0])
            limit = re.search(r"\(please limit your answer to <(\d+) words\)", text)
            assert limit, f"{h.name}: no word limit in {text!r}"
            body = text[: limit.start()].strip()
            points = re.search(r"\s*\[(\d+)pt\]$", body)
            prompt = body[: points.start()] if points else body
            found.append(
                HandoutQuestion(prompt.strip(), int(limit.group(1)), int(points.group(1)) if points else None, text)
            )
    return found


@pytest.mark.parametrize("name", NAMES)
def test_questions_prompts_word_limits_and_points_match(name):
    h, a = handout(name), assignment_for(name)
    check = Mismatches(name)
    questions = handout_questions(h)
    if len(questions) != len(a.questions):
        check.fail(f"{check.config}.toml has {len(a.questions)} questions, {name} {len(questions)}")
    for q, hq in zip(a.questions, questions, strict=False):
        check.check(f"questions.{q.id}.prompt", q.prompt, hq.prompt, hq.text)
        check.check(f"questions.{q.id}.word_limit", q.word_limit, hq.word_limit, hq.text)
        if hq.points is not None:
            item = a.item(q.rubric_item)
            check.check(f"rubric.{item.id}.points (questions.{q.id})", item.points, hq.points, hq.text)
    check.done()


@pytest.mark.parametrize("name", NAMES)
def test_section_points_match_the_rubric(name):
    h, a = handout(name), assignment_for(name)
    check = Mismatches(name)
    total = sum(q.points or 0 for q in handout_questions(h))
    seen = set()
    for source in h.sources("markdown"):
        for heading in re.findall(r"^#+ (.*\[\d+pt\])\s*$", source, flags=re.MULTILINE):
            title, points = re.match(r"(?:\d+\. )?(.*?) \[(\d+)pt\]", heading).groups()
            points, title = int(points), plain(title)
            total += points
            if title not in HEADING_ITEMS:
                if points:
                    check.fail(f"{name} heading {heading!r} carries points but names no rubric item of this test")
                continue
            item = a.item(HEADING_ITEMS[title])
            seen.add(item.id)
            check.check(f"rubric.{item.id}.points", item.points, points, heading)
    if missing := sorted(set(HEADING_ITEMS.values()) - seen):
        check.fail(f"{name}: no heading found for {missing}")
    check.check("rubric (total points)", a.max_total, total, "the sum of every [Npt] in the notebook")
    check.done()


def test_2020_and_2022_share_every_code_cell():
    """Why both years map to variant-a: the code the students fill in is the same."""
    assert handout("handout-2020").sources() == handout("handout-2022").sources()


# --------------------------------------------------------------------------- the handout's names ([notebook.names])

# Where each [notebook.names] key's name must appear in the handout's code: the role of the cells
# (found by the config's own anchors) and how the name appears there. "binds": a line, at any
# indentation, assigns it (alone or in a tuple); "defines": a top-level `def name(`; "slot": the
# last cell of the role assigns it at top level (the tuned-beta slot).
NAME_PLACES: dict[str, tuple[tuple[str, str], ...]] = {
    "dataset": (("data", "binds"),),
    "loader": (("forward_test", "binds"),),
    "batch_size": (("forward_test", "binds"),),
    "workers": (("forward_test", "binds"),),
    "nz": (("forward_test", "binds"),),
    "epochs": (("ae_training", "binds"), ("vae_runs", "binds")),
    "learning_rate": (("ae_training", "binds"), ("vae_runs", "binds")),
    "beta": (("vae_runs", "slot"),),
    "device": (("ae_training", "binds"),),
    "ae_model": (("ae_training", "binds"),),
    "vae_model": (("vae_runs", "binds"),),
    "sample_function": (("sampling", "defines"),),
    "run_function": (("vae_runs", "defines"),),
    "loss_lists": (("vae_runs", "binds"),),
    "interpolation_function": (("interpolation", "defines"),),
    "interpolation_labels": (("interpolation", "binds"),),
}


def role_sources(h: Handout, a: Assignment, role: str) -> list[str]:
    """The code of the handout's cells that play ``role``, found by the config's anchors."""
    from harness.submission.cells import map_roles

    triples = [(i, c.cell_type, c.source) for i, c in enumerate(h.cells, 1)]
    numbers = map_roles(triples, a.notebook).roles.get(role, ())
    return [h.cells[n - 1].source for n in numbers]


def binds(source: str, name: str) -> bool:
    other = r"[\w.]+[ \t]*"
    pattern = rf"^[ \t]*(?:{other},[ \t]*)*{re.escape(name)}[ \t]*(?:,[ \t]*{other})*=(?!=)"
    return re.search(pattern, source, flags=re.MULTILINE) is not None


def function_parameters(source: str, name: str) -> list[str] | None:
    """The parameter names of the top-level ``def name(...)`` of a cell, None when it has none."""
    m = re.search(rf"^def {re.escape(name)}\(([^)]*)\)", source, flags=re.MULTILINE)
    return None if m is None else [p.split("=")[0].strip() for p in m.group(1).split(",") if p.strip()]


def test_every_notebook_name_is_placed_by_this_test():
    from dataclasses import fields

    from harness.config.assignment import NotebookNames

    assert set(NAME_PLACES) == {f.name for f in fields(NotebookNames)}


@pytest.mark.parametrize("name", NAMES)
def test_the_notebook_names_are_the_handouts_own(name):
    h, a = handout(name), assignment_for(name)
    check = Mismatches(name)
    names = a.notebook.names
    for key, places in NAME_PLACES.items():
        value = getattr(names, key)
        for role, how in places:
            sources = role_sources(h, a, role)
            if not sources:
                check.fail(f"{check.config}.toml notebook.names.{key}: no {role} cell in {name}")
                continue
            if key == "run_function":  # the one function the VAE-run cells define, or "" for none
                defined = [(f, s) for s in sources for f in re.findall(r"^def (\w+)\(", s, flags=re.MULTILINE)]
                check.check(f"notebook.names.{key}", value, defined[0][0] if defined else "", f"the {role} cells")
                if value and defined and defined[0][0] == value:  # called with the setting names as keywords
                    wanted = [names.epochs, names.learning_rate, names.beta]
                    params = function_parameters(defined[0][1], value)
                    check.check(f"notebook.names.{key} (parameters)", wanted, params, f"def {value}(...)")
                continue
            for one in value if isinstance(value, tuple) else (value,):
                if how == "binds":
                    found = any(binds(s, one) for s in sources)
                elif how == "defines":
                    found = any(function_parameters(s, one) is not None for s in sources)
                else:  # the tuned-beta slot: a top-level assignment of the last cell of the role
                    found = re.search(rf"^{re.escape(one)}[ \t]*=(?!=)", sources[-1], flags=re.MULTILINE) is not None
                if not found:
                    verb = "defines" if how == "defines" else "assigns"
                    check.fail(
                        f"{check.config}.toml notebook.names.{key} = {one!r}: no {role} cell of {name} {verb} it"
                    )
    check.done()


@pytest.mark.parametrize("name", NAMES)
def test_each_printed_loss_label_is_printed_by_the_handout_s_training_cells(name):
    """[notebook] printed_losses: each label appears in a print of the AE or VAE training cells."""
    h, a = handout(name), assignment_for(name)
    sources = role_sources(h, a, "ae_training") + role_sources(h, a, "vae_runs")
    prints = [line for s in sources for line in s.splitlines() if "print(" in line]
    for label in a.notebook.printed_losses:
        assert any(label in line for line in prints), (name, label, prints)
