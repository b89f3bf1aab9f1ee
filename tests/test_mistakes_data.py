"""The iGSM lab's data side: generator, checker, retry data, tokenizer and the two commands."""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from mendlab.mistakes import igsm
from mendlab.mistakes.checker import can_next, check, is_back, split_steps, step_ok, step_param
from mendlab.mistakes.igsm import (
    GenConfig,
    Problem,
    canonical,
    generate,
    instance,
    problem_from_id,
    problems,
    split_of,
    template,
)
from mendlab.mistakes.retry import candidates, with_retries
from mendlab.mistakes.tokenizer import tokenizer
from tests.conftest import MENDLAB, cli_env

MIXED = GenConfig(op_min=0, op_max=21, max_instance=20)


@pytest.fixture(scope="module")
def mixed() -> list[Problem]:
    return problems(MIXED, "any", 400, seed=11)


def _closure(p: Problem) -> set[int]:
    inst = instance(p)
    seen: set[int] = set()
    stack = [inst.question]
    while stack:
        x = stack.pop()
        if x not in seen:
            seen.add(x)
            stack.extend(inst.defs[x].deps)
    return seen


# ---------------------------------------------------------------- generator


def test_same_seed_same_problem_and_id_roundtrip() -> None:
    cfg = GenConfig(op_min=3, op_max=9, max_instance=14, layers=(2, 3), order="random")
    first = [generate(cfg, s) for s in range(30)]
    igsm._build.cache_clear()  # regenerate for real, not from the cache
    again = [generate(cfg, s) for s in range(30)]
    assert first == again
    assert len({p.solution for p in first}) == 30  # different seeds, different problems
    igsm._build.cache_clear()
    assert [problem_from_id(p.id) for p in first] == first
    assert problems(cfg, "any", 10, seed=4) == problems(cfg, "any", 10, seed=4)
    assert problems(cfg, "any", 10, seed=4) != problems(cfg, "any", 10, seed=5)
    assert {p.order for p in first} == {"pq", "qp"}
    assert all(p.prompt.startswith(p.problem if p.order == "pq" else p.question) for p in first)
    assert all(generate(GenConfig(2, 2, order="qp"), s).order == "qp" for s in range(5))
    for bad in ("nope", "igsm1-3-9-14-2-3-random-007", "igsm1-9-3-14-2-3-random-7", "igsm1-3-9-14-2-3-up-7"):
        with pytest.raises(ValueError, match="not an iGSM problem id"):
            problem_from_id(bad)


@pytest.mark.parametrize("op", [0, 1, 2, 5, 10, 15, 21])
def test_op_is_exactly_as_asked(op: int) -> None:
    for p in problems(GenConfig(op_min=op, op_max=op, max_instance=20), "any", 25, seed=op):
        assert p.op == op
        # the spelled-out binary operations in the solution, and the operations of the question's closure
        assert len(re.findall(r"\d+ [-+*] \d+ = \d+", p.solution)) == op
        inst = instance(p)
        assert sum(inst.defs[x].ops for x in _closure(p)) == op
        assert set(inst.necessary) == _closure(p)  # one step per necessary parameter, no more
        assert [step_param(p, s) for s in split_steps(p.solution)] == [inst.params[x].name for x in inst.necessary]
        assert 0 <= p.answer < 23 and p.answer == inst.values[inst.question]
        # every stated parameter is a sentence of the problem; no abstract one is
        stated = [x for x in range(len(inst.params)) if x in inst.stated]
        assert p.problem.count("The number of each ") == len(stated)
        assert not any(f"each {q.name} equals" in p.problem for q in inst.params if q.abstract)


def test_problem_statements_match_the_hidden_graph(mixed: list[Problem]) -> None:
    for p in mixed[:60]:
        inst = instance(p)
        for x in inst.stated:
            d = inst.defs[x]
            sentence = next(
                s for s in p.problem.split(". ") if s.startswith(f"The number of each {inst.params[x].name} ")
            )
            assert 0 <= len(d.deps) <= 4
            for y in d.deps:
                assert inst.params[y].name in sentence
            if d.form == "const":
                assert sentence.rstrip(".").endswith(f"equals {d.const}")


def test_split_by_structure_disjoint_and_about_one_in_23() -> None:
    small = problems(GenConfig(op_min=1, op_max=3, max_instance=8), "any", 600, seed=1)
    by_structure: dict[str, set[str]] = {}
    for p in small:
        by_structure.setdefault(canonical(p), set()).add(split_of(p))
    assert max(Counter(canonical(p) for p in small).values()) >= 5  # structures repeat: the test below bites
    assert all(len(splits) == 1 for splits in by_structure.values())
    assert any(splits == {"test"} for splits in by_structure.values())
    many = problems(GenConfig(op_min=5, op_max=12, max_instance=16), "any", 1500, seed=2)
    share = sum(split_of(p) == "test" for p in many) / len(many)
    sd = math.sqrt((1 / 23) * (22 / 23) / len(many))
    assert abs(share - 1 / 23) < 4 * sd, share
    test = problems(GenConfig(op_min=5, op_max=12, max_instance=16), "test", 20, seed=3)
    train = problems(GenConfig(op_min=5, op_max=12, max_instance=16), "train", 200, seed=3)
    assert all(split_of(p) == "test" for p in test) and all(split_of(p) == "train" for p in train)
    assert not {canonical(p) for p in test} & {canonical(p) for p in train}


def test_test_problems_are_structurally_unseen_in_training() -> None:
    """At op 2-3 structures repeat a lot: no test problem may share its dependency graph (up to names,
    numbers, the order of independent steps and of a sum's operands) with a training problem."""
    gen = GenConfig(op_min=2, op_max=3, max_instance=4)
    train = problems(gen, "train", 2500, seed=0)
    test = problems(gen, "test", 60, seed=1)
    seen = {canonical(p) for p in train}
    assert not [p.id for p in test if canonical(p) in seen]
    # The template as written (the old split) keeps step and operand order: most of its "test"
    # problems have a structure that training has.
    pool = problems(gen, "any", 2500, seed=2)
    old_train = {canonical(p) for p in pool if igsm.template_split(template(p)) == "train"}
    old_test = [p for p in pool if igsm.template_split(template(p)) == "test"]
    assert len(old_test) >= 30
    assert sum(canonical(p) in old_train for p in old_test) > len(old_test) / 2


def test_the_canonical_structure_ignores_order_names_and_numbers() -> None:
    D = igsm.Def
    # q = a + b (a, b constants), c a copy of b; the nodes listed in two orders, the sum's operands swapped
    one = [D("const", (), "", 3), D("const", (), "", 4), D("sum", (0, 1), "more", 2), D("sum", (1,))]
    two = [D("const", (), "", 9), D("const", (), "", 1), D("sum", (1, 0), "more", 7), D("sum", (0,))]
    # 3 uses 1 in `one` and 0 in `two`: the copy reads the operand that is second in one, first in two
    assert igsm._canonical(one, [0, 1, 2, 3]) == igsm._canonical(two, [3, 2, 0, 1])
    less = [*one[:2], D("sum", (0, 1), "less", 2), one[3]]
    assert igsm._canonical(less, [0, 1, 2, 3]) != igsm._canonical(one, [0, 1, 2, 3])  # another operation
    # a difference is not commutative: a - b with a a copy differs from a - b with b a copy
    d1 = [D("const"), D("sum", (0,)), D("const"), D("diff", (1, 2))]
    d2 = [D("const"), D("sum", (0,)), D("const"), D("diff", (2, 1))]
    assert igsm._canonical(d1, [0, 1, 2, 3]) != igsm._canonical(d2, [0, 1, 2, 3])
    # sharing matters: x + y over one shared constant vs over two constants
    shared = [D("const"), D("sum", (0,)), D("sum", (0,)), D("sum", (1, 2))]
    apart = [D("const"), D("const"), D("sum", (0,)), D("sum", (1,)), D("sum", (2, 3))]
    assert igsm._canonical(shared, [0, 1, 2, 3]) != igsm._canonical(apart, [0, 1, 2, 3, 4])
    for p in problems(GenConfig(op_min=3, op_max=6, max_instance=10), "any", 40, seed=4):
        inst = instance(p)
        assert canonical(p) == igsm._canonical(inst.defs, list(reversed(inst.necessary)))


def test_retry_data_never_regenerates_a_problem_in_hand() -> None:
    held = problems(GenConfig(op_min=3, op_max=5, max_instance=8), "train", 30, seed=9)
    igsm._build.cache_clear()
    rng = random.Random(0)
    for p in held:
        for kind in ("strong", "weak", "miss"):
            with_retries(p, 0.5, kind, rng)  # type: ignore[arg-type]
        check(p, p.solution)
    assert igsm._build.cache_info().misses == 0


def test_parallel_generation_makes_the_same_list() -> None:
    cfg = GenConfig(op_min=1, op_max=3, max_instance=4)
    assert problems(cfg, "train", 1200, seed=5, workers=2) == problems(cfg, "train", 1200, seed=5)
    assert problems(cfg, "test", 30, seed=5, workers=2) == problems(cfg, "test", 30, seed=5)
    with pytest.raises(RuntimeError, match="only 0 test problems"):
        problems(GenConfig(op_min=0, op_max=0, max_instance=2, layers=(2, 2)), "test", 1, seed=0)


# ---------------------------------------------------------------- checker


def test_checker_accepts_every_reference_solution(mixed: list[Problem]) -> None:
    assert len({p.op for p in mixed}) == 22
    for p in mixed:
        v = check(p, p.solution)
        assert v.correct and v.first_wrong is None and v.kind is None, (p.id, v)
        assert v.answer == p.answer
        steps = split_steps(p.solution)
        for k, s in enumerate(steps):
            assert step_ok(p, steps[:k], s) is None
            assert can_next(p, steps[:k], step_param(p, s) or "")
            assert not can_next(p, steps[: k + 1], step_param(p, s) or "")  # defined: not next any more


def _steps(p: Problem) -> list[str]:
    return split_steps(p.solution)


def _expect(p: Problem, steps: list[str], index: int, kind: str) -> None:
    v = check(p, " ".join(steps))
    assert not v.correct and (v.first_wrong, v.kind) == (index, kind), (p.id, v, steps)
    if index < len(steps):
        assert v.step == steps[index]
        assert step_ok(p, steps[:index], steps[index]) == kind
        assert all(step_ok(p, steps[:k], steps[k]) is None for k in range(index))


def _letter(step: str) -> str:
    m = re.match(r"Define .+? as ([A-Za-z]);", step)
    assert m
    return m.group(1)


def _dependents(p: Problem, steps: list[str], i: int) -> list[int]:
    """Steps (by index) that use step i's letter."""
    me = _letter(steps[i])
    return [j for j in range(i + 1, len(steps)) if re.search(rf"= [^;]*\b{me}\b", steps[j])]


def test_checker_rejects_one_corrupted_number(mixed: list[Problem]) -> None:
    done = 0
    for p in mixed:
        steps = _steps(p)
        for k, s in enumerate(steps):
            m = re.search(r"= ([A-Za-z]) ([-+*]) (\S+) = (\d+) ", s)
            if m:
                wrong = (int(m.group(4)) + 1) % 23
                steps[k] = s[: m.start(4)] + str(wrong) + s[m.end(4) :]
                _expect(p, steps, k, "copy")
                done += 1
                break
    assert done > 300


def test_checker_rejects_bad_arithmetic_and_wrong_values(mixed: list[Problem]) -> None:
    arith = value = 0
    for p in mixed:
        steps = _steps(p)
        for k, s in enumerate(steps[:-1]):
            m = re.search(r" = (\d+)\.$", s)
            if m and re.search(r"\d+ [-+*] \d+ = \d+\.$", s):  # a binary operation: its result
                steps[k] = s[: m.start(1)] + str((int(m.group(1)) + 5) % 23) + "."
                _expect(p, steps, k, "arith")
                arith += 1
                break
        steps = _steps(p)
        for k, s in enumerate(steps[:-1]):
            m = re.fullmatch(r"(Define .+? as ([A-Za-z]); so \2 = )(\d+)\.", s)
            if m:  # a constant: written wrong, right arithmetic, wrong value
                steps[k] = m.group(1) + str((int(m.group(3)) + 1) % 23) + "."
                _expect(p, steps, k, "value")
                value += 1
                break
    assert arith > 100 and value > 100


def test_checker_rejects_a_swapped_step(mixed: list[Problem]) -> None:
    done = 0
    for p in mixed:
        steps = _steps(p)
        for i in range(len(steps) - 1):
            users = _dependents(p, steps, i)
            if users:
                j = users[0]
                steps[i], steps[j] = steps[j], steps[i]  # a step before what it needs
                _expect(p, steps, i, "undefined")
                done += 1
                break
    assert done > 300


def test_checker_rejects_a_missing_step(mixed: list[Problem]) -> None:
    done = 0
    for p in mixed:
        steps = _steps(p)
        if len(steps) < 2:
            continue
        i = random.Random(p.id).randrange(len(steps) - 1)
        first_user = _dependents(p, steps, i)[0]  # necessary: someone later uses it
        _expect(p, steps[:i] + steps[i + 1 :], first_user - 1, "undefined")
        _expect(p, steps[:-1], len(steps) - 1, "not_question")
        done += 1
    assert done > 300
    assert check(mixed[0], "") == check(mixed[0], " ")
    assert (check(mixed[0], "").first_wrong, check(mixed[0], "").kind) == (0, "not_question")


def test_checker_rejects_a_wrong_dependency(mixed: list[Problem]) -> None:
    done = 0
    for p in mixed:
        steps = _steps(p)
        inst = instance(p)
        for k in range(1, len(steps)):
            s = steps[k]
            m = re.search(r"(?:;|so) [A-Za-z] = ([A-Za-z])\b", s)
            own = {inst.params[y].name for y in inst.deps(inst.necessary[k])}
            others = [i for i in range(k) if inst.params[inst.necessary[i]].name not in own]
            if m and others and m.group(1) in {_letter(steps[i]) for i in range(k)}:
                other = _letter(steps[others[0]])
                steps[k] = s[: m.start(1)] + other + s[m.end(1) :]  # same numbers, another parameter
                _expect(p, steps, k, "deps")
                done += 1
                break
    assert done > 150


def test_checker_rejects_a_wrong_final_answer(mixed: list[Problem]) -> None:
    done = 0
    for p in mixed:
        steps = _steps(p)
        last = steps[-1]
        m = re.search(r"(\S+) ([-+*]) (\S+) = (\d+) [-+*] (\d+) = (\d+)\.$", last)
        if not m:
            continue
        a, b = int(m.group(4)), int(m.group(5))
        for op in "+-*":
            r = igsm.binop(op, a, b)
            if op != m.group(2) and r != int(m.group(6)):
                steps[-1] = last[: m.start()] + f"{m.group(1)} {op} {m.group(3)} = {a} {op} {b} = {r}."
                _expect(p, steps, len(steps) - 1, "answer")
                assert check(p, " ".join(steps)).answer == r != p.answer
                done += 1
                break
    assert done > 300


def test_checker_other_kinds(mixed: list[Problem]) -> None:
    p = next(q for q in mixed if len(_steps(q)) >= 3)
    steps = _steps(p)
    inst = instance(p)
    used = set(re.findall(r"\b[A-Za-z]\b", p.solution))
    free = next(c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used)
    again = (
        steps[0]
        .replace(f" as {_letter(steps[0])};", f" as {free};")
        .replace(f"so {_letter(steps[0])} =", f"so {free} =")
    )
    _expect(p, [steps[0], again, *steps[1:]], 1, "redefined")
    _expect(p, [steps[0], f"Define Nowhere's Nothing as {free}; so {free} = 3.", *steps[1:]], 1, "unknown_param")
    reuse = (
        steps[1]
        .replace(f" as {_letter(steps[1])};", f" as {_letter(steps[0])};")
        .replace(f"so {_letter(steps[1])} =", f"so {_letter(steps[0])} =")
    )
    _expect(p, [steps[0], reuse, *steps[2:]], 1, "letter")
    _expect(p, [steps[0], steps[1][:-1] + " = 4.", *steps[2:]], 1, "syntax")
    _expect(p, [steps[0], steps[1][:12]], 1, "syntax")  # generation cut short: the last step has no period
    # an unnecessary but right step is allowed: a stated constant the solution does not need
    extra = [x for x in inst.stated if x not in inst.necessary and inst.defs[x].form == "const"]
    q = next(q for q in mixed if any(x not in instance(q).necessary and instance(q).defs[x].form == "const"
                                     for x in instance(q).stated))  # fmt: skip
    qi = instance(q)
    x = next(x for x in qi.stated if x not in qi.necessary and qi.defs[x].form == "const")
    used = set(re.findall(r"\b[A-Za-z]\b", q.solution))
    free = next(c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used)
    bonus = f"Define {qi.params[x].name} as {free}; so {free} = {qi.values[x]}."
    assert check(q, f"{bonus} {q.solution}").correct
    assert check(q, f"{bonus} {q.solution}").answer == q.answer
    wrong_bonus = f"Define {qi.params[x].name} as {free}; so {free} = {(qi.values[x] + 1) % 23}."
    assert (check(q, f"{wrong_bonus} {q.solution}").kind, check(q, f"{wrong_bonus} {q.solution}").first_wrong) == (
        "value",
        0,
    )
    del extra


def test_back_steps_are_skipped(mixed: list[Problem]) -> None:
    rng = random.Random(0)
    backs = 0
    for p in mixed[:100]:
        r = with_retries(p, 0.5, "strong", rng)
        v = check(p, r.text)
        assert v.correct and v.answer == p.answer, (r.text, v)
        backs += sum(is_back(s) for s in split_steps(r.text))
        # a [BACK] step is not graded, even nonsense; the same step without [BACK] is wrong
        assert check(p, "Define Nowhere as [BACK]. " + p.solution).correct
        assert not check(p, "Define Nowhere as q; so q = 1. " + p.solution).correct
    assert backs > 300
    p = mixed[5]
    steps = _steps(p)
    mid = len(steps) // 2
    with_back = [*steps[:mid], "Define Nowhere as [BACK].", *steps[mid:]]
    corrupted = [*with_back]
    corrupted[mid + 1] = corrupted[mid + 1][:-1] + " = 1."
    v = check(p, " ".join(corrupted))
    assert (v.first_wrong, v.kind) == (mid + 1, "syntax")  # indices count the [BACK] steps too


# ---------------------------------------------------------------- retry data


@pytest.mark.parametrize("prob", [0.2, 0.5])
@pytest.mark.parametrize("kind", ["strong", "weak", "miss"])
def test_retry_statistics_and_kinds(mixed: list[Problem], prob: float, kind: str) -> None:
    rng = random.Random(f"{kind}{prob}")
    per_slot: list[int] = []
    for p in mixed[:200]:
        r = with_retries(p, prob, kind, rng)  # type: ignore[arg-type]
        steps = split_steps(r.text)
        assert [s for s in steps if not is_back(s)] == _steps(p)
        inst = instance(p)
        necessary = [inst.params[x].name for x in inst.necessary]
        real: list[str] = []
        count = 0
        spans = iter(r.wrong)
        for s in steps:
            if is_back(s):
                w = step_param(p, s)
                assert w is not None and s == f"Define {w} as [BACK]."
                a, b = next(spans)
                assert r.text[a:b] == f"Define {w} as"
                if kind == "strong":  # not computable yet (nor defined)
                    assert w not in {step_param(p, x) for x in real} and not can_next(p, real, w)
                elif kind == "weak":  # a later necessary step, moved early
                    assert w in necessary[len(real) + 1 :]
                else:  # stated, never used by the solution
                    assert f"The number of each {w} equals" in p.problem and w not in necessary
                count += 1
            else:
                if candidates(p, kind, len(real)):
                    per_slot.append(count)
                else:
                    assert count == 0
                real.append(s)
                count = 0
        assert next(spans, None) is None
    n = len(per_slot)
    assert n > 500
    mean, var = prob / (1 - prob), prob / (1 - prob) ** 2
    assert abs(sum(per_slot) / n - mean) < 4 * math.sqrt(var / n)
    zero = sum(c == 0 for c in per_slot) / n  # geometric: P(k = 0) = 1 - p
    assert abs(zero - (1 - prob)) < 4 * math.sqrt(prob * (1 - prob) / n)
    assert with_retries(mixed[0], 0.0, kind, rng).text == mixed[0].solution  # type: ignore[arg-type]


def test_retry_rejects_bad_arguments(mixed: list[Problem]) -> None:
    with pytest.raises(ValueError):
        with_retries(mixed[0], 1.0, "strong", random.Random(0))
    with pytest.raises(ValueError):
        candidates(mixed[0], "bogus", 0)


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_roundtrip_and_closed_vocabulary(mixed: list[Problem]) -> None:
    tok = tokenizer()
    assert tok is tokenizer()
    ids = {tok.pad_id, tok.bos_id, tok.eos_id, tok.sol_id, tok.back_id, tok.period_id}
    assert len(ids) == 6 and tok.pad_id == 0 and tok.vocab_size == len(tok.itos) < 1000
    rng = random.Random(1)
    for p in mixed[:150]:
        retry = with_retries(p, 0.3, "strong", rng).text
        for text in (p.prompt, p.solution, retry, f"[BOS] {p.prompt} [SOL] {retry} [EOS]"):
            enc, spans = tok.encode_offsets(text)
            assert tok.decode(enc) == text
            assert all(text[a:b] == tok.itos[i] for i, (a, b) in zip(enc, spans, strict=True))
        assert tok.encode(retry).count(tok.back_id) == retry.count("[BACK]")
        assert tok.encode(p.solution).count(tok.period_id) == len(_steps(p))
    with pytest.raises(ValueError, match="unknown word 'Pineapple'"):
        tok.encode("Define Pineapple as x; so x = 3.")
    with pytest.raises(ValueError, match="unknown word '23'"):
        tok.encode("so x = 23.")
    with pytest.raises(ValueError):
        tok.decode([tok.vocab_size])


# ---------------------------------------------------------------- commands


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MENDLAB, *args], cwd=cwd, capture_output=True, text=True, env=cli_env(), timeout=120)


def test_cli_generate_and_check(tmp_path: Path) -> None:
    r = _run(["mistakes", "generate", "--n", "12", "--op", "6", "--seed", "3", "-o", "p.jsonl"], tmp_path)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    want = problems(GenConfig(op_min=6, op_max=6, max_instance=20), "any", 12, seed=3)
    assert [row["id"] for row in rows] == [p.id for p in want]
    assert all(row["op"] == 6 and row["solution"] == problem_from_id(row["id"]).solution for row in rows)
    assert {"id", "problem", "question", "solution", "answer", "order", "split"} <= rows[0].keys()
    steps = split_steps(rows[1]["solution"])
    rows[1]["solution"] = " ".join(steps[:-1])  # the question never defined
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows[:3]))
    r = _run(["mistakes", "check", "s.jsonl", "-o", "v.jsonl"], tmp_path)
    assert r.returncode == 0, r.stderr
    verdicts = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert [v["correct"] for v in verdicts] == [True, False, True]
    assert (verdicts[1]["first_wrong"], verdicts[1]["kind"]) == (len(steps) - 1, "not_question")
    assert "first_wrong" not in verdicts[0] and verdicts[0]["id"] == rows[0]["id"]
    r = _run(["mistakes", "generate", "--n", "2", "--split", "held-out"], tmp_path)
    assert r.returncode == 2 and "--split" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("not json", "s.jsonl:2: invalid JSON"),
        ('{"id": "igsm1-6-6-20-2-4-random-3"}', "s.jsonl:2: missing field 'solution'"),
        ('{"id": "igsm1-6-6-20-9-4-random-3", "solution": "x."}', "s.jsonl:2: field 'id': not an iGSM problem id"),
        ('{"id": 7, "solution": "x."}', "s.jsonl:2: field 'id' must be a string"),
    ],
)
def test_cli_check_bad_input_is_one_line(tmp_path: Path, line: str, says: str) -> None:
    good = json.dumps({"id": "igsm1-6-6-20-2-4-random-3", "solution": "Define x as y; so y = 1."})
    (tmp_path / "s.jsonl").write_text(f"{good}\n{line}\n")
    r = _run(["mistakes", "check", "s.jsonl"], tmp_path)
    assert r.returncode == 2 and says in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_checker_reads_only_ascii_digits(mixed: list[Problem]) -> None:
    """int() reads Arabic-Indic digits as numbers; a step that writes its value in them is not the
    solution as the tokenizer writes it, so the checker must not grade it right."""
    to_arabic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    done = 0
    for p in mixed[:50]:
        steps = _steps(p)
        m = re.search(r" = (\d+)\.$", steps[0])
        if not m:
            continue
        steps[0] = steps[0][: m.start(1)] + m.group(1).translate(to_arabic) + "."
        v = check(p, " ".join(steps))
        assert not v.correct and v.first_wrong == 0, (p.id, v)
        done += 1
    assert done > 10
