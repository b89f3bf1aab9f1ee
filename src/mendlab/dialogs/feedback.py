"""What the simulated user says when a reply is wrong: rules at three rungs, or a critic LLM.

The rung is how much the user gives away: vague ("That's not right."), pointed ("The year is
wrong.", the original author's style), explicit ("Use the year 2024."). Comparing fix rates across
rungs separates "cannot find the mistake" from "cannot apply the fix".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from mendlab.dialogs.api import Api, Param
from mendlab.dialogs.scenario import ExpectedCall, Scenario
from mendlab.models import ChatModel, Message, SamplingParams

Rung = Literal["vague", "pointed", "explicit"]
RUNGS: tuple[Rung, ...] = ("vague", "pointed", "explicit")

# What the pointed and explicit rungs say about the errors every API can have; those of a parameter
# are worded from its declaration (`_pointed_param`, `_explicit_param`).
POINTED = {
    "no_call": "Just the API call please.",
    "syntax_error": "That is not valid code.",
    "unknown_function": "Wrong API: that function does not exist.",
    "wrong_function": "Wrong API call.",
    "missing_argument": "An argument is missing.",
    "extra_argument": "There is an argument too many.",
    "extra_call": "Just one API call please.",
    "chatter": "Just the API call please.",
}


def _pointed_param(error: str, p: Param, api: Api) -> str:
    coll = api.key_of(p.name)
    if coll is not None:
        return f"It's the wrong {coll.item}."
    if error == "wrong_year":
        return "The year is wrong."
    if error in ("date_format", "time_format"):
        return f"Respect the {p.words} format."
    if error == "time_12h":
        return f"{p.words[:1].upper()}{p.words[1:]} in 24h format."
    return f"The {p.words} is wrong."


def pointed(error: str, want: ExpectedCall, scenario: Scenario) -> str:
    """The pointed rung's sentence: which part is wrong, not what it should be."""
    if error in POINTED:
        return POINTED[error]
    p = scenario.api.param_for(error, want.function)
    return _pointed_param(error, p, scenario.api) if p is not None else "That's not right."


def _explicit_param(error: str, p: Param, value: Any, api: Api) -> str:
    if api.key_of(p.name) is not None:
        return f'This is about "{value}".'
    if error == "wrong_year":
        return f"Use the year {str(value)[:4]}."
    if error == "wrong_date":
        return f"The {p.words} is {value}."
    if error in ("date_format", "time_format"):
        return f'Write the {p.words} as {p.name}="{value}".'
    if error == "time_12h":
        return f'Write the {p.words} in 24h format: {p.name}="{value}".'
    if error == "wrong_time":
        return f'The {p.words} is "{value}".'
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    return f"The {p.words} is {shown}{' ' + p.unit if p.unit else ''}."


def _give(names: Sequence[str]) -> str:
    if len(names) == 1:
        return f"Give the {names[0]}."
    return f"Give all of {', '.join(names[:-1])} and {names[-1]}."


def _explicit(error: str, want: ExpectedCall, scenario: Scenario) -> str:
    api = scenario.api
    fn = f"{api.object}.{want.function}"
    generic = {
        "no_call": f"Reply with one line of code only: a call to {fn}.",
        "syntax_error": f"That does not parse. Reply with one valid call to {fn}.",
        "unknown_function": f"That function does not exist: use {fn}.",
        "wrong_function": f"Use {fn} here.",
        "missing_argument": _give(api.required(want.function)) if api.required(want.function) else "",
        "extra_argument": "Use only the arguments of the API.",
        "extra_call": f"Only one call to {fn}.",
        "chatter": "Only the line of code, no other text.",
    }
    if generic.get(error):
        return generic[error]
    p = api.param_for(error, want.function)
    value = want.value(p.name) if p is not None else None
    if p is None or value is None:
        return "That's not right."
    return _explicit_param(error, p, value, api)


FEEDBACK = "feedback:"  # `Message.origin` of a user turn that is feedback: "feedback:pointed", "feedback:critic"


def feedback_origin(rung: str) -> str:
    """The tag a feedback turn carries, so graders never take it for a scripted step (a critic may
    well say "The current year is 2024.")."""
    return FEEDBACK + rung


def rung_of(origin: str | None) -> str | None:
    """The rung that wrote a user turn, or None when the turn is not tagged as feedback."""
    return origin[len(FEEDBACK) :] if origin and origin.startswith(FEEDBACK) else None


def named_errors(errors: Sequence[str], rung: str | None) -> tuple[str, ...]:
    """The errors a feedback points out. The pointed and explicit rungs name the first two (not the
    chatter beside a missing call); vague feedback ("That's not right."), a critic model (shown every
    error) and feedback of unknown origin object to the whole answer."""
    if rung not in ("pointed", "explicit"):
        return tuple(errors)
    top = list(errors)[:2]
    if "chatter" in top and "no_call" in top:
        top.remove("chatter")
    return tuple(top)


def rule_feedback(errors: Sequence[str], want: ExpectedCall, scenario: Scenario, rung: Rung) -> str:
    """One short sentence (two at most) about the most important errors."""
    if not errors or rung == "vague":
        return "That's not right."
    top = named_errors(errors, rung)
    if rung == "pointed":
        sentences = dict.fromkeys(pointed(e, want, scenario) for e in top)  # ordered, deduplicated
        return " ".join(sentences)
    return " ".join(dict.fromkeys(_explicit(e, want, scenario) for e in top))


class Critic(Protocol):
    def __call__(self, history: Sequence[Message], errors: Sequence[str], want: ExpectedCall) -> str: ...


class LLMCritic:
    """Another model plays the user: it sees the conversation and the error list, never the answer."""

    def __init__(self, model: ChatModel, max_tokens: int = 40) -> None:
        self.model = model
        self.params = SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=("\n",))

    def __call__(self, history: Sequence[Message], errors: Sequence[str], want: ExpectedCall) -> str:
        last = next((m.content for m in reversed(history) if m.role == "assistant"), "")
        request = next((m.content for m in reversed(history) if m.role == "user"), "")
        prompt = [
            Message(
                "system",
                "You are the user of a voice assistant that turns requests into calendar API calls. "
                "Its last answer has mistakes. Tell it in one short sentence what to fix. "
                "Do not write code and do not give the whole answer.",
            ),
            Message(
                "user",
                f"My request: {request}\nIts answer: {last}\nMistakes found: {', '.join(errors)}\n"
                "Your one-sentence message to the assistant:",
            ),
        ]
        (out,) = self.model.chat(prompt, self.params)
        text = out.text.strip().strip('"').strip()
        return text or "That's not right."
