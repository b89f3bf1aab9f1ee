"""Confidence intervals for rates: a percentile bootstrap that resamples whole clusters (the turns of one
dialog, the attempts on one replayed mistake: they are not independent), widened to at least the Wilson
score interval, so that 5/5 reads as "somewhere above 57%" and not as a certainty the bootstrap cannot
see past."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


@dataclass(frozen=True)
class Estimate:
    value: float  # the point estimate, successes / trials
    low: float
    high: float
    successes: int
    trials: int
    # the (successes, trials) clusters it was computed from, for comparing two estimates (rate_diff_ci)
    clusters: tuple[tuple[int, int], ...] = field(default=(), repr=False, compare=False)

    def __str__(self) -> str:
        if self.trials == 0:
            return "n/a"
        return f"{self.value:.0%} [{self.low:.0%}, {self.high:.0%}] ({self.successes}/{self.trials})"

    def to_json(self) -> dict[str, Any]:
        """k/n with the interval; null where there were no trials (JSON has no NaN)."""
        return {
            "k": self.successes,
            "n": self.trials,
            "value": _num(self.value),
            "low": _num(self.low),
            "high": _num(self.high),
        }


@dataclass(frozen=True)
class MeanEstimate:
    """A mean over items that come in clusters (turns to fix, over the fixed mistakes of each dialog)."""

    value: float
    low: float
    high: float
    n: int  # items averaged

    def __str__(self) -> str:
        if self.n == 0:
            return "n/a"
        return f"{self.value:.1f} [{self.low:.1f}, {self.high:.1f}] (n={self.n})"

    def to_json(self) -> dict[str, Any]:
        return {"mean": _num(self.value), "n": self.n, "low": _num(self.low), "high": _num(self.high)}


def cluster_bootstrap(
    clusters: Sequence[tuple[float, float]], reps: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of sum(x)/sum(n) when whole clusters (x, n) are drawn with replacement.
    Clusters with n = 0 carry no trials and are left out; none left gives (nan, nan)."""
    data = np.array([c for c in clusters if c[1] > 0], dtype=float).reshape(-1, 2)
    if len(data) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(data), size=(reps, len(data)))
    sums = data[idx].sum(axis=1)  # (reps, 2)
    ratios = sums[:, 0] / sums[:, 1]
    alpha = (1 - level) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return float(low), float(high)


def ratio_ci(clusters: Sequence[tuple[int, int]], reps: int = 2000, seed: int = 0, level: float = 0.95) -> Estimate:
    """successes/trials with a percentile bootstrap interval over clusters of (successes, trials)."""
    kept = [c for c in clusters if c[1] > 0]
    if not kept:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, 0)
    s, t = sum(c[0] for c in kept), sum(c[1] for c in kept)
    low, high = cluster_bootstrap(kept, reps, seed, level)
    w_low, w_high = wilson(s, t, level)
    return Estimate(s / t, min(low, w_low), max(high, w_high), s, t, tuple((int(a), int(b)) for a, b in kept))


def mean_ci(
    clusters: Sequence[tuple[float, int]], reps: int = 2000, seed: int = 0, level: float = 0.95
) -> MeanEstimate:
    """The mean of items given per cluster as (sum, count), with the cluster bootstrap interval."""
    kept = [c for c in clusters if c[1] > 0]
    if not kept:
        return MeanEstimate(float("nan"), float("nan"), float("nan"), 0)
    total, n = sum(c[0] for c in kept), sum(c[1] for c in kept)
    low, high = cluster_bootstrap(kept, reps, seed, level)
    return MeanEstimate(total / n, low, high, n)


def wilson(successes: float, trials: float, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval; `successes` may be fractional (a win rate counting ties as half)."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * ((p * (1 - p) / trials + z * z / (4 * trials * trials)) ** 0.5) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_t_ci(values: Sequence[float], level: float = 0.95) -> MeanEstimate:
    """The mean of independent values with Student's t interval: a percentile bootstrap of 2 or 3
    prices spans only their range, far too narrow. Below 2 values there is no interval (nan)."""
    n = len(values)
    if n == 0:
        return MeanEstimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(np.mean(values))
    if n < 2:
        return MeanEstimate(mean, float("nan"), float("nan"), n)
    from scipy.stats import t

    half = float(t.ppf(1 - (1 - level) / 2, n - 1)) * float(np.std(values, ddof=1)) / math.sqrt(n)
    return MeanEstimate(mean, mean - half, mean + half, n)


def paired_rate_diff_ci(pairs: Sequence[tuple[bool, bool]], level: float = 0.95) -> MeanEstimate:
    """P(after) - P(before) over paired yes/no outcomes, with Newcombe's hybrid score interval for
    paired data (1998, method 10): never zero-width when no pair changed, unlike a bootstrap."""
    n = len(pairs)
    if n == 0:
        return MeanEstimate(float("nan"), float("nan"), float("nan"), 0)
    d, low, high = _newcombe_paired(_paired_cells(pairs), level)
    return MeanEstimate(d, low, high, n)


def _paired_cells(pairs: Sequence[tuple[bool, bool]]) -> tuple[float, float, float, float]:
    """(both, after only, before only, neither) of (before, after) pairs."""
    both = sum(1 for b, a in pairs if b and a)
    after_only = sum(1 for b, a in pairs if a and not b)
    before_only = sum(1 for b, a in pairs if b and not a)
    return float(both), float(after_only), float(before_only), float(len(pairs) - both - after_only - before_only)


def _newcombe_paired(cells: tuple[float, float, float, float], level: float) -> tuple[float, float, float]:
    """(d, low, high) of Newcombe's paired interval from the 2x2 cells, which may be fractional (the
    counts of a smaller effective sample)."""
    both, after_only, before_only, neither = cells
    n = both + after_only + before_only + neither
    p_after, p_before = (both + after_only) / n, (both + before_only) / n
    l_after, u_after = wilson(both + after_only, n, level)
    l_before, u_before = wilson(both + before_only, n, level)
    margins = (both + after_only) * (neither + before_only) * (both + before_only) * (neither + after_only)
    cross = both * neither - after_only * before_only
    corrected = max(cross - n / 2, 0.0) if cross > 0 else float(cross)
    phi = corrected / math.sqrt(margins) if margins > 0 else 0.0
    d = p_after - p_before
    low = d - math.sqrt(max(0.0, (p_after - l_after) ** 2 - 2 * phi * (p_after - l_after) * (u_before - p_before)
                            + (u_before - p_before) ** 2))  # fmt: skip
    high = d + math.sqrt(max(0.0, (u_after - p_after) ** 2 - 2 * phi * (u_after - p_after) * (p_before - l_before)
                             + (p_before - l_before) ** 2))  # fmt: skip
    return d, max(-1.0, low), min(1.0, high)


def clustered_paired_diff_ci(
    clusters: Sequence[Sequence[tuple[bool, bool]]], reps: int = 2000, seed: int = 0, level: float = 0.95
) -> MeanEstimate:
    """P(after) - P(before) over paired yes/no outcomes that come in clusters (the steps of one dialog):
    a percentile bootstrap over whole clusters, widened to at least Newcombe's paired interval (which
    treats pairs as independent, and keeps a width where no pair changed and the bootstrap has none)."""
    kept = [list(c) for c in clusters if len(c) > 0]
    pairs = [p for c in kept for p in c]
    if not pairs:
        return MeanEstimate(float("nan"), float("nan"), float("nan"), 0)
    newcombe = paired_rate_diff_ci(pairs, level)
    sums = [(float(sum(int(a) - int(b) for b, a in c)), float(len(c))) for c in kept]
    low, high = cluster_bootstrap(sums, reps, seed, level)
    return MeanEstimate(newcombe.value, min(low, newcombe.low), max(high, newcombe.high), len(pairs))


def newcombe_diff_ci(
    before: tuple[int, int], after: tuple[int, int], level: float = 0.95
) -> tuple[float, float, float]:
    """(d, low, high) for d = after - before, each given as (successes, trials), of two independent
    samples: Newcombe's hybrid score interval (1998, method 10), Wilson's bounds of each rate combined."""
    (k0, n0), (k1, n1) = before, after
    p1, p0 = k1 / n1, k0 / n0
    l1, u1 = wilson(k1, n1, level)
    l0, u0 = wilson(k0, n0, level)
    d = p1 - p0
    low = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return d, max(-1.0, low), min(1.0, high)


def _ratio_variance(clusters: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The cluster-robust variance of sum(x)/sum(n) and its degrees of freedom. Linearized residuals
    x - R n, each scaled by 1/(1 - n/N) (Bell and McCaffrey's CR2 for a mean, exact G/(G-1) when the
    clusters are the same size), and G_eff - 1 degrees of freedom with G_eff = N^2 / sum(n^2): a run
    of one long dialog and two short ones has nearer one cluster's worth of information than three.
    G_eff - 1 is at or below Bell and McCaffrey's own degrees of freedom (2.90 against 2.98 for sizes
    10, 2, 5, 7, 3; 0.25 against 1.16 for 50, 2, 2, 2): conservative, never too few clusters' width."""
    data = np.array(clusters, dtype=float).reshape(-1, 2)
    total = data[:, 1].sum()
    if len(data) < 2:
        return float("nan"), 0.0
    r = data[:, 0].sum() / total
    resid = data[:, 0] - r * data[:, 1]
    lever = data[:, 1] / total
    var = float((resid**2 / (1 - lever)).sum() / total**2)
    g_eff = float(total**2 / (data[:, 1] ** 2).sum())
    return var, g_eff - 1


def rate_diff_ci(before: Estimate, after: Estimate, level: float = 0.95) -> MeanEstimate:
    """after - before for two rates measured on separate samples (two models, each its own dialogs).

    Trials come in clusters (the turns of one dialog) of unequal sizes, and a run has few of them (3
    dialogs per rung): a bootstrap over 3 clusters covers far less than it claims. So the interval is
    the cluster-robust one (`_ratio_variance`), with Student's t on Welch-Satterthwaite's degrees of
    freedom from both sides, widened to at least Newcombe's score interval (which treats trials as
    independent and keeps a width where no cluster varies). With a single cluster on a side nothing
    can be said: [-1, 1]. A design that pairs the two models' samples is analysed as unpaired:
    conservative, never too narrow. `n` is the trials of both sides."""
    if before.trials == 0 or after.trials == 0:
        return MeanEstimate(float("nan"), float("nan"), float("nan"), before.trials + after.trials)
    for est in (before, after):
        if not est.clusters:
            from mendlab.errors import MendlabError

            raise MendlabError("a rate difference needs each rate's clusters (rates read back from JSON have none)")
    d, n_low, n_high = newcombe_diff_ci((before.successes, before.trials), (after.successes, after.trials), level)
    (va, dfa), (vb, dfb) = _ratio_variance(after.clusters), _ratio_variance(before.clusters)
    if math.isnan(va) or math.isnan(vb):
        return MeanEstimate(d, -1.0, 1.0, before.trials + after.trials)
    from scipy.stats import t

    var = va + vb
    low, high = n_low, n_high
    if var > 0:
        df = var**2 / ((va**2 / dfa if va else 0.0) + (vb**2 / dfb if vb else 0.0))
        half = float(t.ppf(1 - (1 - level) / 2, df)) * math.sqrt(var)
        low, high = min(low, d - half), max(high, d + half)
    return MeanEstimate(d, max(-1.0, low), min(1.0, high), before.trials + after.trials)


def _clustered_t(
    clusters: Sequence[tuple[float, float]], var: float, df: float, floor: tuple[float, float], level: float
) -> tuple[float, float]:
    """sum(x)/sum(n) ± t·se with the CR2 variance `var` of `_ratio_variance` (and its `df`, at least 1:
    the callers say "nothing known" below), never narrower than `floor`."""
    from scipy.stats import t

    total = sum(c[1] for c in clusters)
    r = sum(c[0] for c in clusters) / total
    half = float(t.ppf(1 - (1 - level) / 2, df)) * math.sqrt(var)
    return min(floor[0], r - half), max(floor[1], r + half)


def _nothing_known(var: float, df: float) -> bool:
    """Under two clusters' worth (G_eff < 2: sizes 100 and 30 are already 1.55), or one cluster."""
    return math.isnan(var) or df < 1


def _effective_n(var: float, df: float, binomial_var: float, n: float, carriers: int, level: float) -> float:
    """How many independent trials `n` clustered ones are worth, for the floor of a clustered interval.

    Trials in a cluster pass or fail together, so they carry only n / deff trials' worth (Kish's design
    effect, deff = the CR2 variance over the independent one, never below 1), reduced again for the few
    clusters by (t_{n-1} / t_df)^2 as Korn and Graubard (1998) do for an estimated deff. Where the rarer
    outcome sits in at most two clusters (`carriers`: none at a rate of 0 or 1, or where no pair
    changed) the data cannot tell how alike a cluster's trials are, and the worst case is taken: each
    cluster counts once (G_eff = N^2 / sum(n_g^2), exact when a cluster's trials are all alike). Wilson
    on the raw `n` covered 34% of the time at a true rate of 2% in 18 structures of 400 problems, and
    the worst case at 0 successes alone (deff estimated from a single success) about half of the runs
    with one to three successes."""
    from scipy.stats import t

    if binomial_var <= 0:
        return min(df + 1, n)  # the bound itself, not an estimate: no shrinking for its uncertainty
    n_eff = n / max(1.0, var / binomial_var)
    if n > 1:
        n_eff *= (float(t.ppf(1 - (1 - level) / 2, n - 1)) / float(t.ppf(1 - (1 - level) / 2, df))) ** 2
    if carriers <= 2:  # capped by the worst case, never raised to it: the estimate may be smaller still
        return min(n_eff, n, df + 1)
    return min(n_eff, n)


def _rate_interval(clusters: Sequence[tuple[float, float]], level: float) -> tuple[float, float]:
    """The CR2/t interval of sum(x)/sum(n) for x in [0, n], never narrower than Wilson's on the
    effective number of trials (`_effective_n`)."""
    var, df = _ratio_variance(clusters)
    if _nothing_known(var, df):
        return 0.0, 1.0
    s, n = sum(c[0] for c in clusters), sum(c[1] for c in clusters)
    p = s / n
    carriers = min(sum(1 for x, _ in clusters if x > 0), sum(1 for x, m in clusters if x < m))
    n_eff = _effective_n(var, df, p * (1 - p) / n, n, carriers, level)
    low, high = _clustered_t(clusters, var, df, wilson(p * n_eff, n_eff, level), level)
    return max(0.0, low), min(1.0, high)


def ratio_t_ci(clusters: Sequence[tuple[int, int]], level: float = 0.95) -> Estimate:
    """successes/trials when trials come in a few clusters that succeed or fail together (test problems
    sharing one solution structure): the cluster-robust (CR2) variance with Student's t on the effective
    number of clusters, widened to Wilson's interval on the effective number of trials
    (`_effective_n`), which keeps a width where every structure passed or every one failed. A
    percentile bootstrap over a handful of clusters spans little more than their spread and covers far
    less than it claims."""
    kept = [(int(a), int(b)) for a, b in clusters if b > 0]
    if not kept:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, 0)
    s, n = sum(a for a, _ in kept), sum(b for _, b in kept)
    low, high = _rate_interval([(float(a), float(b)) for a, b in kept], level)
    return Estimate(s / n, low, high, s, n, tuple(kept))


def clustered_mean_t_ci(clusters: Sequence[tuple[float, int]], level: float = 0.95) -> MeanEstimate:
    """The mean of items in [0, 1] given per cluster as (sum, count), with the CR2/t interval of
    `ratio_t_ci`, widened to Wilson's on the summed credit over the effective number of items: a
    variable in [0, 1] varies no more than a yes/no one of the same mean, and the floor keeps a width
    where every item is alike (all 0) and the clusters have none."""
    kept = [(float(a), float(b)) for a, b in clusters if b > 0]
    if not kept:
        return MeanEstimate(float("nan"), float("nan"), float("nan"), 0)
    total, n = sum(a for a, _ in kept), sum(b for _, b in kept)
    m = total / n
    low, high = _rate_interval(kept, level)
    return MeanEstimate(m, low, high, int(n))


def paired_diff_t_ci(clusters: Sequence[Sequence[tuple[bool, bool]]], level: float = 0.95) -> MeanEstimate:
    """P(after) - P(before) over paired yes/no outcomes in clusters: the CR2 interval of the mean
    difference (t on the effective number of clusters), widened to Newcombe's paired interval on the
    effective number of pairs (`_effective_n`), which keeps a width where no pair changed. With under
    two clusters' worth (G_eff < 2) nothing is known: [-1, 1]. `n`: the pairs."""
    kept = [list(c) for c in clusters if len(c) > 0]
    pairs = [p for c in kept for p in c]
    if not pairs:
        return MeanEstimate(float("nan"), float("nan"), float("nan"), 0)
    both, after_only, before_only, neither = _paired_cells(pairs)
    n = float(len(pairs))
    d = (after_only - before_only) / n
    sums = [(float(sum(int(a) - int(b) for b, a in c)), float(len(c))) for c in kept]
    var, df = _ratio_variance(sums)
    if _nothing_known(var, df):
        return MeanEstimate(d, -1.0, 1.0, len(pairs))
    changed = sum(1 for c in kept if any(a != b for b, a in c))
    carriers = min(changed, sum(1 for c in kept if any(a == b for b, a in c)))
    k = _effective_n(var, df, ((after_only + before_only) / n - d * d) / n, n, carriers, level) / n
    _, low, high = _newcombe_paired((both * k, after_only * k, before_only * k, neither * k), level)
    low, high = _clustered_t(sums, var, df, (low, high), level)
    return MeanEstimate(d, max(-1.0, low), min(1.0, high), len(pairs))


def cohen_kappa(pairs: Sequence[tuple[bool, bool]]) -> float:
    """Cohen's kappa of two raters' yes/no verdicts on the same items, (p_o - p_e) / (1 - p_e): their
    agreement beyond what their base rates give by chance. nan where it is undefined (no items, or
    both raters said one and the same thing throughout)."""
    counts = np.zeros(4)
    for a, b in pairs:
        counts[2 * int(a) + int(b)] += 1
    return float(_kappa(counts[None, :])[0])


def _kappa(cells: np.ndarray) -> np.ndarray:
    """Kappa of rows of 2x2 counts laid out as (no-no, no-yes, yes-no, yes-yes)."""
    n = cells.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p_o = (cells[:, 0] + cells[:, 3]) / n
        p_a = (cells[:, 2] + cells[:, 3]) / n
        p_b = (cells[:, 1] + cells[:, 3]) / n
        p_e = p_a * p_b + (1 - p_a) * (1 - p_b)
        kappa = (p_o - p_e) / (1 - p_e)
    out: np.ndarray = np.where(np.isclose(p_e, 1.0) | (n == 0), np.nan, kappa)
    return out


def cohen_kappa_ci(
    clusters: Sequence[Sequence[tuple[bool, bool]]], reps: int = 2000, seed: int = 0, level: float = 0.95
) -> MeanEstimate:
    """Cohen's kappa with a percentile bootstrap over whole clusters (the turns of one dialog); resamples
    where kappa is undefined are left out. `n` counts the items."""
    kept = [c for c in clusters if len(c) > 0]
    pairs = [p for c in kept for p in c]
    value = cohen_kappa(pairs)
    if not pairs or math.isnan(value):
        return MeanEstimate(value, float("nan"), float("nan"), len(pairs))
    cells = np.zeros((len(kept), 4))
    for i, c in enumerate(kept):
        for a, b in c:
            cells[i, 2 * int(a) + int(b)] += 1
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(kept), size=(reps, len(kept)))
    boot = _kappa(cells[idx].sum(axis=1))
    boot = boot[~np.isnan(boot)]
    if len(boot) == 0:
        return MeanEstimate(value, float("nan"), float("nan"), len(pairs))
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return MeanEstimate(value, float(low), float(high), len(pairs))
