"""The three experiments of the Keras chatbot arena, run by the machine.

- reliability: system prompt + first request, N independent samples;
- dialog: the whole script; after a wrong answer the simulated user says what is wrong (rules at
  a rung, or a critic model) and the model gets up to K tries before the script moves on. Scripted
  turns, the correction "The current year is 2024." included, are steps like any other: only the
  rung's own words are feedback, so rungs are compared on what they said and nothing else;
- replay: mistakes harvested from runs (plus the scenario's seed mistakes) are put in another
  model's mouth as its own last turn, followed by the fix request; 3 attempts each.

Each experiment is a plain function over a `ChatModel`; wrapping the model in `RecordedModel`
makes it resumable. Every dialog is saved as a conversation with its grades in `meta`. Each rung's
dialog and each replayed mistake samples with a seed of its own (`derive_seed`), so that rungs are
independent measurements rather than three readings of one sampled first answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mendlab.conversation import Conversation
from mendlab.dialogs.feedback import Critic, Rung, feedback_origin, rule_feedback
from mendlab.dialogs.grading import GARBAGE, DialogGrader, TurnGrade, check_reply
from mendlab.dialogs.scenario import Scenario
from mendlab.errors import ContextOverflow
from mendlab.models import ChatModel, Message, SamplingParams
from mendlab.sampling import derive_seed
from mendlab.store import ResultsStore

KINDS = {
    "time_12h": "wrong time",
    "wrong_time": "wrong time",
    "time_format": "wrong time",
    "chatter": "API only",
    "extra_call": "API only",
    "unknown_function": "wrong API",
    "wrong_function": "wrong API",
    "missing_argument": "wrong API",
    "extra_argument": "wrong API",
    "wrong_duration": "wrong API",
    "wrong_event": "wrong event",
    "wrong_year": "wrong date",
    "wrong_date": "wrong date",
    "date_format": "wrong date",
}
KIND_ORDER = ("wrong time", "API only", "wrong API", "wrong event", "wrong date")


@dataclass(frozen=True)
class DialogResult:
    experiment: str
    scenario: str
    model: str
    messages: tuple[Message, ...]
    grades: tuple[TurnGrade, ...]
    rung: str = ""
    rep: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def conversation_id(self, run_id: str) -> str:
        parts = [run_id, self.experiment, self.scenario, self.model, self.rung, str(self.rep)]
        if "mistake" in self.extra:
            parts.append(str(self.extra["mistake"]["id"]))
        if "probe" in self.extra:  # a false-feedback probe: one per step
            parts.append(str(self.extra["probe"]["id"]))
        return ":".join(parts)

    def save(self, store: ResultsStore, run_id: str, scenario_ref: str | None = None) -> None:
        store.save_conversation(self.conversation(run_id, scenario_ref))

    def conversation(self, run_id: str, scenario_ref: str | None = None) -> Conversation:
        """The transcript as stored, with its grades and where it came from in `meta`."""
        meta = {
            "run": run_id,
            "experiment": self.experiment,
            "scenario": self.scenario,
            "scenario_ref": scenario_ref or self.scenario,  # what load_scenario() takes: a name or a path
            "rung": self.rung,
            "rep": self.rep,
            "grades": [g.to_json(0) | {"recurring": list(g.recurring)} for g in self.grades],
            **self.extra,
        }
        return Conversation(messages=self.messages, id=self.conversation_id(run_id), model=self.model, meta=meta)


def _opening(scenario: Scenario) -> list[Message]:
    return [Message("system", scenario.system_prompt)]


def run_reliability(model: ChatModel, scenario: Scenario, tries: int, params: SamplingParams) -> list[DialogResult]:
    history = [*_opening(scenario), Message("user", scenario.steps[0].user)]
    answers = model.chat(history, replace(params, n=tries))
    out = []
    for i, ans in enumerate(answers):
        grader = DialogGrader(scenario)
        grader.user(scenario.steps[0].user)
        grade = grader.assistant(ans.text)
        msgs = (*history, Message("assistant", ans.text))
        out.append(DialogResult("reliability", scenario.name, model.info.name, msgs, (grade,), rep=i))
    return out


def dialog_params(params: SamplingParams, rung: str, rep: int) -> SamplingParams:
    """The sampling of one rung's repetition: its own seed, drawn from the run's."""
    return replace(params, seed=derive_seed(params.seed, "dialog", rung, rep))


def play_dialog(
    model: ChatModel,
    scenario: Scenario,
    params: SamplingParams,
    rung: Rung,
    max_fixes: int = 3,
    critic: Critic | None = None,
    rep: int = 0,
) -> DialogResult:
    """One dialog, sampled with `params` as given (see `dialog_params` for the seed of a rung's rep)."""
    history = _opening(scenario)
    grader = DialogGrader(scenario)
    grades: list[TurnGrade] = []

    def answer() -> TurnGrade:
        (reply,) = model.chat(history, params)
        history.append(Message("assistant", reply.text))
        grade = grader.assistant(reply.text)
        grades.append(grade)
        return grade

    extra: dict[str, Any] = {}
    try:
        for step in scenario.steps:
            history.append(Message("user", step.user))
            grader.user(step.user)
            grade = answer()
            fixes = 0
            while grade.errors and fixes < max_fixes:
                want = grader.expected()
                if critic:
                    text = critic(history, grade.errors, want)
                else:
                    text = rule_feedback(grade.errors, want, scenario, rung)
                origin = feedback_origin("critic" if critic else rung)
                history.append(Message("user", text, origin=origin))
                grader.user(text, origin)
                grade = answer()
                fixes += 1
    except ContextOverflow as exc:
        # Final, not a sample error to retry: the same dialog would overflow again. The answers so far
        # count as they are (a mistake still open stays unfixed), and the dialog says why it ended.
        extra["context_full"] = str(exc)  # the turn it could not answer is kept, last
    return DialogResult(
        "dialog",
        scenario.name,
        model.info.name,
        tuple(history),
        tuple(grades),
        rung="critic" if critic else rung,
        rep=rep,
        extra=extra,
    )


@dataclass(frozen=True)
class Mistake:
    id: str
    step: int  # 0-based scripted step
    reply: str
    errors: tuple[str, ...]
    kind: str
    origin: str  # the model that made it, or "scenario"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "step": self.step,
            "reply": self.reply,
            "errors": list(self.errors),
            "kind": self.kind,
            "origin": self.origin,
        }


def mistake_kind(errors: Sequence[str]) -> str | None:
    """The replay kind of a wrong answer: the original's five for the calendar's errors; a value error
    of another API (`wrong_level`, `wrong_room`) is "wrong value", so its scenarios replay too."""
    for e in errors:
        if e in KINDS:
            return KINDS[e]
    if any(e.startswith("wrong_") for e in errors):
        return "wrong value"
    return None


def kind_rank(kind: str) -> int:
    """Where a kind sorts: the original's five in their order, then the others."""
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def harvest_mistakes(scenario: Scenario, results: Sequence[DialogResult], per_kind: int = 2) -> list[Mistake]:
    """Wrong first answers from runs (not garbage: there is nothing to fix one by one), then the
    scenario's seed mistakes; at most `per_kind` of each kind, deduplicated by text."""
    candidates: list[Mistake] = []
    seen: set[tuple[int, str]] = set()
    for res in results:
        if res.scenario != scenario.name:
            continue
        for g in res.grades:
            if g.attempt or not g.errors or GARBAGE & set(g.errors):
                continue
            kind = mistake_kind(g.errors)
            key = (g.step - 1, g.reply.strip())
            if kind is None or key in seen:
                continue
            seen.add(key)
            candidates.append(Mistake("", g.step - 1, g.reply, g.errors, kind, res.model))
    for seed in scenario.mistakes:
        check = check_reply(seed.reply, scenario.expected(seed.turn - 1), scenario)
        kind = mistake_kind(check.errors)
        key = (seed.turn - 1, seed.reply.strip())
        if kind is not None and key not in seen:
            seen.add(key)
            candidates.append(Mistake("", seed.turn - 1, seed.reply, check.errors, kind, "scenario"))
    out: list[Mistake] = []
    counts: dict[str, int] = {}
    for m in candidates:
        if counts.get(m.kind, 0) < per_kind:
            counts[m.kind] = counts.get(m.kind, 0) + 1
            out.append(replace(m, id=mistake_id(m.step, m.reply)))
    return sorted(out, key=lambda m: (kind_rank(m.kind), m.id))


def mistake_id(step: int, reply: str) -> str:
    """Named by its content, not its place in the bank: a bank harvested again after a model was
    added to the run may hold other mistakes, and "m1" must never name two of them."""
    return "m" + hashlib.sha256(f"{step}\n{reply.strip()}".encode()).hexdigest()[:8]


def replay_history(scenario: Scenario, step: int) -> list[Message]:
    """The script up to `step`, earlier turns answered correctly: only the replayed mistake is in play."""
    history = _opening(scenario)
    for i in range(step):
        history.append(Message("user", scenario.steps[i].user))
        history.append(Message("assistant", scenario.expected(i).render(scenario.api)))
    history.append(Message("user", scenario.steps[step].user))
    return history


def run_replay(
    model: ChatModel,
    scenario: Scenario,
    mistakes: Sequence[Mistake],
    params: SamplingParams,
    rung: Rung,
    attempts: int = 3,
) -> list[DialogResult]:
    return [r for m in mistakes for r in replay_mistake(model, scenario, m, params, rung, attempts)]


def replay_mistake(
    model: ChatModel, scenario: Scenario, m: Mistake, params: SamplingParams, rung: Rung, attempts: int = 3
) -> list[DialogResult]:
    """The mistake's `attempts` samples share a seed of their own (seed + i for attempt i)."""
    history = replay_history(scenario, m.step)
    want = scenario.expected(m.step)
    feedback = rule_feedback(m.errors, want, scenario, rung)
    convo = [
        *history,
        Message("assistant", m.reply, origin=m.origin),
        Message("user", feedback, origin=feedback_origin(rung)),
    ]
    seed = derive_seed(params.seed, "replay", rung, m.id)
    answers = model.chat(convo, replace(params, n=attempts, seed=seed))
    out = []
    for i, ans in enumerate(answers):
        grader = DialogGrader(scenario)
        for msg in convo:
            if msg.role == "user":
                grader.user(msg.content, msg.origin)
            elif msg.role == "assistant":
                grader.assistant(msg.content)
        grade = grader.assistant(ans.text)
        out.append(
            DialogResult(
                "replay",
                scenario.name,
                model.info.name,
                (*convo, Message("assistant", ans.text)),
                (grade,),
                rung=rung,
                rep=i,
                extra={"mistake": m.to_json()},
            )
        )
    return out


def load_results(store: ResultsStore, run_id: str) -> list[DialogResult]:
    """Read back what a run saved, for reports and for harvesting mistakes. Transcripts are graded
    again with today's grader (so a fix to the grader applies to old runs too); the grades stored at
    run time are the fallback when the scenario file is gone."""
    from mendlab.dialogs.grading import grade_conversation
    from mendlab.dialogs.scenario import load_scenario
    from mendlab.errors import ConfigError

    scenarios: dict[str, Scenario | None] = {}
    out = []
    for conv in store.conversations():
        meta = dict(conv.meta)
        if meta.get("run") != run_id:
            continue
        ref = str(meta.get("scenario_ref", meta["scenario"]))
        if ref not in scenarios:
            try:
                scenarios[ref] = load_scenario(ref)
            except ConfigError:
                scenarios[ref] = None
        scenario = scenarios[ref]
        if scenario is not None:
            rung = str(meta.get("rung") or "") or None  # for transcripts stored before feedback was tagged
            regraded = grade_conversation(scenario, conv.messages, rung)
            if meta["experiment"] == "replay":
                grades = tuple(regraded[-1:])
            elif meta["experiment"] == "false_feedback":  # the replayed history before the probe is not its own
                kept = len(meta.get("grades", []))
                grades = tuple(regraded[len(regraded) - kept :])
            else:
                grades = tuple(regraded)
        else:
            grades = tuple(
                TurnGrade(
                    turn=g["turn"],
                    step=g["step"],
                    attempt=g["attempt"],
                    marks=tuple(g["marks"]),
                    errors=tuple(g["errors"]),
                    pointed=tuple(g.get("pointed", ())),
                    fixed=g.get("fixed", False),
                    regression=g.get("regression", False),
                    recurring=tuple(g.get("recurring", ())),
                    reply=_assistant_text(conv.messages, g["turn"]),
                )
                for g in meta.get("grades", [])
            )
        extra: dict[str, Any] = {k: meta[k] for k in ("mistake", "probe", "context_full") if k in meta}
        out.append(
            DialogResult(
                meta["experiment"],
                meta["scenario"],
                conv.model or "",
                conv.messages,
                grades,
                rung=meta.get("rung", ""),
                rep=meta.get("rep", 0),
                extra=extra,
            )
        )
    return out


def _assistant_text(messages: Sequence[Message], turn: int) -> str:
    replies = [m.content for m in messages if m.role == "assistant"]
    return replies[turn - 1] if 0 < turn <= len(replies) else ""


ProgressHook = Callable[[str], None]
