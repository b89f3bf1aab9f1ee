"""What "never trained on the evaluation scenarios" means, checked rather than hoped for.

The evaluation set is the built-in scenarios (calendar, dentist, smarthome) plus any held-out
scenario files named with `--eval`. A training scenario or a training dialogue *overlaps* it when it
shares, after normalisation (lower case, runs of blanks as one space, ends stripped):

- a user turn: a scripted user turn of an evaluation scenario, word for word;
- a call: an assistant message (or a scenario's expected call) holding a call of an evaluation
  API equal to one of an evaluation scenario's expected calls: same object and function, the same
  value for every parameter (defaults filled in, strings normalised, numbers by value, so
  `duration=60*3` equals `duration=180` and `'Meeting with Fred'` equals `"meeting with  fred"`);
- for a scenario also an item name (an event title such as "Meeting with Fred"), or its whole
  content (the digest `mendlab run` stores), so a renamed copy of calendar.yaml is caught too.

System prompts are not compared: a training scenario of the calendar API must describe that API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mendlab.dialogs.api import Api
from mendlab.dialogs.calls import Call, NotLiteral, extract_calls
from mendlab.dialogs.scenario import BUILTIN, ExpectedCall, Scenario, load_scenario
from mendlab.errors import ConfigError

CallKey = tuple[str, str, tuple[tuple[str, Any], ...]]


def norm(text: str) -> str:
    return " ".join(text.lower().split())


def _value(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return norm(value)
    return value


def expected_key(api: Api, call: ExpectedCall) -> CallKey:
    fn = api.functions[call.function]
    have = dict(call.args)
    values = [(p, have.get(p, api.params[p].default)) for p in fn.params]
    return (api.object, call.function, tuple((p, _value(v)) for p, v in values if v is not None))


def call_key(api: Api, call: Call) -> CallKey | None:
    """The key of a call a model wrote, or None when it is not a readable call of this API."""
    fn = api.functions.get(call.function)
    if fn is None or (call.obj is not None and call.obj != api.object) or len(call.args) > len(fn.params):
        return None
    fields = dict(zip(fn.params, call.args, strict=False))
    for k, v in call.kwargs.items():
        if k not in fn.params or k in fields:
            return None
        fields[k] = v
    if any(isinstance(v, NotLiteral) for v in fields.values()):
        return None
    values = []
    for p in fn.params:
        value = fields.get(p, api.params[p].default)
        if value is not None:
            values.append((p, _value(value)))
    return (api.object, call.function, tuple(values))


@dataclass(frozen=True)
class EvalSet:
    """Fingerprints of the evaluation scenarios, each mapped to where it comes from."""

    names: tuple[str, ...]
    digests: Mapping[str, str]
    user_turns: Mapping[str, str]
    calls: Mapping[CallKey, str]
    items: Mapping[str, str]
    apis: tuple[Api, ...]

    def turn_overlap(self, text: str) -> str | None:
        where = self.user_turns.get(norm(text))
        return f"the user turn {text.strip()!r} is {where}" if where else None

    def call_overlap(self, reply: str) -> str | None:
        for api in self.apis:
            for call in extract_calls(reply, api.object, set(api.functions)).calls:
                key = call_key(api, call)
                if key is not None and key in self.calls:
                    return f"the call {call.source or reply.strip()!r} is {self.calls[key]}"
        return None


def scenario_refs(refs: Iterable[str]) -> list[str]:
    """Scenario names or files; a folder stands for its *.yaml files."""
    out: list[str] = []
    for ref in refs:
        path = Path(ref)
        if ref not in BUILTIN and path.is_dir():
            found = sorted(str(p) for p in path.glob("*.yaml"))
            if not found:
                raise ConfigError(f"{ref}: no *.yaml scenario files in this folder")
            out += found
        else:
            out.append(ref)
    return out


def build_eval_set(extra: Sequence[str] = ()) -> EvalSet:
    """The built-in scenarios and the held-out ones given (names, files or folders)."""
    from mendlab.dialogs.runner import scenario_digest

    names: list[str] = []
    digests: dict[str, str] = {}
    turns: dict[str, str] = {}
    calls: dict[CallKey, str] = {}
    items: dict[str, str] = {}
    apis: list[Api] = []
    for ref in dict.fromkeys([*BUILTIN, *scenario_refs(extra)]):
        s = load_scenario(ref)
        label = f"evaluation scenario {s.name!r}"
        names.append(s.name)
        digests.setdefault(scenario_digest(s), label)
        if s.api not in apis:
            apis.append(s.api)
        for i, step in enumerate(s.steps):
            turns.setdefault(norm(step.user), f"turn {i + 1} of {label}")
            if not step.feedback:
                calls.setdefault(expected_key(s.api, s.expected(i)), f"the expected call of turn {i + 1} of {label}")
        for item in s.items.values():
            items.setdefault(norm(item.name), f"an item of {label}")
    return EvalSet(tuple(names), digests, turns, calls, items, tuple(apis))


def scenario_overlap(s: Scenario, ev: EvalSet) -> str | None:
    """Why a scenario overlaps the evaluation set, or None."""
    from mendlab.dialogs.runner import scenario_digest

    same = ev.digests.get(scenario_digest(s))
    if same:
        return f"its content is that of {same}"
    for i, step in enumerate(s.steps):
        why = ev.turn_overlap(step.user)
        if why:
            return f"turn {i + 1}: {why}"
        if not step.feedback:
            key = expected_key(s.api, s.expected(i))
            if key in ev.calls:
                return f"turn {i + 1}: its expected call {s.expected(i).render(s.api)!r} is {ev.calls[key]}"
    for item in s.items.values():
        if norm(item.name) in ev.items:
            return f"the item name {item.name!r} is {ev.items[norm(item.name)]}"
    return None


def dialogue_overlap(messages: Sequence[Mapping[str, Any]], ev: EvalSet) -> str | None:
    """Why a training dialogue overlaps the evaluation set, or None: a user turn of an evaluation
    scenario, or an assistant message with one of its expected calls."""
    for i, m in enumerate(messages):
        content = str(m.get("content", ""))
        if m.get("role") == "user":
            why = ev.turn_overlap(content)
        elif m.get("role") == "assistant":
            why = ev.call_overlap(content)
        else:
            why = None
        if why:
            return f"messages[{i}]: {why}"
    return None
