"""The starter submission (harness/submission/starter.py): rendered from the config, valid,
unsolved, never overwrites."""

import ast
import dataclasses
import importlib.util
import re
import tomllib

import pytest

from harness.config.assignment import load_assignment
from harness.submission.starter import render_starter, write_starter

FUNCTIONS = {
    "make_data_loader": ("dataset", 64, 0),
    "train_autoencoder": (None, None, 1, 1e-3, "cpu"),
    "generate_samples": (None, 16, 64, "cpu"),
    "train_vae": (None, None, 1, 1e-3, "cpu"),
}
CLASSES = {"Encoder": (64,), "Decoder": (64,), "AutoEncoder": (64,), "VAE": (64, 1.0)}


def _import(path):
    spec = importlib.util.spec_from_file_location(f"starter_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _comment_lines(source: str) -> str:
    return "\n".join(line for line in source.splitlines() if line.lstrip().startswith("#"))


@pytest.mark.parametrize("name", ["variant-a", "variant-b"])
def test_starter_compiles_imports_and_solves_nothing(name, tmp_path):
    a = load_assignment(name)
    written = write_starter(a, tmp_path / "sub", student="Ada", student_id="ada")
    assert [p.name for p in written] == ["submission.py", "answers.md", "submission.toml"]
    source = (tmp_path / "sub" / "submission.py").read_text()
    compile(source, "submission.py", "exec")

    module = _import(tmp_path / "sub" / "submission.py")
    for fn, args in FUNCTIONS.items():
        with pytest.raises(NotImplementedError):
            getattr(module, fn)(*args)
    for cls, args in CLASSES.items():
        with pytest.raises(NotImplementedError):
            getattr(module, cls)(*args)

    # every function body is a TODO and a raise, nothing else
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef):
            body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            assert isinstance(body[-1], ast.Raise), node.name
            assert all(isinstance(s, ast.Raise) or "super().__init__" in ast.unparse(s) for s in body), node.name


@pytest.mark.parametrize("name", ["variant-a", "variant-b"])
def test_layer_tables_come_from_the_config(name):
    a = load_assignment(name)
    comments = _comment_lines(render_starter(a)["submission.py"])
    for layer in (*a.model.encoder, *a.model.decoder):
        assert re.search(rf"\b{layer.out_channels}\b", comments), layer
        assert f"{layer.out_resolution} x {layer.out_resolution}" in comments, layer
    image = f"MNIST {a.data.image_channels} x {a.data.image_size} x {a.data.image_size}"
    assert image in render_starter(a)["submission.py"]
    assert "exp(log_s1)^2" in comments  # the handout's KL helper


def test_a_changed_config_changes_the_starter(assignment):
    wider = dataclasses.replace(
        assignment,
        model=dataclasses.replace(
            assignment.model,
            nz=17,
            encoder=tuple(
                dataclasses.replace(layer, out_channels=layer.out_channels + 1) for layer in assignment.model.encoder
            ),
        ),
        training=dataclasses.replace(assignment.training, batch_size=123),
    )
    source = render_starter(wider)["submission.py"]
    compile(source, "submission.py", "exec")
    assert "Conv2d(1 -> 33, kernel 4)" in source and "Linear(257 -> nz)" in source
    assert "nz = 17" in source and "batch_size = 123" in source


@pytest.mark.parametrize("name", ["variant-a", "variant-b"])
def test_answers_have_one_section_per_question_in_order(name):
    a = load_assignment(name)
    answers = render_starter(a)["answers.md"]
    headings = re.findall(r"^## (.+)$", answers, flags=re.M)
    assert headings == [q.id for q in a.questions] and len(headings) == 5
    for q in a.questions:
        assert f"> {q.prompt} (at most {q.word_limit} words)" in answers


def test_submission_toml_parses_with_the_students_details(assignment, tmp_path):
    write_starter(assignment, tmp_path, student='Ada "Q" Lovelace', student_id="ada-1")
    meta = tomllib.loads((tmp_path / "submission.toml").read_text())
    assert meta == {"student": 'Ada "Q" Lovelace', "student_id": "ada-1", "tuned_beta": 0.0}
    assert '(Ada "Q" Lovelace)' in (tmp_path / "answers.md").read_text().splitlines()[0]


def test_refuses_to_overwrite_any_existing_file(assignment, tmp_path):
    dest = tmp_path / "sub"
    write_starter(assignment, dest)
    (dest / "answers.md").write_text("my answers")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_starter(assignment, dest)
    assert (dest / "answers.md").read_text() == "my answers"

    only_toml = tmp_path / "other"
    only_toml.mkdir()
    (only_toml / "submission.toml").write_text("student = 'x'\n")
    with pytest.raises(FileExistsError, match="submission.toml"):
        write_starter(assignment, only_toml)
    assert sorted(p.name for p in only_toml.iterdir()) == ["submission.toml"]  # nothing else was written


def test_a_folder_with_other_files_is_fine_but_a_file_is_not(assignment, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    assert len(write_starter(assignment, tmp_path)) == 3
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(NotADirectoryError):
        write_starter(assignment, target)


def test_configured_names_and_file_names_are_used(assignment, tmp_path):
    sub = assignment.submission
    renamed = dataclasses.replace(
        assignment,
        submission=dataclasses.replace(
            sub, module="vae_hw.py", names=dataclasses.replace(sub.names, vae="BetaVAE", data_loader="get_loader")
        ),
    )
    written = write_starter(renamed, tmp_path)
    assert [p.name for p in written] == ["vae_hw.py", "answers.md", "submission.toml"]
    module = _import(tmp_path / "vae_hw.py")
    assert hasattr(module, "BetaVAE") and hasattr(module, "get_loader") and not hasattr(module, "VAE")
