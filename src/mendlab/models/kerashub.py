"""Keras 3 and KerasHub on JAX: the original arena's own stack, weights sharded across devices.

The original kept eight models resident on one TPU by sharding each across its eight cores with a
KerasHub layout map. Here a model is a KerasHub causal LM (Llama for SmolLM2, Qwen2 for
Qwen2.5-Coder) loaded from a local Hugging Face folder; a bundled GGUF is first dequantized once by
transformers into a folder in the cache (the same fp32 weights the transformers backend runs, so the
two agree token for token). With `mesh` set in mendlab.toml, the weights are created sharded over a
`keras.distribution.DeviceMesh` by the backbone's own `get_layout_map`.

Generation is our loop around the model's `call_with_cache`, jitted in two pieces (the prompt, then
one token), rather than KerasHub's `generate`: streaming, stop strings and per-sample seeds need the
host between tokens, and sample i draws from its own generator seeded seed+i, like the other
backends, so a sample asked alone is the one the batched call gave. The tokenizer and chat template
are the model's own, through transformers, exactly as the transformers backend renders them.

Keras picks its backend once, at import, from KERAS_BACKEND: we set it to jax for that import only,
so no other library (or subprocess) inherits it.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import importlib.metadata
import importlib.util
import inspect
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mendlab.errors import ContextOverflow, ModelUnavailable, NoChatTemplate
from mendlab.models.base import Completion, FinishReason, Message, ModelInfo, SamplingParams, StreamDelta

# keras-hub itself goes in with --no-deps: it requires tensorflow-text (and so all of TensorFlow) for
# its string preprocessing, which mendlab never uses (the tokenizer is transformers').
KERAS_HUB_VERSION = "0.32.0"
MODULES = ("jax", "keras", "keras_hub", "transformers")
GGUF_MODULES = ("torch", "gguf")  # converting a GGUF goes through transformers on torch
DEFAULT_AXES = ("batch", "model")
# A Q4 GGUF dequantized to fp32 weighs about this many times its file (SmolLM2 5.5x, Qwen 0.5B 5x).
GGUF_FP32_FACTOR = 6
_CONVERTED_STAMP = "mendlab-source.json"
CONVERTER_VERSION = 2  # raise when `_convert` writes something different: cached conversions are redone


def missing_modules(*, gguf: bool = False) -> list[str]:
    """What the keras backend lacks here (for a GGUF, the converter's too), without importing any of it."""
    return [m for m in MODULES + (GGUF_MODULES if gguf else ()) if importlib.util.find_spec(m) is None]


def install_hint(*, gguf: bool = False) -> str:
    """The command that installs what is missing: only the hf extra when keras is there and the GGUF
    converter (torch, gguf) is not."""
    if gguf and not missing_modules():
        return "pip install 'mendlab[hf]'"
    extras = "hf,keras" if gguf else "keras"
    return f"pip install 'mendlab[{extras}]' && pip install --no-deps keras-hub=={KERAS_HUB_VERSION}"


# --- importing keras on jax, and nothing else -------------------------------------------------------

_import_lock = threading.Lock()


def _import_keras() -> tuple[Any, Any, Any]:
    """keras, keras_hub and jax, with keras on the jax backend. Environment changes last only as long
    as the import: another backend's torch, or a sandboxed program, sees the environment it had."""
    with _import_lock:
        loaded = sys.modules.get("keras")
        if loaded is not None:
            backend = loaded.config.backend()
            if backend != "jax":
                raise ModelUnavailable(
                    f"keras is already imported with the {backend!r} backend in this process; the keras "
                    "backend needs jax (unset KERAS_BACKEND or set it to jax)"
                )
        missing = missing_modules()
        if missing:
            raise ModelUnavailable(f"the keras backend needs {', '.join(missing)}: {install_hint()}")
        from mendlab.models.bundled import cache_dir

        # keras, keras_hub and jax set variables of their own (TF_CPP_MIN_LOG_LEVEL, TPU_SKIP_MDS_QUERY,
        # ...): all of them are undone, so a sandboxed program or a subprocess sees the user's environment.
        saved = dict(os.environ)
        os.environ["KERAS_BACKEND"] = "jax"
        # keras writes keras.json into KERAS_HOME (~/.keras) at import: into our cache, not the home folder.
        os.environ["KERAS_HOME"] = str(cache_dir() / "keras-home")
        # jax takes 75% of a GPU at start by default; torch models share that GPU in the arena.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        try:
            import jax
            import keras
            import keras_hub

            jax.devices()  # the client starts now, while the allocator setting is in place
        except ImportError as exc:
            raise ModelUnavailable(f"the keras backend cannot import {exc.name}: {install_hint()}") from None
        finally:
            _restore_environ(saved)
        _listen_for_compiles(jax)
        config: Any = jax.config
        if not config.jax_compilation_cache_dir:
            # A model's two functions take seconds to compile (every layer is unrolled): keep them on
            # disk, so the next process (a rerun, the arena after a restart) loads them instead.
            config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
        return keras, keras_hub, jax


def _restore_environ(saved: dict[str, str]) -> None:
    for key in [k for k in os.environ if k not in saved]:
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def platform() -> str:
    """Where JAX runs its arrays here ("cpu", "gpu", "tpu"); "cpu" when the extra is missing."""
    try:
        _, _, jax = _import_keras()
    except ModelUnavailable:
        return "cpu"  # loading will fail, saying why
    return str(jax.default_backend())


# --- compile time, apart from generation time ------------------------------------------------------

_compile_lock = threading.Lock()
_compile_s = [0.0]
_listening = [False]
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def _listen_for_compiles(jax: Any) -> None:
    with _compile_lock:
        if _listening[0]:
            return
        _listening[0] = True

    def on_event(event: str, duration: float, **_: Any) -> None:
        if event in _COMPILE_EVENTS:
            with _compile_lock:
                _compile_s[0] += duration

    jax.monitoring.register_event_duration_secs_listener(on_event)


def compile_seconds() -> float:
    """Seconds JAX has spent tracing and compiling in this process."""
    with _compile_lock:
        return _compile_s[0]


# --- GGUF → HF folder, once --------------------------------------------------------------------------


_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # fixed-size value types
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_chat_template(path: Path) -> str | None:
    """The template a GGUF carries, read from its header alone: a base model is refused before minutes
    of dequantizing (gguf's own reader parses every token of the vocabulary first: 40 s for Gemma)."""
    import mmap
    import struct

    try:
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:4] != b"GGUF":
                raise ModelUnavailable(f"{path} is not a GGUF file (bad magic bytes)")
            (n_kv,) = struct.unpack_from("<Q", buf, 16)
            pos = 24

            def string_at(at: int) -> tuple[bytes, int]:
                (size,) = struct.unpack_from("<Q", buf, at)
                return buf[at + 8 : at + 8 + size], at + 8 + size

            for _ in range(n_kv):
                key, pos = string_at(pos)
                (kind,) = struct.unpack_from("<I", buf, pos)
                pos += 4
                if kind == _GGUF_STRING:
                    value, pos = string_at(pos)
                    if key == b"tokenizer.chat_template":
                        return value.decode("utf-8", errors="replace") or None
                elif kind == _GGUF_ARRAY:
                    item, count = struct.unpack_from("<IQ", buf, pos)
                    pos += 12
                    if item == _GGUF_STRING:
                        for _ in range(count):
                            pos += 8 + struct.unpack_from("<Q", buf, pos)[0]
                    elif item in _GGUF_SIZES:
                        pos += count * _GGUF_SIZES[item]
                    else:
                        raise ValueError(f"array of value type {item}")
                elif kind in _GGUF_SIZES:
                    pos += _GGUF_SIZES[kind]
                else:
                    raise ValueError(f"value type {kind}")
    except (OSError, ValueError, struct.error) as exc:
        raise ModelUnavailable(f"cannot read the GGUF header of {path}: {exc}") from None
    return None


def converted_dir(gguf: Path) -> Path:
    """The stem names the folder for a reader; the hash of the resolved path keeps two `model.gguf` in
    different folders apart (and one file reached by two paths together)."""
    from mendlab.models.bundled import cache_dir

    digest = hashlib.sha256(str(gguf.resolve()).encode()).hexdigest()[:10]
    return cache_dir() / "keras" / f"{gguf.stem}-{digest}"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _source_stamp(gguf: Path) -> dict[str, Any]:
    """What the conversion was made from and by: a changed file, a new transformers (its GGUF
    dequantizer) or a new converter here makes it stale."""
    st = gguf.stat()
    return {
        "gguf": str(gguf.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "converter": CONVERTER_VERSION,
        "transformers": _version("transformers"),
    }


def _sweep_leftovers(target: Path) -> None:
    """Temporary folders of a conversion that was killed; only called under the lock, so none is live."""
    for leftover in target.parent.glob(f".{target.name}.*"):
        shutil.rmtree(leftover, ignore_errors=True)


def hf_folder(path: Path) -> Path:
    """The HF folder KerasHub loads: the path itself, or the cached conversion of a GGUF (made on
    first use; a changed GGUF is converted again)."""
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailable(f"{path} is not a Hugging Face model folder (no config.json)")
        return path
    if not (path.is_file() and path.suffix == ".gguf"):
        raise ModelUnavailable(f"not a model folder or GGUF file: {path}")
    target = converted_dir(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stamp = _source_stamp(path)
        with (target.parent / f"{target.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two processes converting at once must not interleave
            try:
                if json.loads((target / _CONVERTED_STAMP).read_text()) == stamp:
                    return target
            except (OSError, ValueError):
                pass
            _sweep_leftovers(target)
            _convert(path, target, stamp)
    except OSError as exc:  # a full disk, a read-only cache: one line, not a traceback
        raise ModelUnavailable(f"cannot convert {path.name} for the keras backend in {target.parent}: {exc}") from None
    return target


def _convert(gguf: Path, target: Path, stamp: dict[str, Any]) -> None:
    """transformers dequantizes the GGUF to fp32; `save_pretrained` refuses a GGUF-loaded model, so the
    weights move (no copy) into a model built from the same config without its quantization_config."""
    missing = missing_modules(gguf=True)
    if missing:
        raise ModelUnavailable(
            f"converting {gguf.name} for the keras backend needs {', '.join(missing)}: {install_hint(gguf=True)}"
        )
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, name = str(gguf.parent), gguf.name
    try:
        tok = AutoTokenizer.from_pretrained(where, gguf_file=name, local_files_only=True)
        loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot convert {gguf} for the keras backend: {exc}") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    plain.load_state_dict(loaded.state_dict(), assign=True)
    plain.tie_weights()
    del loaded
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / _CONVERTED_STAMP).write_text(json.dumps(stamp))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def estimate_bytes(path: Path, dtype: str = "float32") -> int:
    """Before loading, for a memory budget: the fp32 folder if converted, else the GGUF times the
    dequantization factor; half of that for weights run in 16 bits (`auto` on a GPU or TPU)."""
    folder = path if path.is_dir() else converted_dir(path)
    if folder.is_dir():
        fp32 = sum(f.stat().st_size for f in folder.rglob("*.safetensors"))
    else:
        fp32 = path.stat().st_size * GGUF_FP32_FACTOR if path.is_file() else 0
    return fp32 // 2 if dtype in ("bfloat16", "float16") else fp32


# --- sharding ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sharding:
    """A device mesh for the weights: `shape` = (data, model) sizes, `axes` = their names."""

    shape: tuple[int, int]
    axes: tuple[str, str] = DEFAULT_AXES

    def describe(self) -> str:
        return f"{self.shape[0]}x{self.shape[1]} ({self.axes[0]}, {self.axes[1]})"


@dataclass(frozen=True)
class VariableLayout:
    """Where one weight went: its spec over the mesh and the shape of each device's piece."""

    path: str
    shape: tuple[int, ...]
    spec: tuple[str | None, ...]
    shard_shape: tuple[int, ...]
    devices: int
    replicated_axes: tuple[int, ...] = field(default=())  # asked to shard, but the size does not divide


def _make_distribution(keras: Any, backbone_cls: Any, sharding: Sharding, name: str) -> tuple[Any, dict[str, Any]]:
    """ModelParallel over the backbone's layout map. A weight axis the mesh does not divide (SmolLM2's
    9 heads over 8 devices) is kept whole on that axis rather than refused: the rest still shards."""
    devices = keras.distribution.list_devices()
    need = sharding.shape[0] * sharding.shape[1]
    if need > len(devices):
        raise ModelUnavailable(
            f"model {name!r}: mesh {sharding.describe()} needs {need} devices, JAX sees {len(devices)} here"
        )
    if not hasattr(backbone_cls, "get_layout_map"):
        raise ModelUnavailable(f"model {name!r}: KerasHub's {backbone_cls.__name__} has no layout map to shard with")
    mesh = keras.distribution.DeviceMesh(sharding.shape, axis_names=sharding.axes, devices=devices[:need])
    layout_map = backbone_cls.get_layout_map(
        mesh, model_parallel_dim_name=sharding.axes[1], data_parallel_dim_name=sharding.axes[0]
    )
    sizes = dict(zip(sharding.axes, sharding.shape, strict=True))
    relaxed: dict[str, Any] = {}

    class FittingModelParallel(keras.distribution.ModelParallel):  # type: ignore[misc]
        def get_variable_layout(self, variable: Any) -> Any:
            layout = super().get_variable_layout(variable)
            axes = list(layout.axes)
            dropped = []
            for i, axis in enumerate(axes):
                names = axis if isinstance(axis, tuple) else (axis,) if axis is not None else ()
                parts = math.prod(sizes.get(a, 1) for a in names)
                if parts > 1 and variable.shape[i] % parts:
                    axes[i] = None
                    dropped.append(i)
            if not dropped:
                return layout
            relaxed[variable.path] = tuple(dropped)
            return keras.distribution.TensorLayout(axes, layout.device_mesh)

    return FittingModelParallel(layout_map=layout_map, batch_dim_name=sharding.axes[0]), relaxed


# --- sampling ------------------------------------------------------------------------------------------


def sample_token(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """Temperature then top-p, no top-k, the same rule as the transformers and llama.cpp backends;
    in float64 so tiny probabilities are not lost to rounding."""
    z = logits.astype(np.float64) / temperature
    z -= z.max()
    probs = np.exp(z)
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        ranked = probs[order]
        # a token goes when the more likely ones already reach top_p; the likeliest always stays
        probs[order[(np.cumsum(ranked) - ranked) >= top_p]] = 0.0
    cdf = np.cumsum(probs)
    pick = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return min(pick, len(cdf) - 1)


def _bucket(n: int, least: int) -> int:
    """Round up to a power of two: each shape is compiled once, so few shapes means few compiles."""
    return max(least, 1 << max(0, n - 1).bit_length())


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters might begin a stop string (or be half a UTF-8 character), so a
    stream never sends text that the stop string then takes back."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                hold = max(hold, k)
                break
    while hold < len(text) and text[len(text) - hold - 1] == "\ufffd":
        hold += 1
    return hold


def _first_stop(text: str, stops: Sequence[str]) -> int:
    cuts = [i for i in (text.find(s) for s in stops if s) if i != -1]
    return min(cuts) if cuts else -1


@dataclass
class _Row:
    rng: np.random.Generator | None
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish: FinishReason | None = None


# --- the model -------------------------------------------------------------------------------------------


def resolve_dtype(dtype: str, where: str) -> str:
    """`auto`: float32 on the CPU (half precision there is slow and changes answers), bfloat16 on a GPU
    or TPU, where JAX runs it natively."""
    if dtype != "auto":
        return dtype
    return "float32" if where == "cpu" else "bfloat16"


class KerasModel:
    """A ChatModel over a KerasHub causal LM on JAX."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        dtype: str = "auto",
        sharding: Sharding | None = None,
        chat_template: str | None = None,
        source: str = "",
    ) -> None:
        keras, keras_hub, jax = _import_keras()
        from mendlab.models.hf import load_tokenizer

        if path.is_file() and path.suffix == ".gguf" and chat_template is None and gguf_chat_template(path) is None:
            raise NoChatTemplate(
                f"{path.name} has no chat template (a base model?): refusing to chat with it; "
                'give one with chat_template = "file.jinja" in mendlab.toml'
            )
        folder = hf_folder(path)
        self.tokenizer = load_tokenizer(folder, chat_template)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self._jax = jax
        where = str(jax.default_backend())
        dtype = resolve_dtype(dtype, where)
        compiled_before = compile_seconds()
        start = time.perf_counter()
        try:
            from keras_hub.src.utils.preset_utils import get_preset_loader

            backbone_cls = get_preset_loader(str(folder)).check_backbone_class()
        except ValueError as exc:
            raise ModelUnavailable(f"KerasHub cannot load {folder}: {exc}") from None
        kwargs: dict[str, Any] = {"dtype": dtype}
        # KerasHub's Llama converter forgets rms_norm_eps (its default is 1e-6; SmolLM2 says 1e-5).
        if "rms_norm_eps" in config and "layer_norm_epsilon" in inspect.signature(backbone_cls.__init__).parameters:
            kwargs["layer_norm_epsilon"] = float(config["rms_norm_eps"])
        relaxed: dict[str, Any] = {}
        scope: Any = nullcontext()
        if sharding is not None:
            distribution, relaxed = _make_distribution(keras, backbone_cls, sharding, name)
            scope = distribution.scope()
        with scope:
            backbone = keras_hub.models.Backbone.from_preset(str(folder), **kwargs)
            self.lm: Any = keras_hub.models.CausalLM.from_preset(str(folder), backbone=backbone, preprocessor=None)
        if not hasattr(self.lm, "call_with_cache") or not hasattr(self.lm, "_build_cache"):
            raise ModelUnavailable(f"KerasHub's {type(self.lm).__name__} has no cached generation mendlab can drive")
        self.load_s = time.perf_counter() - start
        self.compile_s = compile_seconds() - compiled_before
        self._relaxed = relaxed
        self._state = (
            [v.value for v in self.lm.trainable_variables],
            [v.value for v in self.lm.non_trainable_variables],
        )
        self._prefill, self._step = self._compile_fns(keras, jax)
        self._cache_shapes: dict[tuple[int, int], Any] = {}
        self._lock = threading.Lock()
        eos = set()
        gen_config = folder / "generation_config.json"
        if gen_config.is_file():
            value = json.loads(gen_config.read_text(encoding="utf-8")).get("eos_token_id")
            eos.update(value if isinstance(value, list) else [value] if value is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos.add(int(self.tokenizer.eos_token_id))
        self._eos = frozenset(int(t) for t in eos)
        pad = self.tokenizer.pad_token_id
        self._pad = int(pad if pad is not None else next(iter(self._eos), 0))
        window = config.get("max_position_embeddings")
        extra = {"platform": where, "dtype": dtype, "keras_class": type(self.lm).__name__}
        if sharding is not None:
            extra["mesh"] = sharding.describe()
        self._info = ModelInfo(
            name=name,
            backend="keras",
            source=source or str(path),
            context_window=int(window) if window else None,
            extra=extra,
        )

    def _compile_fns(self, keras: Any, jax: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
        """Two pure functions of the weights, jitted: variables travel as arguments (a stateless
        scope maps them back onto the layers), so a sharded weight stays where its layout put it."""
        lm = self.lm
        jnp = jax.numpy

        def mapping(trainable: list[Any], frozen: list[Any]) -> Any:
            return itertools.chain(
                zip(lm.trainable_variables, trainable, strict=True),
                zip(lm.non_trainable_variables, frozen, strict=True),
            )

        def prefill(state: Any, tokens: Any, n_prompt: Any, cache: Any) -> tuple[Any, Any]:
            with keras.StatelessScope(state_mapping=mapping(*state)):
                logits, _, cache = lm.call_with_cache(tokens, cache, 0)
            last = jax.lax.dynamic_index_in_dim(logits, n_prompt - 1, axis=1, keepdims=False)
            return last.astype(jnp.float32), cache

        def step(state: Any, token: Any, cache: Any, index: Any) -> tuple[Any, Any]:
            with keras.StatelessScope(state_mapping=mapping(*state)):
                logits, _, cache = lm.call_with_cache(token, cache, index)
            return logits[:, 0, :].astype(jnp.float32), cache

        return jax.jit(prefill, donate_argnums=(3,)), jax.jit(step, donate_argnums=(2,))

    def _empty_cache(self, rows: int, length: int) -> Any:
        """A zero KV cache of the model's own layout (shape found by tracing `_build_cache`, not run)."""
        key = (rows, length)
        if key not in self._cache_shapes:
            jnp = self._jax.numpy
            probe = jnp.zeros((rows, length), dtype=jnp.int32)
            self._cache_shapes[key] = self._jax.eval_shape(lambda t: self.lm._build_cache(t)[1], probe)
        spec = self._cache_shapes[key]
        return self._jax.numpy.zeros(spec.shape, spec.dtype)

    @property
    def info(self) -> ModelInfo:
        return self._info

    def render(self, messages: Sequence[Message]) -> str:
        from mendlab.models.hf import render_prompt

        return render_prompt(self.tokenizer, messages)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        ids: list[int] = self.tokenizer(self.render(messages), add_special_tokens=False)["input_ids"]
        window = self._info.context_window
        if window is not None and len(ids) >= window:
            raise ContextOverflow(f"{self._info.name}: prompt has {len(ids)} tokens, context window is {window}")
        return ids

    def _generate(self, ids: list[int], params: SamplingParams, rows: int, live: bool) -> Iterator[list[_Row]]:
        """Yield the rows after every token (their text decoded as they go when `live` or stop strings
        need it, else once at the end). Row i is sample i, drawing from its own generator seeded
        seed + i, so its tokens do not depend on the other rows. The caller holds the lock."""
        jnp = self._jax.numpy
        n = len(ids)
        max_new = params.max_tokens
        window = self._info.context_window
        if window is not None:
            max_new = min(max_new, window - n)
        length = _bucket(n + max_new, 128)
        if window is not None:
            length = min(length, max(window, n + max_new))
        prompt_len = min(_bucket(n, 32), length)
        tokens = np.full((rows, prompt_len), self._pad, dtype=np.int32)
        tokens[:, :n] = ids
        greedy = params.temperature == 0
        # numpy takes no negative seed: -1 wraps to 2**64 - 1, as a uint64 would
        state = [_Row(None if greedy else np.random.default_rng((params.seed + i) % 2**64)) for i in range(rows)]
        logits, cache = self._prefill(self._state, jnp.asarray(tokens), jnp.int32(n), self._empty_cache(rows, length))
        for k in range(max_new):
            scores = np.asarray(logits)
            feed = np.full((rows, 1), self._pad, dtype=np.int32)
            for i, row in enumerate(state):
                if row.finish is not None:
                    continue
                if row.rng is None:
                    token = int(np.argmax(scores[i]))
                else:
                    token = sample_token(scores[i], params.temperature, params.top_p, row.rng)
                feed[i, 0] = token
                if token in self._eos:
                    row.finish = "stop"
                    continue
                row.tokens.append(token)
                if live or params.stop:
                    row.text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
                cut = _first_stop(row.text, params.stop)
                if cut != -1:
                    row.text, row.finish = row.text[:cut], "stop"
                elif len(row.tokens) >= max_new:
                    row.finish = "length"
            done = all(r.finish is not None for r in state) or k == max_new - 1
            if done and not (live or params.stop):
                for row in state:
                    row.text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
            yield state
            if done:
                return
            logits, cache = self._step(self._state, jnp.asarray(feed), cache, jnp.int32(n + k))

    def chat(self, messages: Sequence[Message], params: SamplingParams) -> list[Completion]:
        ids = self._prompt_ids(messages)
        # Greedy samples are all the same text: generate it once.
        rows = params.n if params.temperature > 0 else 1
        first: float | None = None
        with self._lock:
            start = time.perf_counter()
            final: list[_Row] = []
            for final in self._generate(ids, params, rows, live=False):  # noqa: B007 (the last state is the answer)
                if first is None:
                    first = time.perf_counter() - start
            latency = time.perf_counter() - start
        return [
            Completion(
                text=final[min(i, rows - 1)].text,
                prompt_tokens=len(ids),
                completion_tokens=len(final[min(i, rows - 1)].tokens),
                finish_reason=final[min(i, rows - 1)].finish or "length",
                latency_s=latency,
                first_token_s=first,
                prompt_tokens_evaluated=len(ids),
                sample_index=i,
            )
            for i in range(params.n)
        ]

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> Iterator[StreamDelta | Completion]:
        ids = self._prompt_ids(messages)
        with self._lock:
            start = time.perf_counter()
            first: float | None = None
            sent = 0
            row = _Row(None)
            for (row,) in self._generate(ids, params, 1, live=True):
                if first is None:
                    first = time.perf_counter() - start
                upto = len(row.text) if row.finish is not None else len(row.text) - _held_back(row.text, params.stop)
                if upto > sent:
                    yield StreamDelta(row.text[sent:upto])
                    sent = upto
            latency = time.perf_counter() - start
        yield Completion(
            text=row.text,
            prompt_tokens=len(ids),
            completion_tokens=len(row.tokens),
            finish_reason=row.finish or "length",
            latency_s=latency,
            first_token_s=first,
            prompt_tokens_evaluated=len(ids),
        )

    def layouts(self) -> list[VariableLayout]:
        """Every weight's placement: what `mesh` in mendlab.toml did to it."""
        out = []
        for v in self.lm.weights:
            value = v.value
            sharding = value.sharding
            spec = tuple(getattr(sharding, "spec", ()) or ())
            spec = spec + (None,) * (len(value.shape) - len(spec))
            out.append(
                VariableLayout(
                    path=str(v.path),
                    shape=tuple(int(d) for d in value.shape),
                    spec=tuple(s if s is None or isinstance(s, str) else "+".join(s) for s in spec),
                    shard_shape=tuple(int(d) for d in value.addressable_shards[0].data.shape),
                    devices=len(sharding.device_set),
                    replicated_axes=tuple(self._relaxed.get(v.path, ())),
                )
            )
        return out

    def memory_bytes(self) -> int:
        """Every device's piece of every weight, replicas included: what staying resident costs."""
        if self.lm is None:
            return 0
        return int(sum(s.data.nbytes for v in self.lm.weights for s in v.value.addressable_shards))

    @property
    def on_gpu(self) -> bool:
        return self._info.extra.get("platform", "cpu") != "cpu"

    def close(self) -> None:
        """Drop the weights and the compiled functions that close over them, now."""
        with self._lock:
            lm, self.lm = self.lm, None
            self._state = ([], [])
            self._prefill = self._step = _closed
            self._cache_shapes.clear()
        if lm is None:
            return
        del lm
        gc.collect()


def _closed(*_: Any) -> Any:
    raise RuntimeError("the model is closed")


def accelerator_memory() -> tuple[int, int]:
    """(free, total) bytes over JAX's accelerators, for a memory budget when torch sees no CUDA (a TPU)."""
    _, _, jax = _import_keras()
    free = total = 0
    for device in jax.local_devices():
        stats = device.memory_stats() or {}
        limit = int(stats.get("bytes_limit", 0))
        total += limit
        free += limit - int(stats.get("bytes_in_use", 0))
    if total == 0:
        raise RuntimeError(f"JAX reports no accelerator memory ({jax.default_backend()})")
    return free, total
