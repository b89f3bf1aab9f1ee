"""Negotiation as an engine task: one sample per stream, played through every feedback setting.

A stream is one learner's rounds; its round 1 is shared by every setting (their changes are paired),
so the settings of a stream are one sample, never two samples racing for the same first game. The
sample's id names the rounds and settings it plays, so asking for more rounds or another setting
plays the stream again, and `play_stream` loads its finished games and plays only the rest. Games
are stored one by one as they finish (a stream is long); the sample row says whether the stream
finished. A game that failed (server down, critic down) makes the stream that sample's error, for
`--retry-errors`; a game that cannot fit the context is final, its stream done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from mendlab.engine import Outcome, Sample, SampleFailed, Task
from mendlab.models import ChatModel
from mendlab.negotiation.rounds import CONTEXT_FULL, GameRecord, NegotiationRun


def stream_id(stream: int, rounds: int, settings: Sequence[str]) -> str:
    return f"{stream}:{rounds}r:{'+'.join(settings)}"


def stream_task(
    negotiation: NegotiationRun,
    settings: Sequence[str],
    on_game: Callable[[GameRecord, bool], None] = lambda record, fresh: None,
) -> Task[int, list[GameRecord]]:
    """The engine's model is the learner (its cost is the sample's); the other roles are the cast's."""
    cfg = negotiation.cfg
    samples = [Sample(stream_id(i, cfg.rounds, settings), i, scope="") for i in range(cfg.games)]

    def solve(sample: Sample[int], learner: ChatModel) -> list[GameRecord]:
        cast = replace(negotiation.cast, **{cfg.learner: learner})
        mine = replace(negotiation, cast=cast)
        return [record for setting in settings for record in mine.play_stream(setting, sample.input, on_game)]

    return Task("negotiation", samples, solve, score_stream)


def score_stream(sample: Sample[int], records: list[GameRecord]) -> Outcome:
    failed = [r for r in records if r.error is not None and not r.error.startswith(CONTEXT_FULL)]
    if failed:
        first = failed[0]
        raise SampleFailed(f"{first.setting} round {first.round}: {first.error}")
    return Outcome(
        score={
            "games": len(records),
            "deals": sum(r.deal for r in records),
            "context_full": sum(r.error is not None for r in records),
        }
    )
