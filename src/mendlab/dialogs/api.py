"""A scenario's tool API, declared in its file: functions, typed parameters, and what each call does to
the hidden state.

The grader and the rule feedback know nothing of calendars: everything they check and every word they
say about a mistake comes from here. A parameter's type and format decide its checks and the names of
its errors (a `date` parameter can have the wrong year, the wrong day or the wrong format; a `time24`
one can be written in 12-hour form; any other can have the wrong value), and its label and unit are
the words feedback uses. A function's effect says which collection of the hidden state it changes and
how (`add` a new item, `set` one: add it or replace it, `remove` it), so the call a turn expects
follows from the change the turn makes.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from mendlab.yamlfile import LocatedYaml

ParamType = Literal["str", "int", "float", "bool"]
Format = Literal["date", "time24"]
EffectKind = Literal["add", "set", "remove"]
Value = str | int | float | bool
TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
FORMATS = ("date", "time24")
EFFECTS = ("add", "set", "remove")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")

# Errors of any API, before and after those of its parameters: the order is how much they matter
# (feedback names the first ones).
HEAD = ("no_call", "syntax_error", "unknown_function", "wrong_function")
TAIL = ("missing_argument", "extra_argument", "extra_call", "chatter")
FORMAT_ERRORS: dict[str, tuple[str, ...]] = {
    "date": ("wrong_year", "wrong_date", "date_format"),
    "time24": ("time_12h", "wrong_time", "time_format"),
}


@dataclass(frozen=True)
class Param:
    """One parameter, declared once for the whole API so that it means the same in every function."""

    name: str
    type: ParamType = "str"
    format: Format | None = None
    enum: tuple[Value, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    default: Value | None = None
    required: bool = True  # False with a default, or when declared `required: false`
    label: str = ""  # what feedback calls it ("the duration"); the name by default
    unit: str = ""  # said after an explicit value ("180 minutes")
    description: str = ""  # for the tools schema

    @property
    def words(self) -> str:
        return self.label or self.name.replace("_", " ")


@dataclass(frozen=True)
class Collection:
    """A named part of the hidden state: items keyed by the value of one parameter."""

    name: str
    key: str  # the parameter that names an item; a value names it when it holds one of the item's words
    item: str  # what an item is called in feedback and in its error ("event": wrong_event)


@dataclass(frozen=True)
class Function:
    name: str
    params: tuple[str, ...]  # in positional order
    effect: EffectKind
    collection: str
    positional: int = 0  # how many leading arguments the expected call is written with positionally
    description: str = ""


@dataclass(frozen=True)
class Api:
    object: str  # calls are written `object.function(...)`, or the bare function name
    params: dict[str, Param]
    functions: dict[str, Function]
    collections: dict[str, Collection]

    @property
    def errors(self) -> tuple[str, ...]:
        """Every error this API can have, most important first."""
        out: list[str] = list(HEAD)
        for fn in self.functions.values():
            for p in fn.params:
                for e in self.param_errors(p):
                    if e not in out:
                        out.append(e)
        return (*out, *(e for e in TAIL if e not in out))

    def order(self, errors: Sequence[str]) -> tuple[str, ...]:
        seen = set(errors)
        return tuple(e for e in self.errors if e in seen)

    def key_of(self, param: str) -> Collection | None:
        """The collection this parameter names items of, if any."""
        return next((c for c in self.collections.values() if c.key == param), None)

    def value_error(self, param: str) -> str:
        """The error of a wrong value of a parameter that has no format."""
        coll = self.key_of(param)
        return "wrong_" + (coll.item if coll is not None else param).replace(" ", "_")

    def param_errors(self, param: str) -> tuple[str, ...]:
        p = self.params[param]
        if p.format is not None:
            return FORMAT_ERRORS[p.format]
        return (self.value_error(param),)

    def param_for(self, error: str, function: str) -> Param | None:
        """The parameter an error is about, preferring those of `function` (the one expected)."""
        names = [*(self.functions[function].params if function in self.functions else ()), *self.params]
        return next((self.params[n] for n in names if error in self.param_errors(n)), None)

    def required(self, function: str) -> tuple[str, ...]:
        return tuple(p for p in self.functions[function].params if self.params[p].required)

    def function_for(self, change: str, collection: str) -> Function | None:
        """The function a change of the state calls for: an add is an `add` (else a `set`), an update
        a `set`, a removal a `remove`."""
        wanted = {"add": ("add", "set"), "update": ("set",), "remove": ("remove",)}[change]
        for effect in wanted:
            for fn in self.functions.values():
                if fn.collection == collection and fn.effect == effect:
                    return fn
        return None

    def fields(self, collection: str) -> tuple[str, ...]:
        """What an item of the collection holds: the parameters of the functions that write it."""
        out: list[str] = []
        for fn in self.functions.values():
            if fn.collection == collection and fn.effect != "remove":
                out += [p for p in fn.params if p not in out]
        return tuple(out)

    def tools(self) -> tuple[str, ...]:
        """The API as OpenAI `tools` (one JSON text per function), for models that answer with
        `tool_calls`; JSON text keeps the request's parameters hashable and canonical."""
        return tuple(json.dumps(self._tool(fn), sort_keys=True, ensure_ascii=False) for fn in self.functions.values())

    def _tool(self, fn: Function) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for name in fn.params:
            p = self.params[name]
            schema: dict[str, Any] = {
                "type": {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}[p.type]
            }
            notes = [p.description] if p.description else []
            if p.format == "date":
                notes.append("a date YYYY-MM-DD")
            elif p.format == "time24":
                notes.append('a 24-hour time "HH:MM"')
            if p.unit:
                notes.append(f"in {p.unit}")
            if notes:
                schema["description"] = "; ".join(notes)
            if p.enum:
                schema["enum"] = list(p.enum)
            if p.minimum is not None:
                schema["minimum"] = p.minimum
            if p.maximum is not None:
                schema["maximum"] = p.maximum
            if p.default is not None:
                schema["default"] = p.default
            props[name] = schema
        body: dict[str, Any] = {"type": "object", "properties": props, "required": list(self.required(fn.name))}
        return {"type": "function", "function": {"name": fn.name, "description": fn.description, "parameters": body}}


def render_value(value: Any) -> str:
    """A value as the expected call writes it: strings in double quotes unless that needs escapes."""
    if isinstance(value, str) and '"' not in value and "\\" not in value and "\n" not in value:
        return f'"{value}"'
    return repr(value)


def render_call(api: Api, function: str, args: Sequence[tuple[str, Any]]) -> str:
    positional = api.functions[function].positional if function in api.functions else 0
    parts = [render_value(v) if i < positional else f"{k}={render_value(v)}" for i, (k, v) in enumerate(args)]
    return f"{api.object}.{function}({', '.join(parts)})"


# ---------------------------------------------------------------- values as a scenario file writes them


def file_value(doc: LocatedYaml, p: Param, value: Any, path: tuple[Any, ...]) -> Value:
    """A parameter's value in the scenario file (the world, a turn, a default), checked against its
    declaration."""
    if p.format == "date":
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):  # YAML reads 2024-11-01 10:00 as one
            return value.isoformat()
        if isinstance(value, str) and DATE_RE.match(value):
            try:
                dt.date.fromisoformat(value)
                return value
            except ValueError:
                pass
        raise doc.fail(path, f"must be a date YYYY-MM-DD, got {value!r}")
    if p.format == "time24":
        if isinstance(value, str) and TIME_RE.match(value):
            return value
        if isinstance(value, int) and not isinstance(value, bool):  # YAML reads 17:00 unquoted as 1020
            raise doc.fail(path, f'must be a quoted time "HH:MM" (YAML read {value} as minutes)')
        raise doc.fail(path, f'must be a time "HH:MM" (24 h), got {value!r}')
    kind = TYPES[p.type]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        hint = " (YAML reads unquoted on/off/yes/no as true/false)" if isinstance(value, bool) else ""
        raise doc.fail(path, f"must be {p.type}, got {value!r}{hint}")
    if p.enum and value not in p.enum:
        raise doc.fail(path, f"must be one of {', '.join(map(str, p.enum))}, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (p.minimum is not None and value < p.minimum) or (p.maximum is not None and value > p.maximum):
            raise doc.fail(path, f"must be within {p.minimum}..{p.maximum}, got {value!r}")
    assert isinstance(value, (str, int, float, bool))
    return value


# ---------------------------------------------------------------- the declaration


def parse_api(doc: LocatedYaml, data: Any, path: tuple[Any, ...]) -> Api:
    """The `api:` mapping of a scenario file (see the README's "Your own scenario")."""
    if not isinstance(data, dict):
        raise doc.fail(path, "must be a mapping with object, params, functions and collections")
    doc.known(data, path, {"object", "params", "functions", "collections"})
    obj = doc.get(data, path, "object", str)
    if not re.fullmatch(r"[A-Za-z_]\w*", obj):
        raise doc.fail((*path, "object"), f"must be a Python name, got {obj!r}")

    params: dict[str, Param] = {}
    pp = (*path, "params")
    for name, decl in doc.get(data, path, "params", dict).items():
        params[str(name)] = _param(doc, str(name), decl, (*pp, name))

    fp = (*path, "functions")
    functions_d = doc.get(data, path, "functions", dict)
    if not functions_d:
        raise doc.fail(fp, "must declare at least one function")
    cp = (*path, "collections")
    collections: dict[str, Collection] = {}
    for name, decl in doc.get(data, path, "collections", dict).items():
        p = (*cp, name)
        if not isinstance(decl, dict):
            raise doc.fail(p, "must be a mapping with key (a parameter) and optionally item (its noun)")
        doc.known(decl, p, {"key", "item"})
        key = doc.get(decl, p, "key", str)
        if key not in params:
            raise doc.fail((*p, "key"), f"unknown parameter {key!r} (not in {'.'.join(map(str, pp))})")
        if params[key].type != "str" or params[key].format is not None:
            raise doc.fail((*p, "key"), f"parameter {key!r} names items: it must be a plain str")
        item = doc.get(decl, p, "item", str, required=False) or params[key].words
        collections[str(name)] = Collection(str(name), key, item)

    functions: dict[str, Function] = {}
    for name, decl in functions_d.items():
        p = (*fp, name)
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise doc.fail(p, f"a function name must be a Python name, got {name!r}")
        if not isinstance(decl, dict):
            raise doc.fail(p, "must be a mapping with params and effect")
        doc.known(decl, p, {"params", "effect", "positional", "description"})
        names = doc.get(decl, p, "params", list)
        for i, n in enumerate(names):
            if not isinstance(n, str) or n not in params:  # a list is no name (and unhashable)
                raise doc.fail((*p, "params", i), f"unknown parameter {n!r} (declare it in {'.'.join(map(str, pp))})")
        if len(set(names)) != len(names):
            raise doc.fail((*p, "params"), "lists a parameter twice")
        for fmt in FORMATS:
            same = [n for n in names if params[n].format == fmt]
            if len(same) > 1:
                raise doc.fail(
                    (*p, "params"),
                    f"at most one {fmt} parameter per function (errors are named by the format): {', '.join(same)}",
                )
        effect_d = decl.get("effect")
        ep = (*p, "effect")
        if not isinstance(effect_d, dict) or len(effect_d) != 1:
            raise doc.fail(
                ep if "effect" in decl else p,
                "needs an effect: {add: COLLECTION}, {set: COLLECTION} or {remove: COLLECTION}",
            )
        ((kind, coll),) = effect_d.items()
        if kind not in EFFECTS:
            raise doc.fail((*ep, kind), f"unknown effect (expected one of: {', '.join(EFFECTS)})")
        if not isinstance(coll, str) or coll not in collections:
            raise doc.fail((*ep, kind), f"unknown collection {coll!r} (not in {'.'.join(map(str, cp))})")
        if collections[coll].key not in names:
            raise doc.fail((*p, "params"), f"must include {collections[coll].key!r}, the key of {coll!r}")
        positional = doc.get(decl, p, "positional", int, required=False) or 0
        if not 0 <= positional <= len(names):
            raise doc.fail((*p, "positional"), f"must be 0..{len(names)}")
        functions[name] = Function(
            name, tuple(names), kind, str(coll), positional, str(decl.get("description", "") or "")
        )
    api = Api(obj, params, functions, collections)
    # An error's name is one parameter's (or one format's, shared by the parameters of that format).
    owner: dict[str, str] = {}
    for fn in functions.values():
        for n in fn.params:
            who = params[n].format or n
            for e in api.param_errors(n):
                if e in HEAD or e in TAIL or owner.setdefault(e, who) != who:
                    raise doc.fail((*pp, n), f"its error would be named {e}, which is taken; rename it")
    return api


def _param(doc: LocatedYaml, name: str, decl: Any, path: tuple[Any, ...]) -> Param:
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise doc.fail(path, f"a parameter name must be a Python name, got {name!r}")
    if decl is None:
        decl = {}
    if not isinstance(decl, dict):
        raise doc.fail(path, "must be a mapping (type, format, enum, min, max, default, required, label, unit)")
    doc.known(
        decl, path, {"type", "format", "enum", "min", "max", "default", "required", "label", "unit", "description"}
    )
    fmt = doc.get(decl, path, "format", str, required=False)
    if fmt is not None and fmt not in FORMATS:
        raise doc.fail((*path, "format"), f"unknown format (expected one of: {', '.join(FORMATS)})")
    ptype = doc.get(decl, path, "type", str, required=False) or "str"
    if ptype not in TYPES:
        raise doc.fail((*path, "type"), f"unknown type (expected one of: {', '.join(TYPES)})")
    if fmt is not None and ptype != "str":
        raise doc.fail((*path, "type"), f"a {fmt} parameter is a str")
    p = Param(
        name,
        ptype,  # type: ignore[arg-type]
        fmt,
        label=str(decl.get("label") or ""),
        unit=str(decl.get("unit") or ""),
        description=str(decl.get("description") or ""),
    )
    if "enum" in decl:
        values = decl["enum"]
        if not isinstance(values, list) or not values:
            raise doc.fail((*path, "enum"), "must be a non-empty list")
        p = replace(p, enum=tuple(file_value(doc, p, v, (*path, "enum", i)) for i, v in enumerate(values)))
    for bound in ("min", "max"):
        if bound in decl and ptype not in ("int", "float"):
            raise doc.fail((*path, bound), "only numbers have bounds")
    if "min" in decl:
        p = replace(p, minimum=float(doc.get(decl, path, "min", float)))
    if "max" in decl:
        p = replace(p, maximum=float(doc.get(decl, path, "max", float)))
    required = decl.get("required", True)
    if not isinstance(required, bool):
        raise doc.fail((*path, "required"), "must be true or false")
    if "default" in decl:
        p = replace(p, default=file_value(doc, p, decl["default"], (*path, "default")), required=False)
        if required is True and "required" in decl:
            raise doc.fail((*path, "required"), "a parameter with a default is optional")
    elif not required:
        p = replace(p, required=False)
    return p


def legacy_api(base: Api, obj: str, add: str, remove: str, default_duration: int) -> Api:
    """The form scenario files had before APIs were declared, `{object, add, remove, default_duration}`:
    the built-in calendar API under other names."""
    functions = {}
    for fn in base.functions.values():
        name = add if fn.effect in ("add", "set") else remove
        functions[name] = replace(fn, name=name)
    params = dict(base.params)
    params["duration"] = replace(params["duration"], default=default_duration)
    return replace(base, object=obj, functions=functions, params=params)
