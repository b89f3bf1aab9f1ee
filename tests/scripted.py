"""A scripted chat model for unit tests of logic: it answers from a policy, never from weights.

Real-model behaviour is tested elsewhere on the bundled GGUFs; this one exists so that tests can know
the right figures in advance (a model that is always right, one that errs once, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from mendlab.dialogs.scenario import Scenario
from mendlab.models import ChatModel, Completion, Message, ModelInfo, SamplingParams, StreamDelta

A = "action.add_calendar_entry"
R = "action.remove_calendar_entry"

Policy = Callable[[Sequence[Message], SamplingParams, int], str]


class ScriptedModel:
    """Answers `policy(messages, params, sample_index)`; counts its calls and can fail after N."""

    def __init__(self, name: str, policy: Policy, fail_after: int | None = None) -> None:
        self._info = ModelInfo(name=name, backend="scripted", source="tests")
        self.policy = policy
        self.calls = 0
        self.seeds: list[int] = []
        self.fail_after = fail_after

    @property
    def info(self) -> ModelInfo:
        return self._info

    def chat(self, messages: Sequence[Message], params: SamplingParams) -> list[Completion]:
        out = []
        for i in range(params.n):
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise KeyboardInterrupt  # what a kill looks like from inside: the run stops here
            self.calls += 1
            self.seeds.append(params.seed + i)
            text = self.policy(messages, params, i)
            out.append(Completion(text, 10, 5, "stop", 0.01, sample_index=i))
        return out

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> Iterator[StreamDelta | Completion]:
        (done,) = self.chat(messages, params)
        yield StreamDelta(done.text)
        yield done

    def close(self) -> None:
        pass


def step_index(scenario: Scenario, messages: Sequence[Message]) -> int:
    """The scripted step the conversation is at (its last scripted user turn)."""
    idx = 0
    for m in messages:
        if m.role == "user":
            found = scenario.step_for_user_text(m.content)
            if found is not None:
                idx = found
    return idx


def attempts_on_step(scenario: Scenario, messages: Sequence[Message]) -> int:
    """How many user messages came after the last scripted one (0: this is the step's first answer)."""
    n = 0
    for m in messages:
        if m.role == "user":
            n = 0 if scenario.step_for_user_text(m.content) is not None else n + 1
    return n


def right(scenario: Scenario, idx: int, year: str = "2024") -> str:
    """The expected call of step `idx`, with another year if asked (a wrong_year mistake)."""
    call = scenario.expected(idx).render(scenario.api)
    return call.replace("2024-", f"{year}-")


def as_model(scenario: Scenario, name: str, answer: Callable[[int, int], str]) -> ChatModel:
    """A model whose reply depends only on (step index, attempts so far on that step)."""

    def policy(messages: Sequence[Message], params: SamplingParams, i: int) -> str:
        return answer(step_index(scenario, messages), attempts_on_step(scenario, messages))

    return ScriptedModel(name, policy)
