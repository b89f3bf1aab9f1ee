"""Decoding for evaluation, the three ways the paper compares: greedy, beam search, retry upon regret.

Retry upon regret: when a step has been written up to "Define NAME as", a detector says whether NAME can
be computed yet (the paper's "can_next"); if not, generation backs up to the start of that step and samples
it again, up to `max_retries` times per solution. The detector is a trained probe on the model's own hidden
state, or the perfect one (the checker's ground truth), as the paper compares. All three share the model's
key/value cache, so backing up costs nothing but the tokens resampled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mendlab.mistakes.checker import can_next, split_steps
from mendlab.mistakes.corpus import prompt_ids
from mendlab.mistakes.igsm import Problem
from mendlab.mistakes.model import GPT, Cache
from mendlab.mistakes.tokenizer import Tokenizer

# Says whether the step being written is a mistake: (problem, steps written so far, NAME, hidden state at "as").
Detector = Callable[[Problem, list[str], str, Tensor], bool]


@dataclass(frozen=True)
class Decoded:
    solution: str
    regrets: int = 0  # steps the detector rejected and resampled (retry upon regret)


def budget(tok: Tokenizer, problem: Problem) -> int:
    """Tokens a solution may take: three times the reference's, plus a margin. A right solution with a
    few taken-back steps fits easily; a model stuck repeating "[BACK]" (small retry-trained models do,
    at temperature 0) is cut there instead of running to the context's end on every problem."""
    return 3 * len(tok.encode(problem.solution)) + 20


def _device(model: GPT) -> torch.device:
    return model.wte.weight.device


def greedy(
    model: GPT,
    tok: Tokenizer,
    problems: Sequence[Problem],
    max_new: int | None = None,
    batch_size: int = 64,
) -> list[Decoded]:
    """Greedy solutions for many problems at once (left-padded batches, one cache per batch).

    Each stops at `[EOS]`, at `max_new` tokens, or (by default) at its `budget`."""
    out: list[Decoded] = []
    dev = _device(model)
    for lo in range(0, len(problems), batch_size):
        chunk = [prompt_ids(tok, p) for p in problems[lo : lo + batch_size]]
        caps = [budget(tok, p) if max_new is None else max_new for p in problems[lo : lo + batch_size]]
        width = max(len(c) for c in chunk)
        idx = torch.full((len(chunk), width), tok.pad_id, dtype=torch.long, device=dev)
        valid = torch.zeros((len(chunk), width), dtype=torch.bool, device=dev)
        for i, c in enumerate(chunk):
            idx[i, width - len(c) :] = torch.tensor(c, device=dev)
            valid[i, width - len(c) :] = True
        pos = (valid.long().cumsum(1) - 1).clamp(min=0)
        limit = max(caps)  # each row stops at its own cap; rotary positions have no table to outgrow
        logits, _, cache = model.step(idx, pos, valid, None)
        nxt_pos = pos[:, -1:] + 1
        gen: list[list[int]] = [[] for _ in chunk]
        done = [False] * len(chunk)
        for _ in range(limit):
            nxt = logits.argmax(-1)
            for i, token in enumerate(nxt.tolist()):  # one device-to-host copy a step, not one per row
                if not done[i]:
                    if token == tok.eos_id:
                        done[i] = True
                    else:
                        gen[i].append(token)
                        done[i] = len(gen[i]) >= caps[i]
            if all(done):
                break
            valid = torch.cat((valid, torch.ones((len(chunk), 1), dtype=torch.bool, device=dev)), dim=1)
            logits, _, cache = model.step(nxt[:, None], nxt_pos, valid, cache)
            nxt_pos = nxt_pos + 1
        out.extend(Decoded(tok.decode(g)) for g in gen)
    return out


def beam(model: GPT, tok: Tokenizer, problem: Problem, width: int = 8, max_new: int | None = None) -> Decoded:
    """Beam search by mean token log-probability (length-normalized, as `generate` does by default).

    A hypothesis's score is its summed log-probability over its tokens, `[EOS]` included. Under that
    normalization an open beam can still overtake a finished one (a long run of likely tokens raises
    its mean), so the search stops early only when no open beam can: its sum only falls, so the best
    it can reach is sum / (longest allowed length), and a beam whose bound is no better than the best
    finished hypothesis is dropped."""
    dev = _device(model)
    head = prompt_ids(tok, problem)
    idx = torch.tensor([head], device=dev)
    valid = torch.ones_like(idx, dtype=torch.bool)
    logits, _, cache = model.step(idx, torch.arange(len(head), device=dev)[None], valid, None)
    beams: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[tuple[list[int], float]] = []
    limit = min(budget(tok, problem) if max_new is None else max_new, model.cfg.block_size - len(head))

    def normalized(gs: tuple[list[int], float]) -> float:
        return gs[1] / (len(gs[0]) + 1)  # the tokens and its [EOS]

    for t in range(limit):
        logp = torch.log_softmax(logits, -1)  # (beams, vocab)
        scores = torch.tensor([s for _, s in beams], device=dev)[:, None] + logp
        top = scores.view(-1).topk(min(2 * width, scores.numel()))
        vocab = logp.shape[-1]
        keep: list[tuple[int, int, float]] = []
        for flat, score in zip(top.indices.tolist(), top.values.tolist(), strict=True):
            b, token = divmod(int(flat), vocab)
            if token == tok.eos_id:
                finished.append((beams[b][0], float(score)))
            elif len(keep) < width:
                keep.append((b, token, float(score)))
        if finished:
            best = max(normalized(f) for f in finished)
            keep = [k for k in keep if k[2] / (limit + 1) > best]  # the most it can reach, see above
        if not keep or t + 1 == limit:
            beams = [(beams[b][0] + [token], s) for b, token, s in keep]
            break
        order = torch.tensor([b for b, _, _ in keep], device=dev)
        cache = [(k[order], v[order]) for k, v in cache]
        beams = [(beams[b][0] + [token], s) for b, token, s in keep]
        seen = len(head) + t
        nxt = torch.tensor([[token] for _, token, _ in keep], device=dev)
        valid = torch.ones((len(keep), seen + 1), dtype=torch.bool, device=dev)
        logits, _, cache = model.step(nxt, torch.full((len(keep), 1), seen, device=dev), valid, cache)
    best_gs = max(finished or beams, key=normalized)
    return Decoded(tok.decode(best_gs[0]))


def _sample(logits: Tensor, temperature: float, gen: torch.Generator) -> int:
    if temperature <= 0:
        return int(logits.argmax(-1))
    probs = torch.softmax(logits / temperature, -1)
    return int(torch.multinomial(probs.cpu(), 1, generator=gen))


def _truncate(cache: Cache, n: int) -> Cache:
    return [(k[:, :, :n], v[:, :, :n]) for k, v in cache]


def retry_upon_regret(
    model: GPT,
    tok: Tokenizer,
    problem: Problem,
    detector: Detector,
    max_retries: int = 10,
    temperature: float = 1.0,
    seed: int = 0,
    max_new: int | None = None,
) -> Decoded:
    """Greedy, except that a step the detector rejects at "Define NAME as" is sampled again from its start."""
    dev = _device(model)
    gen = torch.Generator().manual_seed(seed)
    define, as_id = tok.encode("Define"), tok.encode("as")
    head = prompt_ids(tok, problem)
    idx = torch.tensor([head], device=dev)
    logits, hidden, cache = model.step(
        idx, torch.arange(len(head), device=dev)[None], torch.ones_like(idx).bool(), None
    )
    out: list[int] = []
    step_start = 0  # index in `out` where the current step began
    start_state = (logits, cache)
    regrets = 0
    resampling = False
    limit = min(budget(tok, problem) if max_new is None else max_new, model.cfg.block_size - len(head))
    while len(out) < limit:
        token = _sample(logits[0], temperature if resampling else 0.0, gen)
        if token == tok.eos_id:
            break
        out.append(token)
        n = len(head) + len(out)
        valid = torch.ones((1, n), dtype=torch.bool, device=dev)
        logits, hidden, cache = model.step(
            torch.tensor([[token]], device=dev), torch.tensor([[n - 1]], device=dev), valid, cache
        )
        if token == tok.period_id:
            step_start, start_state, resampling = len(out), (logits, cache), False
            continue
        step = out[step_start:]
        if token == as_id[0] and step[: len(define)] == define and step.count(as_id[0]) == 1 and regrets < max_retries:
            name = tok.decode(step[len(define) : -1]).strip()
            previous = [s for s in split_steps(tok.decode(out[:step_start])) if "[BACK]" not in s]
            if detector(problem, previous, name, hidden[0]):
                regrets += 1
                del out[step_start:]
                logits, cache = start_state[0], _truncate(start_state[1], len(head) + step_start)
                resampling = True
    return Decoded(tok.decode(out), regrets=regrets)


def perfect_detector(problem: Problem, previous: list[str], name: str, hidden: Tensor) -> bool:
    """The ground truth of "can_next": the step's parameter cannot be computed from what is defined yet."""
    return not can_next(problem, previous, name)
