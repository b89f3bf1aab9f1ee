"""iGSM-style problems (Physics of Language Models 2.1/2.2), our own generator.

A problem is a structure graph (items of 2-4 consecutive layers of one vocabulary chain, an item having
items of the next layer) and a dependency graph over its parameters:
- instance parameters, one per structure edge ("each Riverside's Fresh Mart"), all stated in the problem,
  each equal to a constant or to an expression of 1-4 other parameters;
- abstract parameters ("Riverside's Product": all products in Riverside, summed over the layers between),
  never stated, computed from the structure, usable in expressions and as the question.
Arithmetic is mod 23. The question's dependency closure (the necessary parameters) costs exactly `op`
binary operations: the closure is grown backwards from the question with an exact budget, so `op` is a
fact of every problem, not a filter over random ones. The reference solution defines the necessary
parameters in a random topological order, one sentence each, every binary operation spelled out.

Everything is drawn from `random.Random` seeded by the problem's id, so a problem is its id: the checker
and the trainer regenerate it anywhere (`problem_from_id`).
"""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Literal

from mendlab.mistakes.vocab import CHAINS

MOD = 23
ORDERS = ("pq", "qp", "random")
_ID_PREFIX = "igsm1"
_MAX_ATTEMPTS = 2000


@dataclass(frozen=True)
class GenConfig:
    """Knobs, so that a CPU preset can be small and a GPU preset paper-sized (med: op<=15, <=20 instances)."""

    op_min: int
    op_max: int
    max_instance: int = 20
    layers: tuple[int, int] = (2, 4)
    order: str = "random"

    def __post_init__(self) -> None:
        if not 0 <= self.op_min <= self.op_max:
            raise ValueError(f"need 0 <= op_min <= op_max, got {self.op_min}..{self.op_max}")
        if self.op_max > 40:
            raise ValueError(f"op_max {self.op_max} is more than 40 (the 52 variable letters would run out)")
        if not 2 <= self.max_instance <= 40:
            raise ValueError(f"max_instance must be in 2..40, got {self.max_instance}")
        lo, hi = self.layers
        if not 2 <= lo <= hi <= 4:
            raise ValueError(f"layers must be within 2..4, got {lo}..{hi}")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")


@dataclass(frozen=True)
class Problem:
    id: str  # encodes config + seed: problem_from_id(p.id) == p
    problem: str
    question: str
    solution: str  # one sentence per necessary parameter, topological order
    answer: int  # 0..22
    op: int
    order: str  # "pq" or "qp"
    split: str  # "train" or "test", by the hash of the solution's canonical structure
    # The hidden graph travels with the problem, so what grades or rewrites a problem in hand never
    # regenerates it (a training set is larger than any cache of ids).
    hidden: Instance | None = field(default=None, compare=False, repr=False)

    @property
    def prompt(self) -> str:
        """Problem and question in this problem's order, one string."""
        if self.order == "pq":
            return f"{self.problem} {self.question}"
        return f"{self.question} {self.problem}"


@dataclass(frozen=True)
class Param:
    name: str  # "Riverside's Fresh Mart" (instance) or "Riverside's Product" (abstract)
    top: str
    below: str  # an item of the next layer (instance) or a category further down (abstract)
    abstract: bool


@dataclass(frozen=True)
class Def:
    """How a parameter is computed. Instance: const, or expr over deps (sum/diff) with an optional
    constant modifier (more: c + E, less: E - c, times: c * E). Abstract: "abs1" (sum of edges to the next
    layer) or "abs" (sum of edge * child's abstract, deps as pairs)."""

    form: str  # const | sum | diff | abs1 | abs
    deps: tuple[int, ...] = ()
    mod: str = ""  # "" | more | less | times
    const: int = 0

    @property
    def ops(self) -> int:
        k = len(self.deps)
        if self.form == "const":
            return 0
        if self.form == "abs":
            return k - 1  # k/2 products and k/2-1 sums
        if self.form == "abs1":
            return k - 1
        return k - 1 + (1 if self.mod else 0)


@dataclass(frozen=True)
class Instance:
    """The whole hidden side of a problem: what the checker grades against."""

    params: tuple[Param, ...]
    defs: tuple[Def, ...]
    values: tuple[int, ...]
    index: dict[str, int]  # name -> param
    stated: frozenset[int]  # instance parameters (all stated in the problem)
    necessary: tuple[int, ...]  # the reference solution's order; the last is the question
    question: int

    def deps(self, i: int) -> frozenset[int]:
        return frozenset(self.defs[i].deps)


# ---------------------------------------------------------------- structure


def _structure(
    rng: random.Random, cfg: GenConfig, op: int
) -> tuple[list[Param], list[Def | None], dict[int, list[int]]]:
    """Items, edges and abstract parameters; abstract defs are fixed here, instance defs left None."""
    # each pair of layers needs at least 2 edges: few stated parameters mean few layers
    n_layers = min(rng.randint(cfg.layers[0], cfg.layers[1]), cfg.max_instance // 2 + 1)
    chain = CHAINS[rng.randrange(len(CHAINS))]
    start = rng.randint(0, len(chain) - n_layers)
    layers = chain[start : start + n_layers]
    want = rng.randint(min(cfg.max_instance, max(3, (op + 3) // 2)), cfg.max_instance)
    while True:
        counts = [rng.randint(1 if i == 0 else 2, 4) for i in range(n_layers)]
        items = [rng.sample(layer.items, c) for layer, c in zip(layers, counts, strict=True)]
        edges: set[tuple[int, int, int]] = set()  # (layer, parent index, child index)
        for i in range(n_layers - 1):
            parents = set()
            for c in range(counts[i + 1]):
                par = rng.randrange(counts[i])
                edges.add((i, par, c))
                parents.add(par)
            for par in range(counts[i]):
                if par not in parents:
                    edges.add((i, par, rng.randrange(counts[i + 1])))
        if len(edges) <= cfg.max_instance:
            break
    possible = [(i, a, b) for i in range(n_layers - 1) for a in range(counts[i]) for b in range(counts[i + 1])]
    extra = [e for e in possible if e not in edges]
    rng.shuffle(extra)
    for e in extra[: max(0, want - len(edges))]:
        edges.add(e)
    params: list[Param] = []
    defs: list[Def | None] = []
    edge_id: dict[tuple[int, int, int], int] = {}
    for e in sorted(edges):
        i, a, b = e
        top, below = items[i][a], items[i + 1][b]
        edge_id[e] = len(params)
        params.append(Param(f"{top}'s {below}", top, below, abstract=False))
        defs.append(None)
    children: dict[tuple[int, int], list[int]] = {}
    for i, a, b in sorted(edges):
        children.setdefault((i, a), []).append(b)
    abs_id: dict[tuple[int, int, int], int] = {}  # (layer, item, target layer)
    for j in range(2, n_layers):  # bottom-up, so a child's abstract exists before its parent's
        for i in range(j - 1, -1, -1):
            for a in range(counts[i]):
                kids = children.get((i, a), [])
                if j == i + 1:
                    deps = tuple(edge_id[(i, a, b)] for b in kids)
                    form = "abs1"
                else:
                    pairs = [(edge_id[(i, a, b)], abs_id[(i + 1, b, j)]) for b in kids if (i + 1, b, j) in abs_id]
                    deps = tuple(x for pair in pairs for x in pair)
                    form = "abs"
                if not deps:
                    continue
                abs_id[(i, a, j)] = len(params)
                top = items[i][a]
                params.append(Param(f"{top}'s {layers[j].category}", top, layers[j].category, abstract=True))
                defs.append(Def(form, deps))
    # abstracts of the next layer's category (j == i + 1) for every layer, also those j == 1
    for i in range(n_layers - 1):
        j = i + 1
        for a in range(counts[i]):
            if (i, a, j) in abs_id:
                continue
            kids = children.get((i, a), [])
            if kids:
                abs_id[(i, a, j)] = len(params)
                top = items[i][a]
                params.append(Param(f"{top}'s {layers[j].category}", top, layers[j].category, abstract=True))
                defs.append(Def("abs1", tuple(edge_id[(i, a, b)] for b in kids)))
    rdeps: dict[int, list[int]] = {}
    for k, d in enumerate(defs):
        if d is not None:
            for x in d.deps:
                rdeps.setdefault(x, []).append(k)
    return params, defs, rdeps


def _dependents(rdeps: dict[int, list[int]], p: int) -> set[int]:
    """Every parameter that (transitively) depends on p, p included: those p may not depend on."""
    seen = {p}
    stack = [p]
    while stack:
        for q in rdeps.get(stack.pop(), ()):
            if q not in seen:
                seen.add(q)
                stack.append(q)
    return seen


def _expr_shape(rng: random.Random, o: int) -> tuple[str, str, int]:
    """(form, mod, number of deps) for an instance parameter costing o operations."""
    if o == 0:
        return ("sum", "", 1) if rng.random() < 0.15 else ("const", "", 0)
    mod = "" if o < 4 and rng.random() < 0.5 else rng.choice(("more", "less", "times"))
    k = o + 1 - (1 if mod else 0)
    form = "diff" if k == 2 and rng.random() < 0.3 else "sum"
    return form, mod, k


def _dependencies(
    rng: random.Random, params: list[Param], defs: list[Def | None], rdeps: dict[int, list[int]], op: int
) -> tuple[list[Def], int, set[int]] | None:
    """Instance defs such that the question's closure costs exactly `op` operations; None to retry."""
    n = len(params)
    instances = [i for i in range(n) if not params[i].abstract]
    abstracts = [i for i in range(n) if params[i].abstract]
    sclos: dict[int, list[int]] = {}  # abstract -> the abstracts in its structural closure (itself included)

    def structural(a: int) -> list[int]:
        if a not in sclos:
            out = [a]
            d = defs[a]
            assert d is not None
            for x in d.deps:
                if params[x].abstract:
                    out.extend(y for y in structural(x) if y not in out)
            sclos[a] = out
        return sclos[a]

    closure: set[int] = set()
    frontier: list[int] = []
    budget = op

    def cost(a: int) -> int:
        total = 0
        for b in structural(a):
            if b not in closure:
                d = defs[b]
                assert d is not None
                total += d.ops
        return total

    def add(x: int) -> None:
        nonlocal budget
        if x in closure:
            return
        closure.add(x)
        d = defs[x]
        if params[x].abstract:
            assert d is not None
            budget -= d.ops
            for y in d.deps:
                add(y)
        else:
            frontier.append(x)

    affordable = [a for a in abstracts if cost(a) <= budget]
    if affordable and rng.random() < 0.5:
        question = rng.choice(affordable)
    else:
        question = rng.choice(instances)
    add(question)
    while frontier:
        p = frontier.pop(rng.randrange(len(frontier)))
        last = not frontier
        cap = min(4, budget)
        o = cap if last else rng.randint(0, cap)
        form, mod, k = _expr_shape(rng, o)
        must_fresh = last and budget - o > 0
        banned = _dependents(rdeps, p)
        old = [x for x in closure if x not in banned]
        fresh_inst = [x for x in instances if x not in closure]
        deps: list[int] = []
        for slot in range(k):
            pick: int | None = None
            r = rng.random()
            if (slot == 0 and must_fresh) or r < 0.55:
                choices = [x for x in fresh_inst if x not in deps]
                if choices:
                    pick = rng.choice(choices)
                elif slot == 0 and must_fresh:
                    return None
            if pick is None and r < 0.7 and not (slot == 0 and must_fresh):
                room = budget - o
                choices = [a for a in abstracts if a not in closure and a not in banned and a not in deps]
                choices = [a for a in choices if cost(a) <= room]
                if choices:
                    pick = rng.choice(choices)
            if pick is None:
                choices = [x for x in old if x not in deps]
                if not choices:
                    choices = [x for x in fresh_inst if x not in deps]
                if not choices:
                    return None
                pick = rng.choice(choices)
            deps.append(pick)
            add(pick)  # charges the abstracts it brings into the closure
            fresh_inst = [x for x in fresh_inst if x != pick]
        budget -= o
        if budget < 0:
            return None
        const = rng.randrange(MOD) if form == "const" or mod else 0
        if mod == "times" and const == 0:
            const = rng.randrange(1, MOD)
        defs[p] = Def(form, tuple(deps), mod, const)
        for x in deps:
            rdeps.setdefault(x, []).append(p)
    if budget != 0:
        return None
    necessary = set(closure)
    # distractors: every other stated parameter, defined over anything that does not depend on it
    rest = [x for x in instances if x not in closure]
    rng.shuffle(rest)
    for p in rest:
        o = rng.choice((0, 0, 1, 1, 2, 2, 3, 4))
        form, mod, k = _expr_shape(rng, o)
        banned = _dependents(rdeps, p)
        choices = [x for x in range(n) if x not in banned]
        if len(choices) < k:
            form, mod, k = "const", "", 0
        deps = rng.sample(choices, k)
        const = rng.randrange(MOD) if form == "const" or mod else 0
        if mod == "times" and const == 0:
            const = rng.randrange(1, MOD)
        defs[p] = Def(form, tuple(deps), mod, const)
        for x in deps:
            rdeps.setdefault(x, []).append(p)
    out: list[Def] = []
    for d in defs:
        assert d is not None
        out.append(d)
    return out, question, necessary


def _values(defs: list[Def]) -> list[int]:
    vals: list[int | None] = [None] * len(defs)

    def value(i: int) -> int:
        v = vals[i]
        if v is None:
            v = evaluate(defs[i], [value(x) for x in defs[i].deps])
            vals[i] = v
        return v

    return [value(i) for i in range(len(defs))]


def evaluate(d: Def, args: list[int]) -> int:
    """The value of a definition given its dependencies' values, mod 23."""
    if d.form == "const":
        return d.const % MOD
    if d.form == "abs1":
        return sum(args) % MOD
    if d.form == "abs":
        return sum(args[i] * args[i + 1] for i in range(0, len(args), 2)) % MOD
    base = args[0] - args[1] if d.form == "diff" else sum(args)
    if d.mod == "more":
        base = d.const + base
    elif d.mod == "less":
        base = base - d.const
    elif d.mod == "times":
        base = d.const * base
    return base % MOD


def _topo(rng: random.Random, defs: list[Def], nodes: set[int]) -> list[int]:
    """A random topological order of `nodes` (each one's deps first)."""
    waiting = {x: {d for d in defs[x].deps if d in nodes} for x in nodes}
    out: list[int] = []
    ready = sorted(x for x, w in waiting.items() if not w)
    while ready:
        x = ready.pop(rng.randrange(len(ready)))
        out.append(x)
        for y, w in waiting.items():
            if x in w:
                w.discard(x)
                if not w:
                    ready.append(y)
    return out


# ---------------------------------------------------------------- text


def _ref(params: list[Param] | tuple[Param, ...], x: int) -> str:
    p = params[x]
    return p.name if p.abstract else f"each {p.name}"


def _sentence(params: list[Param], x: int, d: Def) -> str:
    head = f"The number of each {params[x].name} equals"
    if d.form == "const":
        return f"{head} {d.const}."
    refs = [_ref(params, y) for y in d.deps]
    if len(refs) == 1:
        expr = refs[0]
    elif d.form == "diff":
        expr = f"the difference of {refs[0]} and {refs[1]}"
    elif len(refs) == 2:
        expr = f"the sum of {refs[0]} and {refs[1]}"
    else:
        expr = f"the sum of {', '.join(refs[:-1])} and {refs[-1]}"
    mod = {"": "", "more": f"{d.const} more than ", "less": f"{d.const} less than ", "times": ""}[d.mod]
    if d.mod == "times":
        mod = f"{d.const} times as much as "
    return f"{head} {mod}{expr}."


def _question(params: list[Param], q: int) -> str:
    p = params[q]
    if p.abstract:
        return f"How many {p.below} does {p.top} have?"
    return f"How many {p.below} does each {p.top} have?"


class _Letters:
    def __init__(self, pool: list[str]) -> None:
        self.pool = pool
        self.used = 0

    def take(self) -> str:
        if self.used >= len(self.pool):
            raise _OutOfLetters
        self.used += 1
        return self.pool[self.used - 1]


class _OutOfLetters(Exception):
    pass


def _clause(target: str, a: str, op: str, b: str, va: int, vb: int, r: int, so: bool) -> str:
    return f"{'so ' if so else ''}{target} = {a} {op} {b} = {va} {op} {vb} = {r}"


def binop(op: str, a: int, b: int) -> int:
    """One spelled-out operation, mod 23."""
    if op == "+":
        return (a + b) % MOD
    if op == "-":
        return (a - b) % MOD
    return (a * b) % MOD


def _step(
    params: list[Param], defs: list[Def], values: list[int], x: int, letter: dict[int, str], letters: _Letters
) -> str:
    """One solution sentence: "Define X as p; t = a + b = 1 + 2 = 3; so p = ... = v."."""
    d = defs[x]
    me = letters.take()
    letter[x] = me
    head = f"Define {params[x].name} as {me}"
    if d.form == "const":
        return f"{head}; so {me} = {values[x]}."

    def operand(y: int) -> tuple[str, int]:
        return letter[y], values[y]

    if d.form == "abs":
        pairs = [(d.deps[i], d.deps[i + 1]) for i in range(0, len(d.deps), 2)]
        chunks: list[tuple[tuple[str, int], tuple[str, int]]] = [(operand(e), operand(a)) for e, a in pairs]
        plan: list[tuple[str, tuple[str, int] | int, tuple[str, int] | int]] = []
        for e, a in chunks:
            plan.append(("*", e, a))
        # sums over the products' results, referenced by plan index
        acc: tuple[str, int] | int = 0
        for i in range(1, len(chunks)):
            plan.append(("+", acc, i))
            acc = len(plan) - 1
        return _spell(head, me, plan, letters, values[x])
    operands = [operand(y) for y in d.deps]
    plan = []
    if len(operands) == 1:
        if not d.mod:  # a copy
            return f"{head}; so {me} = {operands[0][0]} = {operands[0][1]}."
        acc = operands[0]
    else:
        first_op = "-" if d.form == "diff" else "+"
        plan.append((first_op, operands[0], operands[1]))
        acc = 0
        for o in operands[2:]:
            plan.append(("+", acc, o))
            acc = len(plan) - 1
    if d.mod == "more":
        plan.append(("+", (str(d.const), d.const), acc))
    elif d.mod == "less":
        plan.append(("-", acc, (str(d.const), d.const)))
    elif d.mod == "times":
        plan.append(("*", (str(d.const), d.const), acc))
    return _spell(head, me, plan, letters, values[x])


def _spell(
    head: str,
    me: str,
    plan: list[tuple[str, tuple[str, int] | int, tuple[str, int] | int]],
    letters: _Letters,
    value: int,
) -> str:
    """Spell a plan of binary operations; an int operand is the result of an earlier plan entry."""
    results: list[tuple[str, int]] = []
    clauses: list[str] = []
    for k, (op, a, b) in enumerate(plan):
        ta, va = results[a] if isinstance(a, int) else a
        tb, vb = results[b] if isinstance(b, int) else b
        r = binop(op, va, vb)
        last = k == len(plan) - 1
        target = me if last else letters.take()
        clauses.append(_clause(target, ta, op, tb, va, vb, r, last))
        results.append((target, r))
    if results[-1][1] != value:
        raise AssertionError("spelled solution disagrees with the parameter's value")
    return head + "; " + "; ".join(clauses) + "."


def _template(defs: list[Def], order: list[int]) -> str:
    pos = {x: i for i, x in enumerate(order)}
    parts = []
    for x in order:
        d = defs[x]
        parts.append(f"{d.form}{d.mod}({','.join(str(pos[y]) for y in d.deps)})")
    return ";".join(parts)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _canonical(defs: Sequence[Def], nodes: Sequence[int]) -> str:
    """The structure of the question's closure up to renaming and reordering, as a hash.

    The graph is the necessary parameters, each labelled by its operation (form and modifier, never a
    name or a number), with its dependencies: unordered for a sum (commutative), ordered for a
    difference, and as unordered (edge, abstract) products for an abstract total. The labels are refined
    Weisfeiler-Lehman style, each node by its own label, its dependencies' and its users' (with the
    role it plays for them), until they stop splitting; the result is the multiset of final labels.
    So two problems whose solutions differ only in the order of independent steps, of a sum's operands,
    or in names and numbers hash the same (an isomorphism invariant); two different structures could in
    principle collide, which only puts them in the same split."""
    inside = set(nodes)
    users: dict[int, list[tuple[int, str]]] = {x: [] for x in nodes}
    for x in nodes:
        d = defs[x]
        for k, y in enumerate(d.deps):
            if y in inside:
                role = str(k) if d.form == "diff" else ("e" if k % 2 == 0 else "a") if d.form == "abs" else "*"
                users[y].append((x, role))
    label = {x: f"{defs[x].form}{defs[x].mod}" for x in nodes}
    classes = len(set(label.values()))
    for _ in range(len(nodes)):
        new: dict[int, str] = {}
        for x in nodes:
            d = defs[x]
            deps = [label[y] for y in d.deps]
            if d.form == "diff":
                down = ",".join(deps)
            elif d.form == "abs":
                down = ",".join(sorted(f"{deps[i]}*{deps[i + 1]}" for i in range(0, len(deps), 2)))
            else:
                down = ",".join(sorted(deps))
            up = ",".join(sorted(f"{label[u]}:{role}" for u, role in users[x]))
            new[x] = _digest(f"{label[x]}({down})[{up}]")
        label = new
        if len(set(label.values())) == classes:
            break
        classes = len(set(label.values()))
    return _digest(";".join(sorted(label.values())))


def template_split(template: str) -> Literal["train", "test"]:
    """Test iff the hash of a structure (`canonical`) is 0 mod 23: about 1/23 of them, never trained on."""
    h = int.from_bytes(hashlib.sha256(template.encode()).digest()[:8], "big")
    return "test" if h % 23 == 0 else "train"


# ---------------------------------------------------------------- public


def make_id(cfg: GenConfig, seed: int) -> str:
    lo, hi = cfg.layers
    return f"{_ID_PREFIX}-{cfg.op_min}-{cfg.op_max}-{cfg.max_instance}-{lo}-{hi}-{cfg.order}-{seed}"


def parse_id(pid: str) -> tuple[GenConfig, int]:
    """The config and seed a problem id encodes; ValueError saying why for anything else."""
    parts = pid.split("-") if isinstance(pid, str) else []
    if len(parts) != 8 or parts[0] != _ID_PREFIX:
        raise ValueError(f"not an iGSM problem id: {pid!r} (expected {_ID_PREFIX}-OPMIN-OPMAX-INST-L0-L1-ORDER-SEED)")
    nums = [*parts[1:6], parts[7]]
    if not all(s.isascii() and s.isdigit() and len(s) < 20 for s in nums):
        raise ValueError(f"not an iGSM problem id: {pid!r} (a field is not a number)")
    a, b, inst, lo, hi, seed = (int(s) for s in nums)
    try:
        cfg = GenConfig(op_min=a, op_max=b, max_instance=inst, layers=(lo, hi), order=parts[6])
    except ValueError as exc:
        raise ValueError(f"not an iGSM problem id: {pid!r} ({exc})") from None
    if make_id(cfg, seed) != pid:  # "007" for 7: one problem, one id
        raise ValueError(f"not an iGSM problem id: {pid!r} (not canonical: {make_id(cfg, seed)!r})")
    return cfg, seed


@lru_cache(maxsize=4096)  # about 12 KiB a problem
def _build(pid: str) -> tuple[Problem, Instance]:
    cfg = parse_id(pid)[0]
    rng = random.Random(pid)
    op = rng.randint(cfg.op_min, cfg.op_max)
    order = cfg.order if cfg.order != "random" else rng.choice(("pq", "qp"))
    for _ in range(_MAX_ATTEMPTS):
        params, defs0, rdeps = _structure(rng, cfg, op)
        built = _dependencies(rng, params, defs0, rdeps, op)
        if built is None:
            continue
        defs, question, necessary = built
        values = _values(defs)
        order_nodes = _topo(rng, defs, necessary)
        if order_nodes[-1] != question:  # the question is the only sink of its closure, so never
            raise AssertionError("question not last in its closure's order")
        pool = list(string.ascii_letters)
        rng.shuffle(pool)
        letters = _Letters(pool)
        letter: dict[int, str] = {}
        try:
            steps = [_step(params, defs, values, x, letter, letters) for x in order_nodes]
        except _OutOfLetters:
            continue
        stated = [i for i in range(len(params)) if not params[i].abstract]
        sentences = [_sentence(params, x, defs[x]) for x in stated]
        rng.shuffle(sentences)
        structure = _canonical(defs, order_nodes)
        problem = Problem(
            id=pid,
            problem=" ".join(sentences),
            question=_question(params, question),
            solution=" ".join(steps),
            answer=values[question],
            op=op,
            order=order,
            split=template_split(structure),
        )
        hidden = Instance(
            params=tuple(params),
            defs=tuple(defs),
            values=tuple(values),
            index={p.name: i for i, p in enumerate(params)},
            stated=frozenset(stated),
            necessary=tuple(order_nodes),
            question=question,
        )
        return replace(problem, hidden=hidden), hidden
    raise RuntimeError(f"{pid}: no problem with op {op} after {_MAX_ATTEMPTS} attempts (raise max_instance)")


def generate(cfg: GenConfig, seed: int) -> Problem:
    """The problem of this config and seed (op drawn uniformly in op_min..op_max)."""
    if seed < 0:
        raise ValueError("seed must be >= 0")
    return _build(make_id(cfg, seed))[0]


def problem_from_id(pid: str) -> Problem:
    """The problem an id names (ValueError for a malformed id)."""
    return _build(pid)[0]


def instance(p: Problem | str) -> Instance:
    """The hidden graph of a problem (parameters, definitions, values): what grading needs."""
    if isinstance(p, Problem) and p.hidden is not None:
        return p.hidden
    return _build(p if isinstance(p, str) else p.id)[1]


def template(p: Problem) -> str:
    """The solution's template: each step's form and which earlier steps it uses; no names, no numbers."""
    inst = instance(p)
    return _template(list(inst.defs), list(inst.necessary))


def canonical(p: Problem) -> str:
    """The solution's structure up to renaming and reordering (see `_canonical`): what the split hashes."""
    inst = instance(p)
    return _canonical(inst.defs, inst.necessary)


def split_of(p: Problem) -> Literal["train", "test"]:
    """By a hash (mod 23) of the solution's canonical structure: test problems are structurally unseen."""
    return "test" if p.split == "test" else "train"


def child_seed(seed: int, i: int) -> int:
    """The i-th problem seed of a set: independent streams for different set seeds."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=6).digest(), "big")


def iter_problems(cfg: GenConfig, split: str, n: int, seed: int) -> Iterator[Problem]:
    """`problems`, one at a time (a large training set need not be held twice)."""
    if split not in ("train", "test", "any"):
        raise ValueError(f"split must be train, test or any, got {split!r}")
    made = i = 0
    while made < n:
        if i >= 500 * (n + 2):  # a split that (almost) never occurs at this config: say so, never hang
            raise RuntimeError(f"only {made} {split} problems of {n} among the first {i} of {make_id(cfg, seed)}")
        p = generate(cfg, child_seed(seed, i))
        i += 1
        if split == "any" or p.split == split:
            made += 1
            yield p


def _chunk(cfg: GenConfig, seed: int, start: int, count: int) -> list[Problem]:
    return [generate(cfg, child_seed(seed, i)) for i in range(start, start + count)]


def problems(cfg: GenConfig, split: str, n: int, seed: int, workers: int = 1) -> list[Problem]:
    """n problems of that split ("train", "test" or "any"), deterministic in (cfg, split, n, seed).

    With `workers` > 1, candidates are generated in that many processes (a GPU run's training set is
    minutes of one core, and a test split keeps only ~1 candidate in 23), in the same order, so the
    list is the one `workers=1` makes."""
    if split not in ("train", "test", "any"):
        raise ValueError(f"split must be train, test or any, got {split!r}")
    if workers <= 1 or (split != "test" and n < 1000):
        return list(iter_problems(cfg, split, n, seed))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    out: list[Problem] = []
    size = 250 if n >= 1000 else 100
    start = 0
    # Fork where there is one: spawn re-imports the caller's script, which runs it again unless it is
    # guarded by `if __name__ == "__main__"`. The children only run this pure-Python generator, never
    # torch's threads or a GPU the parent may hold.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        while len(out) < n:
            if start >= 500 * (n + 2):
                got = f"only {len(out)} {split} problems of {n} among the first {start}"
                raise RuntimeError(f"{got} of {make_id(cfg, seed)}")
            starts = list(range(start, start + 4 * workers * size, size))
            k = len(starts)
            for made in pool.map(_chunk, [cfg] * k, [seed] * k, starts, [size] * k):
                out.extend(p for p in made if split == "any" or p.split == split)
            start += 4 * workers * size
    return out[:n]
