"""Recognising a notebook's handout, its cells' roles and its untouched TODO regions (harness/submission/cells.py).

The handout notebooks live outside the repository, in ``../shared/handouts``; tests that read them
are skipped without them. Expected cells are found by other template text than the config's
anchors (``Shape of encoding vector``, ``def kl_divergence``, ...), never by position.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from harness.config.assignment import Assignment, AssignmentError, load_assignment
from harness.submission.cells import (
    CellMap,
    detect_handout,
    detection_problem,
    find_placeholder,
    has_line,
    map_roles,
    missing_markers,
    strip_comment,
    todo_regions,
    untouched_by_role,
    untouched_todos,
)

HANDOUTS = Path(__file__).parents[2] / "shared" / "handouts"
needs_handouts = pytest.mark.skipif(
    not HANDOUTS.is_dir(),
    reason="../shared/handouts not found: the handout notebooks are needed to check notebook recognition",
)

CONFIGS = {"handout-2020": "variant-a", "handout-2022": "variant-a", "handout-2026": "variant-b"}
NAMES = sorted(CONFIGS)

# Each code role's cells, recognised by template text other than the config's anchors.
CLUES = {
    "data": ("train=True",),
    "encoder_decoder": ("Encoder Architecture:",),
    "forward_test": ("Shape of encoding vector",),
    "autoencoder": ("Only used later for visualization",),
    "ae_training": ("Reconstruction Loss: {}",),
    "reconstruction": ("visualize test data reconstructions",),
    "sampling": ("Sample embeddings from a diagonal unit Gaussian",),
    "vae_model": ("def kl_divergence",),
    "vae_runs": ("Build the optimizer for the vae_model", "Tune the beta parameter"),
    "interpolation": ("N_INTER_STEPS = ",),
}
# The roles whose cells hold TODO regions.
TODO_ROLES = {"encoder_decoder", "forward_test", "ae_training", "sampling", "vae_model", "vae_runs"}

Cells = list[tuple[int, str, str]]


def handout_cells(name: str) -> Cells:
    nb = nbformat.read(HANDOUTS / f"{name}.ipynb", as_version=4)
    return [(i, c.cell_type, c.source) for i, c in enumerate(nb.cells, 1)]


def bundled() -> list[Assignment]:
    return [load_assignment("variant-a"), load_assignment("variant-b")]


def expected_roles(cells: Cells, a: Assignment) -> dict[str, tuple[int, ...]]:
    """Role -> cells, from the clues above and the order of the inline questions."""
    expected = {
        role: tuple(n for n, kind, s in cells if kind == "code" and any(c in s for c in clues))
        for role, clues in CLUES.items()
    }
    questions = [n for n, kind, s in cells if kind == "markdown" and "Inline Question:" in s]
    assert len(questions) == len(a.questions), "one markdown cell per inline question"
    expected.update({f"question.{q.id}": (n,) for q, n in zip(a.questions, questions, strict=True)})
    return expected


def renumber(cells: list[tuple[str, str]]) -> Cells:
    return [(i, kind, s) for i, (kind, s) in enumerate(cells, 1)]


# --------------------------------------------------------------------------- which handout


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_each_handout_is_detected_as_its_config(name):
    cells = handout_cells(name)
    found = detect_handout(cells, bundled())
    assert found is not None, detection_problem(cells, bundled())
    assert Path(found.source).stem == CONFIGS[name]
    assert detection_problem(cells, bundled()) == ""


@needs_handouts
@pytest.mark.parametrize("config", sorted(set(CONFIGS.values())))
def test_each_configs_markers_match_exactly_its_handouts(config):
    spec = load_assignment(config).notebook
    assert spec is not None
    matched = sorted(name for name in NAMES if not missing_markers(handout_cells(name), spec))
    assert matched == sorted(name for name, c in CONFIGS.items() if c == config)


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_every_anchor_of_the_config_appears_in_its_handout(name):
    spec = load_assignment(CONFIGS[name]).notebook
    cells = handout_cells(name)
    absent = [
        f"{role.name}: {anchor!r}"
        for role in spec.roles
        for anchor in role.anchors
        if not any(kind == role.kind and has_line(s, anchor) for _, kind, s in cells)
    ]
    assert not absent, f"{CONFIGS[name]}.toml anchors not in {name}: {absent}"


def test_a_notebook_of_another_assignment_is_refused_with_a_reason():
    cells = [
        (1, "markdown", "# Problem 2: Generative Adversarial Networks"),
        (2, "code", "import torch.nn as nn\n\nclass Generator(nn.Module):\n  pass"),
        (3, "code", "gan = Generator()\nfor epoch in range(5):\n  pass"),
    ]
    assert detect_handout(cells, bundled()) is None
    reason = detection_problem(cells, bundled())
    assert "follows none of the known handouts" in reason
    assert "'def run_with_beta(' (variant-b)" in reason
    assert "'vae_model = VAE(nz, beta)' (variant-a)" in reason


def test_a_notebook_with_every_handouts_markers_is_refused_as_ambiguous():
    markers = [m for a in bundled() for m in a.notebook.markers]
    cells = [(1, "code", "\n".join(markers))]
    assert detect_handout(cells, bundled()) is None
    assert "matches several handouts (variant-a, variant-b)" in detection_problem(cells, bundled())


def test_an_indented_marker_does_not_match_a_top_level_one():
    """2026 has ``vae_model = VAE(nz, beta)`` inside run_with_beta; variant-a's marker is top-level."""
    assert not has_line("def f():\n  vae_model = VAE(nz, beta).to(device)", "vae_model = VAE(nz, beta)")
    assert has_line("vae_model = VAE(nz, beta).to(device)", "vae_model = VAE(nz, beta)")


# --------------------------------------------------------------------------- roles


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_every_role_maps_to_the_cells_that_hold_its_template_code(name):
    a = load_assignment(CONFIGS[name])
    cells = handout_cells(name)
    cell_map = map_roles(cells, a.notebook)
    assert cell_map.missing == () and cell_map.notes == ()
    expected = expected_roles(cells, a)
    for role in a.notebook.roles:
        assert cell_map.roles[role.name] == expected[role.name], role.name
        if role.cells == "one":
            assert len(expected[role.name]) == 1, f"{name}: the clue for {role.name} is not unique"


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_badge_answer_and_duplicated_interpolation_cells_keep_every_role_on_its_shifted_cell(name):
    a = load_assignment(CONFIGS[name])
    cells = handout_cells(name)
    expected = expected_roles(cells, a)
    interpolation = expected["interpolation"][0]
    questions = {n for role, ns in expected.items() if role.startswith("question.") for n in ns}
    drifted: list[tuple[str, str]] = [("markdown", "[![Open In Colab](https://colab.research.google.com/badge.svg)]")]
    new_number: dict[int, int] = {}
    for n, kind, source in cells:
        drifted.append((kind, source))
        new_number[n] = len(drifted)
        if n in questions:
            drifted.append(("markdown", "**Answer:** the samples look like noise, the latent is unconstrained."))
        if n == interpolation:
            drifted.append((kind, source.replace("START_LABEL = ", "START_LABEL = 1 #")))
    cell_map = map_roles(renumber(drifted), a.notebook)
    for role, numbers in expected.items():
        assert cell_map.roles[role] == tuple(new_number[n] for n in numbers), role
    assert cell_map.missing == ()
    assert len(cell_map.notes) == 1 and cell_map.notes[0].startswith("interpolation: cells ")


def test_a_missing_role_is_listed_and_a_repeated_one_role_keeps_its_first_cell():
    spec = load_assignment("variant-b").notebook
    cells = [
        (1, "code", "def vis_samples(model):\n  pass"),
        (2, "code", "def vis_samples(model):\n  return None"),
        (3, "code", "vae_model = run_with_beta(epochs=5, learning_rate=1.5e-3, beta=0.0)"),
        (4, "code", "vae_model = run_with_beta(epochs=5, learning_rate=1.5e-3, beta=10.0)"),
    ]
    cell_map = map_roles(cells, spec)
    assert cell_map.roles["sampling"] == (1,) and cell_map.cell("sampling") == 1
    assert cell_map.roles["vae_runs"] == (3, 4)
    assert "data" in cell_map.missing and cell_map.cell("data") is None
    assert cell_map.notes == ("sampling: cells 1, 2 all match; using cell 1",)


# --------------------------------------------------------------------------- TODO regions


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_every_todo_region_of_a_handout_is_untouched_save_the_given_beta_0_settings(name):
    a = load_assignment(CONFIGS[name])
    cells = handout_cells(name)
    cell_map = map_roles(cells, a.notebook)
    regions = [(n, r) for n, kind, s in cells if kind == "code" for r in todo_regions(s)]
    # the first VAE run's settings (epochs = 5, beta = 0.0) are filled in by the template itself
    given = [(n, r) for n, r in regions if re.search(r"^beta = 0\.0$", r.code, flags=re.MULTILINE)]
    assert len(given) == 1 and not given[0][1].untouched
    todos = untouched_todos(cells, cell_map)
    assert [(t.cell, t.region) for t in todos] == [x for x in regions if x not in given]
    assert all(t.region.closed for t in todos)
    for t in todos:
        assert t.role == cell_map.role_of(t.cell) and t.role in TODO_ROLES, (t.cell, t.role)
    assert set(untouched_by_role(todos)) == TODO_ROLES


@pytest.mark.parametrize(
    "code",
    [
        "q = None       # output of encoder\nq = self.encoder(x)",
        "mu = None\nmu, log_sigma = q.chunk(2, dim=1)",
        "self.encoder = None\nself.encoder = Encoder(2 * nz)",
    ],
)
def test_a_placeholder_the_student_kept_and_assigned_on_a_later_line_is_not_untouched(code):
    assert find_placeholder(code) == ""


@pytest.mark.parametrize("code", ["q = None\nz = q + 1", "opt = None\nif opt == None:\n  pass", "epochs ="])
def test_a_placeholder_never_assigned_again_is_still_untouched(code):
    assert find_placeholder(code) == code.splitlines()[0]


def fill(code: str) -> str:
    """A region's template code with each placeholder replaced by plausible student code."""
    out = []
    for line in code.splitlines():
        indent = line[: len(line) - len(line.lstrip())]
        if line.strip() == "for None in None:":
            line = f"{indent}for img, _ in mnist_data_loader:"
        line = re.sub(r"^(\s*)([\w.]+)\s*=\s*None\b", r"\1\2 = torch.zeros(1)", line)
        line = re.sub(r"^(\s*)(beta|epochs)\s*=(\s*#|\s*$)", r"\1\2 = 10\3", line)
        out.append(line)
        if line.rstrip().endswith("nn.Sequential("):
            out.append(f"{indent}    nn.Conv2d(1, 32, 4, stride=2, padding=1),")
    return "\n".join(out)


@needs_handouts
@pytest.mark.parametrize("name", NAMES)
def test_every_handout_region_filled_with_plausible_code_is_not_untouched(name):
    cells = handout_cells(name)
    for n, kind, source in cells:
        if kind != "code":
            continue
        filled = source
        for region in todo_regions(source):
            filled = filled.replace(region.code, fill(region.code), 1)
        for region in todo_regions(filled):
            assert not region.untouched, f"{name} cell {n}: {region.placeholder!r} left in\n{region.code}"


def test_a_completed_architecture_and_training_loop_are_not_untouched():
    source = """class Encoder(nn.Module):
  def __init__(self, nz):
    super().__init__()
    ########## TODO ##########
    # Build the network.     #
    ##########################
    self.net = nn.Sequential(
        nn.Conv2d(1, 32, 4, stride=2, padding=1),  # 14x14
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(32 * 14 * 14, nz),
    )
    ####### END TODO #######

for ep in range(epochs):
  ###### TODO ######
  # The loop.      #
  ##################
  for img, _ in mnist_data_loader:
    opt.zero_grad()
    rec_loss = criterion(ae_model(img.to(device)), img.to(device))
    rec_loss.backward()
    opt.step()
    ################### END TODO ###################
"""
    regions = todo_regions(source)
    assert [(r.start, r.end, r.untouched) for r in regions] == [(4, 13, False), (16, 24, False)]


def test_template_placeholders_are_untouched_and_an_unclosed_region_runs_to_the_cell_end():
    template = "#### TODO ####\n# fill in #\n##############\nopt = None   # optimizer\nbeta =    # HINT\n"
    [region] = todo_regions(template)
    assert region.untouched and region.placeholder == "opt = None" and not region.closed
    assert region.end == 5
    sequential = "## TODO ##\n###########\nself.net = nn.Sequential(\n    # add layers\n)\n## END TODO ##"
    assert todo_regions(sequential)[0].placeholder == "nn.Sequential() left empty"
    assert strip_comment('label = "# of digits"  # a comment') == 'label = "# of digits"'


# --------------------------------------------------------------------------- the [notebook] table


def bundled_text(name: str) -> str:
    return Path(load_assignment(name).source).read_text()


def test_an_assignment_without_a_notebook_table_loads_with_none(tmp_path):
    text = bundled_text("variant-b")
    path = tmp_path / "plain.toml"
    path.write_text(text[: text.index("\n[notebook]")] + "\n")
    a = load_assignment(str(path))
    assert a.notebook is None
    assert detect_handout([(1, "code", "def run_with_beta(")], [a]) is None
    assert "plain has no [notebook] table" in detection_problem([(1, "code", "x = 1")], [a])
    assert isinstance(map_roles([], load_assignment("variant-b").notebook), CellMap)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('name = "question.beta-0"', 'name = "question.beta-5"', "notebook.roles.question.beta-5"),
        ('name = "sampling", anchors = ["def vis_samples(model):"]', 'name = "sampling", anchors = []', "anchors"),
        ('cells = "many"', 'cells = "some"', "notebook.roles[8].cells"),
        ('name = "data"', 'name = "sampling"', "notebook.roles.sampling"),
        ('markers = ["class VAE(nn.Module):", "def run_with_beta("]', 'markers = ["  "]', "notebook.markers[0]"),
    ],
)
def test_a_bad_notebook_table_names_its_key(tmp_path, old, new, key):
    text = bundled_text("variant-b")
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(AssignmentError) as err:
        load_assignment(str(path))
    assert key in err.value.key
