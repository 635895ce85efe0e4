"""The metrics classifier, trained once per data set and cached, and the calibration every run
is measured with (docs/reference.md#the-mnist-classifier)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.config.assignment import Assignment
from harness.io import write_json_atomic
from harness.ml import metrics
from harness.ml.data import Mnist
from harness.reference.cache import building, make_key, publish, staging_dir, versions


def classifier_folder(data: Mnist, a: Assignment, cache: Path, device: torch.device) -> Path:
    """Where the metrics classifier for this data set, seed and libraries is cached."""
    parts = {
        "data": data.fingerprint,
        "epochs": a.metrics.classifier_epochs,
        "seed": a.training.seed,
        "device": device.type,
        **versions(),
    }
    return cache / "classifier" / make_key(parts)


def load_or_train_classifier(
    data: Mnist, a: Assignment, cache: Path, device: torch.device, quiet: bool = False
) -> tuple[metrics.Classifier, float]:
    """The metrics classifier for this data set, trained once and cached; returns it and its test accuracy."""
    folder = classifier_folder(data, a, cache, device)
    if not (folder / "classifier.json").exists():
        with building(folder, quiet):
            if not (folder / "classifier.json").exists():  # else built by the process this one waited for
                clf = metrics.train_classifier(
                    data.train_images, data.train_labels, a.metrics.classifier_epochs, device, a.training.seed, quiet
                )
                acc = metrics.accuracy(clf, data.test_images, data.test_labels)
                staging = staging_dir(folder)
                torch.save(clf.state_dict(), staging / "classifier.pt")
                write_json_atomic(staging / "classifier.json", {"test_accuracy": acc, "data": data.fingerprint})
                publish(staging, folder)
    clf = metrics.Classifier()
    clf.load_state_dict(torch.load(folder / "classifier.pt", map_location="cpu", weights_only=True))
    info = json.loads((folder / "classifier.json").read_text())
    return clf.to(device).eval(), info["test_accuracy"]


@dataclass(frozen=True)
class Calibration:
    """What every reference run is measured with."""

    clf: metrics.Classifier  # the metrics classifier
    accuracy: float  # its test accuracy
    real_features: torch.Tensor  # its features of the test split: what sample FID compares with
    real_fid: float  # real-vs-real FID, the floor a perfect generator reaches at this sample size


def calibrate(a: Assignment, data: Mnist, cache: Path, device: torch.device, quiet: bool = False) -> Calibration:
    """The metrics classifier (trained on first use), the test split's features and the real-vs-real FID."""
    clf, accuracy = load_or_train_classifier(data, a, cache, device, quiet)
    real_features = metrics.classify(clf, data.test_images)[0]
    real_fid = metrics.real_vs_real_fid(clf, data.train_images, real_features, a.metrics.fid_samples, a.training.seed)
    return Calibration(clf, accuracy, real_features, real_fid)
