from __future__ import annotations

import math

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
