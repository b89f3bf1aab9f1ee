"""The engine: samples in flight within a model's budget, each stored as it completes, failures per sample.

The model is a real OpenAI-compatible server on 127.0.0.1 (tests/scripted_server.py) reached through
our openai backend, so concurrency, server errors and kill -9 are the real thing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mendlab.engine import Engine, EngineConfig, Outcome, Sample, SampleFailed, Task
from mendlab.models import ChatModel, Message, SamplingParams
from mendlab.models.endpoint import OpenAIModel
from mendlab.store import ResultsStore
from mendlab.store.recorded import RecordedModel
from tests.scripted_server import scripted_server

PARAMS = SamplingParams(max_tokens=8)


class InFlight:
    """A policy that answers after `delay` seconds and remembers how many requests overlapped."""

    def __init__(self, delay: float, fail: str | None = None) -> None:
        self.delay = delay
        self.fail = fail
        self.now = 0
        self.peak = 0
        self.seen: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, messages: list[dict[str, str]]) -> str:
        prompt = messages[-1]["content"]
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.seen.append(prompt)
        try:
            time.sleep(self.delay)
            if self.fail is not None and self.fail in prompt:
                raise ValueError("this prompt fails")
            return f"echo {prompt}"
        finally:
            with self._lock:
                self.now -= 1


def echo_task(n: int, name: str = "echo") -> Task[str, str]:
    def solve(sample: Sample[str], model: ChatModel) -> str:
        (answer,) = model.chat([Message("user", sample.input)], PARAMS)
        return answer.text

    def score(sample: Sample[str], text: str) -> Outcome:
        return Outcome(data={"text": text}, score={"right": text == f"echo {sample.input}"})

    return Task(name, [Sample(f"s{i}", f"prompt {i}") for i in range(n)], solve, score)


def endpoint(url: str) -> OpenAIModel:
    return OpenAIModel("scripted", url, "scripted", max_retries=0, timeout_s=10, concurrency=64)


def test_samples_run_concurrently_up_to_the_budget_and_no_further(tmp_path: Path) -> None:
    policy = InFlight(0.2)
    with scripted_server(policy) as server, ResultsStore(tmp_path / "m.db") as store:
        run = store.ensure_run("r", "test", {"x": 1})
        start = time.perf_counter()
        summary = Engine(store, run).run(echo_task(16), endpoint(server.url), EngineConfig(concurrency=4))
        wall = time.perf_counter() - start
    assert policy.peak == 4  # the budget is used, and never exceeded
    assert summary.played == 16 and not summary.errors
    assert wall < 16 * 0.2  # serial takes 3.2 s; how much faster is bench/bench_engine.py's to say
    rows = store_rows(tmp_path / "m.db", "r")
    assert sorted(r.sample_id for r in rows) == sorted(f"s{i}" for i in range(16))
    assert all(r.score == {"right": True} and r.status == "ok" and r.finish_reason == "stop" for r in rows)
    assert all(r.prompt_tokens == 10 and r.completion_tokens == 5 and r.generations == 1 for r in rows)
    assert {r.config_sha256 for r in rows} == {run_config_hash(tmp_path / "m.db", "r")}


def store_rows(db: Path, run_id: str) -> list[Any]:
    with ResultsStore(db) as store:
        return store.samples(run_id)


def run_config_hash(db: Path, run_id: str) -> str:
    from mendlab.store import config_sha256

    with ResultsStore(db) as store:
        stored = store.run(run_id)
        assert stored is not None
        return config_sha256(stored.config)


def test_a_failed_sample_is_its_own_error_and_retry_errors_plays_only_it(tmp_path: Path) -> None:
    policy = InFlight(0.05, fail="prompt 3")
    db = tmp_path / "m.db"
    with scripted_server(policy) as server, ResultsStore(db) as store:
        run = store.ensure_run("r", "test", {})
        engine = Engine(store, run)
        first = engine.run(echo_task(8), endpoint(server.url), EngineConfig(concurrency=8))
        assert first.played == 8 and [e.sample_id for e in first.errors] == ["s3"]
        bad = next(r for r in store.samples("r") if r.sample_id == "s3")
        assert bad.status == "error" and bad.finish_reason == "error" and "HTTP 400" in (bad.error or "")
        assert sum(r.status == "ok" for r in store.samples("r")) == 7  # the others were not cancelled

        policy.seen.clear()
        again = engine.run(echo_task(8), endpoint(server.url), EngineConfig(concurrency=8))
        assert again.played == 0 and again.reused == 8 and policy.seen == []  # an error is kept as it is

        policy.fail = None  # the server is mended
        retried = engine.run(echo_task(8), endpoint(server.url), EngineConfig(concurrency=8, retry_errors=True))
        assert retried.played == 1 and not retried.errors and policy.seen == ["prompt 3"]
        assert all(r.status == "ok" for r in store.samples("r")) and len(store.samples("r")) == 8


def test_a_dead_server_fails_every_sample_without_ending_the_run(tmp_path: Path) -> None:
    with scripted_server(InFlight(0)) as server:
        url = server.url
    with ResultsStore(tmp_path / "m.db") as store:  # the port is closed now: connection refused
        summary = Engine(store, store.ensure_run("r", "test", {})).run(
            echo_task(5), endpoint(url), EngineConfig(concurrency=2)
        )
    assert summary.played == 5 and len(summary.errors) == 5
    assert all("cannot reach" in (e.error or "") for e in summary.errors)


def test_a_sample_the_scorer_cannot_judge_is_an_error(tmp_path: Path) -> None:
    task = echo_task(3)

    def score(sample: Sample[str], text: str) -> Outcome:
        if sample.id == "s1":
            raise SampleFailed("the sandbox could not give a verdict")
        return Outcome(score={"ok": True})

    task = Task(task.name, task.samples, task.solver, score)
    with scripted_server(InFlight(0)) as server, ResultsStore(tmp_path / "m.db") as store:
        summary = Engine(store, store.ensure_run("r", "test", {})).run(task, endpoint(server.url))
    assert [(e.sample_id, e.error) for e in summary.errors] == [("s1", "the sandbox could not give a verdict")]


def test_a_bug_in_our_code_stops_the_run_after_saving_the_samples_in_flight(tmp_path: Path) -> None:
    task = echo_task(30)

    def score(sample: Sample[str], text: str) -> Outcome:
        if sample.id == "s2":
            raise KeyError("a bug, not the sample's fault")
        return Outcome(score={"ok": True})

    task = Task(task.name, task.samples, task.solver, score)
    with scripted_server(InFlight(0.1)) as server, ResultsStore(tmp_path / "m.db") as store:
        with pytest.raises(KeyError):
            Engine(store, store.ensure_run("r", "test", {})).run(task, endpoint(server.url), EngineConfig(4))
        rows = store.samples("r")
    assert "s2" not in {r.sample_id for r in rows}  # never stored as a verdict nor as the sample's error
    assert 2 <= len(rows) < 30  # those in flight were saved; those not started were dropped


def test_the_engine_scopes_a_recorded_model_per_sample(tmp_path: Path) -> None:
    """Two samples sending the same prompt get a sample each, not one shared stored answer."""
    task: Task[str, str] = echo_task(1)
    same = Task("same", [Sample("a", "hello"), Sample("b", "hello")], task.solver, task.scorer)
    policy = InFlight(0)
    with scripted_server(policy) as server, ResultsStore(tmp_path / "m.db") as store:
        run = store.ensure_run("r", "test", {})
        Engine(store, run).run(same, RecordedModel(endpoint(server.url), store, "r"))
        scopes = sorted(g.meta["scope"] for g in store.generations("r"))
    assert scopes == ["same:a", "same:b"] and len(policy.seen) == 2


def test_duplicate_sample_ids_are_refused() -> None:
    task = echo_task(1)
    with pytest.raises(ValueError, match="sample id 'x' appears twice"):
        Task("t", [Sample("x", "1"), Sample("x", "2")], task.solver, task.scorer)


KILLED = """
import sys, time
sys.path.insert(0, {root!r})
from tests.test_engine import echo_task, endpoint
from mendlab.engine import Engine, EngineConfig
from mendlab.store import ResultsStore
with ResultsStore({db!r}) as store:
    Engine(store, store.ensure_run("r", "test", {{}})).run(echo_task(40), endpoint({url!r}), EngineConfig(4))
"""


def test_kill_9_loses_only_samples_in_flight_and_the_rerun_plays_only_the_rest(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    policy = InFlight(0.15)
    with scripted_server(policy) as server:
        code = KILLED.format(root=str(Path(__file__).parent.parent), db=str(db), url=server.url)
        proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": "src"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not db.exists() or len(store_rows(db, "r")) < 6):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = {r.sample_id for r in store_rows(db, "r")}
        assert 6 <= len(before) < 40
        policy.seen.clear()
        with ResultsStore(db) as store:
            summary = Engine(store, store.ensure_run("r", "test", {})).run(
                echo_task(40), endpoint(server.url), EngineConfig(4)
            )
    rows = store_rows(db, "r")
    assert sorted(r.sample_id for r in rows) == sorted(f"s{i}" for i in range(40))  # each once
    assert summary.reused == len(before) and summary.played == 40 - len(before)
    replayed = {p.removeprefix("prompt ") for p in policy.seen}
    assert not replayed & {s.removeprefix("s") for s in before}  # nothing stored was asked again
    assert json.loads(json.dumps(rows[0].to_json()))["finish_reason"] == "stop"


def test_concurrent_askers_of_one_prompt_get_the_answer_that_is_stored(tmp_path: Path) -> None:
    """Dialogs share one critic: eight asking the same thing at once must all play the stored answer."""
    count = {"n": 0}
    lock = threading.Lock()

    def unique(messages: list[dict[str, str]]) -> str:
        with lock:
            count["n"] += 1
            n = count["n"]
        time.sleep(0.1)
        return f"answer {n}"

    with scripted_server(unique) as server, ResultsStore(tmp_path / "m.db") as store:
        critic = RecordedModel(endpoint(server.url), store, "r:critic")
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            texts = list(pool.map(lambda _: critic.chat([Message("user", "same")], PARAMS)[0].text, range(8)))
        (stored,) = store.generations("r:critic")
    assert set(texts) == {stored.output}


def test_a_task_whose_samples_all_fail_stops_and_leaves_the_rest_pending(tmp_path: Path) -> None:
    from mendlab.engine import EngineStopped

    with scripted_server(InFlight(0)) as server:
        url = server.url
    with ResultsStore(tmp_path / "m.db") as store:
        engine = Engine(store, store.ensure_run("r", "test", {}))
        with pytest.raises(EngineStopped, match="stopped after 10 samples in a row failed"):
            engine.run(echo_task(60), endpoint(url), EngineConfig(concurrency=2))
        stored = store.samples("r")
        assert 10 <= len(stored) < 60 and all(r.status == "error" for r in stored)
        policy = InFlight(0)
        with scripted_server(policy) as server:  # the server is back: the same command plays the rest
            summary = engine.run(echo_task(60), endpoint(server.url), EngineConfig(concurrency=2))
        assert summary.played == 60 - len(stored) and not summary.errors
