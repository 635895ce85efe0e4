"""Shared fixtures. Data comes through the harness's own setting: HARNESS_DATA (CI points it
at the MNIST stand-in), else the user cache, exactly as the CLI resolves it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from harness.assignment import load_assignment
from harness.data import load_mnist

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def assignment():
    return load_assignment("variant-a")


@pytest.fixture(scope="session")
def mnist():
    return load_mnist(None, os.environ)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One cache folder for the whole session, so the classifier is trained once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def variant_a_text() -> str:
    return (Path(__file__).parents[1] / "harness" / "assignments" / "variant-a.toml").read_text()
