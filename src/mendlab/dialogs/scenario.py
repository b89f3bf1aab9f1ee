"""Scenarios are data: a system prompt, a declared API, a hidden world and scripted turns with their effects.

The truth of a turn is not a string but a change of state: "add this event", "change that one's
duration", "remove that one". The expected call of each turn is derived from the simulated world as
it stands and from the API's declaration (which function adds, sets or removes items of that
collection, with which parameters), so "the same day" and "cancel the meeting with Fred" mean what
they meant when the event was created. Errors in a scenario file name the file, the line and the field.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, Literal

from mendlab.dialogs.api import DATE_RE, TIME_RE, Api, Param, Value, file_value, legacy_api, parse_api, render_call
from mendlab.errors import ConfigError
from mendlab.models.base import SamplingParams
from mendlab.yamlfile import LocatedYaml, builtin_or_file

__all__ = ["DATE_RE", "TIME_RE", "Change", "ExpectedCall", "ItemSpec", "Record", "Scenario", "load_scenario"]

ChangeKind = Literal["add", "update", "remove"]
Mode = Literal["text", "tool_calls"]
MODES = ("text", "tool_calls")
Fields = tuple[tuple[str, Value], ...]


@dataclass(frozen=True)
class ItemSpec:
    """Something the script talks about (an event, a room's light): named by its key value, and
    recognised in a model's call by any of its words."""

    key: str
    collection: str
    param: str  # the collection's key parameter ("title")
    name: str  # its value for this item ("Meeting with Fred")
    words: tuple[str, ...]

    def named_by(self, value: str) -> bool:
        low = value.lower()
        return any(w in low for w in self.words)


@dataclass(frozen=True)
class Record:
    """An item as the hidden world holds it: every field, the key's included."""

    item: str | None  # which scripted item this is; None for one the script never meant
    fields: Fields

    def get(self, name: str) -> Value | None:
        return dict(self.fields).get(name)


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    item: str
    fields: Fields = ()  # the fields the turn sets (an add's defaults filled in)


@dataclass(frozen=True)
class Step:
    turn: int  # 1-based position among the scripted user turns
    user: str
    effect: Change | None  # None for a scripted feedback turn
    feedback: bool = False


@dataclass(frozen=True)
class ExpectedCall:
    function: str
    item: str
    args: Fields  # in the function's parameter order

    def value(self, name: str) -> Value | None:
        return dict(self.args).get(name)

    def render(self, api: Api) -> str:
        return render_call(api, self.function, self.args)


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
    today: dt.date | None
    world: tuple[Record, ...]
    items: dict[str, ItemSpec]
    steps: tuple[Step, ...]
    mistakes: tuple[SeedMistake, ...] = ()
    mode: Mode = "text"  # tool_calls: the requests carry the API as `tools`, and answers come as tool calls

    def target_step(self, index: int) -> Step:
        """The step a turn is graded against: a feedback turn is graded as a fix of the one before."""
        i = index
        while self.steps[i].feedback:
            i -= 1
        return self.steps[i]

    def states(self) -> list[tuple[Record, ...]]:
        """The true world before each step, and after the last (len = steps + 1)."""
        state = self.world
        out = [state]
        for step in self.steps:
            if step.effect is not None:
                state = apply_change(state, step.effect, self.items)
            out.append(state)
        return out

    def expected(self, index: int) -> ExpectedCall:
        """The call that step `index` (0-based) asks for, given the true world before it."""
        target = self.target_step(index)
        assert target.effect is not None
        change = target.effect
        before = self.states()[target.turn - 1]
        fn = self.api.function_for(change.kind, self.items[change.item].collection)
        assert fn is not None  # checked when the file was read
        after = apply_change(before, change, self.items) if change.kind != "remove" else before
        record = next(r for r in after if r.item == change.item)
        values = dict(record.fields)
        return ExpectedCall(fn.name, change.item, tuple((p, values[p]) for p in fn.params if p in values))

    def step_for_user_text(self, text: str, after: int = -1) -> int | None:
        """The first scripted step after step `after` whose user turn is `text`."""
        norm = _norm(text)
        for i, step in enumerate(self.steps):
            if i > after and _norm(step.user) == norm:
                return i
        return None

    def tools(self) -> tuple[str, ...]:
        """The API as OpenAI `tools`, for a request of a scenario in tool_calls mode."""
        return self.api.tools()


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def apply_change(state: tuple[Record, ...], change: Change, items: dict[str, ItemSpec]) -> tuple[Record, ...]:
    if change.kind == "add":
        spec = items[change.item]
        new = Record(change.item, ((spec.param, spec.name), *change.fields))
        return (*[r for r in state if r.item != change.item], new)
    if change.kind == "update":
        return tuple(
            Record(r.item, tuple({**dict(r.fields), **dict(change.fields)}.items())) if r.item == change.item else r
            for r in state
        )
    return tuple(r for r in state if r.item != change.item)


# ---------------------------------------------------------------- loading, with lines for errors


def _api(doc: LocatedYaml, root: dict[str, Any]) -> Api:
    """The `api:` of a file: a declaration, the name of a built-in scenario whose API it shares, or the
    older `{object, add, remove, default_duration}` (the built-in calendar API under other names)."""
    if "api" not in root:
        raise doc.fail((), "missing field 'api'")
    value = root["api"]
    if isinstance(value, str):
        if value not in BUILTIN:
            raise doc.fail(("api",), f"unknown built-in API {value!r} (built in: {', '.join(BUILTIN)}; or a mapping)")
        return builtin_api(value)
    if isinstance(value, dict) and "functions" not in value and ("add" in value or "remove" in value):
        doc.known(value, ("api",), {"object", "add", "remove", "default_duration"})
        return legacy_api(
            builtin_api("calendar"),
            doc.get(value, ("api",), "object", str),
            doc.get(value, ("api",), "add", str),
            doc.get(value, ("api",), "remove", str),
            doc.get(value, ("api",), "default_duration", int),
        )
    return parse_api(doc, value, ("api",))


@cache
def builtin_api(name: str) -> Api:
    """The API a built-in scenario declares, for files that name it instead of declaring their own."""
    text, where = builtin_or_file(name, "mendlab.dialogs", "scenarios", BUILTIN, "scenario")
    doc = LocatedYaml(where, text, "scenario file")
    if not isinstance(doc.data, dict) or not isinstance(doc.data.get("api"), dict):
        raise ConfigError(f"{where}:1: the built-in scenario {name!r} does not declare its API")
    return parse_api(doc, doc.data["api"], ("api",))


def _fields(
    doc: LocatedYaml, api: Api, collection: str, body: dict[str, Any], path: tuple[Any, ...], skip: set[str]
) -> Fields:
    """The fields a world record or a turn gives, each checked against its parameter's declaration."""
    allowed = set(api.fields(collection)) - {api.collections[collection].key}
    doc.known(body, path, allowed | skip)
    return tuple(
        (name, file_value(doc, api.params[name], body[name], (*path, name)))
        for name in api.fields(collection)
        if name in body and name in allowed
    )


def _defaults(api: Api, collection: str, given: Fields) -> Fields:
    have = dict(given)
    for name in api.fields(collection):
        default = api.params[name].default
        if name not in have and default is not None:
            have[name] = default
    return tuple(have.items())


def _missing(api: Api, collection: str, given: Fields) -> list[str]:
    key = api.collections[collection].key
    have = dict(given)
    return [n for n in api.fields(collection) if n != key and api.params[n].required and n not in have]


def _ref(
    doc: LocatedYaml, body: dict[str, Any], path: tuple[Any, ...], items: dict[str, ItemSpec], section: str
) -> tuple[str, str]:
    """(field, item key) of the item a record or turn is about: `item: KEY`, or `event: KEY`."""
    field = "item" if "item" in body else "event"
    key = doc.get(body, path, field, str)
    if key not in items:
        raise doc.fail((*path, field), f"unknown {field} {key!r} (not in {section})")
    return field, key


def parse_scenario(text: str, where: str) -> Scenario:
    doc = LocatedYaml(where, text, "scenario file")
    root = doc.data
    if not isinstance(root, dict):
        raise ConfigError(f"{where}:1: a scenario is a mapping with name, system_prompt, api, world, items, turns")
    doc.known(
        root,
        (),
        {"name", "description", "system_prompt", "api", "world", "events", "items", "turns", "mistakes", "mode"},
    )
    name = doc.get(root, (), "name", str)
    system_prompt = doc.get(root, (), "system_prompt", str)
    api = _api(doc, root)
    mode = doc.get(root, (), "mode", str, required=False) or "text"
    if mode not in MODES:
        raise doc.fail(("mode",), f"unknown mode (expected one of: {', '.join(MODES)})")

    section = "items" if "items" in root else "events"
    if "items" in root and "events" in root:
        raise doc.fail(("events",), "give the items once, under items (or events)")
    items_d = doc.get(root, (), section, dict)
    items: dict[str, ItemSpec] = {}
    only = next(iter(api.collections)) if len(api.collections) == 1 else None
    for key, item in items_d.items():
        p: tuple[Any, ...] = (section, key)
        if not isinstance(item, dict):
            raise doc.fail(p, "must be a mapping with its name and words")
        coll = doc.get(item, p, "collection", str, required=only is None) or only
        if coll not in api.collections:
            raise doc.fail(
                (*p, "collection"), f"unknown collection {coll!r} (the API has {', '.join(api.collections)})"
            )
        param = api.collections[coll].key
        doc.known(item, p, {param, "words", "collection"})
        words = doc.get(item, p, "words", list)
        if not words or not all(isinstance(w, str) and w.strip() for w in words):
            raise doc.fail(
                (*p, "words"), f"must be a non-empty list of words that identify the {api.collections[coll].item}"
            )
        items[str(key)] = ItemSpec(str(key), coll, param, doc.get(item, p, param, str), tuple(w.lower() for w in words))

    world_d = doc.get(root, (), "world", dict, required=False) or {}
    doc.known(world_d, ("world",), {"today", *api.collections})
    today = None
    if "today" in world_d:
        today = dt.date.fromisoformat(str(file_value(doc, _DATE, world_d["today"], ("world", "today"))))
    world: list[Record] = []
    for coll in api.collections:
        records = world_d.get(coll) or []
        if not isinstance(records, list):
            raise doc.fail(("world", coll), "must be a list of items")
        for i, rec in enumerate(records):
            p = ("world", coll, i)
            if not isinstance(rec, dict):
                raise doc.fail(p, "must be a mapping")
            field, key = _ref(doc, rec, p, items, section)
            if items[key].collection != coll:
                raise doc.fail((*p, field), f"{key!r} is an item of {items[key].collection!r}, not {coll!r}")
            given = _defaults(api, coll, _fields(doc, api, coll, rec, p, {field}))
            missing = _missing(api, coll, given)
            if missing:
                raise doc.fail(p, f"missing field '{missing[0]}'")
            world.append(Record(key, ((items[key].param, items[key].name), *given)))

    turns = doc.get(root, (), "turns", list)
    if not turns:
        raise doc.fail(("turns",), "must list at least one turn")
    steps: list[Step] = []
    state = tuple(world)
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
        kind: ChangeKind = kinds[0]  # type: ignore[assignment]
        body = t[kind]
        bp = (*p, kind)
        if not isinstance(body, dict):
            raise doc.fail(bp, f"must be a mapping with the {section[:-1]} it is about")
        field, key = _ref(doc, body, bp, items, section)
        coll = items[key].collection
        if api.function_for(kind, coll) is None:
            raise doc.fail(bp, f"no function of the API can {kind} items of {coll!r}")
        given = _fields(doc, api, coll, body, bp, {field})
        if kind == "remove" and given:
            raise doc.fail((*bp, given[0][0]), "a removal names its item only")
        if kind == "add":
            given = _defaults(api, coll, given)
            missing = _missing(api, coll, given)
            if missing:
                raise doc.fail(bp, f"an add needs {' and '.join(missing)}")
        elif not any(r.item == key for r in state):
            raise doc.fail((*bp, field), f"{field} {key!r} is not in {coll!r} at this turn")
        change = Change(kind, key, given)
        state = apply_change(state, change, items)
        steps.append(Step(i + 1, user, change))

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
        world=tuple(world),
        items=items,
        steps=tuple(steps),
        mistakes=tuple(mistakes),
        mode=mode,  # type: ignore[arg-type]
    )


_DATE = Param("today", format="date")
BUILTIN = ("calendar", "dentist", "smarthome")


def with_tools(params: SamplingParams, scenario: Scenario) -> SamplingParams:
    """A run's sampling with the scenario's API as `tools` when it is played in tool_calls mode (a
    text-mode scenario's requests stay as they were, keys and stored configs included)."""
    return replace(params, tools=scenario.tools()) if scenario.mode == "tool_calls" else params


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a YAML file by path."""
    text, where = builtin_or_file(name_or_path, "mendlab.dialogs", "scenarios", BUILTIN, "scenario")
    return parse_scenario(text, where)
