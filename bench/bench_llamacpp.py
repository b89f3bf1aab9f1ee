"""mendlab's llama.cpp backend against raw llama-cpp-python, measured side by side in one run.

    python bench/bench_llamacpp.py [--model qwen2.5-coder-0.5b] [--reps 3]

Prints three ratios:
1. generation tokens/s, mendlab / raw `Llama.create_completion` (goal >= 0.95);
2. prompt tokens evaluated over a 6-turn dialog, with KV-cache reuse and without, each divided by
   the unique tokens of the final history (goal with reuse <= 1.2; without, it grows quadratically);
3. 5 samples of one prompt: time of one n=5 call vs 5 independent calls from a cold cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace

import llama_cpp
from rich.console import Console
from rich.table import Table

from mendlab.demo import CALENDAR_SYSTEM_PROMPT
from mendlab.models import Message, SamplingParams, load_model, load_registry, model_path
from mendlab.models.llamacpp import LlamaCppModel

DIALOG = (
    "Add a meeting with Fred on Nov 11 at 5PM",
    "The current year is 2024.",
    "I'm going to a rock concert in the evening of the same day at 8pm. Add a calendar entry for that.",
    "Set the duration to 3 hours.",
    "Add a meeting with Paul on the next day at 8am. 1/2h.",
    "Cancel the meeting with Fred.",
)


THREADS = os.cpu_count() or 1  # what mendlab's backend uses by default


def bench_throughput(name: str, reps: int, max_tokens: int) -> tuple[float, float]:
    spec = load_registry().get(name)
    ours = load_model(spec, cache_reuse=False)
    assert isinstance(ours, LlamaCppModel)
    raw = llama_cpp.Llama(
        model_path=str(model_path(spec)), n_ctx=spec.n_ctx, n_threads=THREADS, n_threads_batch=THREADS, verbose=False
    )
    msgs = [Message("user", "Write a long story about a calendar that keeps forgetting the year.")]
    tokens = ours.tokenize_prompt(msgs)
    params = SamplingParams(max_tokens=max_tokens)
    ours_tps, raw_tps = [], []
    for _ in range(reps):  # interleaved, so drift in machine load hits both alike
        (c,) = ours.chat(msgs, params)
        ours_tps.append(c.completion_tokens / (c.latency_s - (c.first_token_s or 0)))
        raw.reset()
        start = time.perf_counter()
        first = None
        n = 0
        for _chunk in raw.create_completion(tokens, max_tokens=max_tokens, temperature=0.0, stream=True):
            if first is None:
                first = time.perf_counter()
            n += 1
        raw_tps.append(n / (time.perf_counter() - (first or start)))
    ours.close()
    raw.close()
    return statistics.median(ours_tps), statistics.median(raw_tps)


def bench_dialog(name: str) -> tuple[int, int, int, int]:
    spec = load_registry().get(name)
    params = SamplingParams(max_tokens=64)
    totals = []
    final_unique = 0
    fed_back = 0  # generated tokens evaluated during generation (the same with or without reuse)
    for reuse in (True, False):
        model = load_model(spec, cache_reuse=reuse)
        history = [Message("system", CALENDAR_SYSTEM_PROMPT)]
        evaluated = 0
        for user in DIALOG:
            history.append(Message("user", user))
            (c,) = model.chat(history, params)
            evaluated += c.prompt_tokens_evaluated or 0
            fed_back += max(0, c.completion_tokens - 1) if reuse else 0
            history.append(Message("assistant", c.text))
            final_unique = c.prompt_tokens + c.completion_tokens
        totals.append(evaluated)
        model.close()
    return totals[0], totals[1], final_unique, fed_back


def bench_samples(name: str, n: int) -> tuple[float, float]:
    spec = load_registry().get(name)
    msgs = [Message("system", CALENDAR_SYSTEM_PROMPT), Message("user", DIALOG[0])]
    params = SamplingParams(n=n, temperature=0.8, max_tokens=48, seed=1)
    shared = load_model(spec)
    start = time.perf_counter()
    batch = shared.chat(msgs, params)
    t_shared = time.perf_counter() - start
    shared.close()
    cold = load_model(spec, cache_reuse=False)
    start = time.perf_counter()
    singles = [cold.chat(msgs, replace(params, n=1, seed=params.seed + i))[0] for i in range(n)]
    t_cold = time.perf_counter() - start
    cold.close()
    # Same seeds; llama.cpp's rounding differs between a cached and a cold prompt, so texts may too.
    assert len(batch) == len(singles) == n
    return t_shared, t_cold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    console = Console()
    with console.status("throughput…"):
        ours, raw = bench_throughput(args.model, args.reps, args.max_tokens)
    with console.status("6-turn dialog…"):
        with_reuse, without, unique, fed_back = bench_dialog(args.model)
    with console.status("5 samples…"):
        t_shared, t_cold = bench_samples(args.model, 5)
    table = Table(title=f"mendlab llama.cpp backend vs raw llama-cpp-python — {args.model}", title_justify="left")
    for col in ("measure", "mendlab", "baseline", "ratio", "goal"):
        table.add_column(col)
    table.add_row("generation tok/s", f"{ours:.1f}", f"{raw:.1f} (raw)", f"{ours / raw:.3f}", ">= 0.95")
    table.add_row(
        "6-turn dialog: prompt tokens evaluated / unique",
        f"{with_reuse} / {unique}",
        f"{without} / {unique} (no reuse)",
        f"{with_reuse / unique:.2f} vs {without / unique:.2f}",
        "<= 1.2 with reuse",
    )
    table.add_row(
        "6-turn dialog: all tokens through the model / unique",
        f"{with_reuse + fed_back} / {unique}",
        f"{without + fed_back} / {unique}",
        f"{(with_reuse + fed_back) / unique:.2f} vs {(without + fed_back) / unique:.2f}",
        "",
    )
    table.add_row(
        "5 samples of one prompt (s)",
        f"{t_shared:.2f} (n=5)",
        f"{t_cold:.2f} (5 cold calls)",
        f"{t_shared / t_cold:.2f}",
        "< 1",
    )
    console.print(table)


if __name__ == "__main__":
    main()
