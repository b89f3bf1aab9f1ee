"""What the simulated user says when a reply is wrong: rules at three rungs, or a critic LLM.

The rung is how much the user gives away: vague ("That's not right."), pointed ("The year is
wrong.", the original author's style), explicit ("Use the year 2024."). Comparing fix rates across
rungs separates "cannot find the mistake" from "cannot apply the fix".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from mendlab.dialogs.scenario import ExpectedCall, Scenario
from mendlab.models import ChatModel, Message, SamplingParams

Rung = Literal["vague", "pointed", "explicit"]
RUNGS: tuple[Rung, ...] = ("vague", "pointed", "explicit")

POINTED = {
    "no_call": "Just the API call please.",
    "syntax_error": "That is not valid code.",
    "unknown_function": "Wrong API: that function does not exist.",
    "wrong_function": "Wrong API call.",
    "wrong_event": "It's the wrong event.",
    "wrong_year": "The year is wrong.",
    "wrong_date": "The date is wrong.",
    "date_format": "Respect the date format.",
    "time_12h": "Time in 24h format.",
    "wrong_time": "The time is wrong.",
    "time_format": "Respect the time format.",
    "wrong_duration": "The duration is wrong.",
    "missing_argument": "An argument is missing.",
    "extra_argument": "There is an argument too many.",
    "extra_call": "Just one API call please.",
    "chatter": "Just the API call please.",
}


def _explicit(error: str, want: ExpectedCall, scenario: Scenario) -> str:
    api = scenario.api
    fn = f"{api.object}.{want.function}"
    return {
        "no_call": f"Reply with one line of code only: a call to {fn}.",
        "syntax_error": f"That does not parse. Reply with one valid call to {fn}.",
        "unknown_function": f"That function does not exist: use {fn}.",
        "wrong_function": f"Use {fn} here.",
        "wrong_event": f'This is about "{want.title}".',
        "wrong_year": f"Use the year {want.date[:4]}.",
        "wrong_date": f"The date is {want.date}.",
        "date_format": f'Write the date as date="{want.date}".',
        "time_12h": f'Write the time in 24h format: time="{want.time}".',
        "wrong_time": f'The time is "{want.time}".',
        "time_format": f'Write the time as time="{want.time}".',
        "wrong_duration": f"The duration is {want.duration} minutes.",
        "missing_argument": "Give all of title, date and time.",
        "extra_argument": "Use only the arguments of the API.",
        "extra_call": f"Only one call to {fn}.",
        "chatter": "Only the line of code, no other text.",
    }.get(error, "That's not right.")


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
        sentences = dict.fromkeys(POINTED[e] for e in top)  # ordered, deduplicated
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
