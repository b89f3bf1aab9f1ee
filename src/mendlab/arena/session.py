"""One person's arena: the panes, what each model was told and answered, marks, and the vote due.

Kept apart from the web page so the rules (what a retry or a transplant does to the conversation
tree, when a vote is a vote on a fix) can be read and tested without a browser. Every change makes
a new conversation value; a change that drops turns (retry, fork, transplant over an answer) makes a
new branch, so nothing a person saw is overwritten in the store.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mendlab.arena.pool import ModelPool
from mendlab.conversation import Conversation, new_id
from mendlab.dialogs.grading import TurnGrade, grade_conversation
from mendlab.dialogs.scenario import Scenario
from mendlab.models.base import Completion, Message, SamplingParams, StreamDelta

PANE_NAMES = ("Left", "Right", "Pane 3", "Pane 4")
PERSON_MARKS = ("✓", "🍄", "🥦", "🔥")
WRONG = {"🍄", "(🍄)", "🔥", "🔥🔥"}
VOTES = {"left": "👈 Left is better", "right": "👉 Right is better", "tie": "🤝 Tie", "both_bad": "👎 Both bad"}


@dataclass
class Pane:
    index: int
    model: str | None = None
    conv: Conversation = field(default_factory=Conversation)
    stats: dict[int, dict[str, Any]] = field(default_factory=dict)  # message index -> speed and context
    person: dict[int, str] = field(default_factory=dict)  # message index -> the person's mark
    mark_at: int | None = None  # the answer picked for marking (None: the latest)
    fork_from: int | None = None  # the user message picked for a fork (None: the latest)
    partial: str | None = None  # text streamed so far, while generating
    error: str = ""
    busy: bool = False

    @property
    def name(self) -> str:
        return PANE_NAMES[self.index]

    def assistant_indices(self) -> list[int]:
        return [i for i, m in enumerate(self.conv.messages) if m.role == "assistant"]

    def user_indices(self) -> list[int]:
        return [i for i, m in enumerate(self.conv.messages) if m.role == "user"]

    def last_user(self) -> str | None:
        users = self.user_indices()
        return self.conv.messages[users[-1]].content if users else None


@dataclass(frozen=True)
class PendingVote:
    left: str  # conversation ids
    right: str
    message_index: int  # the answers voted on are messages at this index in both panes
    kind: str  # "fix": the message asked to fix a marked mistake; "first": a first answer

    @property
    def key(self) -> tuple[str, str, int]:
        return self.left, self.right, self.message_index


@dataclass
class ArenaState:
    session: str = field(default_factory=new_id)
    panes: list[Pane] = field(default_factory=lambda: [Pane(i) for i in range(len(PANE_NAMES))])
    shown: int = 2
    system_prompt: str = ""
    scenario: Scenario | None = None
    battle: bool = False
    revealed: bool = True
    vote: PendingVote | None = None
    fix_pending: dict[int, bool] = field(default_factory=dict)  # pane -> its last message asked for a fix
    voted: set[tuple[str, str, int]] = field(default_factory=set)  # (left id, right id, message index)
    targets: list[str] = field(default_factory=lambda: list(PANE_NAMES[:2]))  # panes a message goes to

    def visible(self) -> list[Pane]:
        return self.panes[: self.shown]


def grades(scenario: Scenario | None, conv: Conversation) -> dict[int, TurnGrade]:
    """The automatic grader's verdict per assistant message index (none without a scenario)."""
    if scenario is None:
        return {}
    indices = [i for i, m in enumerate(conv.messages) if m.role == "assistant"]
    return dict(zip(indices, grade_conversation(scenario, conv.messages), strict=True))


def turn_is_wrong(state: ArenaState, pane: Pane, index: int) -> bool:
    """A person's mark wins over the grader's: the overrule is the point of marking."""
    if index in pane.person:
        return pane.person[index] in WRONG
    grade = grades(state.scenario, pane.conv).get(index)
    return grade is not None and not grade.correct


def with_system(conv: Conversation, prompt: str, model: str | None) -> Conversation:
    """The pane's conversation under the current system prompt and model; a change starts a branch."""
    msgs = conv.messages
    has_system = bool(msgs) and msgs[0].role == "system"
    current = msgs[0].content if has_system else ""
    rest = msgs[1:] if has_system else msgs
    if current == prompt and conv.model == model:
        return conv
    head = (Message("system", prompt),) if prompt else ()
    if not msgs:
        return replace(conv, messages=head, model=model)
    return replace(conv, messages=(*head, *rest), id=new_id(), parent=conv.id, fork_turn=0, model=model)


def add_user(state: ArenaState, pane: Pane, text: str) -> None:
    last = pane.assistant_indices()
    state.fix_pending[pane.index] = bool(last) and turn_is_wrong(state, pane, last[-1])
    pane.conv = with_system(pane.conv, state.system_prompt, pane.model).append(Message("user", text))
    pane.error = ""


def drop_last_answer(pane: Pane) -> bool:
    """For a retry: branch without the last answer. False if there is no user turn to answer."""
    msgs = pane.conv.messages
    if msgs and msgs[-1].role == "assistant":
        pane.conv = pane.conv.fork(len(msgs) - 1)
        pane.stats = {i: s for i, s in pane.stats.items() if i < len(msgs) - 1}
        pane.person = {i: s for i, s in pane.person.items() if i < len(msgs) - 1}
    return bool(pane.conv.messages) and pane.conv.messages[-1].role == "user"


def fork_at(pane: Pane, index: int, text: str) -> None:
    """Edit user message `index`: a new branch that ends with the edited message, ready to resample."""
    pane.conv = pane.conv.edit(index, text)
    pane.stats = {i: s for i, s in pane.stats.items() if i < index}
    pane.person = {i: s for i, s in pane.person.items() if i < index}
    pane.error = ""


def transplant(state: ArenaState, src: Pane, dst: Pane) -> None:
    """Put `src`'s last answer in `dst`'s mouth, answering the same user message (the original's
    "fixing others' mistakes"): `dst`'s own answer to it, if any, is dropped on a new branch."""
    answers = src.assistant_indices()
    if not answers:
        raise ValueError(f"the {src.name.lower()} pane has no answer to transplant")
    k = answers[-1]
    answer = src.conv.messages[k]
    question = src.conv.messages[k - 1].content if k and src.conv.messages[k - 1].role == "user" else None
    conv = with_system(dst.conv, state.system_prompt, dst.model)
    msgs = conv.messages
    if msgs and msgs[-1].role == "assistant" and len(msgs) >= 2 and msgs[-2].content == question:
        conv = conv.fork(len(msgs) - 1)
    else:
        conv = conv.fork(len(msgs))
        if question is not None and not (conv.messages and conv.messages[-1].content == question):
            conv = conv.append(Message("user", question))
    if conv.messages and conv.messages[-1].role == "assistant":
        conv = conv.append(Message("user", question or "Continue."))
    dst.conv = conv.transplant(answer, origin=answer.origin or src.model or src.name)
    keep = len(dst.conv.messages) - 1
    dst.stats = {i: s for i, s in dst.stats.items() if i < keep}
    dst.person = {i: s for i, s in dst.person.items() if i < keep}
    dst.error = ""


def pending_vote(state: ArenaState) -> PendingVote | None:
    """A vote is due when left and right both answered the same last message and it was not cast yet."""
    left, right = state.panes[0], state.panes[1]
    lm, rm = left.conv.messages, right.conv.messages
    if not lm or not rm or lm[-1].role != "assistant" or rm[-1].role != "assistant":
        return None
    if len(lm) < 2 or len(rm) < 2 or lm[-2].content != rm[-2].content:
        return None
    if left.busy or right.busy:
        return None
    fix = state.fix_pending.get(0, False) or state.fix_pending.get(1, False)
    fix = fix or any(m.origin is not None for m in (*lm, *rm))
    vote = PendingVote(left.conv.id, right.conv.id, len(lm) - 1, "fix" if fix else "first")
    return None if vote.key in state.voted else vote


def start_battle(state: ArenaState, models: Sequence[str], rng: random.Random) -> None:
    if len(models) < 2:
        raise ValueError("a battle needs at least two ready chat models")
    a, b = rng.sample(list(models), 2)
    state.battle, state.revealed, state.vote, state.shown = True, False, None, 2
    for pane, model in zip(state.panes[:2], (a, b), strict=True):
        pane.model, pane.conv, pane.stats, pane.person, pane.error = model, Conversation(), {}, {}, ""


def stream_turns(
    pool: ModelPool,
    panes: Sequence[Pane],
    params: SamplingParams,
    on_done: Callable[[Pane, Completion], None],
    tick_s: float = 0.05,
) -> Iterator[None]:
    """Answer the last user message in every pane at once; yield whenever there is something new
    to show. A pane whose model fails gets the error; the others carry on."""
    events: queue.Queue[tuple[Pane, str, Any]] = queue.Queue()

    def work(pane: Pane) -> None:
        assert pane.model is not None
        try:
            with pool.use(pane.model) as model:
                events.put((pane, "start", model.info.context_window))
                seed = random.randrange(2**31) if params.temperature > 0 else params.seed
                for ev in model.stream(pane.conv.messages, replace(params, seed=seed)):
                    events.put((pane, "delta", ev.text) if isinstance(ev, StreamDelta) else (pane, "done", ev))
        except Exception as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            events.put((pane, "error", text))
        finally:
            events.put((pane, "end", None))

    running = set()
    window: dict[int, int | None] = {}
    for pane in panes:
        if pane.model is None:
            pane.error = "pick a model for this pane"
            continue
        pane.busy, pane.partial, pane.error = True, "", ""
        running.add(pane.index)
        threading.Thread(target=work, args=(pane,), daemon=True, name=f"arena-{pane.name}").start()
    yield None
    last_yield = time.monotonic()
    while running:
        changed = False
        try:
            item: tuple[Pane, str, Any] | None = events.get(timeout=tick_s)
        except queue.Empty:
            item = None
        if item is not None:
            pane, kind, value = item
            changed = True
            if kind == "start":
                window[pane.index] = value
            elif kind == "delta":
                first = not pane.partial
                pane.partial = (pane.partial or "") + value
                if first and value:  # show the first token at once: time to first token is felt
                    last_yield = 0.0
            elif kind == "done":
                comp: Completion = value
                idx = len(pane.conv.messages)
                pane.conv = pane.conv.append(Message("assistant", comp.text))
                pane.stats[idx] = {
                    "tokens_per_s": round(comp.tokens_per_s, 1),
                    "first_token_s": comp.first_token_s,
                    "prompt_tokens": comp.prompt_tokens,
                    "completion_tokens": comp.completion_tokens,
                    "context_window": window.get(pane.index),
                    "finish_reason": comp.finish_reason,
                }
                pane.partial, pane.mark_at = None, None  # a new answer is the one to mark
                on_done(pane, comp)
            elif kind == "error":
                pane.error = value
            elif kind == "end":
                pane.busy, pane.partial = False, None
                running.discard(pane.index)
        now = time.monotonic()
        if (changed and (now - last_yield >= tick_s or not running)) or now - last_yield >= 0.5:
            last_yield = now
            yield None
