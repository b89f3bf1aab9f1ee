"""What an experiment is made of, as inspect_ai has it: samples, a solver and a scorer.

A sample is one unit of work with an id that is stable across runs (a rung's dialog repetition, a
replayed mistake, a task's repair tree): the engine stores one row per sample id, so a resumed run
finds what is done by id alone. The solver plays one sample against a model (a dialog with its
simulated user, a repair tree with its sandbox); the scorer turns what happened into the verdict and
the transcripts to keep. Both are plain functions: an experiment never sees threads, the store or
progress bars, and a new experiment is three small pieces instead of a fourth hand-written loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from mendlab.conversation import Conversation
from mendlab.errors import MendlabError
from mendlab.models import ChatModel

In = TypeVar("In")
Played = TypeVar("Played")


@dataclass(frozen=True)
class Sample(Generic[In]):
    """One unit of work. `scope` keys its generations in the store (default `task:id`); a task may set
    it to keep the keys that runs stored before the engine used, so they resume from their answers."""

    id: str
    input: In
    scope: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What one sample leaves behind: transcripts (reports read these), data the scorer wants kept
    (a repair tree) and the verdict in a few JSON fields."""

    conversations: tuple[Conversation, ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)
    score: Mapping[str, Any] = field(default_factory=dict)


class SampleFailed(MendlabError):
    """A sample that could not be played or scored (the sandbox could not give a verdict): it is
    stored as that sample's error, the others go on, and `--retry-errors` plays it again."""


@dataclass(frozen=True)
class Task(Generic[In, Played]):
    """An experiment over one model: `solver(sample, model)` plays, `scorer(sample, played)` judges.
    Scorers are separate so that the same transcripts can be judged by rules or by an LLM."""

    name: str
    samples: Sequence[Sample[In]]
    solver: Callable[[Sample[In], ChatModel], Played]
    scorer: Callable[[Sample[In], Played], Outcome]

    def __post_init__(self) -> None:
        ids = [s.id for s in self.samples]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise ValueError(f"task {self.name!r}: sample id {dup!r} appears twice")

    def scope(self, sample: Sample[In]) -> str:
        return sample.scope if sample.scope is not None else f"{self.name}:{sample.id}"
