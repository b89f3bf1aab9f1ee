"""The quick-start job: the calendar system prompt on several models, side by side.

Two turns of the Keras arena's dialog: the first request (which omits the year, so every model
should get it wrong once) and the user's correction. Enough to see, in a minute on a laptop, which
model writes an API call at all and which one fixes its year when told.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mendlab.models import ChatModel, Completion, Message, SamplingParams
from mendlab.models.base import FinishReason
from mendlab.store import GenerationRecord, ResultsStore, resume_key

CALENDAR_SYSTEM_PROMPT = (
    "You are a helpful vocal assistant on a mobile device. Your job is to translate user requests into "
    "API calls using this Python API:\n\n"
    'action.add_calendar_entry(title, date="YYYY-MM-DD", time="HH:MM", duration=m) # duration in minutes\n'
    "action.remove_calendar_entry(title, date, time)\n\n"
    "You can use 30 minutes as the default duration for new events. "
    "Respond to every request with a single line of executable code."
)
DEMO_TURNS = ("Add a meeting with Fred on Nov 11 at 5PM", "The current year is 2024.")


@dataclass(frozen=True)
class DemoTurn:
    user: str
    answer: Completion


def run_demo(
    model: ChatModel,
    store: ResultsStore,
    run_id: str,
    params: SamplingParams,
    turns: Sequence[str] = DEMO_TURNS,
    on_turn: Callable[[DemoTurn], None] = lambda t: None,
) -> list[DemoTurn]:
    """Play the scripted turns; answers already in the store are reused, not regenerated."""
    name = model.info.name
    store.ensure_run(run_id, "demo", {"turns": list(turns), "params": params.as_dict()})
    done = {r.resume_key: r for r in store.generations(run_id)}
    history: list[Message] = [Message("system", CALENDAR_SYSTEM_PROMPT)]
    out: list[DemoTurn] = []
    for user in turns:
        history.append(Message("user", user))
        key = resume_key(run_id, name, history, params, 0)
        if key in done:
            rec = done[key]
            finish: FinishReason = "length" if rec.finish_reason == "length" else "stop"
            answer = Completion(rec.output, rec.prompt_tokens, rec.completion_tokens, finish, rec.latency_s)
        else:
            answer = model.chat(history, params)[0]
            store.add(GenerationRecord.of(run_id, name, model.info.backend, history, params, answer, 0))
        history.append(Message("assistant", answer.text))
        turn = DemoTurn(user, answer)
        on_turn(turn)
        out.append(turn)
    return out
