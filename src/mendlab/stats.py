"""Bootstrap confidence intervals, resampling whole conversations (turns in one dialog are not independent)."""

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
    return Estimate(s / t, float(low), float(high), s, t)
