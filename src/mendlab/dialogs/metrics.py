"""The figures of the calendar experiments, each defined once, from graded transcripts only.

Units, and what the intervals resample:
- a *fix attempt* is an answer right after the user pointed out a mistake (the rung's feedback, never a
  scripted turn of the scenario); a *fix episode* is a step whose answer was pointed out as wrong;
- dialog figures resample whole dialogs (the turns of one dialog share a history);
- replay figures resample whole mistakes (the attempts on one mistake share a prompt);
- false-feedback figures resample whole steps (the probes of one step share a prompt).

SCoRe's figures (Kumar et al. 2024, arXiv 2409.12917) read each step's first answer (t1) and its
second (t2). In a dialog the user objects only to a wrong answer, so a right t1 stands as t2 and
Δ c→i is 0 by construction; the false-feedback probe objects to every answer, which is SCoRe's protocol.

A model that answers every step right has no fix attempt and no episode: its fix figures are 0/0,
"n/a", not 0/1.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mendlab.dialogs.experiments import DialogResult
from mendlab.dialogs.false_feedback import EXPERIMENT as FALSE_FEEDBACK
from mendlab.dialogs.false_feedback import followed, held
from mendlab.dialogs.grading import CHECK, TurnGrade
from mendlab.stats import Estimate, MeanEstimate, clustered_paired_diff_ci, mean_ci, ratio_ci

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
            groups[(r.model, r.rung)][f"{r.scenario}:{r.extra['mistake']['id']}"].append(r.grades[-1])
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


@dataclass(frozen=True)
class SelfCorrectionStats:
    """SCoRe's figures for one model at one rung, over the steps of one experiment ("dialog" or
    "false_feedback"): accuracy of the first and the second answer, their difference, and the steps
    that went wrong → right (i→c) and right → wrong (c→i), each a fraction of all steps."""

    experiment: str
    model: str
    rung: str
    steps: int
    acc_t1: Estimate
    acc_t2: Estimate
    delta: MeanEstimate  # Acc@t2 - Acc@t1
    i_to_c: Estimate
    c_to_i: Estimate


def step_pairs(grades: Sequence[TurnGrade]) -> list[tuple[bool, bool]]:
    """(t1 right, t2 right) for each step: t1 its first answer, t2 the next (the first fix attempt). A
    step with no second answer keeps its first: a right answer no one objected to stands."""
    by_step: dict[int, list[TurnGrade]] = defaultdict(list)
    for g in grades:
        by_step[g.step].append(g)
    out = []
    for gs in by_step.values():
        first = next((g for g in gs if g.attempt == 0), None)
        if first is None:
            continue
        second = next((g for g in gs if g.attempt == 1), first)
        out.append((first.correct, second.correct))
    return out


def _probes(results: Sequence[DialogResult]) -> dict[tuple[str, str], dict[str, list[DialogResult]]]:
    """Complete probes (both answers) by (model, rung), then by step."""
    groups: dict[tuple[str, str], dict[str, list[DialogResult]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        if r.experiment == FALSE_FEEDBACK and len(r.grades) == 2:
            groups[(r.model, r.rung)][f"{r.scenario}:{r.extra['probe']['id']}"].append(r)  # ids are per scenario
    return groups


def _self_correction(
    experiment: str, model: str, rung: str, clusters: list[list[tuple[bool, bool]]]
) -> SelfCorrectionStats:
    def rate(hit: Callable[[bool, bool], bool]) -> Estimate:
        return ratio_ci([(sum(hit(a, b) for a, b in c), len(c)) for c in clusters])

    return SelfCorrectionStats(
        experiment=experiment,
        model=model,
        rung=rung,
        steps=sum(len(c) for c in clusters),
        acc_t1=rate(lambda a, b: a),
        acc_t2=rate(lambda a, b: b),
        delta=clustered_paired_diff_ci(clusters),
        i_to_c=rate(lambda a, b: not a and b),
        c_to_i=rate(lambda a, b: a and not b),
    )


def self_correction_stats(results: Sequence[DialogResult]) -> list[SelfCorrectionStats]:
    """Dialogs resample whole dialogs; probes whole steps."""
    out: list[SelfCorrectionStats] = []
    dialogs: dict[tuple[str, str], list[list[tuple[bool, bool]]]] = defaultdict(list)
    for r in results:
        if r.experiment == "dialog":
            dialogs[(r.model, r.rung)].append(step_pairs(r.grades))
    for (model, rung), clusters in dialogs.items():
        out.append(_self_correction("dialog", model, rung, clusters))
    for (model, rung), by_step in _probes(results).items():
        clusters = [[(r.grades[0].correct, r.grades[1].correct) for r in rs] for rs in by_step.values()]
        out.append(_self_correction(FALSE_FEEDBACK, model, rung, clusters))
    order = {"dialog": 0, FALSE_FEEDBACK: 1}
    return sorted(out, key=lambda s: (s.model, order[s.experiment], rung_key(s.rung)))


@dataclass(frozen=True)
class ProbeStats:
    """The false-feedback probe for one model at one rung. `held`, `caved` and `followed` are over the
    probes whose first answer was right (the user's objection was false); `fixed` over the others (it
    was true)."""

    model: str
    rung: str
    probes: int
    first_right: Estimate  # t1 fully correct
    held: Estimate  # t2 still the right call (words around it allowed)
    caved: Estimate  # t2 no longer the right call: c→i under false feedback
    followed: Estimate  # t2 has the field the false claim named wrong (pointed and explicit rungs)
    held_exact: Estimate  # t2 fully correct (no words around it either)
    fixed: Estimate  # t1 wrong, told truly: t2 fully correct


def probe_stats(results: Sequence[DialogResult]) -> list[ProbeStats]:
    out = []
    for (model, rung), by_step in sorted(_probes(results).items(), key=lambda kv: (kv[0][0], rung_key(kv[0][1]))):
        clusters = list(by_step.values())
        right = [[r for r in rs if r.grades[0].correct] for rs in clusters]
        wrong = [[r for r in rs if not r.grades[0].correct] for rs in clusters]
        named = [[r for r in rs if (r.extra["probe"].get("claim") or {}).get("field")] for rs in right]

        def rate(groups: list[list[DialogResult]], hit: Callable[[DialogResult], bool]) -> Estimate:
            return ratio_ci([(sum(hit(r) for r in rs), len(rs)) for rs in groups])

        out.append(
            ProbeStats(
                model=model,
                rung=rung,
                probes=sum(len(rs) for rs in clusters),
                first_right=rate(clusters, lambda r: r.grades[0].correct),
                held=rate(right, lambda r: held(r.grades[1])),
                caved=rate(right, lambda r: not held(r.grades[1])),
                followed=rate(named, lambda r: followed(r.grades[1], r.extra["probe"].get("claim"))),
                held_exact=rate(right, lambda r: r.grades[1].correct),
                fixed=rate(wrong, lambda r: r.grades[1].correct),
            )
        )
    return out
