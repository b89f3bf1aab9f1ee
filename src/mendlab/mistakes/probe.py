"""The "can_next" probe: is the parameter a step is about to define computable yet?

As in the paper, the model stays frozen and a small head reads its hidden state at the token "as" of
"Define NAME as": at that point the model has committed to NAME but not written its value. The examples are
solutions with strong retry steps (half the steps start with a parameter that cannot be computed yet), so
both labels are common; the label comes from the checker, never from the model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mendlab.mistakes.checker import can_next, split_steps
from mendlab.mistakes.corpus import encode
from mendlab.mistakes.decode import Detector
from mendlab.mistakes.igsm import Problem
from mendlab.mistakes.model import GPT
from mendlab.mistakes.retry import with_retries
from mendlab.mistakes.tokenizer import Tokenizer


@dataclass(frozen=True)
class ProbeData:
    features: Tensor  # (n, n_embd)
    labels: Tensor  # (n,) 1.0 = computable


def probe_data(model: GPT, tok: Tokenizer, problems: Sequence[Problem], seed: int, retry: float = 0.5) -> ProbeData:
    rng = random.Random(seed)
    feats: list[Tensor] = []
    labels: list[float] = []
    define, as_id = tok.encode("Define")[0], tok.encode("as")[0]
    dev = model.wte.weight.device
    for p in problems:
        r = with_retries(p, retry, "strong", rng)
        ex = encode(tok, p, r.text)
        ids = torch.tensor([ex.ids], device=dev)
        with torch.no_grad():
            h, _ = model.hidden(ids)
        sol_at = ex.ids.index(tok.sol_id) + 1
        steps = split_steps(r.text)
        at = sol_at
        previous: list[str] = []
        for step in steps:
            n = len(tok.encode(step))
            seg = list(ex.ids[at : at + n])
            if seg and seg[0] == define and as_id in seg:
                k = seg.index(as_id)
                name = tok.decode(seg[1:k]).strip()
                feats.append(h[0, at + k].float().cpu())
                labels.append(1.0 if can_next(p, previous, name) else 0.0)
            if "[BACK]" not in step:
                previous.append(step)
            at += n
    return ProbeData(torch.stack(feats), torch.tensor(labels))


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


def probe_detector(probe: Probe) -> Detector:
    """A `Detector` for retry upon regret: regret when the probe says "not computable yet"."""

    def detect(problem: Problem, previous: list[str], name: str, hidden: Tensor) -> bool:
        with torch.no_grad():
            return bool(probe(hidden.cpu()) < 0.5)

    return detect
