"""The judge's figures: who wins, how sure that is, and how much the judge leans on position and length.

Units: a *pair* is one prompt with both answers; a *judgment* is one order of it. The win rate is over
pairs (ties counted as half a win, as FastChat's "win rate adjusted"; the rate without ties and the tie
rate are given beside it), with an interval that resamples pairs, widened to at least Wilson's. Position
and length figures are over judgments, resampled by pair (its two judgments share a prompt). Pairs the
judge's answer could not be read for are counted apart, and are in no rate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mendlab.judge.pairwise import Judgment, model_scores
from mendlab.judge.prompts import SCORE_MAX, SCORE_MIN
from mendlab.stats import Estimate, MeanEstimate, cluster_bootstrap, mean_t_ci, ratio_ci, wilson


@dataclass(frozen=True)
class WinRate:
    """Model a's win rate over pairs, ties counted as half a win."""

    value: float
    low: float
    high: float
    wins: int
    ties: int
    losses: int

    @property
    def n(self) -> int:
        return self.wins + self.ties + self.losses

    def __str__(self) -> str:
        if self.n == 0:
            return "n/a"
        return f"{self.value:.0%} [{self.low:.0%}, {self.high:.0%}] ({self.wins}W {self.ties}T {self.losses}L)"

    def to_json(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if x != x else round(x, 6)

        return {
            "wins": self.wins,
            "ties": self.ties,
            "losses": self.losses,
            "n": self.n,
            "value": num(self.value),
            "low": num(self.low),
            "high": num(self.high),
            "ties_counted": "half",
        }


def win_rate(wins: int, ties: int, losses: int, reps: int = 2000, seed: int = 0, level: float = 0.95) -> WinRate:
    """(wins + ties/2) / pairs, with a percentile bootstrap over pairs widened to at least Wilson's
    interval at that fractional count (a bootstrap of 10 wins out of 10 would say [100%, 100%])."""
    n = wins + ties + losses
    if n == 0:
        nan = float("nan")
        return WinRate(nan, nan, nan, 0, 0, 0)
    points = wins + ties / 2
    scores = [(1.0, 1.0)] * wins + [(0.5, 1.0)] * ties + [(0.0, 1.0)] * losses
    low, high = cluster_bootstrap(scores, reps, seed, level)
    w_low, w_high = wilson(points, n, level)
    return WinRate(points / n, min(low, w_low), max(high, w_high), wins, ties, losses)


@dataclass(frozen=True)
class PairResult:
    """A judged pair as stored: who wrote what, both judgments, and the pair's verdict."""

    id: str
    model_a: str
    model_b: str
    answer_a: str
    answer_b: str
    judgments: tuple[Judgment, ...]
    winner: str | None  # "a", "b", "tie"; None when a judgment could not be read
    consistent: bool

    @classmethod
    def from_sample(cls, data: Mapping[str, Any], score: Mapping[str, Any]) -> PairResult:
        pair = data["pair"]
        return cls(
            id=str(pair["id"]),
            model_a=str(pair["model_a"]),
            model_b=str(pair["model_b"]),
            answer_a=str(pair["answer_a"]),
            answer_b=str(pair["answer_b"]),
            judgments=tuple(Judgment.from_json(j) for j in data["judgments"]),
            winner=score.get("winner"),
            consistent=bool(score.get("consistent")),
        )


@dataclass(frozen=True)
class JudgeStats:
    pairs: int
    unparsed_pairs: int
    unparsed_judgments: int
    unparsed_reasons: tuple[tuple[str, int], ...]
    win_rate: WinRate  # model a's, ties half
    win_rate_without_ties: Estimate  # wins / (wins + losses)
    tie_rate: Estimate
    flipped: int  # pairs whose two orders disagreed (counted as ties)
    first_position_wins: Estimate  # of the decisive judgments, those won by the answer shown first
    consistency: Estimate  # pairs whose two orders agree
    both_first: int  # pairs whose two orders each chose the answer shown first (a position-biased flip)
    both_second: int
    longer_wins: Estimate  # of the decisive judgments of answers of unequal length, those won by the longer
    mean_score_a: MeanEstimate | None  # score mode: each pair's mean over the two orders
    mean_score_b: MeanEstimate | None
    score_histogram: tuple[tuple[int, int], ...]  # score mode: how often each score 1..8 was given
    extreme_scores: Estimate | None  # score mode: scores of 1 or 8, of all given


def _bounded(m: MeanEstimate) -> MeanEstimate:
    """A mean score's interval within the scale: Student's t knows nothing of 1–8."""
    return MeanEstimate(m.value, max(m.low, SCORE_MIN), min(m.high, SCORE_MAX), m.n) if m.n > 1 else m


def judge_stats(results: Sequence[PairResult], mode: str) -> JudgeStats:
    read = [r for r in results if r.winner is not None]
    wins = sum(r.winner == "a" for r in read)
    losses = sum(r.winner == "b" for r in read)
    ties = len(read) - wins - losses
    reasons: Counter[str] = Counter(j.error for r in results for j in r.judgments if j.winner is None)
    first: list[tuple[int, int]] = []
    longer: list[tuple[int, int]] = []
    for r in results:
        js = [j for j in r.judgments if j.winner is not None and j.winner != "tie"]
        first.append((sum(j.position == "first" for j in js), len(js)))
        if len(r.answer_a) != len(r.answer_b):
            long = "a" if len(r.answer_a) > len(r.answer_b) else "b"
            longer.append((sum(j.winner == long for j in js), len(js)))
    both = [r for r in results if len(r.judgments) == 2 and all(j.winner is not None for j in r.judgments)]
    scores = [s for s in (model_scores(r.judgments) for r in results) if s is not None]
    given = [round(x) for r in results for j in r.judgments if j.scores is not None for x in j.scores]
    hist = Counter(given)
    return JudgeStats(
        pairs=len(results),
        unparsed_pairs=len(results) - len(read),
        unparsed_judgments=sum(reasons.values()),
        unparsed_reasons=tuple(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        win_rate=win_rate(wins, ties, losses),
        win_rate_without_ties=ratio_ci([(int(r.winner == "a"), 1) for r in read if r.winner != "tie"]),
        tie_rate=ratio_ci([(int(r.winner == "tie"), 1) for r in read]),
        flipped=sum(1 for r in read if r.winner == "tie" and not r.consistent),
        first_position_wins=ratio_ci(first),
        consistency=ratio_ci([(int(r.consistent), 1) for r in both]),
        both_first=sum(all(j.position == "first" for j in r.judgments) for r in both),
        both_second=sum(all(j.position == "second" for j in r.judgments) for r in both),
        longer_wins=ratio_ci(longer),
        mean_score_a=_bounded(mean_t_ci([a for a, _ in scores])) if mode == "score" else None,
        mean_score_b=_bounded(mean_t_ci([b for _, b in scores])) if mode == "score" else None,
        score_histogram=tuple((k, hist.get(k, 0)) for k in range(1, 9)) if mode == "score" else (),
        extreme_scores=ratio_ci([(sum(x in (1, 8) for x in given), len(given))]) if mode == "score" else None,
    )
