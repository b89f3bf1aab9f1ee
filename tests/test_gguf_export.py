"""The GGUF export: the tuned weights under the base's tensor names and metadata, read by llama.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mendlab.errors import MendlabError
from mendlab.models import Message, SamplingParams, load_model, model_path
from mendlab.models.registry import ModelSpec, Registry

pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")


def _weights(path: Path) -> dict[str, np.ndarray]:
    reader = gguf.GGUFReader(str(path))
    return {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in reader.tensors}


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma-3-270m-base"])  # qwen2: by hand (README), 90 s more
def test_the_base_round_trips_exactly_through_transformers(registry: Registry, tmp_path: Path, name: str) -> None:
    """GGUF → transformers (dequantized) → GGUF f32 gives back every weight of the base, bit for bit:
    llama's q/k permutation and Gemma's `norm - 1` are undone, tied outputs stay tied, names match."""
    from mendlab.training.gguf_export import export_gguf
    from mendlab.training.sft import hf_folder

    base = model_path(registry.get(name))
    out = export_gguf(hf_folder(base), base, tmp_path / "rt.gguf", "f32")
    want, got = _weights(base), _weights(out)
    assert list(got) == list(want)  # the base's tensors, in its order
    for k in want:
        assert got[k].shape == want[k].shape and np.array_equal(got[k], want[k]), k
    a, b = gguf.GGUFReader(str(base)), gguf.GGUFReader(str(out))
    for key in (
        "tokenizer.ggml.tokens",
        "tokenizer.chat_template",
        f"{b.fields['general.architecture'].contents()}.context_length",
    ):
        if key in a.fields:
            assert b.fields[key].contents() == a.fields[key].contents(), key
    assert b.fields["general.file_type"].contents() == 0  # ALL_F32
    assert b.fields["general.quantization_version"].contents() == 2


def test_llama_cpp_runs_the_export_as_transformers_runs_the_folder(registry: Registry, tmp_path: Path) -> None:
    from mendlab.training.gguf_export import export_gguf
    from mendlab.training.sft import hf_folder

    base = model_path(registry.get("smollm2-135m"))
    folder = hf_folder(base)
    out = export_gguf(folder, base, tmp_path / "smol-f32.gguf", "f32")
    ask = [Message("user", "Add a meeting with Fred on Nov 11 at 5PM. Reply with the API call.")]
    greedy = SamplingParams(temperature=0.0, max_tokens=12)
    texts = []
    for spec in (
        ModelSpec("exported", "llama.cpp", path=str(out), n_ctx=512),
        ModelSpec("folder", "transformers", path=str(folder), dtype="float32"),
    ):
        model = load_model(spec)
        try:
            texts.append(model.chat(ask, greedy)[0].text)
        finally:
            model.close()
    assert texts[0] == texts[1] and texts[0].strip()
    q8 = export_gguf(folder, base, tmp_path / "smol-q8.gguf", "q8_0")
    types = {t.tensor_type.name for t in gguf.GGUFReader(str(q8)).tensors}
    assert types == {"Q8_0", "F32"} and q8.stat().st_size < out.stat().st_size / 3


def test_a_changed_vocabulary_or_a_bad_type_is_refused(registry: Registry, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from mendlab.training.gguf_export import export_gguf
    from mendlab.training.sft import hf_folder

    base = model_path(registry.get("smollm2-135m"))
    model = AutoModelForCausalLM.from_pretrained(str(hf_folder(base)), dtype=torch.float32)
    model.resize_token_embeddings(model.config.vocab_size + 4)  # what the StarChat recipe does
    model.save_pretrained(tmp_path / "grown")
    with pytest.raises(MendlabError, match=r"49156 tokens, its base .* 49152: a model with a new vocabulary"):
        export_gguf(tmp_path / "grown", base, tmp_path / "x.gguf")
    with pytest.raises(MendlabError, match="--gguf-type 'q3': one of q8_0, f16, f32"):
        export_gguf(tmp_path / "grown", base, tmp_path / "x.gguf", "q3")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".x.gguf*"))  # nothing half-written
