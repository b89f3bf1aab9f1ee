from __future__ import annotations

import math
from typing import Any

import numpy as np

from mendlab.stats import ratio_ci, wilson


def test_ratio_ci_brackets_the_estimate_and_is_never_degenerate() -> None:
    est = ratio_ci([(1, 3), (2, 3), (0, 2), (3, 4)])
    assert est.successes == 6 and est.trials == 12 and math.isclose(est.value, 0.5)
    assert 0 <= est.low < 0.5 < est.high <= 1
    perfect = ratio_ci([(1, 1)] * 5)
    assert perfect.high == 1.0 and 0.5 < perfect.low < 0.6  # Wilson's 5/5 lower bound is 0.566
    assert str(ratio_ci([])) == "n/a"


def test_wilson_known_value() -> None:
    low, high = wilson(5, 10)
    assert math.isclose(low, 0.2366, abs_tol=1e-3) and math.isclose(high, 0.7634, abs_tol=1e-3)


def test_t_interval_of_a_mean_by_hand() -> None:
    from mendlab.stats import mean_t_ci

    est = mean_t_ci([14.0, 16.0, 15.0])  # mean 15, sd 1, t(0.975, 2) = 4.302653
    assert est.value == 15.0 and est.n == 3
    assert abs(est.low - (15 - 4.302653 / 3**0.5)) < 1e-5 and abs(est.high - (15 + 4.302653 / 3**0.5)) < 1e-5
    one = mean_t_ci([15.0])
    assert one.value == 15.0 and one.n == 1 and one.low != one.low  # no interval from one value (nan)


def test_paired_rate_difference_interval_covers_and_never_collapses() -> None:
    """Newcombe's interval for paired proportions: its Wilson pieces agree with statsmodels', it keeps a
    width when no pair changed (a bootstrap gives [0, 0]), and it covers the true difference about 95%
    of the time on simulated paired data."""
    import numpy as np
    from statsmodels.stats.proportion import proportion_confint

    from mendlab.stats import paired_rate_diff_ci, wilson

    for k, n in ((0, 24), (7, 24), (24, 24), (3, 5)):
        assert np.allclose(wilson(k, n), proportion_confint(k, n, method="wilson"))
    same = paired_rate_diff_ci([(True, True)] * 12 + [(False, False)] * 12)
    assert same.value == 0 and same.low < -0.05 and same.high > 0.05
    rng = np.random.default_rng(1)
    covered, sims, n = 0, 2000, 24
    p_before, p_after_if_before, p_after_if_not = 0.5, 0.8, 0.4  # correlated: P(after) = 0.6
    truth = 0.5 * 0.8 + 0.5 * 0.4 - p_before
    for _ in range(sims):
        before = rng.random(n) < p_before
        after = np.where(before, rng.random(n) < p_after_if_before, rng.random(n) < p_after_if_not)
        est = paired_rate_diff_ci(list(zip(before.tolist(), after.tolist(), strict=True)))
        covered += est.low <= truth <= est.high
    assert 0.93 <= covered / sims <= 0.99


def test_paired_rate_difference_matches_a_published_value() -> None:
    """contingencytables (Fagerland, Lydersen & Laake) checks Newcombe's hybrid score interval on the
    paired table [[59, 6], [16, 80]]: -0.0621 [-0.1186, -0.0046]; rows are the 'after' outcome."""
    from mendlab.stats import paired_rate_diff_ci

    pairs = [(True, True)] * 59 + [(False, True)] * 6 + [(True, False)] * 16 + [(False, False)] * 80
    est = paired_rate_diff_ci(pairs)
    assert round(est.value, 4) == -0.0621 and round(est.low, 4) == -0.1186 and round(est.high, 4) == -0.0046


def test_unpaired_difference_matches_newcombes_published_table() -> None:
    """Newcombe (1998), Statistics in Medicine 17:873, Table II, method 10 (the hybrid score interval)."""
    from mendlab.stats import newcombe_diff_ci

    table = [  # (after, before, low, high) for after - before
        ((56, 70), (48, 80), 0.0524, 0.3339),
        ((9, 10), (3, 10), 0.1705, 0.8090),
        ((6, 7), (2, 7), 0.0582, 0.8062),
        ((5, 56), (0, 29), -0.0381, 0.1926),
        ((0, 10), (0, 20), -0.1611, 0.2775),
        ((10, 10), (0, 20), 0.6791, 1.0000),
    ]
    for after, before, low, high in table:
        d, lo, hi = newcombe_diff_ci(before, after)
        assert math.isclose(d, after[0] / after[1] - before[0] / before[1])
        assert math.isclose(lo, low, abs_tol=1e-4) and math.isclose(hi, high, abs_tol=1e-4), (after, before, lo, hi)


def test_rate_difference_by_hand_and_never_narrower_than_newcombe() -> None:
    from mendlab.stats import newcombe_diff_ci, rate_diff_ci

    # independent trials (clusters of one): the interval is Newcombe's, or the t one where that is wider
    before = ratio_ci([(1, 1)] * 48 + [(0, 1)] * 32)
    after = ratio_ci([(1, 1)] * 56 + [(0, 1)] * 14)
    diff = rate_diff_ci(before, after)
    _, n_low, n_high = newcombe_diff_ci((48, 80), (56, 70))
    assert math.isclose(diff.value, 0.2) and diff.n == 150
    assert diff.low <= n_low + 1e-12 and diff.high >= n_high - 1e-12
    assert diff.high - diff.low < (n_high - n_low) * 1.1  # about the same with many clusters
    # three lumpy clusters a side, by hand: R = 40/60 and 40/60; residuals x - R n
    lumpy_before = ratio_ci([(20, 20), (20, 20), (0, 20)])
    lumpy_after = ratio_ci([(20, 20), (16, 20), (4, 20)])
    got = rate_diff_ci(lumpy_before, lumpy_after)
    from scipy.stats import t

    def var(xs: list[tuple[int, int]]) -> float:  # equal sizes: the classic G/(G-1) factor
        r = sum(x for x, _ in xs) / sum(n for _, n in xs)
        return 3 / 2 * sum((x - r * n) ** 2 for x, n in xs) / sum(n for _, n in xs) ** 2

    va, vb = var([(20, 20), (16, 20), (4, 20)]), var([(20, 20), (20, 20), (0, 20)])
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    half = t.ppf(0.975, df) * math.sqrt(va + vb)
    assert math.isclose(got.value, 0.0, abs_tol=1e-12)
    assert math.isclose(got.low, max(-1.0, -half)) and math.isclose(got.high, min(1.0, half))
    # clusters of one trial: the variance is the binomial's with n - 1, p(1 - p)/(n - 1)
    from mendlab.stats import _ratio_variance

    v, df = _ratio_variance([(1, 1)] * 48 + [(0, 1)] * 32)
    assert math.isclose(v, 0.6 * 0.4 / 79) and math.isclose(df, 79)
    # one dialog a side: nothing to say; nothing measured on a side: no difference
    one = rate_diff_ci(ratio_ci([(3, 5)]), ratio_ci([(5, 5)]))
    assert (one.low, one.high) == (-1.0, 1.0)
    empty = rate_diff_ci(ratio_ci([]), after)
    assert empty.value != empty.value and empty.n == 70  # nan


def test_rate_difference_covers_at_its_level_with_three_dialogs_a_side() -> None:
    """Two identical models, 3 dialogs per side, turns correlated within a dialog (beta-binomial), the
    dialogs of equal length or not: the 95% interval must hold 0 in at least 94% of 1500 runs. A cluster
    bootstrap widened to Newcombe's held it in 88% with equal sizes (what an earlier version did), and
    the G/(G-1) variance with G-1 degrees of freedom in 73% with sizes 1, 3 and 20."""
    import numpy as np

    from mendlab.stats import rate_diff_ci

    rng = np.random.default_rng(7)
    for p, rho, sizes in (
        (0.3, 0.3, (8, 8, 8)),
        (0.5, 0.15, (8, 8, 8)),
        (0.3, 0.3, (2, 8, 14)),
        (0.5, 0.3, (1, 3, 20)),
    ):
        a, b = p * (1 - rho) / rho, (1 - p) * (1 - rho) / rho
        covered = 0
        runs = 1500
        for _ in range(runs):
            sides = [[(int(rng.binomial(n, rng.beta(a, b))), n) for n in sizes] for _ in range(2)]
            d = rate_diff_ci(ratio_ci(sides[0], reps=10), ratio_ci(sides[1], reps=10))
            covered += d.low <= 0 <= d.high
        assert covered / runs >= 0.94, (p, rho, sizes, covered / runs)


def test_clustered_ratio_interval_is_the_t_interval_of_cluster_rates_for_equal_clusters() -> None:
    """Equal cluster sizes: the CR2 interval reduces to Student's t over the clusters' own rates (an
    independent formula), when that is wider than Wilson's; all-alike clusters fall back to Wilson."""
    import numpy as np
    from scipy.stats import t

    from mendlab.stats import ratio_t_ci

    clusters = [(10, 10), (0, 10), (10, 10), (0, 10), (5, 10)]  # 5 structures that pass or fail together
    rates = np.array([k / n for k, n in clusters])
    half = t.ppf(0.975, len(rates) - 1) * rates.std(ddof=1) / math.sqrt(len(rates))
    est = ratio_t_ci(clusters)
    assert math.isclose(est.value, 0.5)
    assert math.isclose(est.low, max(0.0, 0.5 - half), abs_tol=1e-9) and math.isclose(est.high, min(1.0, 0.5 + half))
    # The same 50 outcomes as independent trials: the bootstrap over problems is far narrower.
    assert est.high - est.low > 2.5 * (ratio_ci([(1, 1)] * 25 + [(0, 1)] * 25).high - 0.5)
    # All alike: no variance between structures, so Wilson's width on 40 trials, shrunk for 4 clusters
    # by Korn and Graubard's (t_39 / t_3)^2.
    alike = ratio_t_ci([(3, 10)] * 4)
    k = (t.ppf(0.975, 39) / t.ppf(0.975, 3)) ** 2
    assert all(math.isclose(a, b) for a, b in zip((alike.low, alike.high), wilson(0.3 * 40 * k, 40 * k), strict=True))
    assert (ratio_t_ci([(7, 10)]).low, ratio_t_ci([(7, 10)]).high) == (0.0, 1.0)  # one structure: nothing known
    assert ratio_t_ci([]).trials == 0


def test_clustered_paired_difference_is_the_t_interval_of_cluster_means_and_never_narrower_than_newcombe() -> None:
    import numpy as np
    from scipy.stats import t

    from mendlab.stats import paired_diff_t_ci, paired_rate_diff_ci

    # 4 structures of 6 pairs each: two where the new model wins everything, two with no change.
    win, same = [(False, True)] * 6, [(True, True)] * 3 + [(False, False)] * 3
    clusters = [win, same, win, same]
    est = paired_diff_t_ci(clusters)
    means = np.array([1.0, 0.0, 1.0, 0.0])
    half = t.ppf(0.975, 3) * means.std(ddof=1) / 2
    assert math.isclose(est.value, 0.5) and est.n == 24
    assert math.isclose(est.low, 0.5 - half) and math.isclose(est.high, min(1.0, 0.5 + half))
    flat = paired_rate_diff_ci([p for c in clusters for p in c])
    assert est.low < flat.low  # pairs in clusters say less than 24 independent pairs
    none_changed = paired_diff_t_ci([same, same, same])
    assert none_changed.value == 0 and none_changed.low < 0 < none_changed.high  # Newcombe's width kept


def test_clustered_mean_of_partial_credit_never_collapses_and_is_clustered() -> None:
    from mendlab.stats import clustered_mean_t_ci

    # All 0: nothing says how alike a structure's items are, so each of the 5 structures counts once.
    zeros = clustered_mean_t_ci([(0.0, 10)] * 5)
    assert zeros.value == 0 and zeros.low == 0 and math.isclose(zeros.high, wilson(0, 5)[1])
    uneven = clustered_mean_t_ci([(0.0, 30), (0.0, 10), (0.0, 10)])  # G_eff = 50^2 / 1100
    assert math.isclose(uneven.high, wilson(0, 2500 / 1100)[1])
    split = clustered_mean_t_ci([(10.0, 10), (0.0, 10), (10.0, 10), (0.0, 10)])
    assert split.value == 0.5 and split.low == 0.0 and split.high == 1.0  # 4 structures: t with 3 df spans it all


def _correlated_structures(sizes: Any, p: float, rho: float, u: Any) -> Any:
    """Each structure's pass rate drawn from a beta of mean p and intra-structure correlation rho,
    at the quantile u (shared by two models to make their structures hard or easy together)."""
    from scipy.stats import beta

    if p == 0:
        return np.zeros(len(sizes))
    return beta.ppf(u, p * (1 - rho) / rho, (1 - p) * (1 - rho) / rho)


def test_clustered_rate_covers_at_low_rates_in_few_correlated_structures() -> None:
    """400 problems in 18 structures of unequal size that mostly pass or fail together: Wilson's floor
    on 400 independent trials covered 34% of the time at a true rate of 2%, and the worst case taken
    at 0 successes only, 89% at 2% with a correlation of 0.5; the floor on the effective number of
    trials holds the level, and with little correlation it is not needlessly wide."""
    from mendlab.stats import ratio_t_ci

    rng = np.random.default_rng(0)
    sizes = np.maximum(1, np.round(np.random.default_rng(18).dirichlet(np.ones(18)) * 400)).astype(int)

    def coverage(p: float, rho: float, reps: int = 600) -> tuple[float, float]:
        hits, width = 0, 0.0
        for _ in range(reps):
            k = rng.binomial(sizes, _correlated_structures(sizes, p, rho, rng.random(len(sizes))))
            est = ratio_t_ci(list(zip(k.tolist(), sizes.tolist(), strict=True)))
            hits += est.low <= p <= est.high
            width += est.high - est.low
        return hits / reps, width / reps

    assert coverage(0.02, 0.9)[0] >= 0.92
    assert coverage(0.05, 0.9)[0] >= 0.92
    # with one to three successes the design effect comes from one or two structures: not to be trusted
    assert coverage(0.02, 0.5)[0] >= 0.92
    assert coverage(0.05, 0.3)[0] >= 0.9
    assert 0.92 <= coverage(0.3, 0.02)[0] <= 0.985  # little correlation: not needlessly wide


def test_clustered_paired_difference_covers_when_few_structures_change() -> None:
    """Two models on 400 problems in 18 structures, the new one solving 3% where the old solves none:
    Newcombe's floor on 400 independent pairs covered 38% of the time; on the effective pairs, ≥ 90%."""
    from mendlab.stats import paired_diff_t_ci

    rng = np.random.default_rng(1)
    sizes = np.maximum(1, np.round(np.random.default_rng(18).dirichlet(np.ones(18)) * 400)).astype(int)
    hits, reps = 0, 300
    for _ in range(reps):
        u = rng.random(len(sizes))
        q0 = _correlated_structures(sizes, 0.0, 0.9, u)
        q1 = _correlated_structures(sizes, 0.03, 0.9, u)
        clusters = []
        for g, size in enumerate(sizes):
            draws = rng.random(size)
            clusters.append([(bool(x < q0[g]), bool(x < q1[g])) for x in draws])
        est = paired_diff_t_ci(clusters)
        hits += est.low <= 0.03 <= est.high
    assert hits / reps >= 0.9


def test_cr2_variance_of_unequal_structures_matches_the_matrix_formula() -> None:
    """Bell and McCaffrey's CR2 for an intercept-only regression on the trials, computed with matrices
    (A_g = (I - H_gg)^(-1/2)), against the interval of `ratio_t_ci` on structures of sizes 10, 2, 5, 7, 3
    (unequal, so a constant G/(G-1) factor would not agree)."""
    from scipy.stats import t

    from mendlab.stats import ratio_t_ci

    clusters = [(9, 10), (0, 2), (1, 5), (6, 7), (0, 3)]
    y = np.concatenate([np.r_[np.ones(k), np.zeros(n - k)] for k, n in clusters])
    big_n = len(y)
    beta_hat = y.mean()
    meat, start = 0.0, 0
    for _, n in clusters:
        x_g, e_g = np.ones((n, 1)), y[start : start + n] - beta_hat
        h_gg = x_g @ x_g.T / big_n
        w, v = np.linalg.eigh(np.eye(n) - h_gg)
        a_g = v @ np.diag(w**-0.5) @ v.T
        u = x_g.T @ a_g @ e_g
        meat += float(u @ u)
        start += n
    var = meat / big_n**2
    g_eff = big_n**2 / sum(n * n for _, n in clusters)
    half = t.ppf(0.975, g_eff - 1) * math.sqrt(var)
    est = ratio_t_ci(clusters)
    assert math.isclose(est.value, beta_hat)
    assert math.isclose(est.high, min(1.0, beta_hat + half)) and math.isclose(est.low, max(0.0, beta_hat - half))


def test_one_structure_holding_nearly_everything_says_nothing_and_does_not_crash() -> None:
    """G_eff just above 1 (200 problems in one structure, 1 in another): t on ~0.01 degrees of freedom
    spans everything, and the floor must not divide by an underflowed effective n."""
    from mendlab.stats import clustered_mean_t_ci, paired_diff_t_ci, ratio_t_ci

    est = ratio_t_ci([(0, 200), (1, 1)])
    assert (est.low, est.high) == (0.0, 1.0)
    mean = clustered_mean_t_ci([(50.0, 1000), (0.2, 1)])
    assert (mean.low, mean.high) == (0.0, 1.0)
    diff = paired_diff_t_ci([[(False, True)] * 500 + [(True, True)] * 500, [(True, False)]])
    assert (diff.low, diff.high) == (-1.0, 1.0)


def test_a_single_success_is_no_narrower_than_none() -> None:
    """The design effect estimated from one structure's single success is ~1, which would shrink the
    interval from 0 of 400's worst case to Wilson's on 400: the worst case holds until the rarer
    outcome shows in three structures."""
    from mendlab.stats import ratio_t_ci

    sizes = [20] * 20
    none = ratio_t_ci([(0, n) for n in sizes])
    one = ratio_t_ci([(1, sizes[0])] + [(0, n) for n in sizes[1:]])
    assert one.high >= none.high > 0.1
    almost_all = ratio_t_ci([(sizes[0] - 1, sizes[0])] + [(n, n) for n in sizes[1:]])
    assert almost_all.low <= 1 - none.high
