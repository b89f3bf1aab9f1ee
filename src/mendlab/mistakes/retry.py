"""Retry data (Physics of LMs 2.2): reference solutions with wrong steps taken back by [BACK].

Before each step of the reference solution, with probability p insert "Define W as [BACK]." and repeat
(k wrong steps at one place with probability p^k (1-p): p/(1-p) per place on average). W is
- strong: a parameter that cannot be computed yet (the paper's retry data);
- weak: a later necessary parameter moved early (the paper's "fake mistakes");
- miss: a stated parameter the solution never uses.
A place with no such W (say, no later step before the last one) gets none. The wrong spans cover
"Define W as" only, not the " [BACK]." after it: masking them keeps the loss on learning to say [BACK].
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from mendlab.mistakes.checker import split_steps
from mendlab.mistakes.igsm import Instance, Problem, instance

KINDS = ("strong", "weak", "miss")


@dataclass(frozen=True)
class RetrySolution:
    text: str
    wrong: tuple[tuple[int, int], ...]  # char spans of the wrong "Define W as" parts (for loss masking)


def candidates(p: Problem, kind: str, done: int, inst: Instance | None = None) -> list[str]:
    """The names a wrong step may start with before reference step `done` (0-based)."""
    inst = instance(p) if inst is None else inst
    order = inst.necessary
    if kind == "weak":
        return [inst.params[x].name for x in order[done + 1 :]]
    if kind == "miss":
        need = set(order)
        return [inst.params[x].name for x in sorted(inst.stated) if x not in need]
    if kind != "strong":
        raise ValueError(f"retry kind must be one of {', '.join(KINDS)}, got {kind!r}")
    defined = set(order[:done])
    return [q.name for x, q in enumerate(inst.params) if x not in defined and not inst.deps(x) <= defined]


def with_retries(p: Problem, prob: float, kind: Literal["strong", "weak", "miss"], rng: random.Random) -> RetrySolution:
    """The reference solution with retries inserted at rate `prob` (0 <= prob < 1)."""
    if not 0 <= prob < 1:
        raise ValueError(f"retry probability must be in [0, 1), got {prob}")
    if kind not in KINDS:
        raise ValueError(f"retry kind must be one of {', '.join(KINDS)}, got {kind!r}")
    inst = instance(p)  # once: every step's candidates read the same graph
    parts: list[str] = []
    wrong: list[tuple[int, int]] = []
    at = 0
    for i, step in enumerate(split_steps(p.solution)):
        pool: list[str] | None = None
        while rng.random() < prob:
            if pool is None:
                pool = candidates(p, kind, i, inst)
            if not pool:
                break
            head = f"Define {rng.choice(pool)} as"
            wrong.append((at, at + len(head)))
            parts.append(head + " [BACK].")
            at += len(parts[-1]) + 1
        parts.append(step)
        at += len(step) + 1
    return RetrySolution(" ".join(parts), tuple(wrong))
