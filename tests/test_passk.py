"""pass@k and the pass@t bootstrap, checked against exact enumeration on small trees."""

from __future__ import annotations

import itertools
import math

import pytest

from mendlab.repair.passk import (
    Pair,
    Program,
    Tree,
    baseline_grid,
    bootstrap,
    interpolate_baseline,
    pass_at_k,
    repair_grid,
)

TREES = [
    Tree("A", (Program(True, 10), Program(False, 20, (Pair(True, 5), Pair(False, 7))))),
    Tree(
        "B", (Program(False, 8, (Pair(False, 3), Pair(True, 4), Pair(False, 2))), Program(False, 6, (Pair(False, 1),)))
    ),
    Tree("C", (Program(False, 9, (Pair(False, 2),)),)),
]


def _exact(tree: Tree, n_p: int, n_fr: int, sequential: bool) -> tuple[float, float, float]:
    """Expected (pass, tokens, samples) by enumerating every equally likely draw."""
    total = [0.0, 0.0, 0.0]
    weight_sum = 0.0
    progs = tree.programs
    for draw in itertools.product(range(len(progs)), repeat=n_p):
        # each failing program then draws n_fr pairs uniformly with replacement
        choices = [
            [()] if progs[i].passed or n_fr == 0 else list(itertools.product(progs[i].pairs, repeat=n_fr)) for i in draw
        ]
        for combo in itertools.product(*choices):
            w = 1.0 / len(progs) ** n_p
            for c in choices:
                w /= len(c)
            steps: list[tuple[bool, int]] = []
            for i, pairs in zip(draw, combo, strict=True):
                steps.append((progs[i].passed, progs[i].tokens))
                steps += [(p.passed, p.tokens) for p in pairs]
            if sequential:
                cut = next((k for k, s in enumerate(steps) if s[0]), len(steps) - 1)
                steps = steps[: cut + 1]
            total[0] += w * any(s[0] for s in steps)
            total[1] += w * sum(s[1] for s in steps)
            total[2] += w * len(steps)
            weight_sum += w
    assert math.isclose(weight_sum, 1.0)
    return total[0], total[1], total[2]


@pytest.mark.parametrize("mode", ["batch", "sequential"])
@pytest.mark.parametrize(("n_p", "n_fr"), [(1, 0), (2, 0), (1, 1), (2, 1), (2, 2), (3, 1)])
def test_bootstrap_matches_enumeration(mode: str, n_p: int, n_fr: int) -> None:
    exact = [_exact(t, n_p, n_fr, mode == "sequential") for t in TREES]
    want_pass = sum(e[0] for e in exact) / len(TREES)
    want_tok = sum(e[1] for e in exact) / len(TREES)
    want_smp = sum(e[2] for e in exact) / len(TREES)
    (pt,) = bootstrap(TREES, [(n_p, n_fr)], reps=40000, seed=1, mode=mode)  # type: ignore[arg-type]
    se = lambda std: 4 * std / math.sqrt(40000) + 1e-9  # noqa: E731
    assert abs(pt.pass_rate - want_pass) < se(pt.pass_std)
    assert abs(pt.tokens - want_tok) < se(pt.tokens_std)
    assert abs(pt.samples - want_smp) < se(pt.samples_std)


def test_pass_at_k() -> None:
    assert pass_at_k(10, 0, 3) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert math.isclose(pass_at_k(5, 2, 1), 0.4)
    assert math.isclose(pass_at_k(5, 2, 2), 1 - 3 / 10)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_grids_and_interpolation() -> None:
    assert repair_grid(10, 3) == [(1, 1), (1, 3), (2, 1), (2, 3), (5, 1), (5, 3), (10, 1), (10, 3)]
    assert baseline_grid(3) == [(1, 0), (2, 0), (3, 0)]
    base = bootstrap(TREES, baseline_grid(2), reps=200)
    assert interpolate_baseline(base, base[-1].tokens + 1) is None  # out of the baseline's budget
    mid = interpolate_baseline(base, (base[0].tokens + base[1].tokens) / 2)
    assert mid is not None and min(base[0].pass_rate, base[1].pass_rate) <= mid <= max(
        base[0].pass_rate, base[1].pass_rate
    )


def test_many_repairs_per_program_take_the_unpacked_path() -> None:
    """n_fr >= 16 cannot use the packed counts; its estimate must still match the closed form for n_p = 1."""
    n_fr = 16
    want_pass = want_tok = 0.0
    for tree in TREES:
        for prog in tree.programs:
            share = 1 / len(tree.programs) / len(TREES)
            if prog.passed or not prog.pairs:
                want_pass += share * prog.passed
                want_tok += share * prog.tokens
            else:
                c = sum(p.passed for p in prog.pairs) / len(prog.pairs)
                want_pass += share * (1 - (1 - c) ** n_fr)
                want_tok += share * (prog.tokens + n_fr * sum(p.tokens for p in prog.pairs) / len(prog.pairs))
    (pt,) = bootstrap(TREES, [(1, n_fr)], reps=40000, seed=2)
    assert abs(pt.pass_rate - want_pass) < 4 * pt.pass_std / 200 + 1e-9
    assert abs(pt.tokens - want_tok) < 4 * pt.tokens_std / 200 + 1e-9
