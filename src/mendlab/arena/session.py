"""One person's arena: the panes, what each model was told and answered, marks, and the vote due.

Kept apart from the web page so the rules (what a retry or a transplant does to the conversation
tree, when a vote is a vote on a fix) can be read and tested without a browser. Every change makes
a new conversation value; a change that drops turns (retry, fork, transplant over an answer) or that
changes who answers next (another model) makes a new branch, so nothing a person saw is overwritten
in the store and every answer keeps its author: a vote or a mark names the model that wrote the
answer, never the one a picker shows later.
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
    """One pane. Its model is its conversation's model, never a separate setting: a vote, a mark or a
    stored row can then only name the model that wrote the answer (see `set_model`)."""

    index: int
    conv: Conversation = field(default_factory=Conversation)
    stats: dict[int, dict[str, Any]] = field(default_factory=dict)  # message index -> speed, context, author
    person: dict[int, str] = field(default_factory=dict)  # message index -> the person's mark
    transplanted: set[int] = field(default_factory=set)  # answers a person transplanted here (to be fixed)
    mark_at: int | None = None  # the answer picked for marking (None: the latest)
    fork_from: int | None = None  # the user message picked for a fork (None: the latest)
    partial: str | None = None  # text streamed so far, while generating
    error: str = ""
    busy: bool = False

    @property
    def name(self) -> str:
        return PANE_NAMES[self.index]

    @property
    def model(self) -> str | None:
        return self.conv.model

    def assistant_indices(self) -> list[int]:
        return [i for i, m in enumerate(self.conv.messages) if m.role == "assistant"]

    def user_indices(self) -> list[int]:
        return [i for i, m in enumerate(self.conv.messages) if m.role == "user"]

    def last_user(self) -> str | None:
        users = self.user_indices()
        return self.conv.messages[users[-1]].content if users else None

    def keep_before(self, n: int) -> None:
        """Forget what was noted about messages from index `n` on (they were dropped by a branch)."""
        self.stats = {i: s for i, s in self.stats.items() if i < n}
        self.person = {i: s for i, s in self.person.items() if i < n}
        self.transplanted = {i for i in self.transplanted if i < n}

    def reset(self, model: str | None) -> None:
        self.conv, self.stats, self.person, self.transplanted, self.error = Conversation(model=model), {}, {}, set(), ""
        self.mark_at = self.fork_from = None


@dataclass(frozen=True)
class Answer:
    """An answer as a vote must name it: the conversation it was generated in (a later branch that
    inherits it does not make it a new answer) and the model that wrote it."""

    conversation: str
    index: int
    model: str | None


@dataclass(frozen=True)
class PendingVote:
    left: Answer
    right: Answer
    message_index: int  # the answers voted on are messages at this index in both panes
    kind: str  # "fix": the pair's message asked for a fix; "first": it did not
    hidden: bool  # the model names are hidden from the voter (an anonymous battle not yet revealed)

    @property
    def key(self) -> tuple[str, str, int]:
        return pair_key(self.left.conversation, self.right.conversation, self.message_index)


def pair_key(a: str, b: str, message_index: int) -> tuple[str, str, int]:
    """One key per pair of answers, whichever side each one is on."""
    x, y = sorted((a, b))
    return x, y, message_index


@dataclass
class ArenaState:
    session: str = field(default_factory=new_id)
    panes: list[Pane] = field(default_factory=lambda: [Pane(i) for i in range(len(PANE_NAMES))])
    shown: int = 2
    system_prompt: str = ""
    scenario: Scenario | None = None
    battle: bool = False
    revealed: bool = True
    voted: set[tuple[str, str, int]] = field(default_factory=set)  # pair keys already voted on
    battle_convs: set[str] = field(default_factory=set)  # conversation ids saved while names were hidden
    targets: list[str] = field(default_factory=lambda: list(PANE_NAMES[:2]))  # panes a message goes to
    exports: dict[str, str] = field(default_factory=dict)  # kind -> the latest file handed to this session

    def visible(self) -> list[Pane]:
        return self.panes[: self.shown]

    @property
    def hidden(self) -> bool:
        """Model names must not reach the page: an anonymous battle before its vote."""
        return self.battle and not self.revealed


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


def author(pane: Pane, index: int) -> str | None:
    """Who wrote answer `index`: a transplanted or inherited answer names its author in `origin`;
    the others were written by the conversation's model."""
    msg = pane.conv.messages[index]
    return msg.origin or pane.conv.model


def answer_at(pane: Pane, index: int) -> Answer:
    written_in = pane.stats.get(index, {}).get("conversation")
    return Answer(written_in if isinstance(written_in, str) else pane.conv.id, index, author(pane, index))


def asks_for_fix(state: ArenaState, pane: Pane, user_index: int) -> bool:
    """User message `user_index` asks for a fix when the answer just before it was wrong (a person's
    mark overrules the grader) or was transplanted there to be fixed. Only that answer counts: an
    earlier mistake or transplant does not make every later message a fix request."""
    msgs = pane.conv.messages
    if not 0 < user_index < len(msgs) or msgs[user_index].role != "user":
        return False
    prev = user_index - 1
    if msgs[prev].role != "assistant":
        return False
    return prev in pane.transplanted or turn_is_wrong(state, pane, prev)


def set_model(pane: Pane, model: str | None) -> None:
    """Point the pane at another model. The answers so far stay credited to the model that wrote
    them: the switch is a new branch on which they carry their author in `origin`, and whatever is
    generated next belongs to the new model."""
    if pane.busy:
        raise ValueError(f"the {pane.name.lower()} pane is answering: change its model when it is done")
    conv = pane.conv
    if model == conv.model:
        return
    if not conv.messages:
        pane.conv = replace(conv, model=model)
        return
    kept = tuple(replace(m, origin=m.origin or conv.model) if m.role == "assistant" else m for m in conv.messages)
    pane.conv = replace(conv.fork(len(kept)), messages=kept, model=model)
    pane.error = ""


def _apply_system(pane: Pane, prompt: str) -> None:
    """The pane's conversation under the current system prompt; a change starts a branch, and what
    was noted per message index moves with the messages."""
    conv = pane.conv
    msgs = conv.messages
    has_system = bool(msgs) and msgs[0].role == "system"
    if (msgs[0].content if has_system else "") == prompt:
        return
    head = (Message("system", prompt),) if prompt else ()
    rest = msgs[1:] if has_system else msgs
    if not msgs:
        pane.conv = replace(conv, messages=head)
        return
    pane.conv = replace(conv.fork(0), messages=(*head, *rest))
    shift = len(head) - int(has_system)
    if shift:
        pane.stats = {i + shift: s for i, s in pane.stats.items()}
        pane.person = {i + shift: s for i, s in pane.person.items()}
        pane.transplanted = {i + shift for i in pane.transplanted}


def add_user(state: ArenaState, pane: Pane, text: str) -> None:
    _apply_system(pane, state.system_prompt)
    pane.conv = pane.conv.append(Message("user", text))
    pane.error = ""


def drop_last_answer(pane: Pane) -> bool:
    """For a retry: branch without the last answer. False if there is no user turn to answer."""
    msgs = pane.conv.messages
    if msgs and msgs[-1].role == "assistant":
        pane.conv = pane.conv.fork(len(msgs) - 1)
        pane.keep_before(len(msgs) - 1)
    return bool(pane.conv.messages) and pane.conv.messages[-1].role == "user"


def fork_at(pane: Pane, index: int, text: str) -> None:
    """Edit user message `index`: a new branch that ends with the edited message, ready to resample."""
    pane.conv = pane.conv.edit(index, text)
    pane.keep_before(index)
    pane.error = ""


def transplant(state: ArenaState, src: Pane, dst: Pane) -> None:
    """Put `src`'s last answer in `dst`'s mouth, answering the same user message (the original's
    "fixing others' mistakes"): `dst`'s own answer to it, if any, is dropped on a new branch."""
    answers = src.assistant_indices()
    if not answers:
        raise ValueError(f"the {src.name.lower()} pane has no answer to transplant")
    if dst.busy:
        raise ValueError(f"the {dst.name.lower()} pane is answering")
    k = answers[-1]
    answer = src.conv.messages[k]
    question = src.conv.messages[k - 1].content if k and src.conv.messages[k - 1].role == "user" else None
    _apply_system(dst, state.system_prompt)
    conv = dst.conv
    msgs = conv.messages
    if msgs and msgs[-1].role == "assistant" and len(msgs) >= 2 and msgs[-2].content == question:
        conv = conv.fork(len(msgs) - 1)
    else:
        conv = conv.fork(len(msgs))
        if question is not None and not (conv.messages and conv.messages[-1].content == question):
            conv = conv.append(Message("user", question))
    if conv.messages and conv.messages[-1].role == "assistant":
        conv = conv.append(Message("user", question or "Continue."))
    dst.conv = conv.transplant(answer, origin=author(src, k) or "unknown")
    keep = len(dst.conv.messages) - 1
    dst.keep_before(keep)
    dst.transplanted.add(keep)
    dst.error = ""


def pending_vote(state: ArenaState) -> PendingVote | None:
    """A vote is due when left and right both answered the same dialog (the same messages from the
    person, at the same places) and this pair of answers was not voted on yet. A transplanted answer
    is not voted on: it is the mistake handed over to be fixed, not an answer of that pane's model."""
    left, right = state.panes[0], state.panes[1]
    lm, rm = left.conv.messages, right.conv.messages
    if left.busy or right.busy or not lm or len(lm) != len(rm):
        return None
    k = len(lm) - 1
    if lm[k].role != "assistant" or rm[k].role != "assistant" or k in left.transplanted or k in right.transplanted:
        return None
    if k < 1 or lm[k - 1].role != "user":
        return None
    if any((a.role == "assistant") != (b.role == "assistant") for a, b in zip(lm, rm, strict=True)):
        return None
    if any(a.role != "assistant" and (a.role, a.content) != (b.role, b.content) for a, b in zip(lm, rm, strict=True)):
        return None
    a, b = answer_at(left, k), answer_at(right, k)
    if a.conversation == b.conversation or a.model is None or b.model is None:
        return None
    fix = asks_for_fix(state, left, k - 1) or asks_for_fix(state, right, k - 1)
    vote = PendingVote(a, b, k, "fix" if fix else "first", state.hidden)
    return None if vote.key in state.voted else vote


def start_battle(state: ArenaState, models: Sequence[str], rng: random.Random) -> None:
    if len(models) < 2:
        raise ValueError("a battle needs at least two ready chat models")
    if any(p.busy for p in state.panes):
        raise ValueError("wait until the panes have answered")
    a, b = rng.sample(list(models), 2)
    state.battle, state.revealed, state.shown = True, False, 2
    state.battle_convs = set()
    for pane, model in zip(state.panes[:2], (a, b), strict=True):
        pane.reset(model)


def redact(text: str, state: ArenaState, names: Sequence[str]) -> str:
    """`text` as the page may show it: during an anonymous battle every model name in it (an error
    such as "qwen: prompt has 5000 tokens, context window is 4096" names its model) becomes the
    pane's label, or "a model" for a model not in this battle."""
    if not state.hidden:
        return text
    labels = {p.model: f"Model {'ABCD'[p.index]}" for p in state.visible() if p.model}
    for name in sorted({*names, *labels}, key=len, reverse=True):  # longest first: "m-1.5b" before "m"
        if name:
            text = text.replace(name, labels.get(name, "a model"))
    return text


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

    def work(pane: Pane, name: str) -> None:
        try:
            with pool.use(name) as model:
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
        args = (pane, pane.model)
        threading.Thread(target=work, args=args, daemon=True, name=f"arena-{pane.name}").start()
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
                    "model": pane.model,  # the pane's model cannot change while it is busy
                    "conversation": pane.conv.id,  # where it was written, whatever branches inherit it
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
