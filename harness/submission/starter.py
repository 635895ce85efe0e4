"""Write a starter submission folder for an assignment (``python -m harness init``).

The three files come from the jinja2 templates in ``harness/submission/starter_templates/`` and are
rendered from the :class:`~harness.config.assignment.Assignment` alone: layer tables, latent size,
hyper-parameters, questions and word limits all come from the config, so a new year's
handout gets a matching starter without code edits. Nothing in the starter is solved: every
function and method body is a ``# TODO`` and ``raise NotImplementedError``.
The submission format itself is described in ``docs/submission-format.md``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jinja2

from harness.config.assignment import Assignment, LayerSpec, plan_layers

# The three files, by role: each is rendered from ``starter_templates/<role>.j2`` and written
# under the name the assignment's ``[submission]`` table gives it.
TEMPLATES = {"module": "submission.py.j2", "answers": "answers.md.j2", "meta": "submission.toml.j2"}


def starter_files(a: Assignment) -> dict[str, str]:
    """Role -> file name in the submission folder (``submission.py``, ``answers.md``, ``submission.toml``)."""
    return {role: getattr(a.submission, role) for role in TEMPLATES}


def submission_names(a: Assignment) -> dict[str, str]:
    """Role -> the name ``submission.py`` must define (``[submission.names]``, e.g. ``vae`` -> ``VAE``)."""
    return dataclasses.asdict(a.submission.names)


def _activation(name: str, slope: float) -> str:
    return {"leaky_relu": f"LeakyReLU({slope:g})", "relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh"}.get(name, "")


def _describe(
    layers: tuple[LayerSpec, ...], in_channels: int, in_resolution: int, slope: float, latent: str
) -> list[str]:
    """One comment line per layer: module, input -> output shape, kernel, extras; a layer with
    open fields gets a second line saying the handout leaves them to the student."""
    lines = []
    for i, p in enumerate(plan_layers(layers, in_channels, in_resolution)):
        s, last = p.spec, i == len(layers) - 1
        out = f"{s.out_channels} x {s.out_resolution} x {s.out_resolution}"
        if s.kind == "linear":
            features_in = p.in_channels * p.in_resolution**2
            source = latent if (i == 0 and latent) else str(features_in)
            flatten = "Flatten + " if p.in_resolution > 1 else ""
            core = f"{flatten}Linear({source} -> {s.out_channels * s.out_resolution**2})"
            following = layers[i + 1].kind if not last else ""
            if following in ("conv", "conv_transpose") or (last and s.out_resolution > 1) or s.batch_norm:
                core += f", reshape to ({s.out_channels}, {s.out_resolution}, {s.out_resolution})"
        else:
            module = "Conv2d" if s.kind == "conv" else "ConvTranspose2d"
            size_in = f"{p.in_resolution} x {p.in_resolution}"
            core = f"{module}({p.in_channels} -> {s.out_channels}, kernel {s.kernel}): {size_in} -> {out}"
        extras = [f"BatchNorm2d({s.out_channels})"] if s.batch_norm else []
        if act := _activation(s.activation, slope):
            extras.append(act)
        if not s.bias:
            extras.append("no bias")
        lines.append(f"{i + 1}. {core}" + "".join(f", {e}" for e in extras))
        if s.open:  # a "..." line of the handout's table: the values above are one choice
            fields = " and ".join("batch norm" if f == "batch_norm" else f for f in s.open)
            verb = "are" if len(s.open) > 1 else "is"
            lines.append(
                f"   (the handout writes this layer as '...': {fields} {verb} your choice, "
                f"any that reaches {s.out_resolution} x {s.out_resolution})"
            )
    return lines


def _toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are a subset of TOML's)."""
    return json.dumps(value, ensure_ascii=False)


def _docstring_text(value: str) -> str:
    """Text that is safe inside a triple-quoted Python docstring."""
    return str(value).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.submission", "starter_templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["toml_string"] = _toml_string
    env.filters["g"] = lambda x: f"{x:g}"
    env.filters["doc"] = _docstring_text
    return env


def render_starter(a: Assignment, student: str = "", student_id: str = "") -> dict[str, str]:
    """The starter's three files, rendered from ``a``, as ``{file name: text}`` (submission.py first)."""
    m, slope = a.model, a.model.leaky_relu_slope
    last = m.encoder[-1]
    head_in = last.out_channels * last.out_resolution**2
    context = {
        "a": a,
        "names": submission_names(a),
        "nz": m.nz,
        "image_channels": a.data.image_channels,
        "image_size": a.data.image_size,
        "encoder_lines": _describe(m.encoder, a.data.image_channels, a.data.image_size, slope, ""),
        "encoder_head": f"{len(m.encoder) + 1}. Flatten + Linear({head_in} -> nz)",
        "decoder_lines": _describe(m.decoder, m.nz, 1, slope, "nz"),
        "student": student,
        "student_id": student_id,
    }
    env = _environment()
    files = starter_files(a)
    return {files[role]: env.get_template(template).render(context) for role, template in TEMPLATES.items()}


def write_starter(a: Assignment, dest: Path, student: str = "", student_id: str = "") -> list[Path]:
    """Write ``submission.py``, ``answers.md`` and ``submission.toml`` into ``dest``.

    ``dest`` is created if needed. Raises :class:`FileExistsError` if it already holds any of
    the three files (nothing is written then), and :class:`NotADirectoryError` if it is a file.
    Returns the written paths.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"{dest} is a file, not a folder: choose a folder for the starter submission")
    existing = [name for name in starter_files(a).values() if (dest / name).exists()]
    if existing:
        raise FileExistsError(
            f"{dest} already contains {', '.join(existing)}: refusing to overwrite a submission. "
            "Choose a new folder, or move those files away first."
        )
    files = render_starter(a, student, student_id)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = dest / name
        with path.open("x", encoding="utf-8") as f:  # "x": never overwrite, even in a race
            f.write(text)
        written.append(path)
    return written
