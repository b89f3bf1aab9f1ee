"""Votes into Bradley–Terry ratings with bootstrap intervals, as Chatbot Arena reports them.

The fit is FastChat's formulation: Bradley–Terry as a logistic regression, P(a beats b) = σ(θ_a − θ_b),
fitted by maximum likelihood. A tie (and "both bad") is half a win for each side: its log-likelihood term
is ½·log σ(d) + ½·log σ(−d), which is what FastChat's "a tie counts as one win each way with weight ½"
amounts to.

When a model never lost (or never won) the maximum-likelihood rating is infinite, and with a handful of
arena votes that is common. A very weak L2 penalty, (λ/2)·Σθ² with λ = 1e-3 (a Gaussian prior of sd
≈ 32 in natural units, ≈ 5,500 Elo), keeps it finite — large, as the data say — while moving ratings by
well under one Elo point where the maximum-likelihood fit exists (about 0.2 on ten lopsided votes). The
old fit added a virtual tie of every model against an average opponent, which pulled ratings 30 to 60
Elo towards the middle on small lopsided data. The penalty also centres the fit (Σθ = 0 at the optimum),
so ratings are 1000 + 400·log10(e)·θ: the Elo scale, mean 1000, as before.

Intervals: the 95% percentile bootstrap over votes (as many drawn with replacement as there are), each
resample refitted. A model absent from a resample has no data there and sits at the mean, 1000.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Outcome = tuple[str, str, float]  # (model a, model b, score of a: 1 win, 0.5 tie, 0 loss)
L2 = 1e-3
ELO = 400 / math.log(10)  # natural-log strengths to Elo points


@dataclass(frozen=True)
class Rating:
    model: str
    rating: float
    low: float
    high: float
    votes: int
    wins: float  # ties count half


def _log_sigmoid(x: Any) -> Any:
    return -np.logaddexp(0.0, -x)


def _newton(pairs: Any, score: Any, weights: Any, k: int, l2: float) -> Any:
    """Penalized maximum likelihood for each row of `weights` (replicates x distinct outcomes) at once:
    Newton's method with backtracking, to a gradient below 1e-10. The objective is strictly convex
    (l2 > 0), so this is its one minimum; Newton takes ~10 steps where plain gradient or MM methods crawl
    on lopsided data."""
    reps = weights.shape[0]
    design = np.zeros((len(pairs), k))  # +1 for model a, -1 for model b: d = design @ θ
    design[np.arange(len(pairs)), pairs[:, 0]] += 1.0
    design[np.arange(len(pairs)), pairs[:, 1]] -= 1.0

    def objective(theta: Any) -> Any:
        d = theta @ design.T
        ll = score * _log_sigmoid(d) + (1 - score) * _log_sigmoid(-d)
        return -(weights * ll).sum(axis=1) + 0.5 * l2 * (theta**2).sum(axis=1)

    theta = np.zeros((reps, k))
    value = objective(theta)
    tol = 1e-10 * (1 + weights.sum(axis=1).max())
    for _ in range(100):
        d = theta @ design.T
        p = 0.5 * (1.0 + np.tanh(0.5 * d))  # σ(d), without overflow
        grad = -(weights * (score - p)) @ design + l2 * theta
        moving = np.abs(grad).max(axis=1) >= tol
        if not moving.any():
            break
        curvature = weights * p * (1 - p)
        hess = np.einsum("ru,ui,uj->rij", curvature, design, design) + l2 * np.eye(k)
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        size = np.ones(reps)
        slack = 1e-12 * (1 + np.abs(value))  # near the optimum, decreases drown in rounding: take Newton's step
        for _ in range(40):  # halve the step where it does not decrease the objective enough
            trial = theta - size[:, None] * step
            new = objective(trial)
            short = moving & (new > value - 1e-4 * size * (grad * step).sum(axis=1) + slack)
            if not short.any():
                break
            size = np.where(short, size / 2, size)
        theta, value = trial, new
    return theta - theta.mean(axis=1, keepdims=True)


def _aggregate(outcomes: Sequence[Outcome], models: Sequence[str]) -> tuple[Any, Any, Any]:
    """Distinct (a, b, score) rows and, for each vote, its row."""
    index = {m: i for i, m in enumerate(models)}
    rows: dict[tuple[int, int, float], int] = {}
    of_vote = [rows.setdefault((index[a], index[b], float(s)), len(rows)) for a, b, s in outcomes]
    keys = list(rows)
    pairs = np.array([(a, b) for a, b, _ in keys], dtype=np.int64).reshape(-1, 2)
    score = np.array([s for _, _, s in keys])
    return pairs, score, np.array(of_vote, dtype=np.int64)


def fit(outcomes: Sequence[Outcome], models: Sequence[str], l2: float = L2) -> np.ndarray:
    """Elo-scale Bradley–Terry ratings of `models` (mean 1000) from the votes."""
    for a, b, s in outcomes:
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"vote {a} vs {b}: score {s} is not in [0, 1]")
    if not outcomes:
        return np.full(len(models), 1000.0)
    pairs, score, of_vote = _aggregate(outcomes, models)
    counts = np.bincount(of_vote, minlength=len(score)).astype(float)[None, :]
    return np.asarray(1000 + ELO * _newton(pairs, score, counts, len(models), l2)[0])


def resamples(n_votes: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """The bootstrap's draws: for each resample, which votes (indices, with replacement)."""
    return np.random.default_rng(seed).integers(0, n_votes, size=(n_boot, n_votes))


def leaderboard(outcomes: Sequence[Outcome], n_boot: int = 500, seed: int = 0) -> list[Rating]:
    """Ratings with 95% percentile intervals over votes resampled with replacement, best first."""
    if not outcomes:
        return []
    models = sorted({m for a, b, _ in outcomes for m in (a, b)})
    point = fit(outcomes, models)
    pairs, score, of_vote = _aggregate(outcomes, models)
    picks = of_vote[resamples(len(outcomes), n_boot, seed)]  # (n_boot, votes): the row of each drawn vote
    counts = np.zeros((n_boot, len(score)))
    np.add.at(counts, (np.arange(n_boot)[:, None], picks), 1.0)
    boots = 1000 + ELO * _newton(pairs, score, counts, len(models), L2)
    low, high = np.percentile(boots, [2.5, 97.5], axis=0)
    out = []
    for i, m in enumerate(models):
        mine = [(s if a == m else 1 - s) for a, b, s in outcomes if m in (a, b)]
        out.append(Rating(m, float(point[i]), float(low[i]), float(high[i]), len(mine), float(sum(mine))))
    return sorted(out, key=lambda r: -r.rating)
