"""A tuned HF folder back to GGUF, so llama.cpp (the arena, every fast path) runs it.

llama.cpp's own converter ships only in its source tree, which no installed package carries; but
the model was tuned from a GGUF, and that file already holds everything llama.cpp needs besides the
weights: the architecture's hyperparameters, the tokenizer, the chat template. So the export copies
the base file's metadata as it is and writes the tuned weights under the base's tensor names, each
undoing what transformers did when it read the GGUF (llama's q/k row permutation, Gemma's `norm - 1`).
It is therefore only for a model whose shapes and vocabulary are the base's (LoRA merged, or full
fine-tuning); a model with new tokens (the StarChat recipe) is refused, since its tokenizer is no
longer the one the metadata describes. The comparison a before/after needs is also why `base` can be
exported unchanged: the same dequantize-requantize path on both sides, so only the tuning differs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mendlab.errors import MendlabError

QTYPES = ("q8_0", "f16", "f32")
ARCHS = ("llama", "qwen2", "gemma3")  # the ones whose name mapping and weight transforms are tested


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's row order for q/k (convert_hf_to_gguf's `permute`): the inverse of transformers'
    `_reverse_permute_weights`."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field_value(field: Any) -> tuple[Any, Any, Any]:
    """(value, type, element type) of a reader field, as GGUFWriter.add_key_value takes them."""
    from gguf import GGUFValueType

    main = field.types[0]
    value = field.contents()
    if main == GGUFValueType.ARRAY:
        return value, main, field.types[-1]
    return value, main, None


def export_gguf(hf_dir: Path, base: Path, out: Path, qtype: str = "q8_0") -> Path:
    """Write `out` (atomically: whole or not at all) from the weights in `hf_dir` and the metadata of
    `base`, the GGUF they were tuned from."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    if qtype not in QTYPES:
        raise MendlabError(f"--gguf-type {qtype!r}: one of {', '.join(QTYPES)}")
    reader = gguf.GGUFReader(str(base))
    arch = str(reader.fields["general.architecture"].contents())
    if arch not in ARCHS:
        raise MendlabError(f"{base}: GGUF export supports {', '.join(ARCHS)} models, not {arch!r}")
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32, local_files_only=True)
    config = model.config
    vocab = int(config.vocab_size)
    base_tensors = {t.name: t for t in reader.tensors}
    rows = int(base_tensors["token_embd.weight"].shape[-1])  # GGUF shapes are innermost-first
    if vocab != rows:
        raise MendlabError(
            f"{hf_dir}: {vocab} tokens, its base {base.name} {rows}: a model with a new vocabulary cannot reuse "
            "the base's tokenizer metadata (use it as NAME@transformers)"
        )
    arch_id = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    names = gguf.get_tensor_name_map(arch_id, int(config.num_hidden_layers))
    n_head, n_kv = int(config.num_attention_heads), int(config.num_key_value_heads)
    wanted = {
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
        "f16": gguf.GGMLQuantizationType.F16,
        "f32": gguf.GGMLQuantizationType.F32,
    }[qtype]
    file_type = {"q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "f16": gguf.LlamaFileType.MOSTLY_F16}.get(
        qtype, gguf.LlamaFileType.ALL_F32
    )

    tensors: dict[str, np.ndarray] = {}
    for hf_name, value in model.state_dict().items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise MendlabError(f"{hf_dir}: no GGUF name for the weight {hf_name}")
        if name in tensors:  # a tied output: the base has token_embd only
            continue
        w = value.detach().to(torch.float32).numpy()
        if arch == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
            w = _permute(w, n_head if "attn_q" in name else n_kv)
        if arch == "gemma3" and name.endswith("norm.weight"):
            w = w + 1
        tensors[name] = w
    tensors = {k: v for k, v in tensors.items() if k in base_tensors or k != "output.weight"}
    if set(tensors) != set(base_tensors):
        missing, extra = sorted(set(base_tensors) - set(tensors)), sorted(set(tensors) - set(base_tensors))
        raise MendlabError(f"{hf_dir}: its weights are not {base.name}'s (missing {missing[:3]}, extra {extra[:3]})")

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type"):
                continue
            value, vtype, sub = _field_value(field)
            writer.add_key_value(key, value, vtype, sub_type=sub)
        writer.add_file_type(int(file_type))
        for t in reader.tensors:  # the base's order
            w = tensors[t.name]
            if w.ndim == 1 or wanted == gguf.GGMLQuantizationType.F32 or w.shape[-1] % 32:
                writer.add_tensor(t.name, w.astype(np.float32))
            elif wanted == gguf.GGMLQuantizationType.F16:
                writer.add_tensor(t.name, w.astype(np.float16))
            else:
                writer.add_tensor(t.name, gguf.quants.quantize(w, wanted), raw_dtype=wanted)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out
