import pytest

from harness.config.assignment import AssignmentError, bundled_assignments, load_assignment, plan_layers

RUBRIC = {
    "ae_architecture": 6,
    "ae_forward": 1,
    "ae_training": 6,
    "ae_sampling": 2,
    "ae_sampling_answer": 2,
    "vae_model": 7,
    "vae_training": 4,
    "beta0_answer": 3,
    "beta10_answer": 3,
    "welltuned_answer": 3,
    "beta_tuning": 5,
    "interpolation": 3,
}
QUESTIONS = {"ae-samples": 150, "beta-0": 150, "beta-10": 200, "well-tuned": 200, "interpolation": 300}


@pytest.mark.parametrize("name", ["variant-a", "variant-b"])
def test_bundled_variants_load_with_the_handouts_rubric_and_questions(name):
    a = load_assignment(name)
    assert {r.id: r.points for r in a.rubric} == RUBRIC
    assert a.max_total == 45
    assert {q.id: q.word_limit for q in a.questions} == QUESTIONS
    assert all(q.concepts and all(c.synonyms for c in q.concepts) for q in a.questions)
    assert [p.name for p in a.profiles] == ["full", "quick", "smoke"]
    assert [r.beta for r in a.training.fixed] == [0.0, 10.0]
    assert a.profile("full").train_images == 0 and a.profile("full").epoch_scale == 1.0


def test_both_variants_are_bundled_and_differ_as_the_handout_says():
    assert {"variant-a", "variant-b"} <= set(bundled_assignments())
    a, b = load_assignment("variant-a"), load_assignment("variant-b")
    assert [layer.out_channels for layer in a.model.encoder] == [32, 64, 128, 256]
    assert [layer.out_resolution for layer in b.model.encoder] == [13, 6, 2, 1]
    assert [layer.out_channels for layer in b.model.encoder] == [48, 96, 192, 384]
    assert (b.training.ae.epochs, b.training.ae.learning_rate, b.sampling.seed) == (11, 1.5e-3, 42)
    assert a.sampling.seed is None


def test_profiles_scale_epochs_and_never_drop_to_zero():
    a = load_assignment("variant-a")
    assert a.profile("full").epochs(20) == 20
    assert a.profile("quick").epochs(10) == 3
    assert a.profile("smoke").epochs(1) == 1


def test_plan_solves_each_layers_stride_and_padding():
    a = load_assignment("variant-a")
    plan = plan_layers(a.model.encoder, 1, 28)
    assert [(p.geometry.stride, p.geometry.padding) for p in plan] == [(2, 1), (2, 1), (2, 0), (1, 0)]


def _load_text(tmp_path, text, name="broken.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_assignment(str(path))


def _expect_error(tmp_path, text, key_part):
    with pytest.raises(AssignmentError) as err:
        _load_text(tmp_path, text)
    message = str(err.value)
    assert "broken.toml" in message and key_part in err.value.key and "Fix:" in message
    return err.value


def test_unknown_key_is_named_with_its_path_and_the_valid_keys(tmp_path, variant_a_text):
    e = _expect_error(tmp_path, variant_a_text.replace("nz = 64", "nz = 64\nlatent_dims = 3"), "model.latent_dims")
    assert "unknown key" in e.problem and "nz" in e.fix


def test_wrong_type_names_the_expected_type(tmp_path, variant_a_text):
    e = _expect_error(tmp_path, variant_a_text.replace("nz = 64", 'nz = "64"'), "model.nz")
    assert "expected an integer" in e.problem


def test_wrong_literal_lists_the_allowed_values(tmp_path, variant_a_text):
    text = variant_a_text.replace('activation = "sigmoid"', 'activation = "softmax"')
    e = _expect_error(tmp_path, text, "model.decoder[4].activation")
    assert "'sigmoid'" in e.problem


def test_missing_field_is_named(tmp_path, variant_a_text):
    e = _expect_error(tmp_path, variant_a_text.replace("batch_size = 64\n", ""), "training.batch_size")
    assert "missing" in e.problem


def test_unreachable_resolution_fails_at_load_with_reachable_choices(tmp_path, variant_a_text):
    text = variant_a_text.replace("out_channels = 128\nout_resolution = 3", "out_channels = 128\nout_resolution = 6")
    e = _expect_error(tmp_path, text, "model.encoder[2].out_resolution")
    assert "7x7 to 6x6 with kernel 3" in e.problem and "[" in e.fix


def test_decoder_that_does_not_end_at_the_image_size_fails(tmp_path, variant_a_text):
    text = variant_a_text.replace(
        "out_channels = 1\nout_resolution = 28\nkernel = 4", "out_channels = 1\nout_resolution = 27\nkernel = 4"
    )
    _expect_error(tmp_path, text, "model.decoder[4]")


def test_fixed_run_without_beta_fails(tmp_path, variant_a_text):
    text = variant_a_text.replace('name = "beta-0"\nbeta = 0.0\n', 'name = "beta-0"\n')
    _expect_error(tmp_path, text, "training.fixed[0].beta")


def test_invalid_toml_and_missing_file_give_clear_errors(tmp_path):
    with pytest.raises(AssignmentError, match="not valid TOML"):
        _load_text(tmp_path, "[meta\nid=")
    with pytest.raises(AssignmentError, match="cannot read"):
        load_assignment(str(tmp_path / "absent.toml"))
    with pytest.raises(AssignmentError, match="no such assignment"):
        load_assignment("variant-zz")


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(AssignmentError, match="full, quick, smoke"):
        load_assignment("variant-a").profile("huge")


def test_a_new_years_handout_is_a_new_config(tmp_path, variant_a_text):
    text = variant_a_text.replace("nz = 64", "nz = 16").replace("out_channels = 256", "out_channels = 100")
    a = _load_text(tmp_path, text, "year3.toml")
    assert a.model.nz == 16 and a.model.encoder[3].out_channels == 100 and a.model.decoder[0].out_channels == 100


OPEN_LINE = '\nopen = ["kernel", "batch_norm"]\n'  # the layer's key, not the header comment that quotes it


def test_bundled_open_fields_are_the_handouts_dotted_decoder_layer():
    for name, channels in (("variant-a", 32), ("variant-b", 48)):
        a = load_assignment(name)
        opened = [(i, layer.out_channels, layer.open) for i, layer in enumerate(a.model.decoder) if layer.open]
        assert opened == [(3, channels, ("kernel", "batch_norm"))], name
        assert all(layer.open == () for layer in a.model.encoder)


def test_open_field_listed_twice_fails(tmp_path, variant_a_text):
    assert variant_a_text.count(OPEN_LINE) == 1
    text = variant_a_text.replace(OPEN_LINE, '\nopen = ["kernel", "batch_norm", "kernel"]\n')
    e = _expect_error(tmp_path, text, "model.decoder[3].open")
    assert "'kernel' is listed twice" in e.problem


def test_open_kernel_on_a_linear_layer_fails_but_open_batch_norm_is_fine(tmp_path, variant_a_text):
    linear = 'kind = "linear"\nout_channels = 256\nout_resolution = 1\n'
    assert variant_a_text.count(linear) == 1
    e = _expect_error(tmp_path, variant_a_text.replace(linear, linear + 'open = ["kernel"]\n'), "model.decoder[0].open")
    assert "linear layer has no kernel" in e.problem
    a = _load_text(tmp_path, variant_a_text.replace(linear, linear + 'open = ["batch_norm"]\n'), "fine.toml")
    assert a.model.decoder[0].open == ("batch_norm",)


def test_unknown_open_field_lists_the_allowed_ones(tmp_path, variant_a_text):
    e = _expect_error(tmp_path, variant_a_text.replace(OPEN_LINE, '\nopen = ["stride"]\n'), "model.decoder[3].open[0]")
    assert "'kernel' or 'batch_norm'" in e.problem


def test_open_fields_do_not_change_the_reference_cache_key(tmp_path, variant_a_text):
    closed = _load_text(tmp_path, variant_a_text.replace(OPEN_LINE, "\n"), "closed.toml")
    assert closed.model.decoder[3].open == ()
    assert closed.training_digest == load_assignment("variant-a").training_digest
    layer = "out_resolution = 14\nkernel = 4\nbatch_norm = true"  # decoder layer 4 (encoder layer 1 has no batch norm)
    assert variant_a_text.count(layer) == 1
    kernel3 = variant_a_text.replace(layer, layer.replace("kernel = 4", "kernel = 3"))
    assert _load_text(tmp_path, kernel3, "k3.toml").training_digest != closed.training_digest


# --------------------------------------------------------------------------- [notebook] roles and names

SAMPLING_ROLE = '{ name = "sampling", anchors = ["def vis_samples(model):"] }'


def test_a_misspelt_notebook_role_is_an_error_naming_the_role_and_the_known_ones(tmp_path, variant_a_text):
    assert variant_a_text.count(SAMPLING_ROLE) == 1
    text = variant_a_text.replace(SAMPLING_ROLE, SAMPLING_ROLE.replace('"sampling"', '"samplng"'))
    e = _expect_error(tmp_path, text, "notebook.roles[6].name")
    assert "unknown role 'samplng'" in e.problem and "sampling" in e.fix and "question.<id>" in e.fix


def test_a_notebook_without_a_role_an_adapter_needs_is_an_error_naming_it(tmp_path, variant_a_text):
    e = _expect_error(tmp_path, variant_a_text.replace(f"  {SAMPLING_ROLE},\n", ""), "notebook.roles")
    assert "no role 'sampling'" in e.problem and "generate_samples" in e.problem and 'name = "sampling"' in e.fix


def test_the_bundled_notebook_names_are_the_handouts_and_default_to_them():
    from harness.config.assignment import NotebookNames

    a, b = load_assignment("variant-a").notebook.names, load_assignment("variant-b").notebook.names
    assert (a.dataset, a.loader, a.loss_lists) == ("mnist_train", "mnist_data_loader", ("rec_loss", "kl_loss"))
    assert (a.run_function, b.run_function) == ("", "run_with_beta")
    assert b == NotebookNames()  # the defaults are the 2026 handout's names: a short [notebook] gets them


@pytest.mark.parametrize(
    "line, key, problem",
    [
        ('loader = "mnist data loader"', "notebook.names.loader", "not a Python name"),
        ('loader = "for"', "notebook.names.loader", "not a Python name"),
        ('loader = "mnist_train"', "notebook.names.loader", "'mnist_train' is also notebook.names.dataset"),
        ('loss_lists = ["rec_loss", "rec_loss"]', "notebook.names.loss_lists[1]", "is also"),
        ('sample_function = ""', "notebook.names.sample_function", "not a Python name"),
        ('loss_lists = ["rec_loss"]', "notebook.names.loss_lists", "expected 2 values"),
        ('sampler = "vis_samples"', "notebook.names.sampler", "unknown key"),
    ],
    ids=["space", "keyword", "twice", "twice-in-a-list", "blank", "one-list", "unknown-key"],
)
def test_a_bad_notebook_name_is_an_error_naming_its_key(tmp_path, variant_a_text, line, key, problem):
    old = line.split(" = ")[0] + " = "
    lines = variant_a_text.splitlines(keepends=True)
    at = lines.index("[notebook.names]\n")
    kept = [x for x in lines[at:] if not x.startswith(old)]
    text = "".join(lines[:at] + kept[:1] + [line + "\n"] + kept[1:])
    e = _expect_error(tmp_path, text, key)
    assert problem in e.problem


def test_the_cells_file_carries_the_configs_names_to_the_notebook_unit(tmp_path):
    """The sandbox's notebook adapters read the handout's names from the cells the host writes."""
    import torch

    from harness.config.assignment import NotebookNames
    from harness.sandbox.host import write_cells
    from harness.sandbox.notebook_run import Notebook, load_cells
    from harness.submission.contents import CodeSource

    names = NotebookNames(loader="train_loader", loss_lists=("rec", "kl"), run_function="")

    class Sub:
        label = "hw.ipynb"
        code = [CodeSource("cell 3", "x = 1", 3, "data")]

    write_cells(tmp_path / "cells.json", Sub(), names)
    cells = load_cells(tmp_path / "cells.json")
    assert list(cells) == [{"number": 3, "role": "data", "text": "x = 1"}] and cells.names == names
    nb = Notebook(cells, {"images": torch.rand(2, 1, 28, 28), "labels": torch.arange(2)}, lambda phase: None, 5.0)
    try:
        assert nb.handout == names
    finally:
        nb.restore()
