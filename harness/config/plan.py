"""The run plan: which training runs an assignment asks for under a profile.

One typed list, built from the assignment and the profile, used by the reference
(``harness.reference``), ``grade`` and the write-up alike, so the three train the same runs
with the same epochs, learning rate and number of images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from harness.config.assignment import Assignment, Profile

Role = Literal["ae", "fixed", "search", "tuned"]


@dataclass(frozen=True)
class RunPlan:
    """One training run as a profile runs it."""

    name: str  # the handout's run name ("ae", "beta-0", ...); search runs are "search-<beta>"
    role: Role
    beta: float | None  # None for the AE, and for the tuned run until its beta is known
    epochs: int  # the handout's epochs scaled by the profile
    learning_rate: float
    images: int  # training images (0: all of them)

    @property
    def kind(self) -> Literal["ae", "vae"]:
        return "ae" if self.role == "ae" else "vae"

    def at_beta(self, beta: float | None) -> RunPlan:
        """This run trained at ``beta`` (the tuned run at a student's or the search's beta)."""
        return dataclasses.replace(self, beta=beta)


def run_plan(a: Assignment, profile: Profile) -> list[RunPlan]:
    """The AE, the fixed-beta VAEs and the tuned VAE (its beta still open), in the documents' order."""
    t = a.training

    def plan(spec, role: Role, beta: float | None) -> RunPlan:
        return RunPlan(spec.name, role, beta, profile.epochs(spec.epochs), spec.learning_rate, profile.train_images)

    return [plan(t.ae, "ae", None), *(plan(s, "fixed", s.beta) for s in t.fixed), plan(t.tuned, "tuned", None)]


def search_plan(a: Assignment, profile: Profile) -> list[RunPlan]:
    """The beta search's runs, one per searched beta, in the configured order."""
    s = a.training.search
    epochs = profile.epochs(s.epochs)
    return [RunPlan(f"search-{b:g}", "search", b, epochs, s.learning_rate, profile.train_images) for b in s.betas]
