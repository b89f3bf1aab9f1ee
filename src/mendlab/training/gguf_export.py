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

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mendlab.errors import MendlabError

QTYPES = ("q8_0", "f16", "f32")
ARCHS = ("llama", "qwen2", "gemma3")  # round-tripped bit for bit: llama, gemma3 in the tests, qwen2 by hand


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


EXPORT_VERSION = 1  # bump when what an export writes changes: older files are then written again


def check_exportable(base: Path) -> str:
    """The base's architecture, or a one-line refusal, before hours of work depend on the export."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(base))
    except (OSError, ValueError) as exc:
        raise MendlabError(f"{base}: not a readable GGUF file ({exc})") from None
    arch = str(reader.fields["general.architecture"].contents())
    if arch not in ARCHS:
        raise MendlabError(f"{base}: GGUF export supports {', '.join(ARCHS)} models, not {arch!r}")
    return arch


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def _weights_digest(folder: Path) -> str:
    """The weights' bytes and the config that shapes them."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise MendlabError(f"{folder}: no *.safetensors weights to export")
    h = hashlib.sha256()
    for path in [*files, *([folder / "config.json"] if (folder / "config.json").is_file() else [])]:
        h.update(path.name.encode())
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                h.update(chunk)
    return h.hexdigest()


def export_stamp(hf_dir: Path, base: Path, qtype: str) -> dict[str, Any]:
    """What an export is made of: the weights' bytes, the base file, the type, this code's version."""
    return {
        "weights_sha256": _weights_digest(hf_dir),
        "base_sha256": file_sha256(base),
        "qtype": qtype,
        "export_version": EXPORT_VERSION,
    }


def same_source(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two stamps of the same weights, base and type (the export's version aside)."""
    keys = ("weights_sha256", "base_sha256", "qtype")
    return all(a.get(k) == b.get(k) for k in keys)


def stamp_path(gguf_file: Path) -> Path:
    return gguf_file.with_name(gguf_file.name + ".json")


def read_stamp(gguf_file: Path) -> dict[str, Any] | None:
    """The stamp of an export that is complete (file and stamp, the file of the size the stamp says),
    else None."""
    sp = stamp_path(gguf_file)
    if not gguf_file.is_file() or not sp.is_file():
        return None
    try:
        data = json.loads(sp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("size") != gguf_file.stat().st_size:
        return None
    return data


def _added_tokens_missing(hf_dir: Path, tokens: list[str]) -> list[str]:
    """Tokens the tuned model's tokenizer added that the base GGUF's vocabulary does not hold at that id
    (a GGUF's embedding may be padded beyond its vocabulary, so row counts alone cannot tell)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(hf_dir))
    except (OSError, ValueError):
        return []  # no tokenizer saved: the rows check is all there is
    return [t for t, i in tok.get_added_vocab().items() if i >= len(tokens) or tokens[i] != t]


def export_gguf(
    hf_dir: Path,
    base: Path,
    out: Path,
    qtype: str = "q8_0",
    *,
    stamp: dict[str, Any] | None = None,
    label: str | None = None,
) -> Path:
    """Write `out` (atomically: whole or not at all) from the weights in `hf_dir` and the metadata of
    `base`, the GGUF they were tuned from; then `stamp` beside it (OUT.json), last. `label` becomes
    the file's `general.name`, so the two files of a before/after tell themselves apart."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    if qtype not in QTYPES:
        raise MendlabError(f"--gguf-type {qtype!r}: one of {', '.join(QTYPES)}")
    arch = check_exportable(base)
    reader = gguf.GGUFReader(str(base))
    try:
        model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise MendlabError(f"{hf_dir}: cannot load it through transformers: {str(exc).splitlines()[0]}") from None
    config = model.config
    vocab = int(config.vocab_size)
    base_tensors = {t.name: t for t in reader.tensors}
    rows = int(base_tensors["token_embd.weight"].shape[-1])  # GGUF shapes are innermost-first
    tokens = reader.fields["tokenizer.ggml.tokens"].contents() if "tokenizer.ggml.tokens" in reader.fields else []
    missing_tokens = _added_tokens_missing(hf_dir, tokens)
    if vocab != rows or missing_tokens:
        what = f"{vocab} tokens, its base {base.name} {rows}" if vocab != rows else f"new tokens {missing_tokens[:4]}"
        raise MendlabError(
            f"{hf_dir}: {what}: a model with a new vocabulary cannot reuse the base's tokenizer metadata "
            "(use it as NAME@transformers)"
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

    state = model.state_dict()
    tensors: dict[str, np.ndarray] = {}
    for hf_name, value in state.items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise MendlabError(f"{hf_dir}: no GGUF name for the weight {hf_name}")
        w = value.detach().to(torch.float32).numpy()
        if arch == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
            w = _permute(w, n_head if "attn_q" in name else n_kv)
        if arch == "gemma3" and name.endswith("norm.weight"):
            w = w + 1
        tensors[name] = w
    if "output.weight" in tensors and "output.weight" not in base_tensors:
        # the base ties its output to the embeddings: the tuned head must still be them
        if not np.array_equal(tensors["output.weight"], tensors["token_embd.weight"]):
            raise MendlabError(f"{hf_dir}: its output head is no longer its embeddings, and {base.name} ties them")
        del tensors["output.weight"]
    missing = sorted(set(base_tensors) - set(tensors))
    extra = sorted(set(tensors) - set(base_tensors))
    if extra or any(not m.startswith("rope_freqs") for m in missing):
        raise MendlabError(f"{hf_dir}: its weights are not {base.name}'s (missing {missing[:3]}, extra {extra[:3]})")

    out.parent.mkdir(parents=True, exist_ok=True)
    stamp_path(out).unlink(missing_ok=True)  # a file without its stamp is never taken for done
    for left in out.parent.glob(f".{out.name}.*.tmp"):  # what a killed export left (hundreds of MB)
        left.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        skip = ("general.architecture", "general.file_type", "general.quantization_version", "general.name")
        for key, field in reader.fields.items():
            if key.startswith(("GGUF.", "quantize.")) or key in skip:  # quantize.*: the base's imatrix, not ours
                continue
            value, vtype, sub = _field_value(field)
            writer.add_key_value(key, value, vtype, sub_type=sub)
        old_name = str(reader.fields["general.name"].contents()) if "general.name" in reader.fields else out.stem
        writer.add_name(label or old_name)
        writer.add_file_type(int(file_type))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for t in reader.tensors:  # the base's order
            if t.name not in tensors:  # not a learned weight (llama 3's rope_freqs): the base's bytes
                writer.add_tensor(t.name, np.array(t.data), raw_shape=list(reversed(t.shape.tolist())),
                                  raw_dtype=t.tensor_type)  # fmt: skip
                continue
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
    if stamp is not None:
        text = json.dumps({**stamp, "size": out.stat().st_size}, indent=2) + "\n"
        sp = stamp_path(out)
        sp.with_name(sp.name + ".tmp").write_text(text, encoding="utf-8")
        os.replace(sp.with_name(sp.name + ".tmp"), sp)
    return out
