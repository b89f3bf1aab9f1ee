from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mendlab.errors import ConfigError, ModelNotFound, NoChatTemplate
from mendlab.models import Message, SamplingParams, load_model, load_registry, model_path
from mendlab.models.registry import readiness
from tests.conftest import MENDLAB, cli_env

GOOD = """
[models.my-gguf]
backend = "llama.cpp"
path = "weights/model.gguf"
n_ctx = 2048

[models.vllm]
backend = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "meta-llama/Llama-3.1-8B-Instruct"
concurrency = 64
"""


def test_catalogue_has_bundled_models(registry) -> None:  # type: ignore[no-untyped-def]
    names = {s.name for s in registry}
    assert {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "gemma-3-270m-base"} <= names
    assert readiness(registry.get("smollm2-135m")) == (True, "ready")
    assert registry.get("smollm2-135m@transformers").backend == "transformers"


def test_user_file_adds_models(tmp_path: Path) -> None:
    cfg = tmp_path / "mendlab.toml"
    cfg.write_text(GOOD)
    reg = load_registry(cfg)
    mine = reg.get("my-gguf")
    assert mine.backend == "llama.cpp" and mine.n_ctx == 2048
    assert mine.path == str(tmp_path / "weights" / "model.gguf")  # relative to the file
    ok, detail = readiness(mine)
    assert not ok and "missing" in detail
    assert reg.get("vllm").concurrency == 64
    with pytest.raises(ModelNotFound, match="cannot run on backend"):
        reg.get("vllm@llama.cpp")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[models.a]\nbackend = "llama.cpp"\npath = \n', r"mendlab.toml:3:\d+: invalid TOML"),
        (
            '[models.a]\nbackend = "llama.cpp"\npath = "x.gguf"\ncolour = "red"\n',
            r"mendlab.toml:4: \[models.a\] unknown field 'colour'",
        ),
        ('\n[models.a]\nbackend = "tpu"\npath = "x.gguf"\n', r"mendlab.toml:3: \[models.a\] field 'backend'"),
        ('[models.a]\npath = "x.gguf"\n', r"mendlab.toml:1: \[models.a\] missing field 'backend'"),
        (
            '[models.a]\nbackend = "llama.cpp"\npath = "x.gguf"\nn_ctx = "big"\n',
            r"mendlab.toml:4: .*'n_ctx' must be a positive integer",
        ),
        ('[models.a]\nbackend = "openai"\nmodel = "m"\n', r"missing field 'base_url'"),
        ('[models.a]\nbackend = "llama.cpp"\npath = "x.bin"\n', r"mendlab.toml:3: .*must be a .gguf file"),
        *(
            (
                f'[models.a]\nbackend = "llama.cpp"\npath = "x.gguf"\nn_gpu_layers = {bad}\n',
                r"mendlab.toml:4: \[models.a\] field 'n_gpu_layers' must be an integer >= -1",
            )
            for bad in ("-2", '"all"', "true", "1.5")
        ),
        (
            '[models.a]\nbackend = "transformers"\npath = "m"\n\ndtype = "fp8"\n',
            r"mendlab.toml:5: \[models.a\] field 'dtype': 'fp8' is not one of: auto, float32, bfloat16, float16",
        ),
    ],
)
def test_bad_config_names_the_line(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "mendlab.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_registry(cfg)


def test_unknown_model_and_base_model_refused(registry) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelNotFound, match="unknown model 'gpt-17'"):
        registry.get("gpt-17")
    # Gemma 3 270M base has no chat template: refused, not silently given a default.
    with pytest.raises(NoChatTemplate):
        load_model(registry.get("gemma-3-270m-base"))


def test_gguf_without_template_refused_by_backend(registry) -> None:  # type: ignore[no-untyped-def]
    """The refusal also comes from the file itself, for a user's GGUF not marked as a base model."""
    from mendlab.models import model_path
    from mendlab.models.llamacpp import LlamaCppModel

    with pytest.raises(NoChatTemplate, match="no chat template"):
        LlamaCppModel("gemma", model_path(registry.get("gemma-3-270m-base")), n_ctx=256)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "mendlab.toml").write_text('[models.a]\nbackend = "llama.cpp"\npath = "x.gguf"\ncolour = 1\n')
    r = subprocess.run([MENDLAB, "models"], cwd=tmp_path, capture_output=True, text=True, env=cli_env())
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "mendlab.toml:4" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "mendlab.toml").unlink()
    r = subprocess.run([MENDLAB, "chat", "no-such-model"], cwd=tmp_path, capture_output=True, text=True, env=cli_env())
    assert r.returncode == 2 and "unknown model 'no-such-model'" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([MENDLAB, "models"], cwd=tmp_path, capture_output=True, text=True, env=cli_env())
    assert r.returncode == 0 and "qwen2.5-coder-0.5b" in r.stdout and "ready" in r.stdout


def test_n_gpu_layers_reaches_llama_cpp_and_defaults_to_the_build(tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    import llama_cpp

    gguf = model_path(registry.get("smollm2-135m"))
    cfg = tmp_path / "mendlab.toml"
    cfg.write_text(
        f'[models.some]\nbackend = "llama.cpp"\npath = "{gguf}"\nn_ctx = 512\nn_gpu_layers = 4\n\n'
        f'[models.auto]\nbackend = "llama.cpp"\npath = "{gguf}"\nn_ctx = 512\n'
    )
    reg = load_registry(cfg)
    assert reg.get("some").n_gpu_layers == 4 and reg.get("auto").n_gpu_layers is None
    every = "-1" if llama_cpp.llama_supports_gpu_offload() else "0"  # all layers on a GPU build, none on a CPU one
    for name, shown in (("some", "4"), ("auto", every)):
        model = load_model(reg.get(name))
        try:
            assert model.info.extra["n_gpu_layers"] == shown and model.info.context_window == 512
            (c,) = model.chat([Message("user", "Hi")], SamplingParams(max_tokens=2))
            assert c.completion_tokens >= 1
        finally:
            model.close()
