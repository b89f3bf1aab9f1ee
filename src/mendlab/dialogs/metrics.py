"""The figures of the calendar experiments, each defined once, from graded transcripts only.

Units, and what the intervals resample:
- a *fix attempt* is an answer right after the user pointed out a mistake (the rung's feedback, never a
  scripted turn of the scenario); a *fix episode* is a step whose answer was pointed out as wrong;
- dialog figures resample whole dialogs (the turns of one dialog share a history);
- replay figures resample whole mistakes (the attempts on one mistake share a prompt).

A model that answers every step right has no fix attempt and no episode: its fix figures are 0/0,
"n/a", not 0/1.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from mendlab.dialogs.experiments import DialogResult
from mendlab.dialogs.grading import CHECK, TurnGrade
from mendlab.stats import Estimate, MeanEstimate, mean_ci, ratio_ci

RUNG_ORDER = ("vague", "pointed", "explicit", "critic")


def rung_key(rung: str) -> tuple[int, str]:
    return (RUNG_ORDER.index(rung) if rung in RUNG_ORDER else len(RUNG_ORDER), rung)


@dataclass(frozen=True)
class DialogStats:
    """One model at one feedback rung, over its dialogs."""

    model: str
    rung: str
    dialogs: int
    first_try: Estimate  # first answers to scripted steps that are fully correct
    pointed_gone: Estimate  # fix attempts with none of the errors pointed out (and still a call)
    correct_next: Estimate  # fix attempts that are fully correct
    fixed_within_k: Estimate  # fix episodes that reached a fully correct answer within the allowed attempts
    turns_to_fix: MeanEstimate  # fix attempts until fully correct, over the episodes that got there
    regressions: Estimate  # of the attempts where the pointed errors are gone: a new error appeared
    recurring: Estimate  # answers with an error type already made at an earlier step of the dialog
    recurring_types: tuple[tuple[str, int], ...]  # error type, answers that repeated it; most common first


@dataclass(frozen=True)
class ReplayStats:
    """One model at one rung, over the replayed mistakes it was given (one fix attempt per sample)."""

    model: str
    rung: str
    mistakes: int
    attempts: int
    pointed_gone: Estimate
    correct_next: Estimate
    regressions: Estimate


@dataclass(frozen=True)
class ReliabilityStats:
    model: str
    tries: int
    valid_call: Estimate  # ✓: a call of the API that parses, whatever its arguments
    correct: Estimate  # no error at all


def _fix_attempts(grades: Sequence[TurnGrade]) -> list[TurnGrade]:
    return [g for g in grades if g.attempt > 0 and g.pointed]


def _episodes(grades: Sequence[TurnGrade]) -> list[tuple[bool, int]]:
    """(fixed, attempts it took) for each step of one dialog where a mistake was pointed out."""
    by_step: dict[int, list[TurnGrade]] = defaultdict(list)
    for g in grades:
        by_step[g.step].append(g)
    out = []
    for gs in by_step.values():
        attempts = [g for g in gs if g.attempt > 0]
        first = next((g for g in attempts if g.pointed), None)
        if first is None:
            continue  # nothing was pointed out on this step: no episode
        hit = next((g for g in attempts if g.attempt >= first.attempt and g.correct), None)
        out.append((hit is not None, 0 if hit is None else hit.attempt - first.attempt + 1))
    return out


def dialog_stats(results: Sequence[DialogResult]) -> list[DialogStats]:
    groups: dict[tuple[str, str], list[DialogResult]] = defaultdict(list)
    for r in results:
        if r.experiment == "dialog":
            groups[(r.model, r.rung)].append(r)
    out = []
    for (model, rung), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], rung_key(kv[0][1]))):
        first, gone, right, within, turns, regress, recur = [], [], [], [], [], [], []
        types: Counter[str] = Counter()
        for r in rs:
            firsts = [g for g in r.grades if g.attempt == 0]
            first.append((sum(g.correct for g in firsts), len(firsts)))
            attempts = _fix_attempts(r.grades)
            gone.append((sum(g.pointed_gone for g in attempts), len(attempts)))
            right.append((sum(g.correct for g in attempts), len(attempts)))
            regress.append((sum(g.regression for g in attempts), sum(g.pointed_gone for g in attempts)))
            episodes = _episodes(r.grades)
            within.append((sum(ok for ok, _ in episodes), len(episodes)))
            fixed_turns = [t for ok, t in episodes if ok]
            turns.append((float(sum(fixed_turns)), len(fixed_turns)))
            recur.append((sum(bool(g.recurring) for g in r.grades), len(r.grades)))
            for g in r.grades:
                types.update(g.recurring)
        out.append(
            DialogStats(
                model=model,
                rung=rung,
                dialogs=len(rs),
                first_try=ratio_ci(first),
                pointed_gone=ratio_ci(gone),
                correct_next=ratio_ci(right),
                fixed_within_k=ratio_ci(within),
                turns_to_fix=mean_ci(turns),
                regressions=ratio_ci(regress),
                recurring=ratio_ci(recur),
                recurring_types=tuple(sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))),
            )
        )
    return out


def replay_stats(results: Sequence[DialogResult]) -> list[ReplayStats]:
    groups: dict[tuple[str, str], dict[str, list[TurnGrade]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r.experiment == "replay" and r.grades:
            groups[(r.model, r.rung)][str(r.extra["mistake"]["id"])].append(r.grades[-1])
    out = []
    for (model, rung), by_mistake in sorted(groups.items(), key=lambda kv: (kv[0][0], rung_key(kv[0][1]))):
        clusters = list(by_mistake.values())
        out.append(
            ReplayStats(
                model=model,
                rung=rung,
                mistakes=len(clusters),
                attempts=sum(len(gs) for gs in clusters),
                pointed_gone=ratio_ci([(sum(g.pointed_gone for g in gs), len(gs)) for gs in clusters]),
                correct_next=ratio_ci([(sum(g.correct for g in gs), len(gs)) for gs in clusters]),
                regressions=ratio_ci(
                    [(sum(g.regression for g in gs), sum(g.pointed_gone for g in gs)) for gs in clusters]
                ),
            )
        )
    return out


def reliability_stats(results: Sequence[DialogResult]) -> list[ReliabilityStats]:
    """Each try is its own sample of the first request: each is its own cluster."""
    groups: dict[str, list[TurnGrade]] = defaultdict(list)
    for r in sorted(results, key=lambda r: r.rep):
        if r.experiment == "reliability" and r.grades:
            groups[r.model].append(r.grades[0])
    return [
        ReliabilityStats(
            model=model,
            tries=len(gs),
            valid_call=ratio_ci([(int(CHECK in g.marks), 1) for g in gs]),
            correct=ratio_ci([(int(g.correct), 1) for g in gs]),
        )
        for model, gs in sorted(groups.items())
    ]
