"""What crosses into the sandbox with a training unit: a typed request, sent as a plain dict.

The host builds a :class:`TrainRequest` (``harness.grading``); :meth:`TrainRequest.to_args` is
what travels to the supervisor as the unit's JSON arguments, and the probe reads it back with
:meth:`TrainRequest.from_args`, so both ends agree on one list of fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class TrainRequest:
    """One training unit: train the student's (or the reference's) model with the student's loop
    (or the harness's), then return the trained model's outputs on the unit's fixed inputs."""

    kind: Literal["ae", "vae"]
    epochs: int
    learning_rate: float
    batch_size: int
    seed: int
    device: str  # a resolved device name, passed to the student's loop
    steps: int  # interpolation frames per path
    beta: float | None = None  # the VAE's beta (None for the AE)
    num_workers: int = 0  # the images are already decoded: workers would only copy them
    contract: bool = False  # first make the short call that checks the loop's contract
    reference_model: bool = False  # train the reference's model: the student's did not pass its checks
    substitute: tuple[str, ...] = ()  # the student's VAE with these reference parts ("encoder", "decoder")
    harness_loader: bool = False  # the harness's DataLoader feeds the loop: the student's did not pass
    trainer: Literal["student", "harness"] = "student"  # whose loop trains the model

    def to_args(self) -> dict[str, Any]:
        """The request as the unit's JSON arguments."""
        return {**dataclasses.asdict(self), "substitute": list(self.substitute)}

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> TrainRequest:
        """The request back from the unit's arguments (unknown keys are an error: both ends are ours)."""
        return cls(**{**args, "substitute": tuple(args.get("substitute", ()))})
