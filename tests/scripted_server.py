"""A real OpenAI-compatible HTTP server on 127.0.0.1 that answers from a policy, for tests whose right
figures must be known in advance. It speaks the chat-completions wire format (the `openai` client and
our backend cannot tell it from vLLM), logs every request, and can be told to fail."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class ToolCalls:
    """A policy's answer as OpenAI `tool_calls`: (name, arguments) pairs, the arguments a dict (sent as
    its JSON) or a string sent as it is (a model's broken JSON)."""

    calls: tuple[tuple[str, dict[str, object] | str], ...]
    content: str | None = None

    def message(self) -> dict[str, object]:
        return {
            "role": "assistant",
            "content": self.content,
            "tool_calls": [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
                }
                for i, (name, args) in enumerate(self.calls)
            ],
        }


Policy = Callable[[list[dict[str, str]]], "str | ToolCalls"]


class ScriptedServer:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.requests: list[list[dict[str, str]]] = []
        self.fail_after: int | None = None  # answer HTTP 500 to every request after this many
        self.bodies: list[dict[str, Any]] = []  # every request body as sent (seeds, stops, ...)
        self.in_flight = 0  # requests being answered now, and the most there ever were at once
        self.peak_in_flight = 0
        self.connections = 0  # TCP connections accepted (keep-alive: a pooled client reuses its own)
        self.open_connections = 0
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as vLLM: every answer has a Content-Length

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server.connections += 1
                    server.open_connections += 1

            def finish(self) -> None:
                with server._lock:
                    server.open_connections -= 1
                super().finish()

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                messages = body["messages"]
                with server._lock:
                    if server.fail_after is not None and len(server.requests) >= server.fail_after:
                        self._send(500, {"error": {"message": "scripted failure"}})
                        return
                    server.requests.append(messages)
                    server.bodies.append(body)
                    server.in_flight += 1
                    server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                try:
                    text = server.policy(messages)
                except Exception as exc:  # a policy that does not know the request: fail it at once
                    self._send(400, {"error": {"message": f"scripted policy: {exc}"}})
                    return
                finally:
                    with server._lock:
                        server.in_flight -= 1
                if isinstance(text, ToolCalls):
                    message, finish = text.message(), "tool_calls"
                else:
                    for stop in body.get("stop") or []:
                        if stop and stop in text:
                            text = text[: text.index(stop)]
                    message, finish = {"role": "assistant", "content": text}, "stop"
                self._send(
                    200,
                    {
                        "id": "cmpl-scripted",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "scripted"),
                        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                    },
                )

        return Handler


@contextmanager
def scripted_server(policy: Policy) -> Iterator[ScriptedServer]:
    server = ScriptedServer(policy)
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def models_toml(url: str, names: list[str]) -> str:
    """A mendlab.toml naming the server's model under each of `names`, with no retries."""
    return "".join(
        f'[models.{n}]\nbackend = "openai"\nbase_url = "{url}"\nmodel = "scripted"\nmax_retries = 0\ntimeout_s = 10\n\n'
        for n in names
    )
