"""The "can_next" probe: is the parameter a step is about to define computable yet?

As in the paper, the model stays frozen and a small head reads its hidden state at the token "as" of
"Define NAME as": at that point the model has committed to NAME but not written its value. The probe is
fitted on clean contexts only, the situation it is used in (retry upon regret asks it about an
error-free model's own solution, which holds no [BACK]): the prompt, a prefix of the reference
solution, then "Define NAME as" with NAME either the reference's next parameter (computable) or one that
cannot be computed yet (the strong retry's wrong step), so both labels are common. The label comes from
the checker, never from the model. Held-out accuracy on such steps is the easy number (the paper's
~99%); the telling one is its recall at the model's own first mistakes (the paper's ~60%), measured by
`own_mistakes` on what the model wrote.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mendlab.mistakes.checker import can_next, check, split_steps
from mendlab.mistakes.corpus import prompt_ids
from mendlab.mistakes.decode import Detector
from mendlab.mistakes.igsm import Problem, instance
from mendlab.mistakes.model import GPT
from mendlab.mistakes.retry import candidates
from mendlab.mistakes.tokenizer import Tokenizer


@dataclass(frozen=True)
class ProbeData:
    features: Tensor  # (n, n_embd): the hidden state at "as"
    labels: Tensor  # (n,) 1.0 = computable
    where: tuple[tuple[str, int, str], ...] = ()  # per row: problem id, reference steps before it, NAME


def _define_as(tok: Tokenizer, name: str) -> list[int]:
    return tok.encode(f"Define {name} as")


def probe_data(model: GPT, tok: Tokenizer, problems: Sequence[Problem], seed: int) -> ProbeData:
    """Hidden states at "as" after clean reference prefixes: at each step, the reference's parameter
    and (where one exists) a random one that cannot be computed yet."""
    rng = random.Random(seed)
    feats: list[Tensor] = []
    labels: list[float] = []
    where: list[tuple[str, int, str]] = []
    dev = model.wte.weight.device
    for p in problems:
        inst = instance(p)
        steps = split_steps(p.solution)
        head = prompt_ids(tok, p)
        contexts: list[list[int]] = []
        prefix = list(head)
        for k, step in enumerate(steps):
            names = [inst.params[inst.necessary[k]].name]
            wrong = candidates(p, "strong", k, inst)
            if wrong:
                names.append(rng.choice(wrong))
            for name in names:
                contexts.append(prefix + _define_as(tok, name))
                labels.append(1.0 if can_next(p, steps[:k], name) else 0.0)
                where.append((p.id, k, name))
            prefix = prefix + tok.encode(step)
        # One forward for the problem's contexts, right-padded: causal attention keeps each row's
        # positions before its padding exact.
        width = max(len(c) for c in contexts)
        ids = torch.full((len(contexts), width), tok.pad_id, dtype=torch.long, device=dev)
        for i, c in enumerate(contexts):
            ids[i, : len(c)] = torch.tensor(c, device=dev)
        with torch.no_grad():
            h, _ = model.hidden(ids)
        last = torch.tensor([len(c) - 1 for c in contexts], device=dev)
        feats.extend(h[torch.arange(len(contexts), device=dev), last].float().cpu())
    return ProbeData(torch.stack(feats), torch.tensor(labels), tuple(where))


@dataclass(frozen=True)
class OwnMistakes:
    """The model's own first wrong steps that start "Define NAME as" with NAME not computable yet."""

    features: Tensor  # (k, n_embd): the hidden state at that step's "as", in the model's own context
    kinds: tuple[str, ...]  # the checker's kind for each
    wrong: int  # wrong solutions looked at
    named: int  # of those, first wrong steps that name a parameter (the rest: cut short, syntax, a missing step)


def own_mistakes(model: GPT, tok: Tokenizer, solved: Sequence[tuple[Problem, str]]) -> OwnMistakes:
    """From (problem, the model's solution) pairs, the first mistakes a can_next detector should flag.

    A first wrong step whose parameter was computable (a miscopied number, wrong arithmetic) is a
    mistake no can_next probe can see: it counts in `named`, not in `features`."""
    define, as_id = tok.encode("Define"), tok.encode("as")[0]
    dev = model.wte.weight.device
    feats: list[Tensor] = []
    kinds: list[str] = []
    wrong = named = 0
    for p, solution in solved:
        v = check(p, solution)
        if v.correct:
            continue
        wrong += 1
        steps = split_steps(solution)
        if v.first_wrong is None or v.first_wrong >= len(steps):
            continue
        ids = tok.encode(steps[v.first_wrong])
        if ids[: len(define)] != define or as_id not in ids:
            continue
        k = ids.index(as_id)
        name = tok.decode(ids[len(define) : k]).strip()
        named += 1
        previous = steps[: v.first_wrong]
        if can_next(p, previous, name):
            continue
        context = prompt_ids(tok, p) + tok.encode(" ".join(previous)) + ids[: k + 1]
        with torch.no_grad():
            h, _ = model.hidden(torch.tensor([context], device=dev))
        feats.append(h[0, -1].float().cpu())
        kinds.append(v.kind or "")
    n_embd = model.cfg.n_embd
    return OwnMistakes(torch.stack(feats) if feats else torch.zeros(0, n_embd), tuple(kinds), wrong, named)


class Probe(nn.Module):
    """A linear head (logistic regression) over the frozen hidden state."""

    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.head = nn.Linear(n_embd, 1)

    def forward(self, h: Tensor) -> Tensor:
        return torch.sigmoid(self.head(h.float())).squeeze(-1)


def fit_probe(data: ProbeData, steps: int = 300, lr: float = 1e-2, seed: int = 0) -> Probe:
    torch.manual_seed(seed)
    probe = Probe(data.features.shape[1])
    mean, std = data.features.mean(0), data.features.std(0).clamp(min=1e-6)
    # Standardize inside the head, so the saved probe takes raw hidden states.
    with torch.no_grad():
        probe.head.weight.zero_()
    opt = torch.optim.Adam(probe.parameters(), lr=lr)
    x = (data.features - mean) / std
    for _ in range(steps):
        opt.zero_grad()
        logits = probe.head(x).squeeze(-1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, data.labels)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    with torch.no_grad():
        w = probe.head.weight / std
        probe.head.bias.sub_((probe.head.weight * (mean / std)).sum())
        probe.head.weight.copy_(w)
    return probe


def accuracy(probe: Probe, data: ProbeData) -> float:
    with torch.no_grad():
        return float(((probe(data.features) >= 0.5).float() == data.labels).float().mean())


def recall(probe: Probe, own: OwnMistakes) -> float | None:
    """The share of the model's own can_next mistakes the probe flags (None when there are none)."""
    if not len(own.features):
        return None
    with torch.no_grad():
        return float((probe(own.features) < 0.5).float().mean())


def probe_detector(probe: Probe) -> Detector:
    """A `Detector` for retry upon regret: regret when the probe says "not computable yet"."""

    def detect(problem: Problem, previous: list[str], name: str, hidden: Tensor) -> bool:
        with torch.no_grad():
            return bool(probe(hidden.cpu()) < 0.5)

    return detect
