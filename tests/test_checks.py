"""Fast checks on the example, on planted bugs and on legitimate variants (stand-in data, no training).

Each planted bug is a copy of the example with one defect; it must lose points on
exactly its own item and keep every other item's points. Each variant is a
legitimate way of writing the same thing and must keep full points.
"""

from __future__ import annotations

import pytest

from tests.helpers import EXAMPLE, copy_example

FUNCTIONAL = '''
class Encoder(nn.Module):
    """Functional style: parameters in a ModuleList, activations as calls, any LeakyReLU slope."""

    def __init__(self, nz):
        super().__init__()
        self.c1 = nn.Conv2d(1, 32, 4, 2, 1)
        self.c2, self.b2 = nn.Conv2d(32, 64, 4, 2, 1), nn.BatchNorm2d(64)
        self.c3, self.b3 = nn.Conv2d(64, 128, 3, 2, 0), nn.BatchNorm2d(128)
        self.c4, self.b4 = nn.Conv2d(128, 256, 3, 1, 0), nn.BatchNorm2d(256)
        self.fc = nn.Linear(256, nz)

    def forward(self, x):
        x = F.leaky_relu(self.c1(x), 0.1)
        x = F.leaky_relu(self.b2(self.c2(x)), 0.1)
        x = F.leaky_relu(self.b3(self.c3(x)), 0.1)
        x = F.leaky_relu(self.b4(self.c4(x)), 0.1)
        return self.fc(torch.flatten(x, 1))


class Decoder(nn.Module):
    def __init__(self, nz):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(nz, 256), nn.Unflatten(1, (256, 1, 1)), nn.BatchNorm2d(256))
        self.t1, self.b1 = nn.ConvTranspose2d(256, 128, 3, 1, 0), nn.BatchNorm2d(128)
        self.t2, self.b2 = nn.ConvTranspose2d(128, 64, 3, 2, 0), nn.BatchNorm2d(64)
        self.t3, self.b3 = nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.BatchNorm2d(32)
        self.t4 = nn.ConvTranspose2d(32, 1, 4, 2, 1)

    def forward(self, z):
        h = F.leaky_relu(self.fc(z), 0.01)
        h = F.leaky_relu(self.b1(self.t1(h)), 0.01)
        h = F.leaky_relu(self.b2(self.t2(h)), 0.01)
        h = F.leaky_relu(self.b3(self.t3(h)), 0.01)
        return torch.sigmoid(self.t4(h))
'''

CHATTY = """
import sys as _sys
import warnings as _warnings

print("loading my submission " * 50)
print("some debugging output on stderr\\n" * 200, file=_sys.stderr)
_warnings.warn("this API is deprecated", DeprecationWarning)
_warnings.warn("a user warning")
"""

ENC_CONV3 = "nn.Conv2d(64, 128, kernel_size=3, stride=2, padding=0),"
LONG = " ".join(["The samples look like noise because the latent distribution is arbitrary."] * 20)

PLANTED = {
    "wrong-channels": (
        "ae_architecture",
        [
            (
                "nn.Conv2d(32, 64, kernel_size=4, stride=2, padding=1),\n            nn.BatchNorm2d(64),",
                "nn.Conv2d(32, 48, kernel_size=4, stride=2, padding=1),\n            nn.BatchNorm2d(48),",
            ),
            ("nn.Conv2d(64, 128, kernel_size=3", "nn.Conv2d(48, 128, kernel_size=3"),
        ],
        [],
    ),
    "missing-batch-norm": ("ae_architecture", [(ENC_CONV3 + "\n            nn.BatchNorm2d(128),", ENC_CONV3)], []),
    "missing-sigmoid": ("ae_architecture", [("nn.Sigmoid(),  # pixels are in [0, 1]", "")], []),
    "no-bias": (
        "ae_architecture",
        [
            (
                "nn.Conv2d(1, 32, kernel_size=4, stride=2, padding=1),",
                "nn.Conv2d(1, 32, kernel_size=4, stride=2, padding=1, bias=False),",
            )
        ],
        [],
    ),
    "wrong-resolution": (
        "ae_architecture",
        [
            (ENC_CONV3, ENC_CONV3.replace("padding=0", "padding=1")),
            (
                "nn.Conv2d(128, 256, kernel_size=3, stride=1, padding=0)",
                "nn.Conv2d(128, 256, kernel_size=3, stride=2, padding=0)",
            ),
        ],
        [],
    ),
    "wrong-kernel": (
        "ae_architecture",
        [
            (
                "nn.Conv2d(1, 32, kernel_size=4, stride=2, padding=1)",
                "nn.Conv2d(1, 32, kernel_size=3, stride=2, padding=1)",
            )
        ],
        [],
    ),
    "loader-not-shuffled": ("ae_forward", [("shuffle=True", "shuffle=False")], []),
    "loader-ignores-batch-size": ("ae_forward", [("batch_size=batch_size", "batch_size=64")], []),
    "loader-ignores-workers": ("ae_forward", [("num_workers=num_workers", "num_workers=0")], []),
    "uniform-prior-draws": (
        "ae_sampling",
        [("z = torch.randn(n, nz, device=device)", "z = torch.rand(n, nz, device=device)")],
        [],
    ),
    "scaled-prior-draws": (
        "ae_sampling",
        [("z = torch.randn(n, nz, device=device)", "z = 0.8 * torch.randn(n, nz, device=device)")],
        [],
    ),
    "wrong-sample-count": (
        "ae_sampling",
        [("z = torch.randn(n, nz, device=device)", "z = torch.randn(16, nz, device=device)")],
        [],
    ),
    "no-reparameterisation": ("vae_model", [("z = mu + torch.exp(log_sigma) * eps", "z = mu")], []),
    "sigma-without-exp": ("vae_model", [("z = mu + torch.exp(log_sigma) * eps", "z = mu + log_sigma * eps")], []),
    "kl-reversed": (
        "vae_model",
        [("kl_divergence(mu, log_sigma, zeros, zeros)", "kl_divergence(zeros, zeros, mu, log_sigma)")],
        [],
    ),
    "kl-not-scalar": ("vae_model", [(".sum(dim=1).mean()", ".sum(dim=1)")], []),
    "beta-ignored": ("vae_model", [("return rec_loss + self.beta * kl_loss,", "return rec_loss + kl_loss,")], []),
    "reconstruct-samples": (
        "vae_model",
        [("mu = self.encoder(x)[:, : self.nz]\n        return self.decoder(mu)", 'return self.forward(x)["rec"]')],
        [],
    ),
    "l1-reconstruction": ("vae_model", [("rec_loss = F.mse_loss(rec, x)", "rec_loss = F.l1_loss(rec, x)")], []),
    "encoder-emits-nz": ("vae_model", [("self.encoder = Encoder(2 * nz)", "self.encoder = Encoder(nz)")], []),
    "missing-answer": ("beta10_answer", [], [("## beta-10", "## beta-ten")]),
    "over-long-answer": ("ae_sampling_answer", [], [("## ae-samples\n", "## ae-samples\n" + LONG + "\n")]),
}

VARIANTS = {
    "log-variance": [
        ("z = mu + torch.exp(log_sigma) * eps", "z = mu + torch.exp(0.5 * log_sigma) * eps"),
        ("kl_divergence(mu, log_sigma, zeros, zeros)", "kl_divergence(mu, 0.5 * log_sigma, zeros, zeros)"),
    ],
    "mean-over-elements-kl-and-per-image-sum-mse": [
        (".sum(dim=1).mean()", ".mean()"),
        ("rec_loss = F.mse_loss(rec, x)", 'rec_loss = F.mse_loss(rec, x, reduction="sum") / x.shape[0]'),
    ],
    "sums-over-everything": [
        (".sum(dim=1).mean()", ".sum()"),
        ("rec_loss = F.mse_loss(rec, x)", 'rec_loss = F.mse_loss(rec, x, reduction="sum")'),
    ],
    "other-stride-padding": [
        (ENC_CONV3, ENC_CONV3.replace("stride=2, padding=0", "stride=3, padding=1")),
        (
            "nn.ConvTranspose2d(128, 64, kernel_size=3, stride=2, padding=0)",
            "nn.ConvTranspose2d(128, 64, kernel_size=3, stride=3, padding=1)",
        ),
    ],
}


def test_example_earns_full_points_on_every_item_check_grades(run_check, assignment):
    result = run_check(EXAMPLE)
    assert not result.problems
    for item in result.items:
        assert item.points == item.max_points, (item.id, item.evidence)
    assert {i.id for i in result.items} | set(result.pending) == {r.id for r in assignment.rubric}
    assert result.pending == ["ae_training", "vae_training", "beta_tuning", "interpolation"]
    vae = next(i for i in result.items if i.id == "vae_model")
    assert vae.metrics["parameterisation"] == "log_sigma" and vae.metrics["beta_factor"] == 1.0


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_bug_costs_its_own_item_and_nothing_else(name, tmp_path, run_check, example_points):
    item_id, code_edits, answer_edits = PLANTED[name]
    folder = copy_example(tmp_path / name, code_edits, answers=answer_edits)
    result = run_check(folder)
    points = {i.id: i.points for i in result.items}
    assert points[item_id] < example_points[item_id], next(i.evidence for i in result.items if i.id == item_id)
    others = {k: v for k, v in points.items() if k != item_id}
    assert others == {k: v for k, v in example_points.items() if k != item_id}


def test_planted_bug_suite_is_large_enough():
    assert len(PLANTED) >= 15 and len(VARIANTS) + 2 >= 6


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_legitimate_variant_keeps_full_points(name, tmp_path, run_check, example_points):
    result = run_check(copy_example(tmp_path / name, VARIANTS[name]))
    assert {i.id: i.points for i in result.items} == example_points, [
        i.evidence for i in result.items if i.status != "pass"
    ]


def test_functional_activations_and_unflatten_keep_full_points(tmp_path, run_check, example_points):
    result = run_check(copy_example(tmp_path / "functional", append=FUNCTIONAL))
    assert {i.id: i.points for i in result.items} == example_points, [i.evidence for i in result.items]


def test_chatty_stdout_stderr_and_warnings_cost_nothing(tmp_path, run_check, example_points):
    result = run_check(copy_example(tmp_path / "chatty", append=CHATTY))
    assert {i.id: i.points for i in result.items} == example_points


def test_sum_reductions_are_detected_and_beta_factor_recorded(tmp_path, run_check, assignment):
    result = run_check(copy_example(tmp_path / "sums", VARIANTS["sums-over-everything"]))
    metrics = next(i for i in result.items if i.id == "vae_model").metrics
    assert metrics["rec_reduction"] == "sum over all elements" and metrics["kl_reduction"] == "sum over all elements"
    assert metrics["beta_factor"] == pytest.approx(1 / 784)


def test_a_broken_decoder_is_replaced_by_the_reference_for_the_vae_test(tmp_path, run_check):
    folder = copy_example(
        tmp_path / "bad-decoder", [("        return self.net(h)\n", "        return self.net(h)[:, :, :27, :27]\n")]
    )
    items = {i.id: i for i in run_check(folder).items}
    assert items["ae_forward"].points < items["ae_forward"].max_points
    assert items["vae_model"].points == items["vae_model"].max_points
    assert any("reference decoder" in e for e in items["vae_model"].evidence)
