"""Training text: problems (with or without retry steps) as token rows the trainer can take as they are.

One example is `[BOS] prompt [SOL] solution [EOS]`. The loss is on the solution and its `[EOS]` only: the
problem statement is shuffled random facts, which no model can predict and every model is given at test
time, so training on it spends capacity on noise. Retry data may mask its wrong steps too (the paper's
"masked" rows). Examples are packed whole into rows of `block_size` tokens, never split, each with its own
positions and attention (see `GPT.forward`), so equal steps mean equal training tokens across datasets.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mendlab.mistakes.igsm import Problem
from mendlab.mistakes.retry import with_retries
from mendlab.mistakes.tokenizer import Tokenizer


@dataclass(frozen=True)
class Example:
    ids: tuple[int, ...]
    trained: tuple[bool, ...]  # per token: is predicting this token trained (False for the prompt and masked steps)


@dataclass(frozen=True)
class DataSpec:
    """What a pretraining set holds: error-free (retry=0), or retry steps of a kind at rate `retry`."""

    retry: float = 0.0
    kind: str = "strong"  # strong | weak | miss
    mask_wrong: bool = False

    @property
    def label(self) -> str:
        if self.retry == 0:
            return "error-free"
        return f"retry-{self.kind} p={self.retry:g}" + (" masked" if self.mask_wrong else "")


def prompt_ids(tok: Tokenizer, problem: Problem) -> list[int]:
    """What a model is given at test time: everything up to and including `[SOL]`."""
    return [tok.bos_id, *tok.encode(problem.prompt), tok.sol_id]


def encode(tok: Tokenizer, problem: Problem, solution: str, wrong: Sequence[tuple[int, int]] = ()) -> Example:
    head = prompt_ids(tok, problem)
    ids, spans = tok.encode_offsets(solution)
    trained = [not any(a < e and s < b for a, b in wrong) for s, e in spans]
    return Example(ids=(*head, *ids, tok.eos_id), trained=(*([False] * len(head)), *trained, True))


def examples(tok: Tokenizer, problems: Iterable[Problem], spec: DataSpec, seed: int) -> list[Example]:
    rng = random.Random(seed)
    out: list[Example] = []
    for p in problems:
        if spec.retry > 0:
            r = with_retries(p, spec.retry, spec.kind, rng)  # type: ignore[arg-type]
            out.append(encode(tok, p, r.text, r.wrong if spec.mask_wrong else ()))
        else:
            out.append(encode(tok, p, p.solution))
    return out


@dataclass(frozen=True)
class Rows:
    """Packed rows: inputs, targets, which targets are trained, problem number and position per token."""

    idx: Tensor
    targets: Tensor
    weights: Tensor
    doc: Tensor
    positions: Tensor

    def __len__(self) -> int:
        return int(self.idx.shape[0])

    def take(self, which: Tensor) -> Rows:
        return Rows(self.idx[which], self.targets[which], self.weights[which], self.doc[which], self.positions[which])

    @property
    def tokens(self) -> int:
        """Real (not padding) tokens: the training budget the comparisons hold equal."""
        return int((self.doc >= 0).sum())


def pack(items: Sequence[Example], block_size: int, pad_id: int) -> Rows:
    """Whole examples, in order, into rows of `block_size`; one longer than a row is an error (raise the size)."""
    rows: list[list[Example]] = [[]]
    used = 0
    for ex in items:
        n = len(ex.ids) - 1  # inputs: all but the last token
        if n > block_size:
            raise ValueError(f"an example of {n + 1} tokens does not fit block_size {block_size}")
        if used + n > block_size:
            rows.append([])
            used = 0
        rows[-1].append(ex)
        used += n
    shape = (len(rows), block_size)
    idx = torch.full(shape, pad_id, dtype=torch.long)
    targets = torch.full(shape, pad_id, dtype=torch.long)
    weights = torch.zeros(shape)
    doc = torch.full(shape, -1, dtype=torch.long)
    positions = torch.zeros(shape, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for d, ex in enumerate(row):
            n = len(ex.ids) - 1
            idx[r, at : at + n] = torch.tensor(ex.ids[:-1])
            targets[r, at : at + n] = torch.tensor(ex.ids[1:])
            weights[r, at : at + n] = torch.tensor(ex.trained[1:], dtype=torch.float32)
            doc[r, at : at + n] = d
            positions[r, at : at + n] = torch.arange(n)
            at += n
        positions[r, at:] = torch.arange(block_size - at)  # padding: its own block, never trained
    return Rows(idx, targets, weights, doc, positions)
