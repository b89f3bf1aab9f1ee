"""One bargaining game, played by models: the solver of a negotiation sample.

Each player sees the game from its own side (its own lines as `assistant`, the other's as `user`);
the learner also sees its earlier games and the feedback it got on them, the opponent starts fresh.
After a line that names no price, or when the last two lines name the same price, the moderator is
asked whether a deal was made; price = the last dollar amount said. No deal is recorded as no deal,
never as a price.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mendlab.models import ChatModel, Message, SamplingParams
from mendlab.negotiation.game import ROLES, Game, Role
from mendlab.negotiation.parsing import first_line, last_price, yes_no

MODERATOR_LINES = 4  # the moderator reads the end of the game, as in the original


@dataclass(frozen=True)
class Line:
    speaker: Role
    text: str
    price: float | None
    scripted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"speaker": self.speaker, "text": self.text, "price": self.price, "scripted": self.scripted}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Line:
        return cls(d["speaker"], d["text"], d["price"], bool(d.get("scripted")))


@dataclass(frozen=True)
class Check:
    """One question to the moderator: after which line, what it said, how that was read."""

    after: int
    answer: str
    deal: bool | None

    def to_json(self) -> dict[str, Any]:
        return {"after": self.after, "answer": self.answer, "deal": self.deal}


@dataclass(frozen=True)
class Players:
    seller: ChatModel
    buyer: ChatModel
    moderator: ChatModel

    def of(self, role: Role) -> ChatModel:
        return self.seller if role == "seller" else self.buyer


@dataclass(frozen=True)
class GameResult:
    lines: tuple[Line, ...]
    deal: bool
    price: float | None  # the deal's price; None without a deal
    checks: tuple[Check, ...]
    learner_view: tuple[Message, ...]  # everything the learner saw, its history included

    def outcome(self) -> str:
        return f"deal at ${self.price:g}" if self.deal and self.price is not None else "no deal"


def merged(messages: Sequence[Message]) -> list[Message]:
    """Consecutive messages of one role joined, so every chat template sees strict alternation."""
    out: list[Message] = []
    for m in messages:
        if out and out[-1].role == m.role and m.role != "system":
            out[-1] = Message(m.role, out[-1].content + "\n\n" + m.content)
        else:
            out.append(m)
    return out


def view(game: Game, role: Role, lines: Sequence[Line], history: Sequence[Message] = ()) -> list[Message]:
    """The game as `role` sees it, after `history` (the learner's earlier games and feedback)."""
    player = game.player(role)
    msgs = [Message("system", player.system), *history]
    if role == "seller" and player.start:
        msgs.append(Message("user", player.start))
    msgs += [Message("assistant" if ln.speaker == role else "user", ln.text) for ln in lines]
    return merged(msgs)


def transcript(lines: Sequence[Line]) -> str:
    return "\n".join(f"{ln.speaker.capitalize()}: {ln.text}" for ln in lines)


def moderator_messages(game: Game, lines: Sequence[Line]) -> list[Message]:
    msgs = [Message("system", game.moderator_system)]
    for ex in game.moderator_examples:  # few-shot, as the original's moderator
        msgs += [
            Message("user", game.moderator_question.format(transcript=ex.transcript)),
            Message("assistant", ex.answer),
        ]
    msgs.append(Message("user", game.moderator_question.format(transcript=transcript(lines[-MODERATOR_LINES:]))))
    return msgs


def needs_check(lines: Sequence[Line]) -> bool:
    """Ask the moderator once a line names no price or the last two lines name the same one."""
    last = lines[-1]
    if last.price is None:
        return True
    return len(lines) >= 2 and lines[-2].price is not None and lines[-2].price == last.price


def deal_price(lines: Sequence[Line]) -> float | None:
    return next((ln.price for ln in reversed(lines) if ln.price is not None), None)


SeedFor = Callable[[str, int], int]


def play_game(
    game: Game,
    players: Players,
    params: SamplingParams,
    seed_for: SeedFor,
    learner: Role,
    history: Sequence[Message] = (),
    max_exchanges: int | None = None,
) -> GameResult:
    """Play one game. `seed_for(role, turn)` gives each turn its seed, so a resumed game asks again
    for exactly the samples it asked for before."""
    lines = [Line(r, game.player(r).opening, last_price(game.player(r).opening), True) for r in ROLES]
    checks: list[Check] = []
    speak = replace(params, n=1, stop=tuple(dict.fromkeys([*params.stop, "\n"])))
    judge = SamplingParams(temperature=0.0, max_tokens=8)
    deal = False
    for _ in range(max_exchanges or game.max_exchanges):
        for role in ROLES:
            msgs = view(game, role, lines, history if role == learner else ())
            (out,) = players.of(role).chat(msgs, replace(speak, seed=seed_for(role, len(lines))))
            text = first_line(out.text, ("seller", "buyer", "assistant")) or "..."
            lines.append(Line(role, text, last_price(text)))
            if needs_check(lines):
                (ans,) = players.moderator.chat(moderator_messages(game, lines), judge)
                verdict = yes_no(ans.text)
                checks.append(Check(len(lines) - 1, ans.text.strip(), verdict))
                if verdict:
                    deal = True
                    break
        if deal:
            break
    price = deal_price(lines) if deal else None
    return GameResult(tuple(lines), deal, price, tuple(checks), tuple(view(game, learner, lines, history)))
