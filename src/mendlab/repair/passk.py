"""pass@k, and pass@t over repair trees, as in Olausson et al. (SPEC §2).

A tree per task: N_p initial programs; each failing program has N_f feedbacks and each feedback N_r
repairs written from it (the paper uses N_r = 1 and calls a feedback with its repair a pair).

**No repair, (k, 0), is exact.** A run with budget k samples k of a task's programs; the N_p we hold
are drawn without replacement, which gives the unbiased estimator 1 - C(N_p-c, k) / C(N_p, k) of
Chen et al., averaged over tasks, for every k up to N_p. Tokens are the expected cost of those k
programs (k × the task's mean in batch mode). Its ± is the spread of one such run's mean over tasks,
in closed form (tasks are independent), so the baseline band means what the bootstrap's does.

**Self-repair, (n_p, n_fr), is the paper's bootstrap.** One replicate draws n_p programs per task with
replacement; each failing one spends n_fr repairs, the way the tree was grown: draw one of its
feedbacks (with replacement), take that feedback's repairs in random order (without replacement, at
most the budget left), then draw another feedback, and so on. A feedback's tokens are paid once per
feedback drawn, however many of its repairs are taken: two repairs written from one feedback never
pay for it twice. With N_r = 1 this is exactly the paper's draw of n_fr feedback-repair pairs. The task
passes if any drawn program or repair passes. We record the pass rate over tasks, the mean tokens per
task (programs + feedback + repairs; prompts not counted) and the mean samples per task (programs and
repairs), and report mean ± std over replicates. Batch mode spends the whole budget; sequential mode
stops at the first success.

Drawing n programs with replacement from N underestimates pass@n when n nears N (a program drawn
twice brings nothing new: for a task with one passing program out of N_p, pass@N_p is 1, and the draw
with replacement gives 1 - (1 - 1/N_p)^N_p ≈ 0.63). The paper keeps n_p ≤ N_p / 2, and so do we:
`bootstrap` refuses larger n_p, and `repair_grid` keeps n_fr ≤ N_fr / 2 as well (1 is always allowed:
one draw is unbiased).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from math import comb
from typing import Any, Literal

import numpy as np

Mode = Literal["batch", "sequential"]
GRID_NP = (1, 2, 5, 10, 25)
GRID_NFR = (1, 3, 5, 10)
_CHUNK = 1 << 22  # array elements per chunk of replicates: bounds memory at paper scale


@dataclass(frozen=True)
class Pair:
    """One repair and the feedback it was written from.

    Repairs written from the same feedback share its index `feedback` (among its program's feedbacks)
    and its `feedback_tokens`; `feedback=None` marks a repair whose feedback is its own (N_r = 1, or a
    joint explain-then-fix answer whose explanation is counted in `tokens`)."""

    passed: bool
    tokens: int  # the repair's own tokens
    feedback: int | None = None
    feedback_tokens: int = 0


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
    """One budget's estimate. `exact` points (no repair) are closed forms, the others bootstrap means;
    every std is the spread of one run's mean over tasks at that budget."""

    n_p: int
    n_fr: int
    pass_rate: float
    pass_std: float
    tokens: float
    tokens_std: float
    samples: float
    samples_std: float
    exact: bool = False


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator 1 - C(n-c, k) / C(n, k) (Chen et al.)."""
    if not 0 <= c <= n:
        raise ValueError(f"{c} passing out of {n} samples")
    if k > n:
        raise ValueError(f"k={k} exceeds the {n} samples")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def _below(rng: np.random.Generator, n: Any) -> Any:
    """Uniform integers in [0, n) for an array of 1 <= n < 2^31: (u * n) >> 32 for uniform 32-bit u, two
    per raw draw of the generator (twice as fast as floats; no value more likely than another by n / 2^32)."""
    size = int(np.prod(np.shape(n)))
    u = rng.bit_generator.random_raw((size + 1) // 2).view(np.uint32)[:size].astype(np.int64)
    return (u.reshape(np.shape(n)) * n) >> 32


def _moments(values: Sequence[int]) -> tuple[float, float]:
    """Mean and population variance."""
    if not values:
        return 0.0, 0.0
    mean = sum(values) / len(values)
    return mean, sum((v - mean) ** 2 for v in values) / len(values)


def _srs_sum(m: int, size: int, mean: float, var: float) -> tuple[float, float]:
    """Mean and variance of the sum of m values drawn without replacement from `size` values."""
    if m == 0 or size <= 1:
        return m * mean, 0.0
    return m * mean, m * var * (size - m) / (size - 1)


def _no_repair_task(tree: Tree, k: int, sequential: bool) -> tuple[float, float, float, float, float, float]:
    """(mean, variance) of passed, tokens and samples for k of a task's programs drawn without replacement.

    Sequential mode runs them in random order and stops at the first pass: condition on where that
    happens (the programs before it are a uniform draw of the failing ones), then total variance."""
    n = len(tree.programs)
    if k > n:
        raise ValueError(f"{tree.task_id}: pass@{k} needs at least {k} programs, the tree has {n}")
    good = [p.tokens for p in tree.programs if p.passed]
    bad = [p.tokens for p in tree.programs if not p.passed]
    c, f = len(good), len(bad)
    p = pass_at_k(n, c, k)
    if not sequential:
        tok_mean, tok_var = _srs_sum(k, n, *_moments(good + bad))
        return p, p * (1 - p), tok_mean, tok_var, float(k), 0.0
    mean_bad, var_bad = _moments(bad)
    mean_good, var_good = _moments(good)
    cases: list[tuple[float, int, bool]] = []  # (probability, failing programs spent, then a pass?)
    for q in range(1, k + 1):  # the first pass at position q
        if c and q - 1 <= f:
            cases.append((comb(f, q - 1) / comb(n, q - 1) * c / (n - q + 1), q - 1, True))
    if f >= k:
        cases.append((comb(f, k) / comb(n, k), k, False))
    t1 = t2 = s1 = s2 = 0.0
    for prob, m, hit in cases:
        mean, var = _srs_sum(m, f, mean_bad, var_bad)
        if hit:
            mean, var = mean + mean_good, var + var_good
        t1 += prob * mean
        t2 += prob * (var + mean * mean)
        s1 += prob * (m + hit)
        s2 += prob * (m + hit) ** 2
    return p, p * (1 - p), t1, max(0.0, t2 - t1 * t1), s1, max(0.0, s2 - s1 * s1)


def no_repair(trees: Sequence[Tree], ks: Iterable[int], mode: Mode = "batch") -> list[Point]:
    """The (k, 0) baseline in closed form: unbiased pass@k and its cost, for each k."""
    if not trees:
        raise ValueError("no trees")
    out = []
    for k in ks:
        per_task = np.array([_no_repair_task(t, k, mode == "sequential") for t in trees])
        mean = [float(x) for x in per_task.mean(axis=0)]
        std = [float(x) for x in np.sqrt(per_task.sum(axis=0)) / len(trees)]  # the mean of independent tasks
        out.append(Point(k, 0, mean[0], std[1], mean[2], std[3], mean[4], std[5], exact=True))
    return out


class _Forest:
    """All trees as padded arrays, so a budget is a handful of array operations over draws instead of a
    Python loop over tasks: programs (task, program), feedbacks (program, feedback), repairs
    (feedback, repair), each flattened so one integer indexes any of them."""

    def __init__(self, trees: Sequence[Tree]) -> None:
        if not trees:
            raise ValueError("no trees")
        groups: list[list[list[tuple[int, list[Pair]]]]] = []  # task -> program -> [(feedback tokens, repairs)]
        for t in trees:
            if not t.programs:
                raise ValueError(f"{t.task_id}: a tree needs at least one program")
            groups.append([self._feedbacks(t.task_id, j, p) for j, p in enumerate(t.programs)])
        n_tasks = len(trees)
        width = max(len(t.programs) for t in trees)
        gmax = max(1, max(len(g) for task in groups for g in task))
        rmax = max(1, max((len(r) for task in groups for g in task for _, r in g), default=1))
        self.width, self.gmax, self.rmax = width, gmax, rmax
        self.n_programs = np.array([len(t.programs) for t in trees], dtype=np.int64)
        self.p_pass = np.zeros((n_tasks, width), dtype=bool)
        self.p_tok = np.zeros((n_tasks, width))
        self.n_groups = np.zeros((n_tasks, width), dtype=np.int64)
        self.g_tok = np.zeros((n_tasks, width, gmax))
        self.g_size = np.zeros((n_tasks, width, gmax), dtype=np.int64)
        self.r_pass = np.zeros((n_tasks, width, gmax, rmax), dtype=bool)
        self.r_tok = np.zeros((n_tasks, width, gmax, rmax))
        for i, t in enumerate(trees):
            for j, p in enumerate(t.programs):
                self.p_pass[i, j], self.p_tok[i, j] = p.passed, p.tokens
                self.n_groups[i, j] = 0 if p.passed else len(groups[i][j])
                for g, (fb_tokens, repairs) in enumerate(groups[i][j]):
                    self.g_tok[i, j, g], self.g_size[i, j, g] = fb_tokens, len(repairs)
                    for r, pair in enumerate(repairs):
                        self.r_pass[i, j, g, r], self.r_tok[i, j, g, r] = pair.passed, pair.tokens
        self.repairable = (~self.p_pass & (self.n_groups > 0)).ravel()

    @staticmethod
    def _feedbacks(task_id: str, j: int, program: Program) -> list[tuple[int, list[Pair]]]:
        """A program's repairs grouped by the feedback they were written from."""
        shared: dict[int, tuple[int, list[Pair]]] = {}
        out: list[tuple[int, list[Pair]]] = []
        for pair in program.pairs:
            if pair.tokens < 0 or pair.feedback_tokens < 0:
                raise ValueError(f"{task_id}: program {j} has a repair with negative tokens")
            if pair.feedback is None:
                out.append((pair.feedback_tokens, [pair]))
            elif pair.feedback not in shared:
                shared[pair.feedback] = (pair.feedback_tokens, [pair])
                out.append(shared[pair.feedback])
            elif shared[pair.feedback][0] != pair.feedback_tokens:
                raise ValueError(
                    f"{task_id}: program {j}, feedback {pair.feedback} has repairs that disagree on its tokens"
                )
            else:
                shared[pair.feedback][1].append(pair)
        return out

    def _programs(self, rng: np.random.Generator, reps: int, n_p: int) -> Any:
        """Flat indices of the drawn programs, (replicate x task, n_p), with replacement."""
        n_tasks = len(self.n_programs)
        counts = np.broadcast_to(self.n_programs[None, :, None], (reps, n_tasks, n_p))
        first = (np.arange(n_tasks, dtype=np.int64) * self.width)[None, :, None]
        return (_below(rng, counts) + first).reshape(reps * n_tasks, n_p)

    def _repairs(self, rng: np.random.Generator, progs: Any, n_fr: int) -> Iterator[tuple[Any, Any]]:
        """For each of the given failing programs, its n_fr repairs one slot at a time: (passed, tokens),
        a feedback's tokens added to the first repair taken from it."""
        count = len(progs)
        n_groups = self.n_groups.ravel()[progs]
        g_size, g_tok = self.g_size.ravel(), self.g_tok.ravel()
        r_pass, r_tok = self.r_pass.ravel(), self.r_tok.ravel()
        if self.rmax == 1:  # every feedback has one repair (the paper's N_r = 1): each slot a fresh pair
            lone_tok, base = r_tok + g_tok, progs * self.gmax
            for _ in range(n_fr):
                drawn = base + _below(rng, n_groups)
                yield r_pass[drawn], lone_tok[drawn]
            return
        group = np.zeros(count, dtype=np.int64)
        size = np.zeros(count, dtype=np.int64)
        pos = np.zeros(count, dtype=np.int64)
        rows = np.arange(count)
        order = np.tile(np.arange(self.rmax), (count, 1))
        for _ in range(n_fr):
            fresh = np.flatnonzero(pos >= size)  # this feedback's repairs are used up: draw another
            drawn = progs[fresh] * self.gmax + _below(rng, n_groups[fresh])
            group[fresh], size[fresh], pos[fresh] = drawn, g_size[drawn], 0
            paid = np.zeros(count)
            paid[fresh] = g_tok[drawn]
            order[fresh] = np.arange(self.rmax)  # one step of a Fisher-Yates shuffle of the feedback's repairs
            swap = pos + _below(rng, size - pos)
            pick = order[rows, swap]
            order[rows, swap] = order[rows, pos]
            order[rows, pos] = pick
            pos += 1
            flat = group * self.rmax + pick
            yield r_pass[flat], r_tok[flat] + paid

    def draw(self, rng: np.random.Generator, reps: int, n_p: int, n_fr: int, mode: Mode) -> tuple[Any, Any, Any]:
        """Per replicate: pass rate over tasks, mean tokens per task, mean samples per task."""
        per_rep = len(self.n_programs) * n_p * (1 + n_fr)
        step = max(1, _CHUNK // per_rep)
        parts = [
            (self._sequential if mode == "sequential" else self._batch)(rng, min(step, reps - done), n_p, n_fr)
            for done in range(0, reps, step)
        ]
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]

    def _batch(self, rng: np.random.Generator, reps: int, n_p: int, n_fr: int) -> tuple[Any, Any, Any]:
        """Spend the whole budget; repairs are drawn only for the drawn programs that failed."""
        cells = reps * len(self.n_programs)
        prog = self._programs(rng, reps, n_p)
        passed = self.p_pass.ravel()[prog].any(axis=1)
        tokens = self.p_tok.ravel()[prog].sum(axis=1)
        samples = np.full(cells, float(n_p))
        if n_fr > 0:
            fails = np.flatnonzero(self.repairable[prog])
            owner = fails // n_p
            fixed = np.zeros(len(fails), dtype=bool)
            spent = np.zeros(len(fails))
            for ok, tok in self._repairs(rng, prog.ravel()[fails], n_fr):
                fixed |= ok
                spent += tok
            passed[owner[fixed]] = True
            tokens += np.bincount(owner, weights=spent, minlength=cells)
            samples += np.bincount(owner, minlength=cells) * n_fr
        shape = (reps, len(self.n_programs))
        return (
            passed.reshape(shape).mean(axis=1),
            tokens.reshape(shape).mean(axis=1),
            samples.reshape(shape).mean(axis=1),
        )

    def _sequential(self, rng: np.random.Generator, reps: int, n_p: int, n_fr: int) -> tuple[Any, Any, Any]:
        """Stop at the first success: programs in order, each failing one followed by its repairs."""
        cells = reps * len(self.n_programs)
        prog = self._programs(rng, reps, n_p).ravel()
        steps_pass = np.zeros((cells * n_p, 1 + n_fr), dtype=bool)
        steps_tok = np.zeros((cells * n_p, 1 + n_fr))
        steps_used = np.zeros((cells * n_p, 1 + n_fr))
        steps_pass[:, 0], steps_tok[:, 0], steps_used[:, 0] = self.p_pass.ravel()[prog], self.p_tok.ravel()[prog], 1
        if n_fr > 0:
            fails = np.flatnonzero(self.repairable[prog])
            for s, (ok, tok) in enumerate(self._repairs(rng, prog[fails], n_fr), start=1):
                steps_pass[fails, s], steps_tok[fails, s], steps_used[fails, s] = ok, tok, 1
        flat_pass = steps_pass.reshape(cells, -1)
        passed = flat_pass.any(axis=1)
        last = np.where(passed, flat_pass.argmax(axis=1), flat_pass.shape[1] - 1)[:, None]
        tokens = np.take_along_axis(np.cumsum(steps_tok.reshape(cells, -1), axis=1), last, axis=1)[:, 0]
        samples = np.take_along_axis(np.cumsum(steps_used.reshape(cells, -1), axis=1), last, axis=1)[:, 0]
        shape = (reps, len(self.n_programs))
        return (
            passed.reshape(shape).mean(axis=1),
            tokens.reshape(shape).mean(axis=1),
            samples.reshape(shape).mean(axis=1),
        )


def bootstrap(
    trees: Sequence[Tree],
    grid: Iterable[tuple[int, int]],
    reps: int = 1000,
    seed: int = 0,
    mode: Mode = "batch",
) -> list[Point]:
    """pass rate, tokens and samples per task for each (n_p, n_fr): mean ± std over replicates, except
    the no-repair points (n_fr = 0), which are exact (see `no_repair`)."""
    if mode not in ("batch", "sequential"):
        raise ValueError(f"mode {mode!r}: batch or sequential")
    forest = _Forest(trees)
    smallest = min(trees, key=lambda t: len(t.programs))
    rng = np.random.default_rng(seed)
    out = []
    for n_p, n_fr in grid:
        if n_p < 1 or n_fr < 0:
            raise ValueError(f"budget ({n_p}, {n_fr}): n_p >= 1 and n_fr >= 0")
        if n_fr == 0:
            out += no_repair(trees, [n_p], mode)
            continue
        if n_p > 1 and 2 * n_p > len(smallest.programs):
            raise ValueError(
                f"n_p={n_p} would draw with replacement from the {len(smallest.programs)} programs of "
                f"{smallest.task_id}: keep n_p <= N_p/2, as the paper does"
            )
        rate, tok, smp = forest.draw(rng, reps, n_p, n_fr, mode)
        out.append(
            Point(
                n_p, n_fr, float(rate.mean()), float(rate.std()), float(tok.mean()), float(tok.std()),
                float(smp.mean()), float(smp.std()),
            )
        )  # fmt: skip
    return out


def _affordable(n: int, size: int) -> bool:
    """A budget n drawn with replacement from `size` samples: one draw, or at most half of them."""
    return n == 1 or 2 * n <= size


def repair_grid(max_programs: int, max_pairs: int) -> list[tuple[int, int]]:
    """The paper's grid for N_p programs per task and N_fr repairs per failing program, kept to n_p <= N_p/2
    and n_fr <= N_fr/2 (1 always), where drawing with replacement stays close to the real thing."""
    return [
        (a, b)
        for a in GRID_NP
        if a <= max_programs and _affordable(a, max_programs)
        for b in GRID_NFR
        if _affordable(b, max(1, max_pairs))
    ]


def baseline_grid(max_programs: int) -> list[tuple[int, int]]:
    """No repair: (k, 0) for k = 1..N_p (exact, so k may reach N_p)."""
    return [(k, 0) for k in range(1, max_programs + 1)]


def interpolate_baseline(baseline: Sequence[Point], tokens: float) -> float | None:
    """The baseline pass rate at a token budget; None where the baseline never spent that much (O.O.B.)."""
    xs = [p.tokens for p in baseline]
    if not xs or tokens > max(xs):
        return None
    if tokens <= xs[0]:
        return baseline[0].pass_rate * tokens / xs[0] if xs[0] > 0 else baseline[0].pass_rate
    return float(np.interp(tokens, xs, [p.pass_rate for p in baseline]))
