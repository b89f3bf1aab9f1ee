"""Scenarios are data: a system prompt, an API, a hidden world and scripted turns with their effects.

The truth of a turn is not a string but a change of state: "add this event", "change that one's
duration", "remove that one". The expected call of each turn is derived from the simulated calendar
as it stands, so "the same day" and "cancel the meeting with Fred" mean what they meant when the
event was created. Errors in a scenario file name the file, the line and the field.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from mendlab.errors import ConfigError
from mendlab.yamlfile import LocatedYaml, builtin_or_file

EffectKind = Literal["add", "update", "remove"]
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class EventSpec:
    key: str
    title: str
    words: tuple[str, ...]

    def named_by(self, title: str) -> bool:
        low = title.lower()
        return any(w in low for w in self.words)


@dataclass(frozen=True)
class Event:
    key: str | None  # which scripted event this is; None for one the script never meant
    title: str
    date: str
    time: str
    duration: int


@dataclass(frozen=True)
class Effect:
    kind: EffectKind
    event: str
    date: str | None = None
    time: str | None = None
    duration: int | None = None


@dataclass(frozen=True)
class Step:
    turn: int  # 1-based position among the scripted user turns
    user: str
    effect: Effect | None  # None for a scripted feedback turn
    feedback: bool = False


@dataclass(frozen=True)
class Api:
    object: str
    add: str
    remove: str
    default_duration: int

    @property
    def params(self) -> dict[str, tuple[str, ...]]:
        return {self.add: ("title", "date", "time", "duration"), self.remove: ("title", "date", "time")}

    @property
    def required(self) -> dict[str, tuple[str, ...]]:
        return {self.add: ("title", "date", "time"), self.remove: ("title", "date", "time")}


@dataclass(frozen=True)
class ExpectedCall:
    function: str
    event: str
    title: str
    date: str
    time: str
    duration: int | None  # None for a removal

    def render(self, api: Api) -> str:
        if self.duration is None:
            return f'{api.object}.{self.function}("{self.title}", "{self.date}", "{self.time}")'
        return (
            f'{api.object}.{self.function}("{self.title}", date="{self.date}", time="{self.time}", '
            f"duration={self.duration})"
        )


@dataclass(frozen=True)
class SeedMistake:
    turn: int
    reply: str


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    system_prompt: str
    api: Api
    today: dt.date
    calendar: tuple[Event, ...]
    events: dict[str, EventSpec]
    steps: tuple[Step, ...]
    mistakes: tuple[SeedMistake, ...] = ()

    def target_step(self, index: int) -> Step:
        """The step a turn is graded against: a feedback turn is graded as a fix of the one before."""
        i = index
        while self.steps[i].feedback:
            i -= 1
        return self.steps[i]

    def states(self) -> list[tuple[Event, ...]]:
        """The true calendar before each step, and after the last (len = steps + 1)."""
        state = self.calendar
        out = [state]
        for step in self.steps:
            if step.effect is not None:
                state = apply_effect(state, step.effect, self.events)
            out.append(state)
        return out

    def expected(self, index: int) -> ExpectedCall:
        """The call that step `index` (0-based) asks for, given the true calendar before it."""
        target = self.target_step(index)
        assert target.effect is not None
        before = self.states()[target.turn - 1]
        eff = target.effect
        spec = self.events[eff.event]
        if eff.kind == "add":
            assert eff.date and eff.time and eff.duration is not None
            return ExpectedCall(self.api.add, eff.event, spec.title, eff.date, eff.time, eff.duration)
        current = next(e for e in before if e.key == eff.event)
        if eff.kind == "update":
            return ExpectedCall(
                self.api.add,
                eff.event,
                current.title,
                eff.date or current.date,
                eff.time or current.time,
                eff.duration if eff.duration is not None else current.duration,
            )
        return ExpectedCall(self.api.remove, eff.event, current.title, current.date, current.time, None)

    def step_for_user_text(self, text: str, after: int = -1) -> int | None:
        """The first scripted step after step `after` whose user turn is `text`."""
        norm = _norm(text)
        for i, step in enumerate(self.steps):
            if i > after and _norm(step.user) == norm:
                return i
        return None


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def apply_effect(state: tuple[Event, ...], eff: Effect, events: dict[str, EventSpec]) -> tuple[Event, ...]:
    if eff.kind == "add":
        assert eff.date and eff.time and eff.duration is not None
        new = Event(eff.event, events[eff.event].title, eff.date, eff.time, eff.duration)
        return (*[e for e in state if e.key != eff.event], new)
    if eff.kind == "update":
        return tuple(
            replace(
                e,
                date=eff.date or e.date,
                time=eff.time or e.time,
                duration=eff.duration if eff.duration is not None else e.duration,
            )
            if e.key == eff.event
            else e
            for e in state
        )
    return tuple(e for e in state if e.key != eff.event)


# ---------------------------------------------------------------- loading, with lines for errors


def _date(doc: LocatedYaml, value: Any, path: tuple[Any, ...]) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str) and DATE_RE.match(value):
        try:
            dt.date.fromisoformat(value)
            return value
        except ValueError:
            pass
    raise doc.fail(path, f"must be a date YYYY-MM-DD, got {value!r}")


def _time(doc: LocatedYaml, value: Any, path: tuple[Any, ...]) -> str:
    if isinstance(value, str) and TIME_RE.match(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # YAML reads 17:00 unquoted as 1020
        raise doc.fail(path, f'must be a quoted time "HH:MM" (YAML read {value} as minutes)')
    raise doc.fail(path, f'must be a time "HH:MM" (24 h), got {value!r}')


def parse_scenario(text: str, where: str) -> Scenario:
    doc = LocatedYaml(where, text, "scenario file")
    root = doc.data
    if not isinstance(root, dict):
        raise ConfigError(f"{where}:1: a scenario is a mapping with name, system_prompt, api, world, events, turns")
    doc.known(root, (), {"name", "description", "system_prompt", "api", "world", "events", "turns", "mistakes"})
    name = doc.get(root, (), "name", str)
    system_prompt = doc.get(root, (), "system_prompt", str)
    api_d = doc.get(root, (), "api", dict)
    doc.known(api_d, ("api",), {"object", "add", "remove", "default_duration"})
    api = Api(
        object=doc.get(api_d, ("api",), "object", str),
        add=doc.get(api_d, ("api",), "add", str),
        remove=doc.get(api_d, ("api",), "remove", str),
        default_duration=doc.get(api_d, ("api",), "default_duration", int),
    )
    world = doc.get(root, (), "world", dict)
    doc.known(world, ("world",), {"today", "calendar"})
    today = dt.date.fromisoformat(_date(doc, world.get("today"), ("world", "today")))
    events_d = doc.get(root, (), "events", dict)
    events: dict[str, EventSpec] = {}
    for key, ev in events_d.items():
        p: tuple[Any, ...] = ("events", key)
        if not isinstance(ev, dict):
            raise doc.fail(p, "must be a mapping with title and words")
        doc.known(ev, p, {"title", "words"})
        words = doc.get(ev, p, "words", list)
        if not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise doc.fail((*p, "words"), "must be a non-empty list of words that identify the event")
        events[str(key)] = EventSpec(str(key), doc.get(ev, p, "title", str), tuple(w.lower() for w in words))

    calendar: list[Event] = []
    for i, item in enumerate(world.get("calendar") or []):
        p = ("world", "calendar", i)
        if not isinstance(item, dict):
            raise doc.fail(p, "must be a mapping")
        doc.known(item, p, {"event", "date", "time", "duration"})
        key = doc.get(item, p, "event", str)
        if key not in events:
            raise doc.fail((*p, "event"), f"unknown event {key!r} (not in events)")
        calendar.append(
            Event(
                key,
                events[key].title,
                _date(doc, item.get("date"), (*p, "date")),
                _time(doc, item.get("time"), (*p, "time")),
                doc.get(item, p, "duration", int),
            )
        )

    turns = doc.get(root, (), "turns", list)
    if not turns:
        raise doc.fail(("turns",), "must list at least one turn")
    steps: list[Step] = []
    state = tuple(calendar)
    for i, t in enumerate(turns):
        p = ("turns", i)
        if not isinstance(t, dict):
            raise doc.fail(p, "must be a mapping with 'user' and one of add/update/remove/feedback")
        doc.known(t, p, {"user", "add", "update", "remove", "feedback"})
        user = doc.get(t, p, "user", str)
        kinds = [k for k in ("add", "update", "remove") if k in t]
        feedback = bool(t.get("feedback", False))
        if feedback:
            if kinds:
                raise doc.fail(p, "a feedback turn has no add/update/remove of its own")
            if not steps:
                raise doc.fail((*p, "feedback"), "the first turn cannot be feedback")
            steps.append(Step(i + 1, user, None, True))
            continue
        if len(kinds) != 1:
            raise doc.fail(p, "needs exactly one of add, update, remove (or feedback: true)")
        kind: EffectKind = kinds[0]  # type: ignore[assignment]
        body = t[kind]
        bp = (*p, kind)
        if not isinstance(body, dict):
            raise doc.fail(bp, "must be a mapping with an event")
        doc.known(body, bp, {"event", "date", "time", "duration"})
        ev_key = doc.get(body, bp, "event", str)
        if ev_key not in events:
            raise doc.fail((*bp, "event"), f"unknown event {ev_key!r} (not in events)")
        date = _date(doc, body["date"], (*bp, "date")) if "date" in body else None
        time = _time(doc, body["time"], (*bp, "time")) if "time" in body else None
        duration = doc.get(body, bp, "duration", int, required=False)
        if kind == "add" and (date is None or time is None):
            raise doc.fail(bp, "an add needs date and time")
        if kind == "add" and duration is None:
            duration = api.default_duration
        if kind != "add" and not any(e.key == ev_key for e in state):
            raise doc.fail((*bp, "event"), f"event {ev_key!r} is not in the calendar at this turn")
        effect = Effect(kind, ev_key, date, time, duration)
        state = apply_effect(state, effect, events)
        steps.append(Step(i + 1, user, effect))

    mistakes: list[SeedMistake] = []
    for i, m in enumerate(root.get("mistakes") or []):
        p = ("mistakes", i)
        if not isinstance(m, dict):
            raise doc.fail(p, "must be a mapping with turn and reply")
        doc.known(m, p, {"turn", "reply"})
        turn = doc.get(m, p, "turn", int)
        if not 1 <= turn <= len(steps) or steps[turn - 1].feedback:
            raise doc.fail((*p, "turn"), f"must be the number of a scripted (non-feedback) turn, 1..{len(steps)}")
        mistakes.append(SeedMistake(turn, doc.get(m, p, "reply", str)))

    return Scenario(
        name=name,
        description=str(root.get("description", "")),
        system_prompt=system_prompt,
        api=api,
        today=today,
        calendar=tuple(calendar),
        events=events,
        steps=tuple(steps),
        mistakes=tuple(mistakes),
    )


BUILTIN = ("calendar", "dentist")


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a YAML file by path."""
    text, where = builtin_or_file(name_or_path, "mendlab.dialogs", "scenarios", BUILTIN, "scenario")
    return parse_scenario(text, where)
