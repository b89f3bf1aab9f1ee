"""Grade calendar replies turn by turn: typed errors, then the original's marks ✓ 🍄 🥦 🔥.

A reply is compared with the call the scenario's simulated calendar expects at that turn, field by
field. A conversation is graded by walking it: a user message that matches a scripted turn advances
the script, any other user message is feedback on the current step, and the next reply is a fix
attempt, which earns 🥦 when the errors pointed out are gone (🥦 🍄 if it broke a field that was right).

Scripted turns are steps, never feedback, even one that corrects the turn before ("The current year
is 2024."): it is the same for every model and every feedback rung, so counting it as a fix would
credit the script, not the feedback, and would make a model that was right all along look like one
that failed to fix something.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mendlab.dialogs.api import DATE_RE, TIME_RE, Api, Param
from mendlab.dialogs.calls import Call, extract_calls
from mendlab.dialogs.feedback import named_errors, rung_of
from mendlab.dialogs.scenario import ExpectedCall, Scenario
from mendlab.models.base import Message

GARBAGE = {"no_call", "syntax_error"}
CHECK, MUSHROOM, RECURRING, BROCCOLI, FIRE, FIRE2 = "✓", "🍄", "(🍄)", "🥦", "🔥", "🔥🔥"

MONTHS = {
    m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)
}


def loose_date(text: str) -> tuple[int | None, int, int] | None:
    """(year or None, month, day) from the date forms models write instead of YYYY-MM-DD."""
    s = text.strip().lower()
    m = re.fullmatch(r"(\d[\d ]{3,6})[-/.](\d{1,2})[-/.](\d{1,2})", s)  # 2024/11/11, "20 24-11-11"
    if m:
        return int(m.group(1).replace(" ", "")), int(m.group(2)), int(m.group(3))
    m = re.fullmatch(r"(\d{1,2})[-/.](\d{1,2})(?:[-/.](\d{2,4}))?", s)  # 11/11/2024 (US order first)
    if m:
        year = int(m.group(3)) if m.group(3) else None
        if year is not None and year < 100:
            year += 2000
        return year, int(m.group(1)), int(m.group(2))
    m = re.fullmatch(r"([a-z]{3})[a-z]*\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s*(\d{4})?", s)  # Nov 11, 2024
    if m and m.group(1) in MONTHS:
        return (int(m.group(3)) if m.group(3) else None), MONTHS[m.group(1)], int(m.group(2))
    m = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?\s+([a-z]{3})[a-z]*\.?,?\s*(\d{4})?", s)  # 11 Nov 2024
    if m and m.group(2) in MONTHS:
        return (int(m.group(3)) if m.group(3) else None), MONTHS[m.group(2)], int(m.group(1))
    return None


def loose_time(text: str) -> tuple[int, int, bool] | None:
    """(hour 0-23, minute, was_12h) from forms like 5PM, 5:00 pm, 17:00:00, 8:00."""
    s = text.strip().lower().replace(".", "")
    m = re.fullmatch(r"(\d{1,2})(?::(\d{2}))?(?::\d{2})?\s*(am|pm)", s)
    if m:
        hour, minute = int(m.group(1)) % 12, int(m.group(2) or 0)
        if m.group(3) == "pm":
            hour += 12
        return hour, minute, True
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::\d{2})?", s)
    if m and int(m.group(1)) < 24 and int(m.group(2)) < 60:
        return int(m.group(1)), int(m.group(2)), False
    return None


def _check_date(value: Any, want: str) -> list[str]:
    wy, wm, wd = (int(x) for x in want.split("-"))
    if isinstance(value, str) and DATE_RE.match(value):
        try:
            got = dt.date.fromisoformat(value)
        except ValueError:
            return ["wrong_date"]
        if (got.month, got.day) != (wm, wd):
            return ["wrong_date"] + (["wrong_year"] if got.year != wy else [])
        return ["wrong_year"] if got.year != wy else []
    parsed = loose_date(value) if isinstance(value, str) else None
    if parsed is None:
        return ["date_format", "wrong_date"]
    year, month, day = parsed
    errs = ["date_format"]
    if (month, day) != (wm, wd):
        errs.append("wrong_date")
    if year is not None and year != wy:
        errs.append("wrong_year")
    return errs


def _check_time(value: Any, want: str) -> list[str]:
    wh, wmin = (int(x) for x in want.split(":"))
    if isinstance(value, str) and TIME_RE.match(value):
        return [] if value == want else ["wrong_time"]
    parsed = loose_time(value) if isinstance(value, str) else None
    if parsed is None:
        return ["time_format", "wrong_time"]
    hour, minute, twelve = parsed
    errs = ["time_12h" if twelve else "time_format"]
    if (hour, minute) != (wh, wmin):
        errs.append("wrong_time")
    return errs


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value):
        return float(value)
    return None


def _text(value: Any) -> str:
    return " ".join(str(value).lower().split())


def check_value(api: Api, param: Param, value: Any, want: Any) -> list[str]:
    """The errors of one argument, by its declaration: a date or a time by its format, a number by
    its value however written (60*3, "180"), a word of an enum or a plain string without regard to
    case or spacing, a flag only as a bool."""
    if param.format == "date":
        return _check_date(value, str(want))
    if param.format == "time24":
        return _check_time(value, str(want))
    wrong = [api.value_error(param.name)]
    if param.type in ("int", "float"):
        got = _number(value)
        return [] if got is not None and abs(got - float(want)) < 1e-9 else wrong
    if param.type == "bool":
        return [] if isinstance(value, bool) and value == want else wrong
    return [] if isinstance(value, str) and _text(value) == _text(want) else wrong


def check_call(call: Call, expected: ExpectedCall, scenario: Scenario) -> list[str]:
    """The errors of one call against the expected one, field by field. The arguments it has are
    checked against the expected call's (a parameter the expected call lacks is not), a defaulted
    one as its default, the item's name by the item's words."""
    api = scenario.api
    fn = api.functions.get(call.function)
    if fn is None or (call.obj is not None and call.obj != api.object):
        return ["unknown_function"]
    params = fn.params
    errors: list[str] = []
    if call.function != expected.function:
        errors.append("wrong_function")
    fields: dict[str, Any] = {}
    for i, value in enumerate(call.args):
        if i < len(params):
            fields[params[i]] = value
        else:
            errors.append("extra_argument")
    for key, value in call.kwargs.items():
        if key in params and key not in fields:
            fields[key] = value
        else:
            errors.append("extra_argument")
    for req in api.required(call.function):
        if req not in fields:
            errors.append("missing_argument")
    want = dict(expected.args)
    item = scenario.items[expected.item]
    for name in params:
        param = api.params[name]
        if name not in want or (name not in fields and param.default is None):
            continue
        value = fields.get(name, param.default)
        if name == item.param:
            if not isinstance(value, str) or not item.named_by(value):
                errors.append(api.value_error(name))
        else:
            errors += check_value(api, param, value, want[name])
    return list(api.order(errors))


@dataclass(frozen=True)
class ReplyCheck:
    errors: tuple[str, ...]
    valid: bool  # a call of a known API function that parses
    call: Call | None


def check_reply(reply: str, expected: ExpectedCall, scenario: Scenario) -> ReplyCheck:
    api = scenario.api
    ext = extract_calls(reply, api.object, set(api.functions))
    if not ext.calls:
        return ReplyCheck(("syntax_error",) if ext.syntax_error else ("no_call",), False, None)
    scored = [(check_call(c, expected, scenario), i, c) for i, c in enumerate(ext.calls)]
    errors, _, best = min(scored, key=lambda t: (len(t[0]), t[1]))
    errors = list(errors)
    if len(ext.calls) > 1:
        errors.append("extra_call")
    if ext.chatter:
        errors.append("chatter")
    valid = "unknown_function" not in errors
    return ReplyCheck(api.order(errors), valid, best)


@dataclass(frozen=True)
class TurnGrade:
    """One assistant turn, graded. `attempt` 0 is the first answer to a step; 1.. are fix attempts."""

    turn: int  # 1-based index among the conversation's assistant turns
    step: int  # 1-based scripted turn this reply answers
    attempt: int
    marks: tuple[str, ...]
    errors: tuple[str, ...]
    pointed: tuple[str, ...] = ()  # errors of the previous attempt that the feedback pointed out
    fixed: bool = False  # 🥦: the errors pointed out are gone, and the answer is not 🔥 or 🔥🔥
    regression: bool = False  # the errors pointed out are gone, but an error that was not there appeared
    recurring: tuple[str, ...] = ()
    expected: str = ""
    reply: str = ""

    @property
    def correct(self) -> bool:
        return not self.errors

    @property
    def pointed_gone(self) -> bool:
        """A fix attempt whose answer is a call and has none of the errors pointed out."""
        return pointed_gone(self.pointed, self.errors)

    def to_json(self, conversation: int) -> dict[str, Any]:
        return {
            "conversation": conversation,
            "turn": self.turn,
            "marks": list(self.marks),
            "errors": list(self.errors),
            "step": self.step,
            "attempt": self.attempt,
            "pointed": list(self.pointed),
            "fixed": self.fixed,
            "regression": self.regression,
        }


def pointed_gone(pointed: Sequence[str], errors: Sequence[str]) -> bool:
    """The errors pointed out are gone. An answer that fell apart into no call at all has none of
    them either, but it fixed nothing: it does not count."""
    return bool(pointed) and not (set(pointed) & set(errors)) and not (GARBAGE & set(errors))


def marks_for(
    errors: Sequence[str], valid: bool, fixed: bool, regression: bool, recurring: Sequence[str]
) -> tuple[str, ...]:
    if GARBAGE & set(errors):
        return (FIRE,)
    marks: list[str] = []
    if fixed:
        marks.append(BROCCOLI)
    elif valid:
        marks.append(CHECK)
    if len(errors) >= 3:
        marks.append(FIRE2)
    else:
        marks += [RECURRING if e in recurring else MUSHROOM for e in errors]
    return tuple(marks)  # a regression's new error already shows as 🍄 beside the 🥦


@dataclass
class DialogGrader:
    """Feed a conversation message by message; each assistant message comes back graded."""

    scenario: Scenario
    step: int = -1  # 0-based index of the current scripted step
    attempt: int = 0
    last_errors: tuple[str, ...] = ()
    feedback_pending: bool = False
    feedback_rung: str | None = None  # the rung of the pending feedback, None when unknown
    default_rung: str | None = None  # the rung of untagged feedback (transcripts stored before tags existed)
    turns: int = 0
    seen: dict[str, int] = field(default_factory=dict)  # error type -> first step it appeared in

    def user(self, text: str, origin: str | None = None) -> bool:
        """Record a user message; True if it advanced the script to a new step. A turn tagged as
        feedback (`origin` "feedback:RUNG") is feedback whatever it says; an untagged one is the next
        scripted step when its text is one of the steps still ahead, else feedback of unknown rung."""
        rung = rung_of(origin)
        idx = None if rung is not None else self.scenario.step_for_user_text(text, after=self.step)
        if idx is not None:
            self.step = idx
            self.attempt, self.last_errors, self.feedback_pending, self.feedback_rung = 0, (), False, None
            return True
        if self.step < 0:
            self.step = 0  # free text before the script: treat it as the first request
        self.feedback_pending = True
        self.feedback_rung = rung if rung is not None else self.default_rung
        return False

    def expected(self) -> ExpectedCall:
        return self.scenario.expected(max(self.step, 0))

    def assistant(self, reply: str) -> TurnGrade:
        expected = self.expected()
        check = check_reply(reply, expected, self.scenario)
        step = max(self.step, 0) + 1
        is_fix = self.feedback_pending and self.turns > 0
        attempt = self.attempt + 1 if is_fix else 0
        pointed = named_errors(self.last_errors, self.feedback_rung) if is_fix else ()
        errors = check.errors
        gone = pointed_gone(pointed, errors)
        fixed = gone and len(errors) < 3  # 🥦 is not earned by falling apart into 🔥🔥 instead
        regression = gone and bool(set(errors) - set(self.last_errors))  # an error the answer did not have
        recurring = tuple(e for e in errors if e in self.seen and self.seen[e] != step)
        marks = marks_for(errors, check.valid, fixed, regression, recurring)
        for e in errors:
            self.seen.setdefault(e, step)
        self.turns += 1
        self.attempt, self.last_errors, self.feedback_pending = attempt, errors, False
        return TurnGrade(
            turn=self.turns,
            step=step,
            attempt=attempt,
            marks=marks,
            errors=errors,
            pointed=pointed,
            fixed=fixed,
            regression=regression,
            recurring=recurring,
            expected=expected.render(self.scenario.api),
            reply=reply,
        )


def grade_conversation(
    scenario: Scenario, messages: Sequence[Message], default_rung: str | None = None
) -> list[TurnGrade]:
    """Every assistant turn graded; untagged feedback is taken as `default_rung`'s (the run's rung)."""
    grader = DialogGrader(scenario, default_rung=default_rung)
    out = []
    for m in messages:
        if m.role == "user":
            grader.user(m.content, m.origin)
        elif m.role == "assistant":
            out.append(grader.assistant(m.content))
    return out
