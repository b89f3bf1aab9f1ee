"""Graded calendar dialogs per minute: mendlab (generation + grading + store) vs the same generations
made directly with llama-cpp-python, side by side in one run.

    python bench/bench_calendar.py [--model qwen2.5-coder-0.5b] [--dialogs 2]

Greedy decoding, so both sides produce the same tokens: the ratio is the price of grading,
feedback rules and bookkeeping (SQLite writes, resume keys), nothing else.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import llama_cpp
from rich.console import Console
from rich.table import Table

from mendlab.dialogs.experiments import play_dialog
from mendlab.dialogs.scenario import load_scenario
from mendlab.models import SamplingParams, load_model, load_registry, model_path
from mendlab.store import ResultsStore
from mendlab.store.recorded import RecordedModel

THREADS = os.cpu_count() or 1  # what mendlab's backend uses by default


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--dialogs", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    console = Console()
    scenario = load_scenario("calendar")
    spec = load_registry().get(args.model)
    params = SamplingParams(max_tokens=args.max_tokens)

    with tempfile.TemporaryDirectory() as tmp, ResultsStore(Path(tmp) / "bench.db") as store:
        model = load_model(spec)
        start = time.perf_counter()
        tokens_ours = 0
        for i in range(args.dialogs):
            recorded = RecordedModel(model, store, f"bench-{i}")  # a new run each time: nothing reused
            with console.status(f"mendlab dialog {i + 1}/{args.dialogs}"):
                play_dialog(recorded, scenario, params, "pointed", max_fixes=3)
        t_ours = time.perf_counter() - start
        model.close()
        asked = [r for r in store.generations() if r.run_id == "bench-0"]
        tokens_ours = sum(r.completion_tokens for r in store.generations())

    raw = llama_cpp.Llama(
        model_path=str(model_path(spec)), n_ctx=spec.n_ctx, n_threads=THREADS, n_threads_batch=THREADS, verbose=False
    )
    start = time.perf_counter()
    tokens_raw = 0
    for i in range(args.dialogs):
        with console.status(f"raw llama-cpp-python dialog {i + 1}/{args.dialogs}"):
            for rec in asked:
                out = raw.create_chat_completion(
                    messages=[m.to_openai() for m in rec.messages],  # type: ignore[misc]
                    temperature=0.0,
                    max_tokens=args.max_tokens,
                )
                tokens_raw += out["usage"]["completion_tokens"]  # type: ignore[index]
    t_raw = time.perf_counter() - start
    raw.close()

    per_min_ours = args.dialogs / t_ours * 60
    per_min_raw = args.dialogs / t_raw * 60
    table = Table(title=f"Graded calendar dialogs per minute — {args.model}, greedy", title_justify="left")
    for col in ("", "dialogs/min", "seconds", "completion tokens", "generations per dialog"):
        table.add_column(col)
    table.add_row(
        "mendlab (generate + grade + store)", f"{per_min_ours:.2f}", f"{t_ours:.1f}", str(tokens_ours), str(len(asked))
    )
    table.add_row(
        "raw llama-cpp-python (same prompts)", f"{per_min_raw:.2f}", f"{t_raw:.1f}", str(tokens_raw), str(len(asked))
    )
    console.print(table)
    console.print(f"ratio mendlab / raw: {per_min_ours / per_min_raw:.3f} (1.0 = no overhead)")


if __name__ == "__main__":
    main()
