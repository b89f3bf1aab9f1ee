"""The seam every experiment talks to: a `ChatModel` turns OpenAI-style messages into completions.

Backends differ wildly (an in-process GGUF, a torch model, a remote vLLM fleet); experiments must not.
Everything an experiment needs to know about a generation (token counts from the model's own
tokenizer, finish reason, timings) travels in the frozen records below, so it can be stored and
compared across backends without asking the backend again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    """One chat message. `origin` says who really wrote it, where the model cannot see it: the model
    behind an assistant turn transplanted from another conversation (the model answering next
    believes it wrote it), or "feedback:RUNG" for a user turn that is the simulated user's feedback."""

    role: Role
    content: str
    origin: str | None = None

    def to_openai(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def as_messages(items: Sequence[Message | dict[str, str]]) -> tuple[Message, ...]:
    out: list[Message] = []
    for item in items:
        if isinstance(item, Message):
            out.append(item)
        else:
            role = item.get("role")
            if role not in ROLES:
                raise ValueError(f"unknown message role {role!r}")
            out.append(Message(role=role, content=str(item.get("content", ""))))
    return tuple(out)


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. `seed` makes a sample reproducible; sample i of n uses seed + i."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 128
    seed: int = 0
    stop: tuple[str, ...] = ()
    # OpenAI `tools`, one JSON object text per function (text keeps the params hashable). Absent from
    # `as_dict()` when empty, so the keys and configs of runs without tools are what they always were.
    tools: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        for tool in self.tools:
            if not isinstance(json.loads(tool), dict):
                raise ValueError("each tool is the JSON text of an object")

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "n": self.n,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "stop": list(self.stop),
        }
        if self.tools:
            out["tools"] = [json.loads(t) for t in self.tools]
        return out

    def tool_list(self) -> list[dict[str, Any]]:
        """The tools as the request's `tools` field wants them."""
        return [json.loads(t) for t in self.tools]


FinishReason = Literal["stop", "length", "error"]


@dataclass(frozen=True)
class Completion:
    """One sampled answer. Token counts come from the generating model's own tokenizer."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    latency_s: float
    first_token_s: float | None = None
    # Prompt tokens the backend really had to evaluate (after KV-cache reuse); None if unknown.
    prompt_tokens_evaluated: int | None = None
    sample_index: int = 0

    @property
    def tokens_per_s(self) -> float:
        gen_time = self.latency_s - (self.first_token_s or 0.0)
        if self.completion_tokens <= 1 or gen_time <= 0:
            return 0.0
        return (self.completion_tokens - 1) / gen_time


@dataclass(frozen=True)
class StreamDelta:
    """A piece of streamed text; the last event of a stream is the finished `Completion`."""

    text: str


@dataclass(frozen=True)
class ModelInfo:
    name: str
    backend: str
    source: str
    context_window: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class ChatModel(Protocol):
    """A chat model behind any backend."""

    @property
    def info(self) -> ModelInfo: ...

    def chat(self, messages: Sequence[Message], params: SamplingParams) -> list[Completion]:
        """Return `params.n` samples for one conversation."""
        ...

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> Iterator[StreamDelta | Completion]:
        """Yield text as it is generated, then the finished Completion (n is ignored: one sample)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class PromptRenderer(Protocol):
    """Local backends can show the exact prompt string their chat template produces."""

    def render(self, messages: Sequence[Message]) -> str: ...
