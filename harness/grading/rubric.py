"""Rubric items as scored results: points earned, status and evidence for the student.

A check scores its item part by part (``[[rubric]] parts`` in the assignment); this
module turns those part scores into one :class:`ItemResult`, so every check
reports in the same shape (docs/result-schema.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from harness.config.assignment import RubricItem

Status = Literal["pass", "partial", "fail", "error", "timeout", "needs_review"]
STATUSES: tuple[str, ...] = ("pass", "partial", "fail", "error", "timeout", "needs_review")


@dataclass
class ItemResult:
    id: str
    title: str
    points: float
    max_points: float
    status: Status
    evidence: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class PartScore:
    """One part of an item: the share earned (0..1) and what the student should read."""

    part: str
    share: float
    evidence: str


def round_points(points: float, step: float = 0.25) -> float:
    return round(points / step) * step


def status_for(points: float, max_points: float) -> Status:
    return "pass" if points >= max_points - 1e-9 else ("fail" if points <= 0 else "partial")


def from_parts(item: RubricItem, scores: list[PartScore], metrics: dict[str, Any] | None = None) -> ItemResult:
    """Sum part points; pass when all earned, fail when none, partial otherwise. An item
    whose config lists no parts splits its points evenly over the check's parts."""
    shares = [max(0.0, min(1.0, s.share)) for s in scores]
    if item.parts:
        points = round_points(sum(item.part(s.part) * share for s, share in zip(scores, shares, strict=False)))
    else:
        points = round_points(item.points * sum(shares) / max(1, len(shares)))
    status = status_for(points, item.points)
    evidence = [f"{'ok' if s.share >= 1 else 'x '} {s.evidence}" for s in scores]
    return ItemResult(item.id, item.title, points, item.points, status, evidence, metrics or {})


def failed(item: RubricItem, status: Status, evidence: list[str], metrics: dict[str, Any] | None = None) -> ItemResult:
    """No points: the code could not be run or observed (error, timeout) or failed outright."""
    return ItemResult(item.id, item.title, 0.0, item.points, status, evidence, metrics or {})


def total(items: list[ItemResult]) -> tuple[float, float]:
    return sum(i.points for i in items), sum(i.max_points for i in items)
