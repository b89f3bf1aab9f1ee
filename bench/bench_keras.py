"""The keras backend (KerasHub on JAX) against the transformers backend, on the same fp32 weights.

    python bench/bench_keras.py [--model smollm2-135m] [--reps 3] [--max-tokens 64]

Prints generation tokens/s of each and their ratio (keras / transformers, same greedy answers), and,
apart from it, the JIT compile time keras pays once per prompt shape: cold (an empty compilation
cache) and warm (a new process that finds the compiled functions in mendlab's disk cache, simulated
by a second model in this one).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from rich.console import Console
from rich.table import Table

from mendlab.models import Message, SamplingParams, load_model, load_registry, model_path
from mendlab.models.kerashub import KerasModel, compile_seconds

PROMPT = [Message("user", "Write a long story about a calendar that keeps forgetting the year.")]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mendlab-jax-") as jax_cache:  # removed after, even on error
        bench(jax_cache)


def bench(jax_cache: str) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    console = Console()
    registry = load_registry()
    params = SamplingParams(max_tokens=args.max_tokens)

    import jax  # before the backend imports it: a fresh compilation cache, so the first compile is cold

    jax.config.update("jax_compilation_cache_dir", jax_cache)
    start = time.perf_counter()
    spec = registry.get(f"{args.model}@keras")
    keras = load_model(spec)
    assert isinstance(keras, KerasModel)
    load_s = time.perf_counter() - start
    before = compile_seconds()
    start = time.perf_counter()
    (first,) = keras.chat(PROMPT, params)
    first_call_s = time.perf_counter() - start
    cold = compile_seconds() - before

    warm_model = KerasModel("warm", model_path(spec))  # new jitted functions, the same disk cache
    before = compile_seconds()
    start = time.perf_counter()
    warm_model.chat(PROMPT, params)
    warm_call_s = time.perf_counter() - start
    warm = compile_seconds() - before
    warm_model.close()

    hf = load_model(registry.get(f"{args.model}@transformers"))
    hf.chat(PROMPT, params)  # warmed up, as keras is by its compile calls above: the reps time generation alone
    k_tps: list[float] = []
    h_tps: list[float] = []
    k_decode: list[float] = []
    same = True
    for _ in range(args.reps):  # interleaved, so drift in machine load hits both alike
        (k,) = keras.chat(PROMPT, params)
        (h,) = hf.chat(PROMPT, params)
        same = same and k.text == h.text == first.text
        k_tps.append(k.completion_tokens / k.latency_s)
        h_tps.append(h.completion_tokens / h.latency_s)
        k_decode.append(k.tokens_per_s)
    keras.close()
    hf.close()

    k_med, h_med = statistics.median(k_tps), statistics.median(h_tps)
    table = Table(title=f"keras (JAX) vs transformers (torch), {args.model}, fp32 on {keras.info.extra['platform']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("keras tokens/s (end to end, median)", f"{k_med:.1f}")
    table.add_row("keras tokens/s (after the first token)", f"{statistics.median(k_decode):.1f}")
    table.add_row("transformers tokens/s (end to end, median)", f"{h_med:.1f}")
    table.add_row("[bold]ratio keras / transformers", f"[bold]{k_med / h_med:.2f}")
    table.add_row("same greedy text", str(same))
    table.add_row("keras load (convert cached)", f"{load_s:.1f} s")
    table.add_row("JIT compile, cold (first call)", f"{cold:.1f} s of a {first_call_s:.1f} s call")
    table.add_row("JIT compile, warm disk cache", f"{warm:.1f} s of a {warm_call_s:.1f} s call")
    console.print(table)
    console.print(
        f"{args.max_tokens} greedy tokens, {args.reps} reps; compile is paid once per (samples, prompt length, "
        "answer length) bucket, then reused"
    )


if __name__ == "__main__":
    main()
