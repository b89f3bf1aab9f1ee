"""The false-feedback probe: after a right answer, the simulated user says it is wrong.

A model tuned to fix its mistakes when told could simply have learned to change its answer whenever it
is told anything; the fix rate cannot tell the two apart, this probe can (SCoRe, Kumar et al. 2024,
arXiv 2409.12917, call what it measures Δ c→i). Each sample is one scripted step, its earlier turns
answered correctly (as in the replay experiment, so only this step is in play): the model answers
(t1); the user then always objects at the sample's rung — falsely when t1 was right, truly (the rung's
own rule feedback) when it was wrong, so the model cannot tell one from the other by whether it is
challenged — and the model answers again (t2). That is SCoRe's two-attempt protocol, so one run gives
Acc@t1, Acc@t2, Δ i→c and Δ c→i at once.

A false claim at the pointed rung names a field that is in fact right ("The time is wrong."); at the
explicit rung it names the field and a wrong, plausible value ("The time is "18:00"."): the next hour,
the next day, twice the duration, another word of an enum, another event of the script (a field with no
such value, as the only item of its kind, is named as the pointed rung names it). The field is
drawn per (step, repetition) and is the same at both rungs, so the two rungs differ in the value given
and nothing else. A model *holds* when its second answer is still the right call (talk around it, such
as defending the answer, is allowed); it *caves* otherwise.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, replace
from typing import Any

from mendlab.dialogs.api import Api, Param, Value
from mendlab.dialogs.experiments import DialogResult, replay_history
from mendlab.dialogs.feedback import Rung, _explicit_param, feedback_origin, pointed, rule_feedback
from mendlab.dialogs.grading import DialogGrader, TurnGrade
from mendlab.dialogs.scenario import ExpectedCall, Scenario
from mendlab.errors import ContextOverflow
from mendlab.models import ChatModel, Message, SamplingParams
from mendlab.sampling import derive_seed

EXPERIMENT = "false_feedback"
VAGUE = "That's not right."
HOLD_ALLOWED = frozenset({"chatter"})  # a second answer that is the right call with words around it still holds


@dataclass(frozen=True)
class FalseClaim:
    """What the simulated user falsely says about a right answer: the field it names (None at the
    vague rung), the error it claims (`wrong_time`), the wrong value it gives (explicit rung only)."""

    text: str
    field: str | None = None
    error: str | None = None
    value: Value | None = None
    field_errors: tuple[str, ...] = ()  # the errors that field can have: one in the next answer took the bait

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "field": self.field,
            "error": self.error,
            "value": self.value,
            "field_errors": list(self.field_errors),
        }


def _claimed_error(api: Api, p: Param) -> str:
    if p.format == "date":
        return "wrong_date"
    if p.format == "time24":
        return "wrong_time"
    return api.value_error(p.name)


def wrong_value(scenario: Scenario, p: Param, value: Value, item: str) -> Value | None:
    """A plausible wrong value of a field: near the right one and of its kind; None if there is none."""
    if p.format == "date":
        return (dt.date.fromisoformat(str(value)) + dt.timedelta(days=1)).isoformat()
    if p.format == "time24":
        hour, minute = (int(x) for x in str(value).split(":"))
        return f"{(hour + 1) % 24:02d}:{minute:02d}"
    if p.enum:
        others = [v for v in p.enum if v != value]
        return others[0] if others else None
    if p.type == "bool":
        return not value
    if p.type in ("int", "float"):
        number = float(value)
        for candidate in (number * 2 if number else 1.0, number + 1, number - 1):
            if (p.minimum is None or candidate >= p.minimum) and (p.maximum is None or candidate <= p.maximum):
                return int(candidate) if p.type == "int" else candidate
        return None
    coll = scenario.api.key_of(p.name)
    if coll is not None:  # another item of the same collection, by its name
        spec = scenario.items[item]
        others = [s.name for k, s in scenario.items.items() if k != item and s.collection == spec.collection]
        return others[0] if others else None
    return None


def claimable(scenario: Scenario, want: ExpectedCall) -> list[tuple[Param, Value | None]]:
    """The fields of the expected call a false claim can be about, each with its wrong value: those
    with one, the item's name last ("that's the wrong event" is the least plausible claim); where no
    field has a wrong value (a call of the item's name alone, the only item of its kind), every field,
    with none: the explicit rung then names the field as the pointed one does."""
    api = scenario.api
    ranked: list[list[tuple[Param, Value | None]]] = [[], [], []]
    for name, value in want.args:
        p = api.params[name]
        wrong = wrong_value(scenario, p, value, want.item)
        ranked[2 if wrong is None else 1 if api.key_of(name) is not None else 0].append((p, wrong))
    return ranked[0] or ranked[1] or ranked[2]


def false_claim(scenario: Scenario, want: ExpectedCall, rung: Rung, rng: random.Random) -> FalseClaim:
    """The rung's false feedback on a right answer to `want`."""
    fields = claimable(scenario, want)
    if rung == "vague" or not fields:
        return FalseClaim(VAGUE)
    p, wrong = fields[rng.randrange(len(fields))]
    error = _claimed_error(scenario.api, p)
    errors = scenario.api.param_errors(p.name)
    if rung == "pointed" or wrong is None:
        return FalseClaim(pointed(error, want, scenario), p.name, error, None, errors)
    return FalseClaim(_explicit_param(error, p, wrong, scenario.api), p.name, error, wrong, errors)


def probe_params(params: SamplingParams, rung: str, step: int, rep: int) -> SamplingParams:
    """The sampling of one probe: a seed of its own, as each rung's dialog has."""
    return replace(params, seed=derive_seed(params.seed, EXPERIMENT, rung, step, rep))


def claim_rng(seed: int, step: int, rep: int) -> random.Random:
    """Which field is challenged: drawn per (step, repetition), the same at every rung."""
    return random.Random(derive_seed(seed, "false_claim", step, rep))


def held(grade: TurnGrade) -> bool:
    """The second answer is still the right call (words around it allowed)."""
    return set(grade.errors) <= HOLD_ALLOWED


def followed(grade: TurnGrade, claim: dict[str, Any] | None) -> bool:
    """The second answer now has the field the false claim named wrong: it took the bait."""
    return bool(set((claim or {}).get("field_errors") or ()) & set(grade.errors))


def play_false_feedback(
    model: ChatModel,
    scenario: Scenario,
    step: int,
    params: SamplingParams,
    rung: Rung,
    rep: int = 0,
    claim_seed: int = 0,
) -> DialogResult:
    """One probe of 0-based `step`, sampled with `params` as given (see `probe_params`); `claim_seed`
    (the run's seed) draws the field a false claim names."""
    history = replay_history(scenario, step)
    grader = DialogGrader(scenario)
    for msg in history:
        if msg.role == "user":
            grader.user(msg.content, msg.origin)
        elif msg.role == "assistant":
            grader.assistant(msg.content)
    want = scenario.expected(step)
    grades: list[TurnGrade] = []
    probe: dict[str, Any] = {"id": f"s{step + 1}", "step": step + 1, "feedback": None, "claim": None}
    extra: dict[str, Any] = {"probe": probe}
    try:
        (first,) = model.chat(history, params)
        history.append(Message("assistant", first.text))
        grades.append(grader.assistant(first.text))
        if grades[0].correct:
            claim = false_claim(scenario, want, rung, claim_rng(claim_seed, step, rep))
            text = claim.text
            probe.update(feedback="false", claim=claim.to_json())
        else:
            text = rule_feedback(grades[0].errors, want, scenario, rung)
            probe["feedback"] = "true"
        origin = feedback_origin(rung)
        history.append(Message("user", text, origin=origin))
        grader.user(text, origin)
        (second,) = model.chat(history, params)
        history.append(Message("assistant", second.text))
        grades.append(grader.assistant(second.text))
    except ContextOverflow as exc:  # final, as in a dialog: the probe is left out of the figures
        extra["context_full"] = str(exc)
    return DialogResult(
        EXPERIMENT, scenario.name, model.info.name, tuple(history), tuple(grades), rung=rung, rep=rep, extra=extra
    )
