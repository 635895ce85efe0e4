import math

import pytest
import torch

from harness.ml.models import VAE, AutoEncoder
from harness.ml.training import DeviceError, TrainConfig, resolve_device, train


def _run(a, images, beta):
    torch.manual_seed(0)
    model = AutoEncoder(a) if beta is None else VAE(a, beta=beta)
    curves = train(
        model, images, TrainConfig(epochs=2, learning_rate=1e-3, batch_size=64, seed=0), torch.device("cpu"), quiet=True
    )
    return model, curves


def test_training_records_one_loss_per_iteration_and_learns(assignment, mnist):
    images = mnist.train_images[:640]
    _, curves = _run(assignment, images, None)
    assert len(curves.rec) == 20 and curves.kl == [] and curves.images == 1280
    assert all(math.isfinite(v) for v in curves.rec)
    assert sum(curves.rec[-5:]) < sum(curves.rec[:5])


def test_vae_training_records_reconstruction_and_kl(assignment, mnist):
    _, curves = _run(assignment, mnist.train_images[:320], 1e-3)
    assert len(curves.rec) == len(curves.kl) == 10 and all(k >= 0 for k in curves.kl)


def test_two_runs_with_the_same_seed_are_identical_on_cpu(assignment, mnist):
    images = mnist.train_images[:320]
    m1, c1 = _run(assignment, images, 1e-3)
    m2, c2 = _run(assignment, images, 1e-3)
    assert c1.rec == c2.rec and c1.kl == c2.kl
    for p, q in zip(m1.state_dict().values(), m2.state_dict().values(), strict=False):
        assert torch.equal(p, q)


def test_device_auto_falls_back_to_cpu_and_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    else:
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(DeviceError, match="--device cpu"):
            resolve_device("cuda")
    with pytest.raises(DeviceError, match="auto, cpu, cuda"):
        resolve_device("tpu")
