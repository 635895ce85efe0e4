"""The assignment as data: typed dataclasses loaded from a TOML file.

Everything that changes from one year's handout to the next (channels,
resolutions, epochs, betas, rubric points, questions) lives in
``harness/config/assignments/<name>.toml``; see ``docs/assignment-format.md``.
Loading is strict: an unknown key, a wrong type, a missing field or layers that
cannot reach their stated resolutions raise :class:`AssignmentError`, naming the
file, the key and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import keyword
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.config.geometry import ConvGeometry, reachable, solve_conv, solve_conv_transpose

ASSIGNMENTS_DIR = Path(__file__).parent / "assignments"
DEFAULT_ASSIGNMENT = "variant-a"

LayerKind = Literal["conv", "conv_transpose", "linear"]
Activation = Literal["leaky_relu", "relu", "sigmoid", "tanh", "none"]
OpenField = Literal["kernel", "batch_norm"]
CellCount = Literal["one", "many"]
CellKind = Literal["code", "markdown"]


class AssignmentError(ValueError):
    """A configuration problem, phrased for the person who edits the TOML file."""

    def __init__(self, file: str, key: str, problem: str, fix: str):
        self.file, self.key, self.problem, self.fix = file, key, problem, fix
        super().__init__(f"{file}: {key}: {problem}. Fix: {fix}")


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Meta:
    id: str
    title: str
    description: str = ""


@dataclass(frozen=True)
class DataSpec:
    image_channels: int
    image_size: int


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the handout's table. A linear layer's output is reshaped to
    (out_channels, out_resolution, out_resolution).

    ``open`` names the fields the handout leaves unstated (a ``...`` line in its table):
    grading accepts any kernel that reaches ``out_resolution`` and either batch-norm choice
    there, while ``kernel`` and ``batch_norm`` stay the reference model's documented default."""

    kind: LayerKind
    out_channels: int
    out_resolution: int
    kernel: int = 0
    batch_norm: bool = False
    activation: Activation = "none"
    bias: bool = True
    open: tuple[OpenField, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """Encoder layers end in an implicit latent head (Flatten + Linear to nz, or
    2*nz for the VAE); the decoder's first layer is the Linear from the latent."""

    nz: int
    encoder: tuple[LayerSpec, ...]
    decoder: tuple[LayerSpec, ...]
    leaky_relu_slope: float = 0.2


@dataclass(frozen=True)
class RunSpec:
    """One training run: a name, its beta (None for the plain AE), epochs, learning rate."""

    name: str
    epochs: int
    learning_rate: float
    beta: float | None = None
    expect: Literal["", "no_regularisation", "collapse"] = ""


@dataclass(frozen=True)
class SearchSpec:
    betas: tuple[float, ...]
    epochs: int
    learning_rate: float


@dataclass(frozen=True)
class TrainingSpec:
    batch_size: int
    num_workers: int
    optimizer: Literal["adam"]
    ae: RunSpec
    fixed: tuple[RunSpec, ...]
    search: SearchSpec
    tuned: RunSpec
    seed: int = 0


@dataclass(frozen=True)
class SamplingSpec:
    n: int = 16
    grid: int = 4
    seed: int | None = None


@dataclass(frozen=True)
class InterpolationSpec:
    steps: int
    pairs: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class MetricsSpec:
    fid_samples: int
    active_unit_threshold: float
    classifier_epochs: int
    classifier_min_accuracy: float
    coverage_share: float = 0.5


@dataclass(frozen=True)
class Profile:
    """Scales the handout's protocol: ``train_images`` = 0 means all of them."""

    name: str
    description: str
    train_images: int
    epoch_scale: float

    def epochs(self, handout_epochs: int) -> int:
        """Epochs this profile runs for a run the handout gives ``handout_epochs``."""
        return max(1, math.floor(handout_epochs * self.epoch_scale + 0.5))


@dataclass(frozen=True)
class RubricPart:
    """A named share of a rubric item that a check scores on its own."""

    id: str
    points: float


@dataclass(frozen=True)
class RubricItem:
    id: str
    title: str
    points: float
    parts: tuple[RubricPart, ...] = ()

    def part(self, part_id: str) -> float:
        """Points of one part; an item without parts is a single part worth all of it."""
        if not self.parts:
            return self.points
        for p in self.parts:
            if p.id == part_id:
                return p.points
        raise KeyError(f"rubric item {self.id!r} has no part {part_id!r}")


@dataclass(frozen=True)
class Concept:
    """An idea a good answer contains, and the phrases that show it (docs/assignment-format.md).
    Phrases match on word stems; ``synonyms`` with at most two other words between theirs,
    ``paraphrases`` anywhere in one clause, in order. ``vague`` phrases name the idea without
    saying it (a bare "good"): half credit. ``opposites`` claim the contrary: negated ("not
    realistic") they show the idea, asserted they deny it. ``about`` names the question's topics
    the idea is about (the VAE's path, the samples): a phrase said of another topic does not count."""

    id: str
    synonyms: tuple[str, ...] = ()
    paraphrases: tuple[str, ...] = ()
    vague: tuple[str, ...] = ()
    opposites: tuple[str, ...] = ()
    about: tuple[str, ...] = ()
    weight: float = 1.0  # the idea's share of the item, relative to the question's other concepts


@dataclass(frozen=True)
class Topic:
    """Something an answer talks about (a model, the reconstructions), named by ``phrases``."""

    id: str
    phrases: tuple[str, ...]


QUESTION_SECTIONS = ("ae", "vae", "interpolation", "")  # "": after everything else


@dataclass(frozen=True)
class Question:
    id: str
    prompt: str
    word_limit: int
    concepts: tuple[Concept, ...]
    rubric_item: str = ""  # the rubric item this answer earns (alone, or with code)
    section: str = ""  # where the documents quote it: after the AE samples, the VAE runs or the paths
    topics: tuple[Topic, ...] = ()  # what a concept's ``about`` can name


@dataclass(frozen=True)
class AnswersSpec:
    """How answers are scored before an instructor looks at them."""

    over_limit_penalty: float = 0.5  # share of the item lost when over the word limit
    min_words: int = 5  # fewer words than this is treated as no answer


@dataclass(frozen=True)
class SubmissionNames:
    """The names ``submission.py`` must define (docs/submission-format.md)."""

    encoder: str = "Encoder"
    decoder: str = "Decoder"
    autoencoder: str = "AutoEncoder"
    vae: str = "VAE"
    data_loader: str = "make_data_loader"
    train_autoencoder: str = "train_autoencoder"
    generate_samples: str = "generate_samples"
    train_vae: str = "train_vae"


@dataclass(frozen=True)
class SubmissionSpec:
    module: str = "submission.py"
    answers: str = "answers.md"
    meta: str = "submission.toml"
    names: SubmissionNames = SubmissionNames()


@dataclass(frozen=True)
class SandboxSpec:
    """Limits for each unit of student work (docs/sandbox.md)."""

    check_timeout_s: float = 60.0
    # A training unit may run train_time_multiple x the reference's own time for the same run
    # (measured when the reference was built), at least train_floor_s, at most train_timeout_s.
    train_time_multiple: float = 10.0
    train_floor_s: float = 120.0
    train_timeout_s: float = 3600.0
    stall_s: float = 60.0  # a student's training loop with no optimizer step for this long is stopped
    memory_mb: int = 6144
    output_cap_kb: int = 64
    scratch_mb: int = 512  # each unit's fresh /tmp (and /dev/shm)


@dataclass(frozen=True)
class GradingSpec:
    """How `harness grade` judges trained student runs against the same-profile reference
    (docs/checks.md). Ratios are student / reference; credit falls linearly from the
    full-credit ratio to none at the zero-credit ratio."""

    mse_full_credit: float = 1.5
    mse_zero_credit: float = 3.0
    fid_full_credit: float = 1.5
    fid_zero_credit: float = 3.0
    curve_drop: float = 0.1  # the last tenth of the loss curve at least this share below the first tenth
    collapse_kl: float = 1.0  # KL per image (nats) at or below which the posterior has collapsed
    active_share: float = 0.9  # beta = 0: at least this share of the latent units active
    path_confidence_share: float = 0.8  # VAE interpolation frames: this share of the reference's confidence
    eval_images: int = 2000  # test images each trained run (student's and reference's) is measured on; 0: all


@dataclass(frozen=True)
class CellRole:
    """A part a handout cell plays, found by its anchor lines wherever the cell is.

    A cell of ``kind`` plays the role when one of its lines starts with one of ``anchors``
    (leading spaces count, so a top-level line does not match an indented copy). ``cells``
    says whether the handout has one such cell or several (2026's ``run_with_beta`` calls).
    A question's role is named ``question.<id>`` after its ``[[questions]]`` entry."""

    name: str
    anchors: tuple[str, ...]
    cells: CellCount = "one"
    kind: CellKind = "code"


# The cell roles the harness's code reads (docs/assignment-format.md#notebook), and what for. A
# [notebook] role is one of these or ``question.<id>``; a misspelt one would leave its cells unread.
NOTEBOOK_ROLES: dict[str, str] = {
    "data": "the dataset cell",
    "encoder_decoder": "the Encoder and Decoder classes",
    "forward_test": "the loader cell and forward-pass test: make_data_loader runs it again",
    "autoencoder": "the AutoEncoder class",
    "ae_training": "the AE training cell: train_autoencoder runs it again",
    "reconstruction": "the reconstruction function",
    "sampling": "the sampling function: generate_samples calls it",
    "vae_model": "the VAE class",
    "vae_runs": "the VAE-run cells: train_vae runs them; the tuned-beta slot",
    "interpolation": "the interpolation cell",
}
# Without one of these a notebook's adapters (harness.sandbox.notebook_run) would be silently absent.
REQUIRED_ROLES = ("forward_test", "ae_training", "sampling", "vae_runs")
QUESTION_ROLE = "question."


@dataclass(frozen=True)
class NotebookNames:
    """The handout's own Python names that the harness binds, substitutes or reads in a notebook
    (harness.sandbox.notebook_run, harness.submission.notebook_code and .notebook_figures).
    tests/test_handouts.py checks each against the code of the handouts the file follows."""

    dataset: str = "mnist_train"  # the data cell's training set: the loader cell wraps it
    loader: str = "mnist_data_loader"  # what the loader cell builds
    epochs: str = "epochs"  # setting lines: the definition pass sets them to 0, a run to its own
    learning_rate: str = "learning_rate"
    beta: str = "beta"  # also the tuned-beta slot: the last `beta = ...` of the last vae_runs cell
    batch_size: str = "batch_size"
    workers: str = "nworkers"
    nz: str = "nz"  # the sampling function reads these globals
    device: str = "device"
    ae_model: str = "ae_model"  # the AE cell's model, which the sampling cell shows
    vae_model: str = "vae_model"  # a VAE run's model, which the cells after it show
    sample_function: str = "vis_samples"  # the sampling cell's function
    run_function: str = "run_with_beta"  # a vae_runs cell's function taking (epochs, learning_rate, beta); "": none
    loss_lists: tuple[str, str] = ("rec_loss", "kl_loss")  # the VAE cell's (reconstruction, KL) lists
    interpolation_function: str = "interpolate_and_visualize"
    interpolation_labels: tuple[str, str] = ("START_LABEL", "END_LABEL")


@dataclass(frozen=True)
class NotebookSpec:
    """How a handed-in notebook of this handout is recognised and read (docs/assignment-format.md).

    ``markers`` are lines of template-owned code that all appear, each at the start of a line of
    some code cell, in a notebook that follows this handout and in no other handout's."""

    markers: tuple[str, ...]
    roles: tuple[CellRole, ...] = ()
    # Each cell's limit in the run that defines the notebook's names (no training in it): a cell
    # that loops forever is stopped and recorded, and the next one runs.
    cell_timeout_s: float = 30.0
    names: NotebookNames = NotebookNames()
    # What the handout's training loops print before a reconstruction loss ("It 40: Reconstruction
    # Loss: 0.0123"): a short profile quotes the last one of a run's stored output
    # (harness.submission.notebook_logs)
    printed_losses: tuple[str, ...] = ("Reconstruction Loss:", "Rec Loss:")


@dataclass(frozen=True)
class Assignment:
    meta: Meta
    data: DataSpec
    model: ModelSpec
    training: TrainingSpec
    sampling: SamplingSpec
    interpolation: InterpolationSpec
    metrics: MetricsSpec
    profiles: tuple[Profile, ...]
    rubric: tuple[RubricItem, ...]
    questions: tuple[Question, ...]
    answers: AnswersSpec = AnswersSpec()
    submission: SubmissionSpec = SubmissionSpec()
    sandbox: SandboxSpec = SandboxSpec()
    grading: GradingSpec = GradingSpec()
    notebook: NotebookSpec | None = None  # absent: notebooks of this assignment are not recognised
    source: str = field(default="", compare=False)
    digest: str = field(default="", compare=False)

    def profile(self, name: str) -> Profile:
        for p in self.profiles:
            if p.name == name:
                return p
        names = ", ".join(p.name for p in self.profiles)
        raise AssignmentError(self.source, "profiles", f"no profile named {name!r}", f"use one of: {names}")

    def item(self, item_id: str) -> RubricItem:
        for r in self.rubric:
            if r.id == item_id:
                return r
        raise KeyError(f"{self.source}: no rubric item {item_id!r}")

    @property
    def max_total(self) -> float:
        return sum(item.points for item in self.rubric)

    @property
    def training_digest(self) -> str:
        """A hash of what trained models depend on (data, model, training, metrics,
        interpolation): rubric points, questions or thresholds can change without retraining.
        A layer's ``open`` fields only widen what grading accepts, so they are left out too."""
        parts = {
            k: dataclasses.asdict(getattr(self, k)) for k in ("data", "model", "training", "metrics", "interpolation")
        }
        for layer in (*parts["model"]["encoder"], *parts["model"]["decoder"]):
            del layer["open"]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- layer plan


@dataclass(frozen=True)
class PlannedLayer:
    """A layer with the shapes and geometry the models are built from."""

    spec: LayerSpec
    in_channels: int
    in_resolution: int
    geometry: ConvGeometry | None  # None for linear layers


def plan_layers(
    layers: tuple[LayerSpec, ...], in_channels: int, in_resolution: int, where: str = "layers", file: str = "<config>"
) -> list[PlannedLayer]:
    """Chain the layers from an input shape, solving each convolution's geometry."""
    planned, channels, res = [], in_channels, in_resolution
    for i, layer in enumerate(layers):
        key = f"{where}[{i}]"
        geometry = None
        if layer.kind == "linear":
            if layer.kernel:
                raise AssignmentError(file, f"{key}.kernel", "a linear layer has no kernel", "remove the key")
        else:
            if layer.kernel < 1:
                raise AssignmentError(file, f"{key}.kernel", f"a {layer.kind} layer needs a kernel >= 1", "set kernel")
            solve = solve_conv_transpose if layer.kind == "conv_transpose" else solve_conv
            geometry = solve(res, layer.out_resolution, layer.kernel)
            if geometry is None:
                options = reachable(res, layer.kernel, layer.kind == "conv_transpose")
                raise AssignmentError(
                    file,
                    f"{key}.out_resolution",
                    f"no stride/padding takes {res}x{res} to {layer.out_resolution}x{layer.out_resolution} "
                    f"with kernel {layer.kernel}",
                    f"choose an out_resolution in {options} or change the kernel",
                )
        planned.append(PlannedLayer(layer, channels, res, geometry))
        channels, res = layer.out_channels, layer.out_resolution
    return planned


def _validate_open(layer: LayerSpec, key: str, file: str) -> None:
    """``open`` lists each field once, and ``kernel`` only on a (transposed) convolution."""
    for name in layer.open:
        if layer.open.count(name) > 1:
            raise AssignmentError(file, key, f"{name!r} is listed twice", "list each open field once")
    if "kernel" in layer.open and layer.kind == "linear":
        raise AssignmentError(file, key, "a linear layer has no kernel to leave open", 'remove "kernel" from open')


def _validate(a: Assignment, file: str) -> None:
    m = a.model
    if not m.encoder or not m.decoder:
        raise AssignmentError(file, "model.encoder", "encoder and decoder need at least one layer", "add layers")
    plan_layers(m.encoder, a.data.image_channels, a.data.image_size, "model.encoder", file)
    if m.decoder[0].kind != "linear":
        raise AssignmentError(
            file,
            "model.decoder[0].kind",
            "the decoder must start with the linear layer from the latent",
            'set kind = "linear"',
        )
    plan_layers(m.decoder, m.nz, 1, "model.decoder", file)
    for where, layers in (("model.encoder", m.encoder), ("model.decoder", m.decoder)):
        for i, layer in enumerate(layers):
            _validate_open(layer, f"{where}[{i}].open", file)
    last = m.decoder[-1]
    if (last.out_channels, last.out_resolution) != (a.data.image_channels, a.data.image_size):
        raise AssignmentError(
            file,
            f"model.decoder[{len(m.decoder) - 1}]",
            f"the last layer gives {last.out_channels}x{last.out_resolution}x{last.out_resolution}, "
            f"the images are {a.data.image_channels}x{a.data.image_size}x{a.data.image_size}",
            "make the last layer's out_channels and out_resolution match [data]",
        )
    for p in a.profiles:
        if p.epoch_scale <= 0 or p.train_images < 0:
            raise AssignmentError(
                file, f"profiles.{p.name}", "epoch_scale must be > 0 and train_images >= 0", "fix the values"
            )
    t = a.training
    for key, run in [("training.ae", t.ae), ("training.tuned", t.tuned)]:
        if run.beta is not None:
            raise AssignmentError(file, f"{key}.beta", "this run's beta is not fixed", "remove beta")
    for i, run in enumerate(t.fixed):
        if run.beta is None or run.beta < 0:
            raise AssignmentError(file, f"training.fixed[{i}].beta", "a fixed run needs a beta >= 0", "set beta")
    names = [t.ae.name, t.tuned.name, *(r.name for r in t.fixed)]
    for name in names:
        if names.count(name) > 1 or name.startswith("search-"):
            raise AssignmentError(
                file,
                "training",
                f"run name {name!r} is used twice or starts with 'search-'",
                "give each run its own name",
            )
    if len({p.name for p in a.profiles}) != len(a.profiles):
        raise AssignmentError(file, "profiles", "two profiles share a name", "give each profile its own name")
    if len({f"{b:g}" for b in t.search.betas}) != len(t.search.betas):
        raise AssignmentError(file, "training.search.betas", "a beta is listed twice", "list each beta once")
    if not t.search.betas or any(b <= 0 for b in t.search.betas):
        raise AssignmentError(file, "training.search.betas", "the search needs positive betas", "list betas > 0")
    seen = set()
    for key, ids in (("rubric", [r.id for r in a.rubric]), ("questions", [q.id for q in a.questions])):
        for i in ids:
            if (key, i) in seen:
                raise AssignmentError(file, f"{key}.{i}", "duplicate id", "give each entry its own id")
            seen.add((key, i))
    items = {r.id for r in a.rubric}
    for r in a.rubric:
        if r.parts and abs(sum(p.points for p in r.parts) - r.points) > 1e-9:
            raise AssignmentError(
                file,
                f"rubric.{r.id}.parts",
                f"parts add up to {sum(p.points for p in r.parts):g}, not {r.points:g}",
                "make the parts' points add up to the item's points",
            )
    for q in a.questions:
        if q.section not in QUESTION_SECTIONS:
            raise AssignmentError(
                file,
                f"questions.{q.id}.section",
                f"unknown section {q.section!r}",
                f"use one of {', '.join(repr(x) for x in QUESTION_SECTIONS)}",
            )
        if q.rubric_item and q.rubric_item not in items:
            raise AssignmentError(
                file, f"questions.{q.id}.rubric_item", f"no rubric item {q.rubric_item!r}", "name an item of [[rubric]]"
            )
        _validate_concepts(q, file)
    if not 0 <= a.answers.over_limit_penalty <= 1:
        raise AssignmentError(file, "answers.over_limit_penalty", "must be a share between 0 and 1", "use e.g. 0.5")
    g = a.grading
    for name, full, zero in (
        ("mse", g.mse_full_credit, g.mse_zero_credit),
        ("fid", g.fid_full_credit, g.fid_zero_credit),
    ):
        if not 1 <= full < zero:
            raise AssignmentError(
                file,
                f"grading.{name}_zero_credit",
                f"needs 1 <= {name}_full_credit < {name}_zero_credit",
                "e.g. 1.5 and 3.0",
            )
    if a.notebook is not None:
        _validate_notebook(a.notebook, {q.id for q in a.questions}, file)
    if a.metrics.fid_samples < 200:
        raise AssignmentError(
            file, "metrics.fid_samples", "too few samples for a full-rank 64-d feature covariance", "use >= 1000"
        )


def _validate_concepts(q: Question, file: str) -> None:
    """Concept and topic ids are unique, each concept has a phrase that can show it, every phrase
    has a word, ``about`` names the question's topics and a weight is positive."""
    topics = [t.id for t in q.topics]
    for t in q.topics:
        key = f"questions.{q.id}.topics.{t.id}"
        if topics.count(t.id) > 1:
            raise AssignmentError(file, key, "duplicate topic id", "give each topic its own id")
        _validate_phrases(t.phrases, f"{key}.phrases", file, required=True)
    ids = [c.id for c in q.concepts]
    for c in q.concepts:
        key = f"questions.{q.id}.concepts.{c.id}"
        if ids.count(c.id) > 1:
            raise AssignmentError(file, key, "duplicate concept id", "give each concept its own id")
        if not c.synonyms and not c.paraphrases:
            raise AssignmentError(file, key, "no synonyms or paraphrases", 'add synonyms = ["..."]')
        for name in ("synonyms", "paraphrases", "vague", "opposites"):
            _validate_phrases(getattr(c, name), f"{key}.{name}", file)
        for topic in c.about:
            if topic not in topics:
                known = ", ".join(topics) or "none defined"
                raise AssignmentError(
                    file, f"{key}.about", f"no topic {topic!r}", f"name a topic of the question ({known})"
                )
        if not c.weight > 0:
            raise AssignmentError(file, f"{key}.weight", f"{c.weight:g} is not positive", "use a weight > 0, e.g. 1")


def _validate_phrases(phrases: tuple[str, ...], key: str, file: str, required: bool = False) -> None:
    if required and not phrases:
        raise AssignmentError(file, key, "the list is empty", "list at least one phrase")
    for i, phrase in enumerate(phrases):
        if not any(ch.isalnum() for ch in phrase):
            raise AssignmentError(file, f"{key}[{i}]", f"{phrase!r} has no word", "write the phrase's words")


def _validate_anchor_lines(lines: tuple[str, ...], key: str, file: str) -> None:
    """Anchor lines are matched one line at a time: each must be one non-blank line."""
    if not lines:
        raise AssignmentError(file, key, "the list is empty", "list at least one line")
    for i, line in enumerate(lines):
        if not line.strip() or "\n" in line:
            raise AssignmentError(file, f"{key}[{i}]", f"{line!r} is not one non-blank line", "write one line of text")


def _validate_notebook(nb: NotebookSpec, question_ids: set[str], file: str) -> None:
    _validate_anchor_lines(nb.markers, "notebook.markers", file)
    if not nb.cell_timeout_s > 0:
        raise AssignmentError(
            file, "notebook.cell_timeout_s", f"{nb.cell_timeout_s} is not positive", "use seconds > 0"
        )
    names = [r.name for r in nb.roles]
    known = ", ".join(NOTEBOOK_ROLES)
    for i, role in enumerate(nb.roles):
        if role.name not in NOTEBOOK_ROLES and not role.name.startswith(QUESTION_ROLE):
            raise AssignmentError(
                file, f"notebook.roles[{i}].name", f"unknown role {role.name!r}", f"use one of {known}, question.<id>"
            )
    for name in REQUIRED_ROLES:
        if name not in names:
            raise AssignmentError(
                file,
                "notebook.roles",
                f"no role {name!r} ({NOTEBOOK_ROLES[name]})",
                f'add {{ name = "{name}", anchors = [...] }}',
            )
    validate_notebook_names(nb.names, file)
    _validate_anchor_lines(nb.printed_losses, "notebook.printed_losses", file)
    for role in nb.roles:
        key = f"notebook.roles.{role.name}"
        if names.count(role.name) > 1:
            raise AssignmentError(file, key, "duplicate role name", "give each role its own name")
        _validate_anchor_lines(role.anchors, f"{key}.anchors", file)
        if role.name.startswith("question."):
            qid = role.name.removeprefix("question.")
            if qid not in question_ids:
                raise AssignmentError(file, key, f"no question {qid!r}", "name an id of [[questions]]")
            if role.cells != "one":
                raise AssignmentError(file, f"{key}.cells", "a question has one cell", 'write cells = "one"')


def validate_notebook_names(names: NotebookNames, file: str) -> None:
    """Each of the handout's names is a Python identifier (``run_function`` may be ``""``: the
    handout has none) and no two keys name the same thing."""
    seen: dict[str, str] = {}
    for f in dataclasses.fields(NotebookNames):
        value = getattr(names, f.name)
        values = value if isinstance(value, tuple) else (value,)
        for i, name in enumerate(values):
            key = f"notebook.names.{f.name}" + (f"[{i}]" if isinstance(value, tuple) else "")
            if f.name == "run_function" and name == "":
                continue
            if not name.isidentifier() or keyword.iskeyword(name):
                raise AssignmentError(
                    file, key, f"{name!r} is not a Python name", "write the name as the handout's code spells it"
                )
            if name in seen:
                raise AssignmentError(
                    file, key, f"{name!r} is also {seen[name]}", "give each key the handout's own, distinct name"
                )
            seen[name] = key


def notebook_names(table: dict, file: str) -> NotebookNames:
    """The names of a ``[notebook.names]`` table as written to a unit's cells file (or a TOML
    file), checked as loading checks them."""
    names = _build(NotebookNames, table, "notebook.names", file)
    validate_notebook_names(names, file)
    return names


# --------------------------------------------------------------------------- loading


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(v) for v in typing.get_args(tp))
    if origin in (tuple, list):
        return "a list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(t) for t in typing.get_args(tp) if t is not type(None))
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, key: str, file: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    wrong = AssignmentError(file, key, f"expected {_type_name(tp)}, got {value!r}", f"write {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise wrong
        return _build(tp, value, key, file)
    if origin is Literal:
        if value not in args:
            raise wrong
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return _convert(value, arg, key, file)  # an optional table: keep its own error
            try:
                return _convert(value, arg, key, file)
            except AssignmentError:
                continue
        raise wrong
    if origin is tuple:
        if not isinstance(value, list):
            raise wrong
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]", file) for i, v in enumerate(value))
        if len(value) != len(args):
            raise AssignmentError(
                file, key, f"expected {len(args)} values, got {len(value)}", f"write {len(args)} values"
            )
        return tuple(_convert(v, a, f"{key}[{i}]", file) for i, (v, a) in enumerate(zip(value, args, strict=False)))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        return float(value)
    if tp is int or tp is str or tp is bool:
        if type(value) is not tp:
            raise wrong
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {key}")  # a bug in the schema, not in the file


def _build(cls: type, table: dict, where: str, file: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in ("source", "digest")}
    for k in table:
        if k not in fields:
            known = ", ".join(fields)
            raise AssignmentError(file, _join(where, k), "unknown key", f"remove it or use one of: {known}")
    kwargs = {}
    for name, f in fields.items():
        key = _join(where, name)
        if name in table:
            kwargs[name] = _convert(table[name], hints[name], key, file)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise AssignmentError(file, key, "missing required field", f"add {name} = <{_type_name(hints[name])}>")
    return cls(**kwargs)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def resolve_path(name_or_path: str) -> Path:
    """A bundled assignment's name (``variant-a``) or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return path
    bundled = ASSIGNMENTS_DIR / f"{name_or_path}.toml"
    if bundled.exists():
        return bundled
    names = ", ".join(sorted(p.stem for p in ASSIGNMENTS_DIR.glob("*.toml")))
    raise AssignmentError(
        name_or_path, "assignment", "no such assignment", f"use a bundled one ({names}) or a .toml path"
    )


def bundled_assignments() -> list[str]:
    return sorted(p.stem for p in ASSIGNMENTS_DIR.glob("*.toml"))


def load_assignment(name_or_path: str = DEFAULT_ASSIGNMENT) -> Assignment:
    """Load and validate an assignment; raise :class:`AssignmentError` on any problem."""
    path = resolve_path(name_or_path)
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AssignmentError(file, "file", f"cannot read it ({e.strerror})", "check the path") from None
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise AssignmentError(file, "syntax", f"not valid TOML ({e})", "fix the TOML syntax") from None
    assignment = _build(Assignment, table, "", file)
    assignment = dataclasses.replace(assignment, source=file, digest=hashlib.sha256(raw).hexdigest()[:16])
    _validate(assignment, file)
    return assignment
