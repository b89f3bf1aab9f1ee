"""Training tokens/s of `mendlab train sft`'s trainer (TRL's SFTTrainer as `train_sft` builds it) vs a bare
torch loop, on the same model, LoRA, batches and tokens.

The bare loop is the least a step can be: forward with labels, backward, clip, AdamW step. What the trainer
adds (accelerate, the scheduler, logging every step with our token counts, the progress bar) should cost
little: the goal is a ratio >= 0.9. Both are timed after warm-up steps, from the end of one step to the end
of the last, alternating, best of `--rounds`; no checkpoint falls inside the timed steps (a checkpoint is
disk time, once every --save-steps). The trainer's start-up (its first step less a steady one: dataloader,
accelerate's prepare, the first forward's allocations) is shown apart.

    python bench/bench_train_sft.py [--steps 12] [--rounds 2] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from transformers import TrainerCallback

from mendlab.training.sft import (
    SFTOptions,
    build_trainer,
    hf_folder,
    label_all,
    load_model,
    lora_config,
    quiet,
    read_conversations,
    resolve_base,
    sft_config,
    training_tokenizer,
)

WARMUP = 2
NAMES = ["Ana", "Bo", "Cyril", "Dee", "Evelyn", "Finn", "Gus", "Hal", "Ines", "Jo", "Kai", "Lena", "Mo", "Nia"]


def dialogues(n: int) -> list[dict[str, Any]]:
    """(mistake, feedback, fix) dialogues like `mendlab data build` writes: the wrong turn untrained."""
    rows = []
    for i in range(n):
        who, day, hour = NAMES[i % len(NAMES)], 1 + i % 28, 8 + i % 10
        wrong = f'action.add_calendar_entry("Meeting with {who}", date="2023-03-{day:02d}", time="{hour}:00")'
        right = wrong.replace("2023", "2026")
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "Translate requests into calls of action.add_calendar_entry."},
                    {"role": "user", "content": f"Add a meeting with {who} on March {day} at {hour}:00, 30 minutes."},
                    {"role": "assistant", "content": wrong, "weight": 0},
                    {"role": "user", "content": "The year is wrong: it is 2026. Fix the call."},
                    {"role": "assistant", "content": right},
                ]
            }
        )
    return rows


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.ends.append(time.perf_counter())


def run_ours(opts: SFTOptions, folder: Path, tokenizer: Any, examples: Any, out: Path) -> tuple[float, float, Any]:
    """(steady tokens/s, start-up seconds, the batches it trained on)."""
    model = load_model(folder, opts, tokenizer)
    clock = StepClock()
    trainer = build_trainer(opts, sft_config(opts, out, "fp32"), model, tokenizer, examples, [clock])
    batches = list(trainer.get_train_dataloader())  # the order it trains in (a seeded sampler per epoch)
    t0 = time.perf_counter()
    trainer.train()
    tokens = [h["tokens"] for h in trainer.state.log_history if "tokens" in h]
    assert len(tokens) == opts.max_steps
    steady = (tokens[-1] - tokens[WARMUP - 1]) / (clock.ends[-1] - clock.ends[WARMUP - 1])
    step = (clock.ends[-1] - clock.ends[WARMUP - 1]) / (len(clock.ends) - WARMUP)
    return steady, clock.ends[0] - t0 - step, batches  # start-up: the first step less a steady one


def run_bare(opts: SFTOptions, folder: Path, tokenizer: Any, batches: list[dict[str, Any]], steps: int) -> float:
    from peft import get_peft_model

    torch.manual_seed(opts.seed)
    base = load_model(folder, opts, tokenizer)
    model = get_peft_model(base, lora_config(opts, base, tokenizer))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=opts.lr, weight_decay=0.0)
    ends, tokens = [], []
    for step in range(steps):
        b = batches[step % len(batches)]
        out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"], use_cache=False)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opts.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ends.append(time.perf_counter())
        tokens.append(int(b["attention_mask"].sum()))
    return sum(tokens[WARMUP:]) / (ends[-1] - ends[WARMUP - 1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--model", default="smollm2-135m")
    args = ap.parse_args()
    console = Console(stderr=True)
    with quiet(), tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "dialogues.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in dialogues(32)), encoding="utf-8")
        opts = SFTOptions(
            model=args.model,
            data=data,
            out=Path(tmp) / "out",
            max_steps=args.steps,
            batch_size=args.batch_size,
            save_steps=10**6,
            scheduler="constant",
            register=False,
        )
        tokenizer = training_tokenizer(opts.model, None)
        examples = label_all(tokenizer, read_conversations(data), opts.max_length, False, console.print)
        folder = hf_folder(resolve_base(opts.model, None).path, console)
        ours, bare, start = [], [], []
        for r in range(args.rounds):
            tps, first, batches = run_ours(opts, folder, tokenizer, examples, Path(tmp) / f"out{r}")
            ours.append(tps)
            start.append(first)
            bare.append(run_bare(opts, folder, tokenizer, batches, args.steps))
            console.print(f"round {r + 1}: trainer {ours[-1]:.0f} tokens/s, bare loop {bare[-1]:.0f} tokens/s")
    per_step = sum(len(e.labeled.input_ids) for e in examples) / len(examples) * args.batch_size
    print(
        f"{args.model}, LoRA r={opts.lora_r} all-linear, batch {args.batch_size} (~{per_step:.0f} tokens/step), "
        f"{args.steps} steps ({WARMUP} warm-up), {torch.get_num_threads()} threads"
    )
    print(f"mendlab train sft (TRL SFTTrainer): {max(ours):.0f} tokens/s; start-up {min(start):.1f} s")
    print(f"bare torch loop:                    {max(bare):.0f} tokens/s")
    print(f"ratio: {max(ours) / max(bare):.3f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
