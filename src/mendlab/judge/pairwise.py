"""Judging one pair, in both orders, as an engine task.

Each pair is judged twice, answer a shown first and then answer b shown first (judges prefer a
position: Zheng et al. 2023); a verdict that flips with the order is a tie, as in FastChat. A judgment
that cannot be read leaves the pair without a verdict: it is reported apart, never counted as a tie.
The judge samples at temperature 0. Both raw judgments are kept in the store and in verdicts.jsonl.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mendlab.conversation import Conversation
from mendlab.engine import Outcome, Sample, Task
from mendlab.judge.pairs import Pair
from mendlab.judge.prompts import ORDERS, Mode, Order, pair_messages, parse_ab, parse_scores
from mendlab.models import ChatModel, Message, SamplingParams

Winner = str  # "a", "b" or "tie"


def judge_params(max_tokens: int) -> SamplingParams:
    """Greedy: a judge's verdict must not depend on a draw."""
    return SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=0)


@dataclass(frozen=True)
class Judgment:
    """One order's judgment: what the judge wrote and how it reads. `first` is the answer shown first."""

    order: Order
    raw: str
    verdict: str | None  # ab mode: "A", "B" or "C" (positions); score mode: None
    scores: tuple[float, float] | None  # score mode: (first shown, second shown)
    winner: Winner | None  # by answer: "a", "b" or "tie"; None when unparsed
    error: str = ""

    @property
    def first(self) -> str:
        return "a" if self.order == "ab" else "b"

    @property
    def position(self) -> str | None:
        """Which position won: "first", "second", "tie", or None when unparsed."""
        if self.winner is None:
            return None
        return "tie" if self.winner == "tie" else ("first" if self.winner == self.first else "second")

    def to_json(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "first": self.first,
            "raw": self.raw,
            "verdict": self.verdict,
            "scores": list(self.scores) if self.scores is not None else None,
            "winner": self.winner,
            "error": self.error or None,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Judgment:
        scores = tuple(d["scores"]) if d.get("scores") is not None else None
        return cls(d["order"], d["raw"], d.get("verdict"), scores, d.get("winner"), d.get("error") or "")


def read_judgment(mode: Mode, order: Order, raw: str) -> Judgment:
    first, second = ("a", "b") if order == "ab" else ("b", "a")
    if mode == "ab":
        verdict, why = parse_ab(raw)
        winner = None if verdict is None else {"A": first, "B": second, "C": "tie"}[verdict]
        return Judgment(order, raw, verdict, None, winner, why)
    scores, why = parse_scores(raw)
    if scores is None:
        return Judgment(order, raw, None, None, None, why)
    winner = first if scores[0] > scores[1] else second if scores[1] > scores[0] else "tie"
    return Judgment(order, raw, None, scores, winner, "")


def combine(judgments: Sequence[Judgment]) -> tuple[Winner | None, bool]:
    """The pair's verdict from both orders, and whether they agreed: the same winner both times is the
    winner; any disagreement (a flip, or a win one way and a tie the other) is a tie; None if either
    order could not be read."""
    winners = [j.winner for j in judgments]
    if any(w is None for w in winners):
        return None, False
    if len(set(winners)) == 1:
        return winners[0], True
    return "tie", False


def model_scores(judgments: Sequence[Judgment]) -> tuple[float, float] | None:
    """Score mode: each answer's mean score over the two orders (None unless both were read)."""
    if len(judgments) != 2 or any(j.scores is None for j in judgments):
        return None
    a = [j.scores[0] if j.first == "a" else j.scores[1] for j in judgments if j.scores is not None]
    b = [j.scores[1] if j.first == "a" else j.scores[0] for j in judgments if j.scores is not None]
    return sum(a) / 2, sum(b) / 2


def judge_task(
    pairs: Sequence[Pair], mode: Mode, params: SamplingParams, run_id: str, judge_name: str
) -> Task[Pair, list[Judgment]]:
    """One sample per pair (its id); the solver asks the judge in both orders."""
    requests: dict[tuple[str, Order], list[Message]] = {}

    def request(pair: Pair, order: Order) -> list[Message]:
        key = (pair.id, order)
        if key not in requests:
            first, second = (pair.answer_a, pair.answer_b) if order == "ab" else (pair.answer_b, pair.answer_a)
            requests[key] = pair_messages(mode, pair.prompt, first, second)
        return requests[key]

    def solve(sample: Sample[Pair], judge: ChatModel) -> list[Judgment]:
        out = []
        for order in ORDERS:
            (done,) = judge.chat(request(sample.input, order), params)
            out.append(read_judgment(mode, order, done.text))
        return out

    def score(sample: Sample[Pair], judgments: list[Judgment]) -> Outcome:
        pair = sample.input
        winner, consistent = combine(judgments)
        scores = model_scores(judgments) if mode == "score" else None
        convs = tuple(
            Conversation(
                messages=(*request(pair, j.order), Message("assistant", j.raw)),
                id=f"{run_id}:judge:{pair.id}:{j.order}",
                model=judge_name,
                meta={"run": run_id, "experiment": "judge", "mode": mode, "pair": pair.id, "order": j.order},
            )
            for j in judgments
        )
        return Outcome(
            conversations=convs,
            data={"pair": pair.to_json(), "judgments": [j.to_json() for j in judgments]},
            score={"winner": winner, "consistent": consistent, "scores": list(scores) if scores else None},
        )

    return Task("judge", [Sample(p.id, p) for p in pairs], solve, score)
