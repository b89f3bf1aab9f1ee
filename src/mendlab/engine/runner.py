"""The one runner: samples in flight concurrently within a model's budget, each stored as it completes.

Why one runner: against a vLLM deployment the experiments used to send one request at a time however
much `concurrency` the user set, and one failed request ended a whole batch. Here every sample is a
job on a pool of `concurrency` threads (solvers call the blocking `ChatModel.chat`; a local llama.cpp
model runs one sample at a time, an endpoint as many as its budget), driven from an asyncio loop so
that several tasks, or several models with budgets of their own, can be awaited together.

Each finished sample is one transaction (its row and its transcripts), so kill -9 loses at most the
samples in flight, and those resume from their stored generations. A sample whose model or sandbox
failed (`MendlabError`: server down, context overflow, no verdict) is stored as that sample's error
and the others go on; a rerun keeps it as it is unless asked to retry errors. A bug in our own code
(any other exception) is not a sample's fault: it stops the run, after the samples in flight are saved.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from mendlab.engine.task import Outcome, Sample, Task
from mendlab.errors import MendlabError
from mendlab.models import ChatModel, Completion, Message, ModelInfo, ModelSpec, SamplingParams, StreamDelta
from mendlab.store import ResultsStore, Run, SampleRecord, config_sha256

In = TypeVar("In")
Played = TypeVar("Played")
T = TypeVar("T")


STOP_AFTER = 10  # failed samples in a row (at least twice the concurrency) that stop a task


class EngineStopped(MendlabError):
    """Every sample fails: rather than store thousands of errors, the task stops and the samples not
    played stay pending, so the same command resumes once the server is back."""


@dataclass(frozen=True)
class EngineConfig:
    """How to run a task: samples in flight at once, and whether stored errors are played again."""

    concurrency: int = 1
    retry_errors: bool = False

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise MendlabError("concurrency must be at least 1")


def engine_concurrency(spec: ModelSpec) -> int:
    """A model's budget: an endpoint's `concurrency` from mendlab.toml; a local model one sample at a
    time (its calls are serialised anyway, and interleaved dialogs would spoil its prompt cache)."""
    return max(1, spec.concurrency) if spec.backend == "openai" else 1


@dataclass(frozen=True)
class TaskSummary:
    """What one `Engine.run` did: samples already stored, played now, and the failed ones."""

    task: str
    model: str
    total: int
    reused: int
    played: int
    errors: tuple[SampleRecord, ...]
    prompt_tokens: int
    completion_tokens: int
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "model": self.model,
            "total": self.total,
            "reused": self.reused,
            "played": self.played,
            "errors": [{"sample": e.sample_id, "error": e.error} for e in self.errors],
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "wall_s": round(self.wall_s, 3),
        }


class _Cost:
    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.generations = 0
        self.latency_s = 0.0


class _Meter:
    """A sample's own view of the model: counts what its generations cost (stored answers included,
    so a resumed sample costs what it did the first time). `scoped` views share the count."""

    def __init__(self, model: ChatModel, cost: _Cost | None = None) -> None:
        self.model = model
        self.cost = cost if cost is not None else _Cost()

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    def scoped(self, scope: str) -> _Meter:
        """A solver that keys its own generations (a game's roles) keeps doing so through the meter."""
        return _Meter(_scoped(self.model, scope), self.cost)

    def _count(self, completions: Sequence[Completion]) -> None:
        for c in completions:
            self.cost.prompt_tokens += c.prompt_tokens
            self.cost.completion_tokens += c.completion_tokens
            self.cost.latency_s += c.latency_s
            self.cost.generations += 1

    def chat(self, messages: Sequence[Message], params: SamplingParams) -> list[Completion]:
        out = self.model.chat(messages, params)
        self._count(out)
        return out

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> Iterator[StreamDelta | Completion]:
        for event in self.model.stream(messages, params):
            if isinstance(event, Completion):
                self._count([event])
            yield event

    def close(self) -> None:
        """The engine does not own the model: whoever loaded it closes it."""


def _scoped(model: ChatModel, scope: str) -> ChatModel:
    """`model.scoped(scope)` where the model keys its generations by scope (`RecordedModel`)."""
    scoped = getattr(model, "scoped", None)
    return scoped(scope) if callable(scoped) else model


class Engine:
    """Runs tasks for one stored run. Samples are keyed by (run, task, model, sample id)."""

    def __init__(self, store: ResultsStore, run: Run) -> None:
        self.store = store
        self.run_id = run.id
        self.config_sha256 = config_sha256(run.config)

    def run(
        self,
        task: Task[In, Played],
        model: ChatModel,
        cfg: EngineConfig = EngineConfig(),
        *,
        subject: str | None = None,
        on_done: Callable[[SampleRecord], None] | None = None,
    ) -> TaskSummary:
        """`arun` from sync code (a thread of its own when the caller already sits in an event loop)."""
        summary: TaskSummary = _run_sync(lambda: self.arun(task, model, cfg, subject=subject, on_done=on_done))
        return summary

    def pending(self, task: Task[In, Played], subject: str, retry_errors: bool) -> list[Sample[In]]:
        stored = {r.sample_id: r.status for r in self.store.samples(self.run_id, task.name, subject)}
        return [s for s in task.samples if s.id not in stored or (retry_errors and stored[s.id] == "error")]

    async def arun(
        self,
        task: Task[In, Played],
        model: ChatModel,
        cfg: EngineConfig = EngineConfig(),
        *,
        subject: str | None = None,
        on_done: Callable[[SampleRecord], None] | None = None,
    ) -> TaskSummary:
        """Play every sample not stored yet; `subject` names whose samples they are (default the model;
        a repair setup names its three models). `on_done` sees each record as it is stored."""
        name = subject or model.info.name
        start = time.perf_counter()
        todo = self.pending(task, name, cfg.retry_errors)
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix=f"engine-{task.name}")
        records: list[SampleRecord] = []
        limit = max(STOP_AFTER, 2 * cfg.concurrency)
        streak = 0
        try:
            futures = [loop.run_in_executor(pool, self._play, task, model, name, s) for s in todo]
            for fut in asyncio.as_completed(futures):
                rec = await fut
                records.append(rec)
                if on_done is not None:
                    on_done(rec)
                streak = streak + 1 if rec.status == "error" else 0
                if streak >= limit:  # the server is down, or every request is refused: stop asking
                    raise EngineStopped(
                        f"{task.name} on {name}: stopped after {streak} samples in a row failed (last: {rec.error}). "
                        f"The {len(todo) - len(records)} not played yet are left for the next run, the failed "
                        "ones for --retry-errors"
                    )
        finally:
            # A bug stops the run: samples not started are dropped, those in flight finish and are saved.
            pool.shutdown(wait=True, cancel_futures=True)
        errors = tuple(r for r in records if r.status == "error")
        return TaskSummary(
            task=task.name,
            model=name,
            total=len(task.samples),
            reused=len(task.samples) - len(todo),
            played=len(records),
            errors=errors,
            prompt_tokens=sum(r.prompt_tokens for r in records),
            completion_tokens=sum(r.completion_tokens for r in records),
            wall_s=time.perf_counter() - start,
        )

    def _play(self, task: Task[In, Played], model: ChatModel, subject: str, sample: Sample[In]) -> SampleRecord:
        meter = _Meter(_scoped(model, task.scope(sample)))
        outcome: Outcome | None = None
        error: str | None = None
        try:
            outcome = task.scorer(sample, task.solver(sample, meter))
        except MendlabError as exc:
            error = str(exc) or type(exc).__name__
        rec = SampleRecord(
            run_id=self.run_id,
            task=task.name,
            model=subject,
            sample_id=sample.id,
            status="ok" if outcome is not None else "error",
            error=error,
            score=dict(outcome.score) if outcome is not None else {},
            data=dict(outcome.data) if outcome is not None else {},
            prompt_tokens=meter.cost.prompt_tokens,
            completion_tokens=meter.cost.completion_tokens,
            generations=meter.cost.generations,
            latency_s=meter.cost.latency_s,
            config_sha256=self.config_sha256,
        )
        self.store.save_sample(rec, outcome.conversations if outcome is not None else ())
        return rec


def _run_sync(make: Callable[[], Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
