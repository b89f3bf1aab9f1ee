"""The llama.cpp backend on the real bundled models."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mendlab.demo import CALENDAR_SYSTEM_PROMPT
from mendlab.errors import ContextOverflow
from mendlab.models import ChatModel, Completion, Message, SamplingParams, StreamDelta, load_model

FIRST = [Message("system", CALENDAR_SYSTEM_PROMPT), Message("user", "Add a meeting with Fred on Nov 11 at 5PM")]


def test_qwen_writes_a_call_and_fixes_the_year(qwen: ChatModel) -> None:
    """MODELS.md: greedy Qwen 0.5B writes the call with 2023, and fixes the year when told."""
    p = SamplingParams(max_tokens=64)
    (a,) = qwen.chat(FIRST, p)
    assert a.text.startswith("action.add_calendar_entry(") and "2023-11-11" in a.text
    assert a.finish_reason == "stop" and 10 < a.completion_tokens < 64 and a.prompt_tokens > 50
    history = [*FIRST, Message("assistant", a.text), Message("user", "The current year is 2024.")]
    (b,) = qwen.chat(history, p)
    assert "2024-11-11" in b.text
    # The second turn re-uses the KV cache of the first: only the new suffix is evaluated.
    assert b.prompt_tokens_evaluated is not None and b.prompt_tokens_evaluated < b.prompt_tokens - a.prompt_tokens


def test_n_samples_are_seeded_and_share_the_prompt(smollm: ChatModel) -> None:
    msgs = [Message("user", "Write one sentence about the sea.")]
    p = SamplingParams(n=3, temperature=1.0, max_tokens=16, seed=7)
    smollm.chat([Message("user", "Write one word.")], replace(p, n=1))  # a cold prompt after another one
    first = smollm.chat(msgs, p)
    assert [c.sample_index for c in first] == [0, 1, 2]
    assert len({c.text for c in first}) > 1  # different seeds, different samples
    assert [c.prompt_tokens_evaluated for c in first[1:]] == [1, 1]  # prompt evaluated once
    assert first[0].prompt_tokens_evaluated is not None and first[0].prompt_tokens_evaluated > 1
    again = smollm.chat(msgs, p)
    assert [c.text for c in again] == [c.text for c in first]  # same seeds, same samples
    one = smollm.chat(msgs, replace(p, n=1, seed=8))  # sample 1 alone == sample 1 of the batch
    assert one[0].text == first[1].text


def test_stream_matches_chat_and_stop_strings(smollm: ChatModel) -> None:
    msgs = [Message("user", "Count from 1 to 20, separated by commas.")]
    p = SamplingParams(max_tokens=40)
    (whole,) = smollm.chat(msgs, p)
    events = list(smollm.stream(msgs, p))
    pieces = [e.text for e in events if isinstance(e, StreamDelta)]
    done = events[-1]
    assert isinstance(done, Completion) and len(pieces) > 3
    assert "".join(pieces) == done.text == whole.text
    assert done.first_token_s is not None and done.first_token_s < done.latency_s
    assert "5" in whole.text
    stop = replace(p, stop=("5",))
    (cut,) = smollm.chat(msgs, stop)
    streamed = "".join(e.text for e in smollm.stream(msgs, stop) if isinstance(e, StreamDelta))
    assert cut.text == whole.text[: whole.text.index("5")] == streamed
    assert cut.finish_reason == "stop"
    (short,) = smollm.chat(msgs, SamplingParams(max_tokens=3))
    assert short.completion_tokens == 3 and short.finish_reason == "length"


def test_context_overflow_is_a_clear_error(registry) -> None:  # type: ignore[no-untyped-def]
    small = load_model(replace(registry.get("smollm2-135m"), n_ctx=64))
    try:
        with pytest.raises(ContextOverflow, match="context window is 64"):
            small.chat([Message("user", "word " * 200)], SamplingParams(max_tokens=8))
        (ok,) = small.chat([Message("user", "hi " * 20)], SamplingParams(max_tokens=200))
        assert ok.prompt_tokens + ok.completion_tokens <= 64  # generation clipped to the window
    finally:
        small.close()


def test_optional_qwen_1_5b(registry) -> None:  # type: ignore[no-untyped-def]
    """The larger Qwen is optional (1.1 GB in 22 packages): this test runs only where it is installed."""
    from mendlab.models.registry import readiness

    spec = registry.get("qwen2.5-coder-1.5b")
    ok, detail = readiness(spec)
    if not ok:
        pytest.skip(f"qwen2.5-coder-1.5b not installed ({detail})")
    model = load_model(spec)
    try:
        (a,) = model.chat(FIRST, SamplingParams(max_tokens=64))
        assert "add_calendar_entry" in a.text
    finally:
        model.close()
