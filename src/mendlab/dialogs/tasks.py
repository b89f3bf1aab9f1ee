"""The calendar experiments as engine tasks: which samples each has, how one is played, what is kept.

Sample ids are what a resumed run finds its work by: `RUNG:REP` for a dialog, `RUNG:MISTAKE` for a
replayed mistake, `RUNG:STEP:REP` for a false-feedback probe (STEP 1-based), `all` for the reliability
batch (its `tries` answers are n samples of one prompt, sampled together). Each sample keeps the
generation scope runs had before the engine, so a run stored then resumes from its answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mendlab.dialogs.experiments import (
    DialogResult,
    Mistake,
    dialog_params,
    play_dialog,
    replay_mistake,
    run_reliability,
)
from mendlab.dialogs.false_feedback import play_false_feedback, probe_params
from mendlab.dialogs.feedback import Critic, Rung
from mendlab.dialogs.scenario import Scenario
from mendlab.engine import Outcome, Sample, Task
from mendlab.models import ChatModel, SamplingParams


@dataclass(frozen=True)
class DialogPlan:
    """What a dialog task plays: each rung `reps` times, at most `max_fixes` fix requests per step."""

    rungs: tuple[str, ...]
    reps: int
    max_fixes: int
    params: SamplingParams


@dataclass(frozen=True)
class Replay:
    rung: Rung
    mistake: Mistake


def keep(run_id: str, scenario_ref: str) -> Callable[[Sample[Any], Sequence[DialogResult]], Outcome]:
    """The scorer of every calendar task: the grades were made while playing (the simulated user
    needs them to decide its feedback), so scoring stores the transcripts with them and a verdict."""

    def score(sample: Sample[Any], results: Sequence[DialogResult]) -> Outcome:
        grades = [g for r in results for g in r.grades]
        return Outcome(
            conversations=tuple(r.conversation(run_id, scenario_ref) for r in results),
            score={
                "answers": len(grades),
                "correct": sum(g.correct for g in grades),
                "all_correct": all(g.correct for g in grades),
            },
        )

    return score


def reliability_task(
    scenario: Scenario, scenario_ref: str, run_id: str, tries: int, params: SamplingParams
) -> Task[None, list[DialogResult]]:
    return Task(
        "reliability",
        [Sample("all", None, scope="reliability")],
        lambda sample, model: run_reliability(model, scenario, tries, params),
        keep(run_id, scenario_ref),
    )


def dialog_task(
    scenario: Scenario, scenario_ref: str, run_id: str, plan: DialogPlan, critic: Critic | None = None
) -> Task[tuple[str, int], list[DialogResult]]:
    """With a critic the dialogs are the critic's (rung "critic"); else one per rung and repetition."""
    rungs = ("critic",) if critic is not None else plan.rungs
    samples = [Sample(f"{r}:{rep}", (r, rep)) for r in rungs for rep in range(plan.reps)]

    def solve(sample: Sample[tuple[str, int]], model: ChatModel) -> list[DialogResult]:
        rung, rep = sample.input
        played = play_dialog(
            model,
            scenario,
            dialog_params(plan.params, rung, rep),
            rung if rung != "critic" else "pointed",  # type: ignore[arg-type]
            plan.max_fixes,
            critic=critic,
            rep=rep,
        )
        return [played]

    return Task("dialog", samples, solve, keep(run_id, scenario_ref))


def replay_task(
    scenario: Scenario,
    scenario_ref: str,
    run_id: str,
    bank: Sequence[Mistake],
    rungs: Sequence[Rung],
    params: SamplingParams,
    attempts: int,
) -> Task[Replay, list[DialogResult]]:
    samples = [Sample(f"{g}:{m.id}", Replay(g, m), scope=f"replay:{g}") for g in rungs for m in bank]

    def solve(sample: Sample[Replay], model: ChatModel) -> list[DialogResult]:
        return replay_mistake(model, scenario, sample.input.mistake, params, sample.input.rung, attempts)

    return Task("replay", samples, solve, keep(run_id, scenario_ref))


def false_feedback_task(
    scenario: Scenario, scenario_ref: str, run_id: str, rungs: Sequence[Rung], reps: int, params: SamplingParams
) -> Task[tuple[Rung, int, int], list[DialogResult]]:
    """Every scripted step at every rung, `reps` times: t1, the user's objection (false after a right
    answer), t2. See `mendlab.dialogs.false_feedback`."""
    samples = [
        Sample(f"{g}:{step + 1}:{rep}", (g, step, rep))
        for g in rungs
        for step in range(len(scenario.steps))
        for rep in range(reps)
    ]

    def solve(sample: Sample[tuple[Rung, int, int]], model: ChatModel) -> list[DialogResult]:
        rung, step, rep = sample.input
        sampling = probe_params(params, rung, step, rep)
        return [play_false_feedback(model, scenario, step, sampling, rung, rep, claim_seed=params.seed)]

    return Task("false_feedback", samples, solve, keep(run_id, scenario_ref))
