"""Coverage of the clustered intervals (`stats.ratio_t_ci`, `stats.paired_diff_t_ci`) over a grid.

The README's coverage figures come from this script: 400 problems in 18 or 61 structures of unequal size
(Dirichlet(1) shares, seeded by the number of structures), each structure's rate drawn from a beta of
mean p and intra-structure correlation rho. For the paired difference both models share each structure's
difficulty (the same beta quantile), so their structures are hard or easy together.

    .venv/bin/python bench/coverage_clustered.py [--reps 600]

About 40 seconds at the default reps.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import beta

from mendlab.stats import paired_diff_t_ci, ratio_t_ci

STRUCTURES = (18, 61)
RHOS = (0.02, 0.3, 0.5, 0.9)
RATES = (0.02, 0.05, 0.1, 0.3)
PAIRS = ((0.02, 0.05), (0.0, 0.03), (0.0, 0.1), (0.3, 0.4))


def sizes(g: int, n: int = 400) -> np.ndarray:
    shares = np.random.default_rng(g).dirichlet(np.ones(g))
    return np.maximum(1, np.round(shares * n)).astype(int)


def rates(p: float, rho: float, u: np.ndarray) -> np.ndarray:
    if p == 0:
        return np.zeros(len(u))
    return np.asarray(beta.ppf(u, p * (1 - rho) / rho, (1 - p) * (1 - rho) / rho))


def rate_coverage(g: int, rho: float, p: float, reps: int, rng: np.random.Generator) -> tuple[float, float]:
    sz = sizes(g)
    hits, width = 0, 0.0
    for _ in range(reps):
        k = rng.binomial(sz, rates(p, rho, rng.random(g)))
        est = ratio_t_ci(list(zip(k.tolist(), sz.tolist(), strict=True)))
        hits += est.low <= p <= est.high
        width += est.high - est.low
    return hits / reps, width / reps


def paired_coverage(g: int, rho: float, p0: float, p1: float, reps: int, rng: np.random.Generator) -> float:
    sz = sizes(g)
    hits = 0
    for _ in range(reps):
        u = rng.random(g)
        q0, q1 = rates(p0, rho, u), rates(p1, rho, u)
        clusters = []
        for i, size in enumerate(sz):
            draws = rng.random(size)
            clusters.append([(bool(x < q0[i]), bool(x < q1[i])) for x in draws])
        est = paired_diff_t_ci(clusters)
        hits += est.low <= p1 - p0 <= est.high
    return hits / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=600)
    reps = parser.parse_args().reps
    rng = np.random.default_rng(0)
    low_rate, low_pair = 1.0, 1.0
    print("rate: structures rho p -> coverage (mean width)")
    for g in STRUCTURES:
        for rho in RHOS:
            for p in RATES:
                cover, width = rate_coverage(g, rho, p, reps, rng)
                low_rate = min(low_rate, cover)
                print(f"  {g:3d} {rho:4.2f} {p:4.2f} -> {cover:.3f} ({width:.3f})", flush=True)
    print("paired: structures rho p0 p1 -> coverage")
    for g in STRUCTURES:
        for rho in RHOS[1:]:
            for p0, p1 in PAIRS:
                cover = paired_coverage(g, rho, p0, p1, reps // 2, rng)
                low_pair = min(low_pair, cover)
                print(f"  {g:3d} {rho:4.2f} {p0:4.2f} {p1:4.2f} -> {cover:.3f}", flush=True)
    print(f"lowest coverage: rates {low_rate:.3f}, paired differences {low_pair:.3f} (nominal 0.95)")


if __name__ == "__main__":
    main()
