"""Confidence intervals for rates: a percentile bootstrap that resamples whole conversations (turns of one
dialog are not independent), widened to at least the Wilson score interval, so that 5/5 reads as
"somewhere above 57%" and not as a certainty the bootstrap cannot see past."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    value: float  # the point estimate, successes / trials
    low: float
    high: float
    successes: int
    trials: int

    def __str__(self) -> str:
        if self.trials == 0:
            return "n/a"
        return f"{self.value:.0%} [{self.low:.0%}, {self.high:.0%}] ({self.successes}/{self.trials})"


def ratio_ci(clusters: Sequence[tuple[int, int]], reps: int = 2000, seed: int = 0, level: float = 0.95) -> Estimate:
    """successes/trials with a percentile bootstrap interval over clusters of (successes, trials)."""
    data = np.array([c for c in clusters if c[1] > 0], dtype=float).reshape(-1, 2)
    if len(data) == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, 0)
    s, t = int(data[:, 0].sum()), int(data[:, 1].sum())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(data), size=(reps, len(data)))
    sums = data[idx].sum(axis=1)  # (reps, 2)
    ratios = sums[:, 0] / sums[:, 1]
    alpha = (1 - level) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    w_low, w_high = wilson(s, t, level)
    return Estimate(s / t, float(min(low, w_low)), float(max(high, w_high)), s, t)


def wilson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * ((p * (1 - p) / trials + z * z / (4 * trials * trials)) ** 0.5) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
