"""The openai backend against a real llama.cpp OpenAI-compatible server started on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mendlab.errors import BackendError
from mendlab.models import Completion, Message, SamplingParams, StreamDelta, chat_many, model_path
from mendlab.models.endpoint import OpenAIModel


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
