"""Rounds of games with feedback (Fu et al.): after each game a critic (or a person, or a fixed text)
gives the learner three suggestions; the learner plays again with its games and the feedback in its
context, while the opponent starts fresh.

The samples are (setting, stream, round): a stream is one learner's sequence of rounds. Round 1 comes
before any feedback, so it is one game per stream shared by every feedback setting: the settings start
from the very same games and their changes from round 1 are paired. Each finished game is stored as a
conversation (its learner's whole context as messages, the lines, the moderator's answers, the
feedback it played with) in one transaction; a rerun loads finished games and plays only the rest, and
the generations of a game cut short come back from the store through `RecordedModel`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from mendlab.conversation import Conversation
from mendlab.errors import ContextOverflow, MendlabError
from mendlab.models import ChatModel, Message, SamplingParams
from mendlab.negotiation.game import Game, Role
from mendlab.negotiation.parsing import redact_prices, suggestions
from mendlab.negotiation.play import Check, GameResult, Line, Players, play_game, transcript, view
from mendlab.sampling import derive_seed
from mendlab.store import ResultsStore

FeedbackKind = Literal["ai", "human", "constant", "none"]
FEEDBACK_KINDS: tuple[FeedbackKind, ...] = ("ai", "human", "constant", "none")
SHARED = "shared"  # the setting name of round 1, played once per stream for every setting
CONTEXT_FULL = "context full: "  # a prompt of the game did not fit its model's context; replaying cannot help
# Bump when what a stored game means changes (the moderator's window or budget, how lines are cut):
# a run made under another protocol is then another run, not one resumed and mixed.
PROTOCOL = 2  # 2: prices turned down or compared ("not $20") are not offers


@dataclass(frozen=True)
class NegotiationConfig:
    """What a negotiation run is made of. `identity` is what changes its results; the settings, the
    number of games and of rounds are not in it: more of them extend a run without mixing it."""

    game: str = "balloon"
    seller: str = "qwen2.5-coder-0.5b"
    buyer: str = "smollm2-135m"
    critic: str = "qwen2.5-coder-0.5b"
    moderator: str = "qwen2.5-coder-0.5b"
    learner: Role = "seller"
    feedback: tuple[FeedbackKind, ...] = ("ai", "none")
    rounds: int = 5
    games: int = 24
    max_exchanges: int | None = None  # default: the game's
    params: SamplingParams = field(default_factory=lambda: SamplingParams(temperature=1.0, max_tokens=48))
    critic_max_tokens: int = 160
    human_feedback: str | None = None  # the text a person wrote, given every round

    def __post_init__(self) -> None:
        for kind in self.feedback:
            if kind not in FEEDBACK_KINDS:
                raise MendlabError(f"--feedback {kind!r}: one of {', '.join(FEEDBACK_KINDS)}")
        if self.learner not in ("seller", "buyer"):
            raise MendlabError(f"--learner {self.learner!r}: seller or buyer")
        if self.rounds < 1 or self.games < 1:
            raise MendlabError("--rounds and --games must be at least 1")
        if "human" in self.feedback and not self.human_feedback:
            raise MendlabError("--feedback human needs --human-feedback FILE")

    def identity(self, game: Game) -> dict[str, Any]:
        return {
            "game": self.game,
            "game_digest": hashlib.sha256(game.text.encode()).hexdigest(),
            "seller": self.seller,
            "buyer": self.buyer,
            "critic": self.critic,
            "moderator": self.moderator,
            "learner": self.learner,
            "max_exchanges": self.max_exchanges or game.max_exchanges,
            "params": {k: v for k, v in self.params.as_dict().items() if k != "n"},
            "critic_max_tokens": self.critic_max_tokens,
            "protocol": PROTOCOL,
        }

    def settings(self) -> list[str]:
        """The stored names of the feedback settings; a person's feedback is named by its text's hash,
        so adding it to a run, or other words from another person, never mixes with what is there."""
        names: list[str] = []
        for kind in dict.fromkeys(self.feedback):
            if kind == "human" and self.human_feedback:
                names.append(f"human-{hashlib.sha256(self.human_feedback.encode()).hexdigest()[:8]}")
            else:
                names.append(kind)
        return names


@dataclass(frozen=True)
class GameRecord:
    """One stored game of a stream: what it was played with and how it ended."""

    setting: str
    stream: int
    round: int
    deal: bool
    price: float | None
    lines: tuple[Line, ...]
    checks: tuple[Check, ...]
    feedback: tuple[str, ...]  # every feedback the learner had been given before this game, in order
    messages: tuple[Message, ...]  # the learner's whole context
    feedback_note: str = ""  # e.g. "2 prices removed from the critic's text"
    error: str | None = None

    @property
    def outcome(self) -> str:
        return f"deal at ${self.price:g}" if self.deal and self.price is not None else "no deal"

    def meta(self, run_id: str) -> dict[str, Any]:
        return {
            "run": run_id, "experiment": "negotiation", "setting": self.setting, "stream": self.stream,
            "round": self.round, "deal": self.deal, "price": self.price, "outcome": self.outcome,
            "lines": [ln.to_json() for ln in self.lines], "checks": [c.to_json() for c in self.checks],
            "feedback": list(self.feedback), "feedback_note": self.feedback_note, "error": self.error,
        }  # fmt: skip

    @classmethod
    def from_conversation(cls, conv: Conversation) -> GameRecord:
        m = conv.meta
        return cls(
            setting=str(m["setting"]), stream=int(m["stream"]), round=int(m["round"]), deal=bool(m["deal"]),
            price=m["price"], lines=tuple(Line.from_json(x) for x in m["lines"]),
            checks=tuple(Check(int(c["after"]), str(c["answer"]), c["deal"]) for c in m["checks"]),
            feedback=tuple(m.get("feedback", ())), messages=conv.messages,
            feedback_note=str(m.get("feedback_note", "")), error=m.get("error"),
        )  # fmt: skip


def game_id(run_id: str, setting: str, stream: int, round_: int) -> str:
    return f"{run_id}:negotiation:{SHARED if round_ == 1 else setting}:{stream}:{round_}"


@dataclass(frozen=True)
class Cast:
    """The models of a run, each already wrapped to remember its answers (`RecordedModel`)."""

    seller: ChatModel
    buyer: ChatModel
    critic: ChatModel
    moderator: ChatModel


def _scoped(model: ChatModel, scope: str) -> ChatModel:
    scoped = getattr(model, "scoped", None)
    return scoped(scope) if callable(scoped) else model


class Feedback:
    """The feedback a learner gets after a game, by kind."""

    def __init__(self, game: Game, cfg: NegotiationConfig, critic: ChatModel) -> None:
        self.game, self.cfg, self.critic = game, cfg, critic

    def after(self, kind: str, result: GameRecord, previous: tuple[str, ...]) -> tuple[str | None, str]:
        """(feedback text or None for no feedback, a note on how it was made)."""
        if kind == "none":
            return None, ""
        if kind == "constant":
            return self.game.constant_feedback, ""
        if kind.startswith("human"):
            return self.cfg.human_feedback, ""
        prompt = self.game.critic_prompt.format(
            item=self.game.item,
            role=self.cfg.learner,
            transcript=transcript(result.lines),
            outcome=result.outcome,
            previous=" / ".join(previous) if previous else "none yet",
        )
        msgs = [Message("system", self.game.critic_system), Message("user", prompt)]
        seed = derive_seed(self.cfg.params.seed, "critic", result.stream, result.round)
        params = SamplingParams(temperature=self.cfg.params.temperature, top_p=self.cfg.params.top_p,
                                max_tokens=self.cfg.critic_max_tokens, seed=seed)  # fmt: skip
        (out,) = _scoped(self.critic, f"ai:{result.stream}:{result.round}:critic").chat(msgs, params)
        text, removed = redact_prices(out.text.strip())
        items = suggestions(text)
        note = f"{removed} price(s) removed from the critic's text" if removed else ""
        return "\n".join(f"{i}. {s}" for i, s in enumerate(items, 1)) or "(the critic said nothing)", note


def between(game: Game, kind_feedback: str | None, result: GameRecord, learner: Role) -> Message:
    opponent = "buyer" if learner == "seller" else "seller"
    if kind_feedback is None:
        return Message("user", game.between_games_no_feedback.format(outcome=result.outcome, opponent=opponent))
    text = game.between_games.format(outcome=result.outcome, feedback=kind_feedback, opponent=opponent)
    return Message("user", text)


@dataclass(frozen=True)
class NegotiationRun:
    """Where a run's games are played: the game, the models, the settings, the store they go to."""

    store: ResultsStore
    run_id: str
    game: Game
    cfg: NegotiationConfig
    cast: Cast

    def play_stream(
        self, setting: str, stream: int, on_game: Callable[[GameRecord, bool], None] = lambda record, fresh: None
    ) -> list[GameRecord]:
        """Rounds 1..R of one stream under one setting; finished games are loaded, the rest played and
        stored one by one. A game that fails (server down) is stored as that game's error, ends its
        stream, and is played again by the next run; one that cannot fit the context stays as it is."""
        feedback = Feedback(self.game, self.cfg, self.cast.critic)
        history: list[Message] = []
        given: tuple[str, ...] = ()
        note = ""
        out: list[GameRecord] = []
        for r in range(1, self.cfg.rounds + 1):
            stored = self.store.conversation(game_id(self.run_id, setting, stream, r))
            record = GameRecord.from_conversation(stored) if stored is not None else None
            fresh = record is None or (record.error is not None and not record.error.startswith(CONTEXT_FULL))
            if fresh:
                record = self._play(SHARED if r == 1 else setting, stream, r, history, given, note)
            assert record is not None
            out.append(record)
            on_game(record, fresh)
            if record.error is not None or r == self.cfg.rounds:
                break
            try:
                text, note = feedback.after(setting, record, given)
            except MendlabError as exc:
                full = CONTEXT_FULL if isinstance(exc, ContextOverflow) else ""  # final: it would fail again
                failed = GameRecord(setting, stream, r + 1, False, None, (), (), given, record.messages, "",
                                    f"{full}the critic failed: {exc}")  # fmt: skip
                _save(self.store, self.run_id, failed)
                out.append(failed)
                on_game(failed, True)
                break
            if text is not None:
                given = (*given, text)
            history = [*record.messages[1:], between(self.game, text, record, self.cfg.learner)]
        return out

    def _play(
        self, name: str, stream: int, round_: int, history: list[Message], given: tuple[str, ...], note: str
    ) -> GameRecord:
        cfg, cast = self.cfg, self.cast
        scope = f"{name}:{stream}:{round_}"
        players = Players(
            seller=_scoped(cast.seller, scope + ":seller"),
            buyer=_scoped(cast.buyer, scope + ":buyer"),
            moderator=_scoped(cast.moderator, scope + ":moderator"),
        )

        def seed_for(role: str, turn: int) -> int:
            return derive_seed(cfg.params.seed, "negotiation", stream, round_, role, turn)

        try:
            result: GameResult = play_game(
                self.game, players, cfg.params, seed_for, cfg.learner, history, cfg.max_exchanges
            )
            record = GameRecord(name, stream, round_, result.deal, result.price, result.lines, result.checks,
                                given, result.learner_view, note)  # fmt: skip
        except MendlabError as exc:
            seen = tuple(view(self.game, cfg.learner, (), history))  # what the learner had seen when it failed
            why = (CONTEXT_FULL if isinstance(exc, ContextOverflow) else "") + str(exc)
            record = GameRecord(name, stream, round_, False, None, (), (), given, seen, note, why)
        _save(self.store, self.run_id, record)
        return record


def _save(store: ResultsStore, run_id: str, record: GameRecord) -> None:
    conv = Conversation(
        messages=record.messages,
        id=game_id(run_id, record.setting, record.stream, record.round),
        model=None,
        meta=record.meta(run_id),
    )
    store.save_conversation(conv)


def stored_games(store: ResultsStore, run_id: str) -> list[GameRecord]:
    prefix = f"{run_id}:negotiation:"
    return [
        GameRecord.from_conversation(c)
        for c in store.conversations()
        if c.id is not None and c.id.startswith(prefix) and c.meta.get("run") == run_id
    ]


def config_json(cfg: NegotiationConfig) -> Mapping[str, Any]:
    d = asdict(cfg)
    d["params"] = cfg.params.as_dict()
    d.pop("human_feedback")
    return d
