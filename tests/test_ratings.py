"""Bradley–Terry ratings checked against an independent fit: scipy's optimizer on the same likelihood,
written out vote by vote, on small lopsided data where the old fit drifted 30 Elo."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import pytest
from scipy.optimize import minimize

from mendlab.arena.ratings import L2, Outcome, fit, leaderboard, resamples

# 3 models, 10 votes: a wins 8 of its 9; every model won once, so the maximum-likelihood fit exists.
LOPSIDED: list[Outcome] = [("a", "b", 1.0)] * 4 + [("a", "c", 1.0)] * 4 + [("a", "c", 0.0), ("b", "c", 1.0)]


def reference(votes: Sequence[Outcome], models: Sequence[str], l2: float) -> np.ndarray:
    """-Σ log-likelihood + (l2/2)·Σθ², a tie half a win each way, minimized by scipy's BFGS from zero
    (numerical gradient); centred and put on the Elo scale (400·log10, mean 1000)."""
    index = {m: i for i, m in enumerate(models)}

    def loss(theta: np.ndarray) -> float:
        total = 0.5 * l2 * float(theta @ theta)
        for a, b, s in votes:
            d = theta[index[a]] - theta[index[b]]
            total += s * math.log1p(math.exp(-d)) + (1 - s) * math.log1p(math.exp(d))
        return total

    theta = minimize(loss, np.zeros(len(models)), method="BFGS", options={"gtol": 1e-9}).x
    return np.asarray(1000 + 400 / math.log(10) * (theta - theta.mean()))


def test_fit_matches_scipy_on_small_lopsided_data() -> None:
    models = ["a", "b", "c"]
    ours = fit(LOPSIDED, models)
    assert np.abs(ours - reference(LOPSIDED, models, L2)).max() < 0.1
    # the penalty is very weak: the plain maximum-likelihood fit is within an Elo point
    # (the old fit, a virtual tie with an average opponent, was 33 Elo short on a)
    assert np.abs(ours - reference(LOPSIDED, models, 0.0)).max() < 1.0


def test_fit_matches_scipy_on_random_small_arenas() -> None:
    """Ties, undefeated and winless models, models that never met: always the same optimum as scipy's."""
    rng = random.Random(7)
    for _ in range(12):
        models = [f"m{i}" for i in range(rng.randint(2, 5))]
        votes = [(*rng.sample(models, 2), rng.choice([0.0, 0.5, 1.0, 1.0, 1.0])) for _ in range(rng.randint(3, 25))]
        assert np.abs(fit(votes, models) - reference(votes, models, L2)).max() < 0.1


def test_an_undefeated_model_is_finite_and_ties_split_evenly() -> None:
    ratings = fit([("a", "b", 1.0)] * 5, ["a", "b"])
    assert np.isfinite(ratings).all() and np.allclose(ratings, reference([("a", "b", 1.0)] * 5, ["a", "b"], L2))
    assert 1500 < ratings[0] < 1700 and math.isclose(ratings.mean(), 1000)  # 5-0: about 1250 Elo apart
    even = fit([("a", "b", 0.5)] * 3 + [("b", "c", 0.5)], ["a", "b", "c"])
    assert np.allclose(even, 1000)
    with pytest.raises(ValueError, match="score 2"):
        fit([("a", "b", 2.0)], ["a", "b"])


def test_bootstrap_intervals_are_percentiles_of_refits_of_resampled_votes() -> None:
    """Each resample refitted independently by scipy gives the same 95% interval as the leaderboard."""
    n_boot, seed = 100, 3
    board = {r.model: r for r in leaderboard(LOPSIDED, n_boot=n_boot, seed=seed)}
    models = ["a", "b", "c"]
    refits = np.array(
        [reference([LOPSIDED[i] for i in pick], models, L2) for pick in resamples(len(LOPSIDED), n_boot, seed)]
    )
    low, high = np.percentile(refits, [2.5, 97.5], axis=0)
    for i, m in enumerate(models):
        assert abs(board[m].low - low[i]) < 0.5 and abs(board[m].high - high[i]) < 0.5
        assert board[m].low <= board[m].rating <= board[m].high
    assert [r.model for r in leaderboard(LOPSIDED, n_boot=n_boot)] == ["a", "b", "c"]
    assert (board["a"].votes, board["a"].wins) == (9, 8.0)


def test_a_larger_arena_recovers_known_gaps_within_its_intervals() -> None:
    """1,500 votes drawn from known Elo gaps (0, -150, -300): each interval holds the true rating."""
    truth = {"a": 150.0, "b": 0.0, "c": -150.0}  # centred: mean 0
    rng = random.Random(11)
    votes: list[Outcome] = []
    for _ in range(1500):
        x, y = rng.sample(sorted(truth), 2)
        p = 1 / (1 + 10 ** ((truth[y] - truth[x]) / 400))
        votes.append((x, y, 1.0 if rng.random() < p else 0.0))
    for r in leaderboard(votes, n_boot=300):
        assert r.low < 1000 + truth[r.model] < r.high
        assert r.high - r.low < 120
