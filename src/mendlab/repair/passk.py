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


_PACK = 16


def _u16(rng: np.random.Generator, shape: tuple[int, ...]) -> Any:
    """Uniform 16-bit integers, four per raw 64-bit draw of the generator (the fastest source numpy has)."""
    n = int(np.prod(shape))
    raw = rng.bit_generator.random_raw((n + 3) // 4)
    return np.asarray(raw).view(np.uint16)[:n].reshape(shape).astype(np.int32)


class _Forest:
    """All trees as padded arrays, so one budget is a handful of array operations over
    (replicates, tasks, programs, pairs) instead of a Python loop over tasks."""

    def __init__(self, trees: Sequence[Tree]) -> None:
        if not trees:
            raise ValueError("no trees")
        for t in trees:
            if not t.programs:
                raise ValueError(f"{t.task_id}: a tree needs at least one program")
        n_tasks = len(trees)
        width = max(len(t.programs) for t in trees)
        depth = max(1, max((len(p.pairs) for t in trees for p in t.programs), default=1))
        self.n_programs = np.array([len(t.programs) for t in trees])
        self.p_pass = np.zeros((n_tasks, width), dtype=bool)
        self.p_tok = np.zeros((n_tasks, width), dtype=np.float32)
        self.n_pairs = np.zeros((n_tasks, width), dtype=np.int32)
        self.f_pass = np.zeros((n_tasks, width, depth), dtype=bool)
        self.f_tok = np.zeros((n_tasks, width, depth), dtype=np.float32)
        for i, t in enumerate(trees):
            for j, p in enumerate(t.programs):
                self.p_pass[i, j], self.p_tok[i, j], self.n_pairs[i, j] = p.passed, p.tokens, len(p.pairs)
                for k, pair in enumerate(p.pairs):
                    self.f_pass[i, j, k], self.f_tok[i, j, k] = pair.passed, pair.tokens
        # Batch mode reads a repair as one packed integer, tokens * 16 + passed: summed over up to 15 draws,
        # the low 4 bits count the passes and the rest is the token total (one gather and one sum, not four).
        self.f_code = (self.f_tok.astype(np.int64) * _PACK + self.f_pass).ravel()

    def draw(self, rng: np.random.Generator, reps: int, n_p: int, n_fr: int, mode: Mode) -> tuple[Any, Any, Any]:
        """Per replicate: pass rate over tasks, mean tokens per task, mean samples per task."""
        if mode == "batch" and n_fr < _PACK:
            return self._batch(rng, reps, n_p, n_fr)
        n_tasks, width = self.p_pass.shape
        depth = self.f_pass.shape[2]
        u = _u16(rng, (reps, n_tasks, n_p))
        # flat index of each drawn program: task * width + program; (u * n) >> 16 is uniform on 0..n-1
        prog = ((u * self.n_programs[None, :, None].astype(np.int32)) >> 16) + (
            np.arange(n_tasks, dtype=np.int32) * width
        )[None, :, None]
        ok = self.p_pass.ravel()[prog]  # (R, T, n_p)
        tok = self.p_tok.ravel()[prog]
        counts = self.n_pairs.ravel()[prog]
        repair_valid = (~ok) & (counts > 0)
        v = _u16(rng, (reps, n_tasks, n_p, max(n_fr, 1)))[..., :n_fr]
        pair = ((v * np.maximum(counts, 1)[..., None]) >> 16) + (prog * depth)[..., None]
        r_pass = self.f_pass.ravel()[pair] & repair_valid[..., None]
        r_tok = self.f_tok.ravel()[pair] * repair_valid[..., None]
        valid = np.broadcast_to(repair_valid[..., None], r_pass.shape)
        steps = (
            np.concatenate([ok[..., None], r_pass], axis=3),
            np.concatenate([tok[..., None], r_tok], axis=3),
            np.concatenate([np.ones_like(ok)[..., None], valid], axis=3),
        )
        if mode == "batch":  # only reached with n_fr >= 16: no packing, plain sums
            flat = [x.reshape(reps, n_tasks, -1) for x in steps]
            return (
                flat[0].any(axis=2).mean(axis=1),
                flat[1].sum(axis=2).mean(axis=1),
                flat[2].sum(axis=2).mean(axis=1),
            )
        return self._sequential(*steps)

    def _batch(self, rng: np.random.Generator, reps: int, n_p: int, n_fr: int) -> tuple[Any, Any, Any]:
        """Batch mode, laid out as (draw, replicate x task) so each draw is one contiguous row, and
        with repairs drawn only for the drawn programs that failed."""
        n_tasks, width = self.p_pass.shape
        depth = self.f_pass.shape[2]
        cells = reps * n_tasks
        n_progs = np.tile(self.n_programs.astype(np.int32), reps)
        first = np.tile(np.arange(n_tasks, dtype=np.int32) * width, reps)
        prog = ((_u16(rng, (n_p, cells)) * n_progs) >> 16) + first  # (n_p, cells)
        ok = self.p_pass.ravel()[prog]
        tok = self.p_tok.ravel()[prog]
        passed = ok[0].copy()
        tokens = tok[0].astype(np.float64)
        for row in range(1, n_p):
            passed |= ok[row]
            tokens += tok[row]
        samples = np.full(cells, float(n_p))
        if n_fr > 0:
            counts = self.n_pairs.ravel()[prog]
            fails = np.flatnonzero((~ok) & (counts > 0))
            owner = fails % cells
            count, start = counts.ravel()[fails], prog.ravel()[fails] * depth
            draws = _u16(rng, (n_fr, len(fails)))
            total = self.f_code[((draws[0] * count) >> 16) + start]
            for row in range(1, n_fr):
                total += self.f_code[((draws[row] * count) >> 16) + start]
            fixed = np.zeros(cells, dtype=bool)
            fixed[owner[(total & (_PACK - 1)) > 0]] = True
            passed |= fixed
            tokens += np.bincount(owner, weights=(total >> 4).astype(np.float64), minlength=cells)
            samples += np.bincount(owner, minlength=cells) * n_fr
        shape = (reps, n_tasks)
        return (
            passed.reshape(shape).mean(axis=1),
            tokens.reshape(shape).mean(axis=1),
            samples.reshape(shape).mean(axis=1),
        )

    @staticmethod
    def _sequential(steps_pass: Any, steps_tok: Any, valid: Any) -> tuple[Any, Any, Any]:
        """Stop at the first success: programs in order, each failing one followed by its repairs."""
        reps, n_tasks = steps_pass.shape[:2]
        flat_pass = steps_pass.reshape(reps, n_tasks, -1)
        flat_tok = steps_tok.reshape(reps, n_tasks, -1)
        flat_valid = valid.reshape(reps, n_tasks, -1).astype(float)
        passed = flat_pass.any(axis=2)
        first = np.where(passed, flat_pass.argmax(axis=2), flat_pass.shape[2] - 1)[..., None]
        tokens = np.take_along_axis(np.cumsum(flat_tok, axis=2), first, axis=2)[..., 0]
        samples = np.take_along_axis(np.cumsum(flat_valid, axis=2), first, axis=2)[..., 0]
        return passed.mean(axis=1), tokens.mean(axis=1), samples.mean(axis=1)


def bootstrap(
    trees: Sequence[Tree],
    grid: Iterable[tuple[int, int]],
    reps: int = 1000,
    seed: int = 0,
    mode: Mode = "batch",
) -> list[Point]:
    """pass rate, tokens and samples per task for each (n_p, n_fr), mean ± std over replicates."""
    forest = _Forest(trees)
    rng = np.random.default_rng(seed)
    out = []
    for n_p, n_fr in grid:
        rate, tok, smp = forest.draw(rng, reps, n_p, n_fr, mode)
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
