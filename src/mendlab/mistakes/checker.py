"""Grading a solution step by step, as Physics of LMs 2.1/2.2 does.

A step is one sentence "Define NAME as x; t = a + b = 3 + 4 = 7; so x = 12 + t = 12 + 7 = 19." It is right
when, in this order of checks (the first failing one is its kind):
- syntax: it parses (clauses "t = A op B = a op b = r", "so x = y = v" for a copy, "so x = v" for a constant);
- unknown_param: NAME is a parameter of the problem; redefined: not defined by an earlier step;
- letter: its letters are fresh (a letter names one thing in a solution);
- undefined: every letter it uses was defined before (an earlier step's parameter, or this step's own
  earlier clause);
- deps: the parameters it uses are exactly NAME's true dependencies;
- copy, arith, clause by clause: the numbers written for letters (and constants) are the values they
  stand for, and the operation is right mod 23;
- value (answer, when NAME is the question): the value it reaches is NAME's true value (a wrong constant or
  operator with otherwise right steps).
Unnecessary but right steps are allowed; a step ending in "[BACK]." (a retry) is skipped. After the last
step, the last step graded must define the question (not_question, at index len(steps): the step missing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mendlab.mistakes.igsm import Instance, Problem, binop, instance

_DEFINE = re.compile(r"Define (.+?) as (\[BACK\]|[A-Za-z])(.*)", re.S)
_CLAUSE = re.compile(r"(so )?([A-Za-z]) = (.+)")
_BIN = re.compile(r"(\S+) ([-+*]) (\S+)")
_LETTER = re.compile(r"[A-Za-z]")
_NUMBER = re.compile(r"[0-9]{1,6}")  # ASCII only: int() would read other scripts' digits too
_SPACE_BEFORE = re.compile(r"\s+([.,;?]|'s)")


@dataclass(frozen=True)
class Verdict:
    correct: bool
    first_wrong: int | None  # index into split_steps(solution)
    kind: str | None
    step: str | None
    answer: int | None  # the value the solution's last graded step reaches, when it parses


def split_steps(solution: str) -> list[str]:
    """The solution's sentences, each ending with "." (a trailing unfinished one is kept, without it)."""
    out: list[str] = []
    for part in solution.split("."):
        s = part.strip()
        if s:
            out.append(s + ".")
    if out and not solution.rstrip().endswith("."):
        out[-1] = out[-1][:-1]
    return out


def _normal(step: str) -> str:
    return _SPACE_BEFORE.sub(r"\1", " ".join(step.split()))


def is_back(step: str) -> bool:
    """A retry step: its wrong start taken back by [BACK]; graders skip it."""
    s = step.rstrip()
    return s.endswith("[BACK].") or s.endswith("[BACK]")


def step_param(p: Problem, step: str) -> str | None:
    """The parameter name a step defines (or starts to, for a [BACK] step), whether or not it exists."""
    m = _DEFINE.fullmatch(_normal(step))
    return m.group(1) if m else None


@dataclass(frozen=True)
class _Clause:
    target: str
    so: bool
    letters: tuple[str, ...]  # the left expression's operands as written ("t", "12", ...)
    op: str  # "" for a constant or a copy
    numbers: tuple[int, ...]  # the right expression's numbers
    result: int


@dataclass(frozen=True)
class _Step:
    name: str
    letter: str
    clauses: tuple[_Clause, ...]


@dataclass
class _State:
    values: dict[str, int] = field(default_factory=dict)  # letter -> value of the parameter it defines
    owner: dict[str, int] = field(default_factory=dict)  # letter -> parameter
    defined: dict[int, str] = field(default_factory=dict)  # parameter -> letter
    used: set[str] = field(default_factory=set)  # every letter the solution used, temporaries too


def _is_number(s: str) -> bool:
    return _NUMBER.fullmatch(s) is not None


def _parse(step: str) -> _Step | None:
    m = _DEFINE.fullmatch(step)
    if not m or not step.endswith("."):
        return None
    name, letter, rest = m.group(1), m.group(2), m.group(3)
    if letter == "[BACK]" or not rest.startswith("; "):
        return None
    clauses: list[_Clause] = []
    texts = rest[2:-1].split("; ")
    for k, text in enumerate(texts):
        c = _CLAUSE.fullmatch(text)
        if not c or bool(c.group(1)) != (k == len(texts) - 1):
            return None
        target, parts = c.group(2), c.group(3).split(" = ")
        if len(parts) == 1 and _is_number(parts[0]):
            clauses.append(_Clause(target, bool(c.group(1)), (), "", (), int(parts[0])))
        elif len(parts) == 2 and _LETTER.fullmatch(parts[0]) and _is_number(parts[1]):
            clauses.append(_Clause(target, bool(c.group(1)), (parts[0],), "", (int(parts[1]),), int(parts[1])))
        elif len(parts) == 3 and _is_number(parts[2]):
            left, right = _BIN.fullmatch(parts[0]), _BIN.fullmatch(parts[1])
            if not left or not right:
                return None
            a, op, b = left.groups()
            na, op2, nb = right.groups()
            ok = all(_LETTER.fullmatch(x) or _is_number(x) for x in (a, b)) and _is_number(na) and _is_number(nb)
            if not ok:
                return None
            if op2 != op:  # the numbers say another operation than the letters: a miscopy
                op = op + op2
            clauses.append(_Clause(target, bool(c.group(1)), (a, b), op, (int(na), int(nb)), int(parts[2])))
        else:
            return None
    if clauses[-1].target != letter:
        return None
    return _Step(name, letter, tuple(clauses))


def _grade(inst: Instance, state: _State, raw: str) -> tuple[str | None, _Step | None]:
    """(kind, parsed step): kind None when the step is right after `state`."""
    s = _parse(_normal(raw))
    if s is None:
        return "syntax", None
    param = inst.index.get(s.name)
    if param is None:
        return "unknown_param", s
    if param in state.defined:
        return "redefined", s
    fresh: set[str] = set()
    for c in s.clauses:
        if c.target in state.used or c.target in fresh:
            return "letter", s
        fresh.add(c.target)
    local: dict[str, int] = {}  # this step's letters so far -> the value written for them
    for c in s.clauses:
        for x in c.letters:
            if _LETTER.fullmatch(x) and x not in local and x not in state.owner:
                return "undefined", s
        local[c.target] = c.result
    temps = {c.target for c in s.clauses}
    used = {state.owner[x] for c in s.clauses for x in c.letters if _LETTER.fullmatch(x) and x not in temps}
    if used != inst.deps(param):
        return "deps", s
    local = {}
    for c in s.clauses:  # clause by clause: a wrong sum copied on right is the sum's error
        if len(c.op) == 2:
            return "copy", s
        for x, n in zip(c.letters, c.numbers, strict=True):
            want = (local[x] if x in local else state.values[x]) if _LETTER.fullmatch(x) else int(x)
            if n != want:
                return "copy", s
        if c.op and c.result != binop(c.op, c.numbers[0], c.numbers[1]):
            return "arith", s
        local[c.target] = c.result
    if s.clauses[-1].result != inst.values[param]:
        return ("answer" if param == inst.question else "value"), s
    return None, s


def _apply(inst: Instance, state: _State, s: _Step) -> None:
    param = inst.index[s.name]
    state.values[s.letter] = s.clauses[-1].result
    state.owner[s.letter] = param
    state.defined[param] = s.letter
    state.used.update(c.target for c in s.clauses)


def _replay(inst: Instance, previous: list[str]) -> _State:
    """The state after `previous`: [BACK] steps and wrong steps define nothing."""
    state = _State()
    for raw in previous:
        if is_back(raw):
            continue
        kind, s = _grade(inst, state, raw)
        if kind is None and s is not None:
            _apply(inst, state, s)
    return state


def _answer(steps: list[str]) -> int | None:
    for raw in reversed(steps):
        if is_back(raw):
            continue
        s = _parse(_normal(raw))
        return s.clauses[-1].result if s else None
    return None


def check(p: Problem, solution: str) -> Verdict:
    """The first wrong step of a solution and its kind, or correct."""
    inst = instance(p)
    steps = split_steps(solution)
    state = _State()
    last: int | None = None
    for i, raw in enumerate(steps):
        if is_back(raw):
            continue
        kind, s = _grade(inst, state, raw)
        if kind is not None or s is None:
            return Verdict(False, i, kind, raw, _answer(steps[: i + 1]))
        _apply(inst, state, s)
        last = inst.index[s.name]
    answer = _answer(steps)
    if last != inst.question:
        return Verdict(False, len(steps), "not_question", None, answer)
    return Verdict(True, None, None, None, answer)


def step_ok(p: Problem, previous: list[str], step: str) -> str | None:
    """None if `step` is right after `previous` (the perfect detector), else its kind; [BACK] steps are None."""
    if is_back(step):
        return None
    inst = instance(p)
    return _grade(inst, _replay(inst, previous), step)[0]


def can_next(p: Problem, previous: list[str], param: str) -> bool:
    """Whether `param` is computable now: a parameter not yet defined whose dependencies all are."""
    inst = instance(p)
    i = inst.index.get(param)
    if i is None:
        return False
    state = _replay(inst, previous)
    return i not in state.defined and inst.deps(i) <= state.defined.keys()
