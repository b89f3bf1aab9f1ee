"""pass@k, and pass@t by bootstrap over repair trees, as in Olausson et al. (SPEC §2).

A tree per task: N_p initial programs; each failing program has feedback-repair pairs (a feedback
and the repair written from it; N_r = 1). For a budget (n_p, n_fr), one replicate draws n_p programs
per task with replacement and, for each failing one, n_fr of its pairs with replacement; the task
passes if any drawn program or repair passes. We record the pass rate over tasks, the mean tokens per
task (programs + feedback + repairs; prompts not counted) and the mean samples per task, and report
mean ± std over replicates. Batch mode spends the whole budget; sequential mode stops at the first
success. Vectorized over replicates with numpy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from math import comb
from typing import Any, Literal

import numpy as np

Mode = Literal["batch", "sequential"]
GRID_NP = (1, 2, 5, 10, 25)
GRID_NFR = (1, 3, 5, 10)


@dataclass(frozen=True)
class Pair:
    """One feedback and the repair made from it."""

    passed: bool
    tokens: int  # feedback tokens + repair tokens


@dataclass(frozen=True)
class Program:
    passed: bool
    tokens: int
    pairs: tuple[Pair, ...] = ()  # empty for a passing program


@dataclass(frozen=True)
class Tree:
    task_id: str
    programs: tuple[Program, ...]


@dataclass(frozen=True)
class Point:
    n_p: int
    n_fr: int
    pass_rate: float
    pass_std: float
    tokens: float
    tokens_std: float
    samples: float
    samples_std: float


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator 1 - C(n-c, k) / C(n, k) (Chen et al.)."""
    if k > n:
        raise ValueError(f"k={k} exceeds the {n} samples")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


class _TaskArrays:
    """One task's tree as padded arrays: program pass/tokens, pair pass/tokens with a count per program."""

    def __init__(self, tree: Tree) -> None:
        progs = tree.programs
        if not progs:
            raise ValueError(f"{tree.task_id}: a tree needs at least one program")
        width = max(1, max(len(p.pairs) for p in progs))
        self.p_pass = np.array([p.passed for p in progs], dtype=bool)
        self.p_tok = np.array([p.tokens for p in progs], dtype=float)
        self.n_pairs = np.array([len(p.pairs) for p in progs], dtype=int)
        self.f_pass = np.zeros((len(progs), width), dtype=bool)
        self.f_tok = np.zeros((len(progs), width), dtype=float)
        for i, p in enumerate(progs):
            for j, pair in enumerate(p.pairs):
                self.f_pass[i, j] = pair.passed
                self.f_tok[i, j] = pair.tokens

    def draw(self, rng: np.random.Generator, reps: int, n_p: int, n_fr: int, mode: Mode) -> tuple[Any, Any, Any]:
        """Per replicate: passed (bool), tokens, samples, for this task."""
        prog = rng.integers(0, len(self.p_pass), size=(reps, n_p))
        ok = self.p_pass[prog]  # (R, n_p)
        tok = self.p_tok[prog]
        if n_fr == 0:
            steps_pass = ok[:, :, None]
            steps_tok = tok[:, :, None]
            valid = np.ones_like(steps_pass)
        else:
            counts = self.n_pairs[prog]  # pairs available to each drawn program
            u = rng.random(size=(reps, n_p, n_fr))
            pair = np.minimum((u * np.maximum(counts, 1)[:, :, None]).astype(int), self.f_pass.shape[1] - 1)
            r_pass = self.f_pass[prog[:, :, None], pair] & (counts[:, :, None] > 0)
            r_tok = self.f_tok[prog[:, :, None], pair]
            repair_valid = (~ok)[:, :, None] & (counts[:, :, None] > 0)
            steps_pass = np.concatenate([ok[:, :, None], r_pass & repair_valid], axis=2)
            steps_tok = np.concatenate([tok[:, :, None], r_tok * repair_valid], axis=2)
            valid = np.concatenate([np.ones_like(ok)[:, :, None], np.broadcast_to(repair_valid, r_pass.shape)], axis=2)
        flat_pass = steps_pass.reshape(reps, -1)
        flat_tok = steps_tok.reshape(reps, -1)
        flat_valid = valid.reshape(reps, -1).astype(float)
        passed = np.asarray(flat_pass.any(axis=1))
        if mode == "batch":
            return passed, flat_tok.sum(axis=1), flat_valid.sum(axis=1)
        first = np.where(passed, flat_pass.argmax(axis=1), flat_pass.shape[1] - 1)
        tokens = np.take_along_axis(np.cumsum(flat_tok, axis=1), first[:, None], axis=1)[:, 0]
        samples = np.take_along_axis(np.cumsum(flat_valid, axis=1), first[:, None], axis=1)[:, 0]
        return passed, tokens, samples


def bootstrap(
    trees: Sequence[Tree],
    grid: Iterable[tuple[int, int]],
    reps: int = 1000,
    seed: int = 0,
    mode: Mode = "batch",
) -> list[Point]:
    """pass rate, tokens and samples per task for each (n_p, n_fr), mean ± std over replicates."""
    arrays = [_TaskArrays(t) for t in trees]
    rng = np.random.default_rng(seed)
    out = []
    for n_p, n_fr in grid:
        passed = np.zeros(reps)
        tokens = np.zeros(reps)
        samples = np.zeros(reps)
        for arr in arrays:
            p, t, s = arr.draw(rng, reps, n_p, n_fr, mode)
            passed += p
            tokens += t
            samples += s
        n = len(arrays)
        rate, tok, smp = passed / n, tokens / n, samples / n
        out.append(Point(n_p, n_fr, rate.mean(), rate.std(), tok.mean(), tok.std(), smp.mean(), smp.std()))
    return out


def repair_grid(max_programs: int, max_pairs: int) -> list[tuple[int, int]]:
    """The paper's grid, cut to what the trees can support."""
    return [(a, b) for a in GRID_NP if a <= max_programs for b in GRID_NFR if b <= max(1, max_pairs)]


def baseline_grid(max_programs: int) -> list[tuple[int, int]]:
    """No repair: (k, 0) for k = 1..N_p."""
    return [(k, 0) for k in range(1, max_programs + 1)]


def interpolate_baseline(baseline: Sequence[Point], tokens: float) -> float | None:
    """The baseline pass rate at a token budget; None where the baseline never spent that much (O.O.B.)."""
    xs = [p.tokens for p in baseline]
    if not xs or tokens > max(xs):
        return None
    if tokens <= xs[0]:
        return baseline[0].pass_rate * tokens / xs[0] if xs[0] > 0 else baseline[0].pass_rate
    return float(np.interp(tokens, xs, [p.pass_rate for p in baseline]))
