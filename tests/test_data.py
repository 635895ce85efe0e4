import pytest
import torch
import torchvision

from harness.ml.data import (
    ENV_DATA,
    DataNotFound,
    TensorMNIST,
    fingerprint,
    first_of_each_label,
    load_mnist,
    resolve_source,
    shuffled_batches,
    subset,
)


def test_data_root_comes_from_the_flag_then_the_environment_then_the_user_cache(tmp_path):
    env = {ENV_DATA: str(tmp_path / "env"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert resolve_source(tmp_path / "flag", env).root == tmp_path / "flag"
    s = resolve_source(None, env)
    assert (s.root, s.origin, s.download) == (tmp_path / "env", ENV_DATA, False)
    s = resolve_source(None, {})
    assert s.origin == "user cache" and s.download and s.root.name == "mnist"


def test_a_folder_without_mnist_gives_one_clear_message(tmp_path):
    with pytest.raises(DataNotFound) as err:
        load_mnist(tmp_path, {})
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and ENV_DATA in message and "--data" in message


def test_a_missing_folder_is_reported_before_torchvision_is_asked(tmp_path):
    with pytest.raises(DataNotFound, match="is not a folder"):
        load_mnist(tmp_path / "nowhere", {})


def test_without_data_the_user_cache_is_downloaded_into_up_to_the_network_call(tmp_path, monkeypatch):
    # The real torchvision download runs; its mirror is a closed port on loopback, so the
    # network call fails fast here as it would on a machine without internet.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(ENV_DATA, raising=False)
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(DataNotFound) as err:
        load_mnist(None, {})
    assert "download failed" in str(err.value) and "127.0.0.1:9" in str(err.value)
    assert (tmp_path / "harness" / "mnist" / "MNIST" / "raw").is_dir()


def test_decoded_images_equal_torchvisions_to_tensor(mnist):
    ds = torchvision.datasets.MNIST(str(mnist.source.root), train=True, transform=torchvision.transforms.ToTensor())
    for i in (0, 1, len(ds) - 1):
        image, label = ds[i]
        torch.testing.assert_close(mnist.train_images[i], image, rtol=0, atol=0)
        assert mnist.train_labels[i] == label
    assert mnist.train_images.dtype == torch.float32 and mnist.train_images.shape[1:] == (1, 28, 28)
    assert len(mnist.test_images) == len(mnist.test_labels) > 0


def test_tensor_dataset_behaves_like_torchvision_mnist_items(mnist):
    ds = TensorMNIST(mnist.train_images, mnist.train_labels)
    image, label = ds[3]
    assert isinstance(label, int) and image.shape == (1, 28, 28) and len(ds) == len(mnist.train_images)


def test_subsets_are_deterministic_and_fingerprints_change_with_content(mnist):
    a, la = subset(mnist.train_images, mnist.train_labels, 500, seed=0)
    b, lb = subset(mnist.train_images, mnist.train_labels, 500, seed=0)
    c, _ = subset(mnist.train_images, mnist.train_labels, 500, seed=1)
    assert torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(a, c)
    assert subset(mnist.train_images, mnist.train_labels, 0)[0] is mnist.train_images
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert len(mnist.fingerprint) == 16


def test_shuffled_batches_cover_every_image_once_per_epoch():
    images = torch.arange(10.0).reshape(10, 1, 1, 1)
    batches = list(shuffled_batches(images, 4, torch.Generator().manual_seed(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).flatten().tolist()) == list(range(10))


def test_first_of_each_label_picks_deterministic_examples(mnist):
    picks = first_of_each_label(mnist.test_labels, [5, 8])
    assert [int(mnist.test_labels[i]) for i in picks] == [5, 8]
    with pytest.raises(ValueError):
        first_of_each_label(torch.zeros(3, dtype=torch.long), [1])
