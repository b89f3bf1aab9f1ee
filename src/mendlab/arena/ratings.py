"""Votes into Bradley–Terry ratings with bootstrap intervals, as Chatbot Arena reports them.

A tie (and "both bad") counts as half a win for each side. A weak prior (one virtual tie of each
model against an average opponent) keeps an undefeated model's rating finite, which matters in an
arena where a model may have three votes. Ratings are on the Elo scale (400·log10, mean 1000) so
they read like every other leaderboard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Outcome = tuple[str, str, float]  # (model a, model b, score of a: 1 win, 0.5 tie, 0 loss)


@dataclass(frozen=True)
class Rating:
    model: str
    rating: float
    low: float
    high: float
    votes: int
    wins: float  # ties count half


def fit(outcomes: Sequence[Outcome], models: Sequence[str], prior: float = 1.0, iters: int = 200) -> np.ndarray:
    """Minorize–maximize (Hunter 2004) for Bradley–Terry strengths; returns Elo-scale ratings."""
    k = len(models)
    index = {m: i for i, m in enumerate(models)}
    wins = np.full(k, prior / 2)
    games = np.zeros((k + 1, k + 1))  # the last row/column is the virtual average opponent
    games[:k, k] = games[k, :k] = prior
    for a, b, score in outcomes:
        i, j = index[a], index[b]
        wins[i] += score
        wins[j] += 1 - score
        games[i, j] += 1
        games[j, i] += 1
    p = np.ones(k + 1)
    for _ in range(iters):
        denom = (games[:k] / (p[:k, None] + p[None, :])).sum(axis=1)
        new = wins / denom
        new /= math.exp(np.log(new).mean())  # fix the scale: geometric mean 1 (the virtual opponent's)
        done = np.abs(new - p[:k]).max() < 1e-9
        p[:k] = new
        if done:
            break
    return np.asarray(1000 + 400 * np.log10(p[:k]))


def leaderboard(outcomes: Sequence[Outcome], n_boot: int = 500, seed: int = 0) -> list[Rating]:
    """Ratings with 95% percentile intervals over votes resampled with replacement."""
    if not outcomes:
        return []
    models = sorted({m for a, b, _ in outcomes for m in (a, b)})
    point = fit(outcomes, models)
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, len(models)))
    for r in range(n_boot):
        pick = rng.integers(0, len(outcomes), len(outcomes))
        boots[r] = fit([outcomes[i] for i in pick], models, iters=100)
    low, high = np.percentile(boots, [2.5, 97.5], axis=0)
    out = []
    for i, m in enumerate(models):
        mine = [(s if a == m else 1 - s) for a, b, s in outcomes if m in (a, b)]
        out.append(Rating(m, float(point[i]), float(low[i]), float(high[i]), len(mine), float(sum(mine))))
    return sorted(out, key=lambda r: -r.rating)
