"""Model backends behind one `ChatModel` protocol, and the registry that names them."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from mendlab.errors import ModelUnavailable, NoChatTemplate
from mendlab.models.base import (
    ChatModel,
    Completion,
    Message,
    ModelInfo,
    SamplingParams,
    StreamDelta,
)
from mendlab.models.bundled import resolve as resolve_bundle
from mendlab.models.registry import ModelSpec, Registry, load_registry

__all__ = [
    "ChatModel",
    "Completion",
    "MemoryKind",
    "Message",
    "ModelInfo",
    "ModelSpec",
    "Registry",
    "SamplingParams",
    "StreamDelta",
    "chat_many",
    "load_model",
    "load_registry",
    "memory_kind",
    "model_path",
]

MemoryKind = Literal["ram", "gpu", "none"]


def model_path(spec: ModelSpec) -> Path:
    """The local file or folder behind a spec, joining and verifying bundled parts on first use."""
    if spec.bundle is not None:
        return resolve_bundle(spec.bundle, spec.name)
    if spec.path is None:
        raise ModelUnavailable(f"model {spec.name!r} has no local path")
    path = Path(spec.path)
    if not path.exists():
        raise ModelUnavailable(f"model {spec.name!r}: {path} does not exist ({spec.origin})")
    return path


def load_model(spec: ModelSpec, *, cache_reuse: bool = True) -> ChatModel:
    """Build the backend for a spec. Heavy imports (torch) happen only for the backend asked for."""
    if not spec.chat and spec.chat_template is None:
        raise NoChatTemplate(
            f"model {spec.name!r} is a base model with no chat template: refusing to chat with it "
            '(give chat_template = "file.jinja" in mendlab.toml to override)'
        )
    if spec.backend == "openai":
        from mendlab.models.endpoint import OpenAIModel

        assert spec.base_url is not None and spec.model is not None
        return OpenAIModel(
            spec.name,
            spec.base_url,
            spec.model,
            api_key_env=spec.api_key_env,
            concurrency=spec.concurrency,
            timeout_s=spec.timeout_s,
            max_retries=spec.max_retries,
        )
    path = model_path(spec)
    if spec.backend == "llama.cpp":
        from mendlab.models.llamacpp import LlamaCppModel

        return LlamaCppModel(
            spec.name,
            path,
            n_ctx=spec.n_ctx,
            n_threads=spec.n_threads,
            n_gpu_layers=spec.n_gpu_layers,
            chat_template=spec.chat_template,
            cache_reuse=cache_reuse,
            source=spec.source(),
        )
    if spec.backend == "keras":
        from mendlab.models.kerashub import KerasModel, Sharding

        sharding = Sharding(spec.mesh, spec.mesh_axes) if spec.mesh is not None else None
        return KerasModel(
            spec.name,
            path,
            dtype=spec.dtype,
            sharding=sharding,
            chat_template=spec.chat_template,
            source=spec.source(),
        )
    from mendlab.models.hf import TransformersModel

    return TransformersModel(
        spec.name, path, dtype=spec.dtype, device=spec.device, chat_template=spec.chat_template, source=spec.source()
    )


def memory_kind(spec: ModelSpec) -> MemoryKind:
    """Which memory the model will fill once `load_model` has placed it, known before loading it, so a
    budget can make room in the right one: a CUDA model costs GPU memory, not RAM ("none": remote)."""
    if spec.backend == "openai":
        return "none"
    if spec.backend == "keras":
        from mendlab.models.kerashub import platform

        return "ram" if platform() == "cpu" else "gpu"  # a TPU's memory counts as the GPU's
    if spec.backend == "transformers":
        if spec.device != "auto":
            return "gpu" if spec.device.startswith("cuda") else "ram"
        if importlib.util.find_spec("torch") is None:
            return "ram"  # loading fails anyway, with the install hint
        from mendlab.models.hf import resolve_device

        return "gpu" if resolve_device(spec.device).startswith("cuda") else "ram"
    from mendlab.models.llamacpp import default_gpu_layers

    layers = default_gpu_layers() if spec.n_gpu_layers is None else spec.n_gpu_layers
    # A CPU build ignores n_gpu_layers. Partly offloaded models are counted wholly on the GPU.
    return "gpu" if layers != 0 and default_gpu_layers() != 0 else "ram"


def chat_many(
    model: ChatModel,
    jobs: Sequence[tuple[Sequence[Message], SamplingParams]],
    on_result: Callable[[int, list[Completion]], None] | None = None,
) -> list[list[Completion]]:
    """Many independent conversations: concurrently where the backend can (endpoints), else one by
    one. `on_result(i, samples)` fires as each job completes, so callers can save as they go."""
    batch = getattr(model, "chat_many", None)
    if callable(batch):
        result: list[list[Completion]] = batch(jobs, on_result)
        return result
    out = []
    for i, (msgs, params) in enumerate(jobs):
        samples = model.chat(msgs, params)
        if on_result is not None:
            on_result(i, samples)
        out.append(samples)
    return out
