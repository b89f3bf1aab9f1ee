"""Training tokens/s of mendlab's iGSM loop (`mistakes.train.train`) vs a bare torch loop, side by side.

Same model, same packed rows, same batches, same optimizer; the bare loop is the least a training step can
be (forward, backward, clip, AdamW step). What our loop adds (schedule, per-step bookkeeping, deterministic
batch choice, checkpoints) should cost little: the goal is a ratio >= 0.95. Each is timed after a warm-up,
alternating, best of `--rounds`.

    python bench/bench_mistakes_train.py [--steps 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from mendlab.mistakes.corpus import DataSpec, Rows, examples, pack
from mendlab.mistakes.igsm import GenConfig, problems
from mendlab.mistakes.model import GPT, GPTConfig
from mendlab.mistakes.tokenizer import tokenizer
from mendlab.mistakes.train import TrainConfig, batch_rows, optimizer, train


def bare(model: GPT, rows: Rows, cfg: TrainConfig) -> float:
    opt = optimizer(model, cfg)
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        b = rows.take(batch_rows(len(rows), step, cfg))
        _, loss = model(b.idx, b.targets, b.weights, b.doc, b.positions)
        assert loss is not None
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    return time.perf_counter() - t0


def ours(model: GPT, rows: Rows, cfg: TrainConfig, out: Path) -> float:
    t0 = time.perf_counter()
    train(model, rows, cfg, out)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = tokenizer()
    data = problems(GenConfig(op_min=2, op_max=6, max_instance=10), "train", 600, 0)
    rows = pack(examples(tok, data, DataSpec(0.2, "strong"), 0), 640, tok.pad_id)
    cfg = TrainConfig(steps=args.steps, batch_size=16, warmup=5, checkpoint_every=args.steps)
    mcfg = GPTConfig(tok.vocab_size, n_layer=4, n_head=4, n_embd=128, block_size=640)
    tokens = sum(rows.take(batch_rows(len(rows), s, cfg)).tokens for s in range(cfg.steps))
    bare(GPT(mcfg), rows, replace(cfg, steps=3))  # warm-up
    best_bare, best_ours = float("inf"), float("inf")
    for r in range(args.rounds):
        best_bare = min(best_bare, bare(GPT(mcfg), rows, cfg))
        with tempfile.TemporaryDirectory() as tmp:
            best_ours = min(best_ours, ours(GPT(mcfg), rows, cfg, Path(tmp) / f"r{r}"))
    print(f"model: {GPT(mcfg).n_params():,} parameters; {cfg.steps} steps of {cfg.batch_size} rows; {tokens:,} tokens")
    print(f"bare torch loop     : {tokens / best_bare:10,.0f} tokens/s")
    print(f"mendlab train loop  : {tokens / best_ours:10,.0f} tokens/s (with one checkpoint)")
    print(f"ratio ours / bare   : {best_bare / best_ours:.3f}  (goal >= 0.95)")


if __name__ == "__main__":
    main()
