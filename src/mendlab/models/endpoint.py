"""Any OpenAI-compatible server: vLLM, SGLang, Ollama, llama.cpp's server, hosted APIs.

This is how mendlab scales past one machine: point it at a vLLM deployment and raise
`concurrency`. The engine calls `chat()` from many threads at once, so a model keeps ONE sync client
(httpx pools its connections, sized to `concurrency`) and one semaphore that bounds the requests in
flight across every thread, whatever the number of callers; the openai client retries 429, 5xx,
timeouts and dropped connections with exponential backoff before we give up with one line.
The n samples of a prompt are n concurrent requests with seeds seed..seed+n-1, which every server
accepts (many ignore or reject `n`), and a server with prefix caching (vLLM) shares the prompt anyway.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any

from mendlab.errors import BackendError, ContextOverflow
from mendlab.models.base import Completion, Message, ModelInfo, SamplingParams, StreamDelta
from mendlab.models.toolcalls import message_text

ResultHook = Callable[[int, list[Completion]], None]


class _NotSent(Exception):
    """A request dropped before it went out, because another of the same call had failed."""


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
        # Shared by every thread that calls this model: requests in flight never exceed `concurrency`,
        # and one client's connection pool serves them all (a client per call opened a connection per call).
        self._slots = threading.BoundedSemaphore(concurrency)
        self._setup = threading.Lock()
        self._client: Any = None
        self._workers: ThreadPoolExecutor | None = None

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

    def _get_client(self) -> Any:
        """The model's one client, built on first use (a model that is never asked costs nothing)."""
        with self._setup:
            if self._client is None:
                import httpx2
                import openai

                limits = httpx2.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
                self._client = openai.OpenAI(
                    **self._client_kwargs(), http_client=openai.DefaultHttpxClient(limits=limits)
                )
            return self._client

    def _get_workers(self) -> ThreadPoolExecutor:
        """Threads that send the samples of one call side by side; `concurrency` of them is enough,
        since no more requests than that may be in flight anyway."""
        with self._setup:
            if self._workers is None:
                self._workers = ThreadPoolExecutor(
                    max_workers=self.concurrency, thread_name_prefix=f"mendlab-{self._info.name}"
                )
            return self._workers

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
        if params.tools:
            req["tools"] = params.tool_list()
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

    def _one(
        self,
        messages: Sequence[Message],
        params: SamplingParams,
        i: int,
        job_failed: threading.Event | None = None,
        server_down: threading.Event | None = None,
    ) -> Completion:
        """One request, in whatever thread calls it. Requests already in flight always finish; one
        still waiting for a slot is not sent once a sample of its own job failed (the job is lost
        anyway), nor once the server proved unreachable (every request would retry, then fail)."""
        import openai

        with self._slots:
            if (job_failed is not None and job_failed.is_set()) or (server_down is not None and server_down.is_set()):
                raise _NotSent
            start = time.perf_counter()
            try:
                resp = self._get_client().chat.completions.create(**self._request(messages, params, i))
            except BaseException as exc:
                if job_failed is not None:
                    job_failed.set()
                if isinstance(exc, openai.APIConnectionError) and server_down is not None:
                    server_down.set()  # APITimeoutError is one too
                if isinstance(exc, openai.OpenAIError):
                    raise self._fail(exc) from None
                raise
            latency = time.perf_counter() - start
        choice = resp.choices[0]
        usage = resp.usage
        text = message_text(choice.message)  # tool calls become the call text the grader reads
        return Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            latency_s=latency,
            sample_index=i,
        )

    def chat_many(
        self, jobs: Sequence[tuple[Sequence[Message], SamplingParams]], on_result: ResultHook | None = None
    ) -> list[list[Completion]]:
        """All samples of all jobs side by side, at most `concurrency` requests in flight (counted with
        every other thread's).

        `on_result(i, samples)` runs in the calling thread as soon as job i is complete, so a caller can
        store it before the rest finish. A failed request cancels nothing: the other jobs finish and
        are delivered, then the first error is raised (only the failed job's own queued samples, or
        everything queued once the server is unreachable, are not sent).
        """
        tasks = [(j, k) for j, (_, p) in enumerate(jobs) for k in range(p.n)]
        if len(tasks) == 1:  # the engine's usual call, one sample: sent from the caller's own thread
            msgs, p = jobs[0]
            samples = [self._one(msgs, p, 0)]
            if on_result is not None:
                on_result(0, samples)
            return [samples]
        workers = self._get_workers()
        job_failed = [threading.Event() for _ in jobs]
        server_down = threading.Event()
        futures: dict[Future[Completion], tuple[int, int]] = {
            workers.submit(self._one, jobs[j][0], jobs[j][1], k, job_failed[j], server_down): (j, k) for j, k in tasks
        }
        done: list[dict[int, Completion]] = [{} for _ in jobs]
        error: BaseException | None = None
        try:
            for fut in as_completed(futures):
                j, k = futures[fut]
                try:
                    done[j][k] = fut.result()
                except _NotSent:
                    continue
                except Exception as exc:
                    error = error or exc
                    continue
                n = jobs[j][1].n
                if len(done[j]) == n and on_result is not None:
                    on_result(j, [done[j][x] for x in range(n)])
        finally:
            # Ctrl-C or a failing on_result: what has not started is never sent.
            server_down.set()
            for fut in futures:
                fut.cancel()
        if error is not None:
            raise error
        return [[d[x] for x in range(p.n)] for d, (_, p) in zip(done, jobs, strict=True)]

    def chat(self, messages: Sequence[Message], params: SamplingParams) -> list[Completion]:
        """Safe to call from many threads at once; the n samples go out side by side."""
        return self.chat_many([(messages, params)])[0]

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> Iterator[StreamDelta | Completion]:
        import openai

        start = time.perf_counter()
        first: float | None = None
        text = ""
        chunks = 0
        finish = "stop"
        usage = None
        # A stream holds its slot (and its pooled connection) until it ends or its reader drops it.
        with self._slots:
            try:
                stream = self._get_client().chat.completions.create(
                    **self._request(messages, params, 0), stream=True, stream_options={"include_usage": True}
                )
                with stream:
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
        """Close the client's connections; a later call would open a new client."""
        with self._setup:
            client, self._client = self._client, None
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            client.close()
