"""The openai backend against a real llama.cpp OpenAI-compatible server started on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mendlab.errors import BackendError
from mendlab.models import Completion, Message, SamplingParams, StreamDelta, chat_many, model_path
from mendlab.models.endpoint import OpenAIModel
from tests.scripted_server import scripted_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, gguf: Path, port: int) -> None:
        self.gguf, self.port = gguf, port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(self.gguf),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_ctx",
                "2048",
                "--model_alias",
                "smol",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "llama_cpp.server exited"
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError("llama_cpp.server did not come up")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def server(registry) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    srv = Server(model_path(registry.get("smollm2-135m")), _free_port())
    srv.start()
    yield srv
    srv.stop()


def test_chat_counts_tokens_and_streams(server: Server, smollm) -> None:  # type: ignore[no-untyped-def]
    model = OpenAIModel("smol-endpoint", server.url, "smol", concurrency=4, timeout_s=60, max_retries=1)
    msgs = [Message("user", "What is the capital of France? Answer in one word.")]
    p = SamplingParams(max_tokens=12)
    (a,) = model.chat(msgs, p)
    assert "Paris" in a.text
    # The server's token counts are the model's own: they agree with the in-process backend.
    (local,) = smollm.chat(msgs, p)
    assert a.prompt_tokens == local.prompt_tokens and a.completion_tokens == local.completion_tokens
    events = list(model.stream(msgs, p))
    done = events[-1]
    assert isinstance(done, Completion) and done.first_token_s is not None
    assert "".join(e.text for e in events if isinstance(e, StreamDelta)) == done.text == a.text
    assert done.completion_tokens == a.completion_tokens


def test_many_requests_in_flight(server: Server) -> None:
    model = OpenAIModel("smol-endpoint", server.url, "smol", concurrency=3, timeout_s=60, max_retries=1)
    jobs = [
        ([Message("user", f"Say the number {i}.")], SamplingParams(n=2, max_tokens=8, temperature=0.9, seed=i))
        for i in range(4)
    ]
    out = chat_many(model, jobs)
    assert [len(row) for row in out] == [2, 2, 2, 2]
    assert all(c.completion_tokens > 0 for row in out for c in row)
    assert [c.sample_index for c in out[0]] == [0, 1]


def test_server_down_is_one_clear_error() -> None:
    model = OpenAIModel("nowhere", f"http://127.0.0.1:{_free_port()}/v1", "x", timeout_s=2, max_retries=1)
    start = time.monotonic()
    with pytest.raises(BackendError, match=r"cannot reach http://127.0.0.1:\d+/v1"):
        model.chat([Message("user", "hi")], SamplingParams(max_tokens=4))
    assert time.monotonic() - start < 20
    with pytest.raises(BackendError, match=r"\$MENDLAB_TEST_NO_SUCH_KEY"):
        OpenAIModel("keyed", "http://127.0.0.1:1/v1", "x", api_key_env="MENDLAB_TEST_NO_SUCH_KEY")


# ---- many threads, one client: against the scripted server, which counts what reaches it ------------


def _echo(delay_s: float) -> Callable[[list[dict[str, str]]], str]:
    def policy(messages: list[dict[str, str]]) -> str:
        content = messages[-1]["content"]
        time.sleep(delay_s)
        if "boom" in content:
            raise ValueError("this prompt fails")
        return f"echo: {content}"

    return policy


def _wait_for(check: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_many_threads_share_one_client_and_the_concurrency_bound() -> None:
    with scripted_server(_echo(0.05)) as server:
        model = OpenAIModel("scripted", server.url, "scripted", concurrency=4, timeout_s=10, max_retries=0)
        answers: dict[int, list[Completion]] = {}

        def ask(i: int) -> None:
            answers[i] = model.chat([Message("user", f"thread {i}")], SamplingParams(max_tokens=4, seed=i))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {i: [c.text for c in a] for i, a in answers.items()} == {i: [f"echo: thread {i}"] for i in range(24)}
        # The bound holds across threads (each call used to bring its own semaphore), and it is used.
        assert 2 <= server.peak_in_flight <= 4
        # One pooled client: at most `concurrency` connections for 24 calls (a client per call: 24).
        assert server.connections <= 4
        model.close()
        assert _wait_for(lambda: server.open_connections == 0), "close() left connections open"


def test_the_samples_of_one_call_go_out_together_with_their_own_seeds() -> None:
    with scripted_server(_echo(0.2)) as server:
        model = OpenAIModel("scripted", server.url, "scripted", concurrency=4, timeout_s=10, max_retries=0)
        try:
            out = model.chat([Message("user", "hi")], SamplingParams(n=4, max_tokens=4, temperature=0.7, seed=10))
        finally:
            model.close()
    assert [c.sample_index for c in out] == [0, 1, 2, 3] and {c.text for c in out} == {"echo: hi"}
    assert sorted(b["seed"] for b in server.bodies) == [10, 11, 12, 13]
    assert server.peak_in_flight == 4


@pytest.mark.parametrize("concurrency", [8, 2])
def test_a_failing_request_cancels_and_loses_none_of_the_others(concurrency: int) -> None:
    """8: the failure comes while the others are in flight; 2: while most still wait for a slot."""
    prompts = ["one", "two", "boom", "four", "five", "six"]
    jobs = [
        ([Message("user", p)], SamplingParams(n=2, max_tokens=4, temperature=0.5, seed=i))
        for i, p in enumerate(prompts)
    ]
    delivered: dict[int, list[str]] = {}
    callers: set[str] = set()

    def on_result(i: int, samples: list[Completion]) -> None:
        callers.add(threading.current_thread().name)
        delivered[i] = [c.text for c in samples]

    with scripted_server(_echo(0.1)) as server:
        model = OpenAIModel("scripted", server.url, "scripted", concurrency=concurrency, timeout_s=10, max_retries=0)
        try:
            with pytest.raises(BackendError, match=r"HTTP 400.*this prompt fails"):
                model.chat_many(jobs, on_result)
        finally:
            model.close()
    assert delivered == {i: [f"echo: {p}"] * 2 for i, p in enumerate(prompts) if p != "boom"}
    assert callers == {threading.current_thread().name}  # a caller's store need not be thread-safe


def test_an_unreachable_server_stops_what_is_queued() -> None:
    model = OpenAIModel(
        "nowhere", f"http://127.0.0.1:{_free_port()}/v1", "x", concurrency=2, timeout_s=2, max_retries=1
    )
    jobs = [([Message("user", f"job {i}")], SamplingParams(max_tokens=4)) for i in range(30)]
    start = time.monotonic()
    with pytest.raises(BackendError, match="cannot reach"):
        model.chat_many(jobs)
    # Every queued job retrying against a dead port would take 15 rounds of backoff.
    assert time.monotonic() - start < 5
    model.close()
