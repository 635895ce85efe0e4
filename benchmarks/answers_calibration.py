"""How close are the answer scorer's suggestions to a TA's scores? Scores the calibration set
(``../shared/answers-calibration/answers.jsonl``: 80 answers, 16 per question, each with a TA
score) and prints, for the tuning part and the held-out part separately, then per question:
count, share within 1 point of the TA, mean absolute difference, and the sum of suggestions
against the sum of TA scores. ``--show`` lists each answer of a part whose suggestion is at
least ``--min-diff`` points off, with the TA's reason and the scorer's evidence.

    python benchmarks/answers_calibration.py [--file PATH] [--assignment variant-a]
        [--show tuning|held-out] [--min-diff 0.5] [--over-limit-penalty 0]

The split is fixed: within each question, answers ordered by the SHA-256 of their text take
turns, the 1st, 3rd, 5th, ... tuning and the others held-out (8 + 8 per question). Phrases and
rules are tuned on the tuning part only. Target on the held-out part: at least 90% within 1
point, mean absolute difference at most 0.5. The calibration rubric does not deduct for
length, so suggestions are made with ``over_limit_penalty`` 0 unless told otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.config.assignment import Assignment, load_assignment  # noqa: E402
from harness.grading.items.answers import check_answer  # noqa: E402

CALIBRATION = ROOT.parent / "shared" / "answers-calibration" / "answers.jsonl"
PARTS = ("tuning", "held-out")
TARGET_WITHIN_1 = 0.9
TARGET_MEAN_ABS = 0.5


@dataclass(frozen=True)
class Scored:
    question: str
    part: str
    ta: float
    suggested: float
    text: str
    reason: str
    evidence: tuple[str, ...]


def load_rows(path: Path = CALIBRATION) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split(rows: list[dict]) -> list[tuple[str, dict]]:
    """Each row with its part: within a question, rows ordered by the SHA-256 of their text
    alternate between tuning (even ranks) and held-out (odd ranks)."""
    by_question: dict[str, list[dict]] = {}
    for row in rows:
        by_question.setdefault(row["question"], []).append(row)
    out = []
    for group in by_question.values():
        ranked = sorted(group, key=lambda r: hashlib.sha256(r["text"].encode("utf-8")).hexdigest())
        out += [(PARTS[i % 2], row) for i, row in enumerate(ranked)]
    return out


def with_penalty(a: Assignment, over_limit_penalty: float = 0.0) -> Assignment:
    """The assignment with another over-limit penalty: the calibration rubric's is 0 (over-limit
    answers are graded on content)."""
    return dataclasses.replace(a, answers=dataclasses.replace(a.answers, over_limit_penalty=over_limit_penalty))


def score(a: Assignment, rows: list[dict]) -> list[Scored]:
    """The scorer's suggestion for each calibration answer, on the TA's scale (the row's
    ``max_points``, which must be the points the assignment gives the answer)."""
    questions = {q.id: q for q in a.questions}
    out = []
    for part, row in split(rows):
        q = questions[row["question"]]
        item, _ = check_answer(a, q, {q.id: row["text"]})
        if abs(item.max_points - row["max_points"]) > 1e-9:
            raise ValueError(f"{q.id}: the assignment gives {item.max_points:g} points, the set {row['max_points']:g}")
        out.append(Scored(q.id, part, row["ta_score"], item.points, row["text"], row["reason"], tuple(item.evidence)))
    return out


@dataclass(frozen=True)
class Summary:
    count: int
    within_1: float  # share of answers within 1 point of the TA
    mean_abs: float
    suggested: float  # sum of suggestions
    ta: float  # sum of TA scores

    def meets_target(self) -> bool:
        return self.within_1 >= TARGET_WITHIN_1 and self.mean_abs <= TARGET_MEAN_ABS


def summarise(scored: Iterable[Scored]) -> Summary:
    rows = list(scored)
    diffs = [abs(s.suggested - s.ta) for s in rows]
    n = len(rows)
    return Summary(
        n,
        sum(d <= 1 + 1e-9 for d in diffs) / n if n else 0.0,
        sum(diffs) / n if n else 0.0,
        sum(s.suggested for s in rows),
        sum(s.ta for s in rows),
    )


def line(label: str, s: Summary) -> str:
    return f"{label:<16} {s.count:>5} {s.within_1:>9.0%} {s.mean_abs:>9.2f} {s.suggested:>10.1f} {s.ta:>7.1f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--file", type=Path, default=CALIBRATION)
    p.add_argument("--assignment", default="variant-a")
    p.add_argument("--show", choices=PARTS, help="list this part's answers that are --min-diff or more off")
    p.add_argument("--min-diff", type=float, default=0.5)
    p.add_argument("--over-limit-penalty", type=float, default=0.0)
    args = p.parse_args()
    if not args.file.exists():
        print(f"no calibration set at {args.file}", file=sys.stderr)
        return 2
    a = with_penalty(load_assignment(args.assignment), args.over_limit_penalty)
    scored = score(a, load_rows(args.file))
    questions = list(dict.fromkeys(s.question for s in scored))
    for part in PARTS:
        mine = [s for s in scored if s.part == part]
        print(f"\n{part}")
        print(f"{'':<16} {'count':>5} {'within 1':>9} {'mean |d|':>9} {'suggested':>10} {'TA':>7}")
        print(line("all", summarise(mine)))
        for q in questions:
            print(line(q, summarise(s for s in mine if s.question == q)))
    held = summarise(s for s in scored if s.part == "held-out")
    verdict = "meets" if held.meets_target() else "misses"
    print(f"\nheld-out {verdict} the target (within 1 >= {TARGET_WITHIN_1:.0%}, mean |d| <= {TARGET_MEAN_ABS})")
    if args.show:
        for s in scored:
            if s.part == args.show and abs(s.suggested - s.ta) >= args.min_diff - 1e-9:
                print(f"\n[{s.question}] suggested {s.suggested:g}, TA {s.ta:g}\n  {s.text}\n  TA: {s.reason}")
                print("".join(f"\n  - {e}" for e in s.evidence).lstrip("\n"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
