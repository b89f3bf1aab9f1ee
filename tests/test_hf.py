"""The transformers backend, and the golden test that both local backends render the same prompt."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import replace

import pytest

from mendlab.models import ChatModel, Completion, Message, SamplingParams, StreamDelta, load_model, model_path
from mendlab.models.hf import load_tokenizer, render_prompt, resolve_dtype
from mendlab.models.llamacpp import render_prompt as llama_render

HISTORY = [
    Message("system", "You translate requests into API calls."),
    Message("user", "Add a meeting with Fred on Nov 11 at 5PM"),
    Message("assistant", 'action.add_calendar_entry("Meeting with Fred", date="2023-11-11", time="17:00")'),
    Message("user", "The current year is 2024."),
]


@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-coder-0.5b"])
def test_golden_template_same_prompt_in_both_backends(registry, name: str) -> None:  # type: ignore[no-untyped-def]
    path = model_path(registry.get(name))
    via_llama = llama_render(path, HISTORY)
    via_hf = render_prompt(load_tokenizer(path), HISTORY)
    assert via_llama == via_hf
    # and it is the model's own template, not a generic one: every turn is there, in order
    positions = [via_llama.index(m.content) for m in HISTORY]
    assert positions == sorted(positions) and via_llama.startswith("<|im_start|>system")


@pytest.fixture(scope="module")
def smollm_hf(registry) -> Iterator[ChatModel]:  # type: ignore[no-untyped-def]
    model = load_model(registry.get("smollm2-135m@transformers"))
    yield model
    weights = weakref.ref(model.model)  # type: ignore[attr-defined]
    model.close()
    assert weights() is None, "close() left the weights alive"


def test_transformers_chat_stream_and_samples(smollm_hf: ChatModel, smollm: ChatModel) -> None:
    assert smollm_hf.info.backend == "transformers"
    msgs = [Message("user", "What is the capital of France? Answer in one word.")]
    p = SamplingParams(max_tokens=12)
    (a,) = smollm_hf.chat(msgs, p)
    assert "Paris" in a.text and a.prompt_tokens > 5 and 0 < a.completion_tokens <= 12
    # the same model in llama.cpp (Q4 weights vs dequantized fp32) agrees on an easy greedy answer
    (b,) = smollm.chat(msgs, p)
    assert "Paris" in b.text and b.prompt_tokens == a.prompt_tokens
    events = list(smollm_hf.stream(msgs, p))
    assert isinstance(events[-1], Completion) and events[-1].text == a.text
    assert "".join(e.text for e in events if isinstance(e, StreamDelta)).strip() == a.text.strip()
    many = smollm_hf.chat([Message("user", "Say something.")], SamplingParams(n=3, temperature=1.0, max_tokens=10))
    assert len(many) == 3 and len({c.text for c in many}) > 1
    (cut,) = smollm_hf.chat(msgs, SamplingParams(max_tokens=12, stop=("aris",)))
    assert cut.text.endswith("P") and cut.finish_reason == "stop"


def test_the_batched_samples_are_the_samples_asked_alone(smollm_hf: ChatModel) -> None:
    """A resumed run asks for sample i alone, with seed + i: it must get the batched run's sample i."""
    msgs = [Message("user", "Tell me a story about a cat.")]
    p = SamplingParams(n=3, temperature=0.9, top_p=0.95, max_tokens=8, seed=7)
    batch = smollm_hf.chat(msgs, p)
    alone = [smollm_hf.chat(msgs, replace(p, n=1, seed=p.seed + i))[0] for i in range(3)]
    assert [c.sample_index for c in batch] == [0, 1, 2] and len({c.text for c in batch}) > 1
    assert [(c.text, c.completion_tokens) for c in batch] == [(c.text, c.completion_tokens) for c in alone]
    streamed = list(smollm_hf.stream(msgs, replace(p, n=1)))[-1]
    assert isinstance(streamed, Completion) and streamed.text == batch[0].text


def test_greedy_with_n_samples_is_n_equal_answers(smollm_hf: ChatModel) -> None:
    out = smollm_hf.chat([Message("user", "Say hello.")], SamplingParams(n=3, max_tokens=6))
    assert [c.sample_index for c in out] == [0, 1, 2] and len({(c.text, c.completion_tokens) for c in out}) == 1


def test_dtype_auto_is_half_precision_on_cuda_only(smollm_hf: ChatModel) -> None:
    assert smollm_hf.info.extra == {"device": "cpu", "dtype": "float32"}
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("auto", "cuda", bf16_supported=True) == "bfloat16"
    assert resolve_dtype("auto", "cuda:1", bf16_supported=False) == "float16"  # pre-Ampere
    assert resolve_dtype("float32", "cuda", bf16_supported=True) == "float32"  # told
