"""``ae_forward``: the data loader (shuffles, batch size, workers) and the encoder/decoder shapes."""

from __future__ import annotations

import torch

from harness.config.assignment import Assignment
from harness.grading.rubric import ItemResult, PartScore, from_parts


def loader_part(obs: dict, batch_size: int, num_workers: int) -> PartScore:
    problems = []
    if obs["batch_size"] != batch_size:
        problems.append(f"batch size {obs['batch_size']}, expected {batch_size}")
    if obs["num_workers"] != num_workers:
        problems.append(f"{obs['num_workers']} workers, expected {num_workers}")
    first = [e["labels"] for e in obs["epochs"]]
    shapes = [e["images_shape"] for e in obs["epochs"]]
    if shapes and shapes[0][:1] != [batch_size]:
        problems.append(f"first batch has shape {shapes[0]}, expected {batch_size} images")
    in_order = torch.arange(len(first[0])) if first else None
    if (
        first
        and isinstance(first[0], torch.Tensor)
        and (torch.equal(first[0], in_order) or torch.equal(first[0], first[1]))
    ):
        problems.append("not shuffled: the first batch holds the same items in every epoch")
    if problems:
        return PartScore("data_loader", 0.0, "data loader: " + "; ".join(problems))
    return PartScore("data_loader", 1.0, f"data loader shuffles, batch size {batch_size}, {num_workers} workers")


def shapes_part(obs: dict, a: Assignment, batch: int) -> tuple[PartScore, list[str]]:
    nz, c, s = a.model.nz, a.data.image_channels, a.data.image_size
    z, rec = obs.get("z"), obs.get("rec")
    problems, notes = [], []
    if not isinstance(z, torch.Tensor) or list(z.shape) != [batch, nz]:
        problems.append(f"encoder output {_shape(z)}, expected [{batch}, {nz}]")
    if not isinstance(rec, torch.Tensor) or list(rec.shape) != [batch, c, s, s]:
        problems.append(f"decoder output {_shape(rec)}, expected [{batch}, {c}, {s}, {s}]")
    elif rec.min() < 0 or rec.max() > 1:
        # Charged under ae_architecture (the final sigmoid), not twice.
        notes.append(
            f"decoder output spans [{rec.min():.2f}, {rec.max():.2f}], outside [0, 1] "
            "(a missing final sigmoid; counted under the architecture item)"
        )
    if problems:
        return PartScore("shapes", 0.0, "; ".join(problems)), notes
    return PartScore("shapes", 1.0, f"encoder gives [{batch}, {nz}], decoder gives [{batch}, {c}, {s}, {s}]"), notes


def _shape(x) -> str:
    return str(list(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def score(a: Assignment, obs: dict, batch: int, num_workers: int) -> ItemResult:
    item = a.item("ae_forward")
    shapes, notes = shapes_part(obs, a, batch)
    result = from_parts(item, [loader_part(obs["loader"], batch, num_workers), shapes])
    result.evidence += notes
    return result
