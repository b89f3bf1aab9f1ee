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
