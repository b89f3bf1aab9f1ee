"""Graded calendar dialogs per minute through the engine, at concurrency 1 and 16, side by side.

The model is a real OpenAI-compatible HTTP server on 127.0.0.1, written here for the bench: every
request waits a fixed latency (a stand-in for a GPU server's time per answer) and answers with a
canned calendar reply chosen by the conversation, so both settings play exactly the same dialogs.
What is measured is what the engine adds over one request at a time: the goal is >= 10x at 16.

    python bench/bench_engine.py [--latency 0.1] [--dialogs 48]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mendlab.dialogs.scenario import Scenario, load_scenario
from mendlab.dialogs.tasks import DialogPlan, dialog_task
from mendlab.engine import Engine, EngineConfig
from mendlab.models import SamplingParams
from mendlab.models.endpoint import OpenAIModel
from mendlab.store import ResultsStore


def answers(scenario: Scenario) -> list[str]:
    return [
        *(scenario.expected(i).render(scenario.api) for i in range(len(scenario.steps))),
        *(m.reply for m in scenario.mistakes),
    ]


class LatencyServer:
    """Chat completions after `latency` seconds each; counts requests and the most in flight."""

    def __init__(self, latency: float, replies: list[str]) -> None:
        self.latency = latency
        self.replies = replies
        self.requests = 0
        self.in_flight = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real server does

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests += 1
                    server.in_flight += 1
                    server.peak = max(server.peak, server.in_flight)
                time.sleep(server.latency)
                digest = hashlib.sha256(json.dumps(body["messages"]).encode()).digest()
                text = server.replies[int.from_bytes(digest[:4], "big") % len(server.replies)]
                data = json.dumps(
                    {
                        "id": "bench",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": "bench",
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                    }
                ).encode()
                with server.lock:
                    server.in_flight -= 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def measure(scenario: Scenario, server: LatencyServer, concurrency: int, dialogs: int, db: Path) -> tuple[float, int]:
    """Graded dialogs per minute, and the most requests the server saw at once."""
    plan = DialogPlan(("pointed",), dialogs, 2, SamplingParams(temperature=0.7, max_tokens=64))
    model = OpenAIModel("bench", server.url, "bench", concurrency=concurrency, max_retries=0)
    server.peak = 0
    with ResultsStore(db) as store:
        run = store.ensure_run(f"bench-{concurrency}", "bench", {"concurrency": concurrency})
        task = dialog_task(scenario, "calendar", run.id, plan)
        start = time.perf_counter()
        summary = Engine(store, run).run(task, model, EngineConfig(concurrency))
        wall = time.perf_counter() - start
    model.close()
    assert summary.played == dialogs and not summary.errors, summary.errors
    return dialogs / wall * 60, server.peak


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.1, help="seconds per request")
    ap.add_argument("--dialogs", type=int, default=48, help="dialogs at concurrency 16 (a third of it at 1)")
    args = ap.parse_args()
    scenario = load_scenario("calendar")
    server = LatencyServer(args.latency, answers(scenario))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            one, peak1 = measure(scenario, server, 1, max(4, args.dialogs // 3), Path(tmp) / "a.db")
            many, peak16 = measure(scenario, server, 16, args.dialogs, Path(tmp) / "b.db")
    finally:
        server.close()
    print(f"latency per request: {args.latency * 1000:.0f} ms; {server.requests} requests in all")
    print(f"concurrency  1: {one:8.1f} graded dialogs/min (server saw at most {peak1} at once)")
    print(f"concurrency 16: {many:8.1f} graded dialogs/min (server saw at most {peak16} at once)")
    ratio = many / one
    print(f"ratio 16 vs 1: {ratio:.1f}x (goal >= 10x): {'ok' if ratio >= 10 else 'BELOW GOAL'}")


if __name__ == "__main__":
    main()
