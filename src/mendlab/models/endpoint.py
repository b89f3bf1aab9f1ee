"""Any OpenAI-compatible server: vLLM, SGLang, Ollama, llama.cpp's server, hosted APIs.

This is how mendlab scales past one machine: point it at a vLLM deployment and raise
`concurrency`. Requests go out asynchronously under a semaphore; the openai client retries 429,
5xx, timeouts and dropped connections with exponential backoff before we give up with one line.
The n samples of a prompt are n requests with seeds seed..seed+n-1, which every server accepts
(many ignore or reject `n`), and a server with prefix caching (vLLM) shares the prompt anyway.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

from mendlab.errors import BackendError, ContextOverflow
from mendlab.models.base import Completion, Message, ModelInfo, SamplingParams, StreamDelta

T = TypeVar("T")
ResultHook = Callable[[int, list[Completion]], None]


def run_sync(coro: Awaitable[T]) -> T:
    """Run a coroutine from sync code, even when the caller already sits in an event loop (Gradio)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)  # type: ignore[arg-type]
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _context_error(exc: Exception) -> bool:
    text = str(exc).lower()
    return "context" in text and any(w in text for w in ("length", "window", "exceed", "too long"))


class OpenAIModel:
    """A ChatModel over an OpenAI-compatible HTTP endpoint."""

    def __init__(
        self,
        name: str,
        base_url: str,
        model: str,
        *,
        api_key_env: str | None = None,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 4,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not key:
            raise BackendError(f"{name}: environment variable ${api_key_env} (the API key) is not set")
        self._api_key = key or "none"
        self._info = ModelInfo(name=name, backend="openai", source=f"{base_url} ({model})")

    @property
    def info(self) -> ModelInfo:
        return self._info

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "api_key": self._api_key,
            "timeout": self.timeout_s,
            "max_retries": self.max_retries,
        }

    def _request(self, messages: Sequence[Message], params: SamplingParams, i: int) -> dict[str, Any]:
        req: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_openai() for m in messages],
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": params.seed + i,
        }
        if params.stop:
            req["stop"] = list(params.stop)
        return req

    def _fail(self, exc: Exception) -> Exception:
        import openai

        if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
            return BackendError(f"{self._info.name}: cannot reach {self.base_url}: {exc}")
        if isinstance(exc, openai.APIStatusError):
            if _context_error(exc):
                return ContextOverflow(f"{self._info.name}: the server says the prompt is too long: {exc.message}")
            return BackendError(f"{self._info.name}: {self.base_url} answered HTTP {exc.status_code}: {exc.message}")
        return BackendError(f"{self._info.name}: {type(exc).__name__}: {exc}")

    async def _one(
        self, client: Any, sem: asyncio.Semaphore, messages: Sequence[Message], params: SamplingParams, i: int
    ) -> Completion:
        import openai

        async with sem:
            start = time.perf_counter()
            try:
                resp = await client.chat.completions.create(**self._request(messages, params, i))
            except openai.OpenAIError as exc:
                raise self._fail(exc) from None
            latency = time.perf_counter() - start
        choice = resp.choices[0]
        usage = resp.usage
        text = choice.message.content or ""
        return Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            latency_s=latency,
            sample_index=i,
        )

    async def achat_many(
        self, jobs: Sequence[tuple[Sequence[Message], SamplingParams]], on_result: ResultHook | None = None
    ) -> list[list[Completion]]:
        """All samples of all jobs at once, at most `concurrency` requests in flight.

        `on_result(i, samples)` runs as soon as job i is complete, so a caller can store it before
        the rest finish: if the server dies, what was done is already saved.
        """
        import openai

        sem = asyncio.Semaphore(self.concurrency)
        async with openai.AsyncOpenAI(**self._client_kwargs()) as client:

            async def job(i: int, msgs: Sequence[Message], p: SamplingParams) -> list[Completion]:
                samples = list(await asyncio.gather(*(self._one(client, sem, msgs, p, k) for k in range(p.n))))
                if on_result is not None:
                    on_result(i, samples)
                return samples

            tasks = [asyncio.ensure_future(job(i, msgs, p)) for i, (msgs, p) in enumerate(jobs)]
            try:
                return list(await asyncio.gather(*tasks))
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def chat_many(
        self, jobs: Sequence[tuple[Sequence[Message], SamplingParams]], on_result: ResultHook | None = None
    ) -> list[list[Completion]]:
        return run_sync(self.achat_many(jobs, on_result))

    def chat(self, messages: Sequence[Message], params: SamplingParams) -> list[Completion]:
        return self.chat_many([(messages, params)])[0]

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> Iterator[StreamDelta | Completion]:
        import openai

        client = openai.OpenAI(**self._client_kwargs())
        start = time.perf_counter()
        first: float | None = None
        text = ""
        chunks = 0
        finish = "stop"
        usage = None
        try:
            stream = client.chat.completions.create(
                **self._request(messages, params, 0), stream=True, stream_options={"include_usage": True}
            )
            for chunk in stream:
                if chunk.usage is not None:
                    usage = chunk.usage
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                piece = choice.delta.content or ""
                if piece:
                    if first is None:
                        first = time.perf_counter() - start
                    chunks += 1
                    text += piece
                    yield StreamDelta(piece)
                if choice.finish_reason:
                    finish = choice.finish_reason
        except openai.OpenAIError as exc:
            raise self._fail(exc) from None
        finally:
            client.close()
        yield Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            # Servers that do not report usage in streams: one chunk is one token on those we know.
            completion_tokens=usage.completion_tokens if usage else chunks,
            finish_reason="length" if finish == "length" else "stop",
            latency_s=time.perf_counter() - start,
            first_token_s=first,
        )

    def close(self) -> None:
        pass
