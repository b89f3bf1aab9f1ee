"""A bargaining game is data: who plays, what they are told, how the moderator and critic are asked.

The balloon game of Fu et al. ships built in (`games/balloon.yaml`); users write others in YAML without
code. A bad file is one line naming the file, the line and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mendlab.errors import ConfigError
from mendlab.yamlfile import LocatedYaml, builtin_or_file

Role = Literal["seller", "buyer"]
ROLES: tuple[Role, ...] = ("seller", "buyer")
BUILTIN = ("balloon",)


@dataclass(frozen=True)
class Player:
    system: str
    opening: str  # the scripted first line: the seller's $20, the buyer's $10
    start: str = ""  # what this player is told before its first line, when it speaks first


@dataclass(frozen=True)
class Example:
    transcript: str
    answer: str


@dataclass(frozen=True)
class Game:
    name: str
    item: str
    cost: float
    max_exchanges: int  # model turns per side after the two openings
    seller: Player
    buyer: Player
    moderator_system: str
    moderator_question: str  # with {transcript}
    moderator_examples: tuple[Example, ...]
    critic_system: str
    critic_prompt: str  # with {item} {role} {transcript} {outcome} {previous}
    between_games: str  # with {outcome} {feedback} {opponent}
    between_games_no_feedback: str  # with {outcome} {opponent}
    constant_feedback: str
    text: str  # the file's own text: part of a run's identity

    def player(self, role: Role) -> Player:
        return self.seller if role == "seller" else self.buyer


def _money(value: float) -> str:
    """8 as "8", 7.5 as "7.50": how a price is written in a prompt."""
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


def _template(doc: LocatedYaml, obj: dict[str, Any], path: tuple[Any, ...], key: str, fields: set[str]) -> str:
    """A prompt with {placeholders}: only the ones named may appear, so a typo fails here, not mid-run."""
    import string

    text = str(doc.get(obj, path, key, str))
    try:
        parts = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise doc.fail((*path, key), f"bad placeholder: {exc}") from None
    if any(spec or conv for _, spec, conv in parts):
        raise doc.fail((*path, key), "placeholders take no format ({cost}, not {cost:.2f})")
    used = {name for name, _, _ in parts}
    unknown = used - fields
    if unknown:
        raise doc.fail(
            (*path, key), f"unknown placeholder {{{sorted(unknown)[0]}}} (allowed: {', '.join(sorted(fields))})"
        )
    return text


def parse_game(text: str, where: str) -> Game:
    doc = LocatedYaml(where, text, "game file")
    root = doc.data
    if not isinstance(root, dict):
        raise ConfigError(f"{where}:1: a game is a mapping with name, item, cost, seller, buyer, moderator, critic")
    doc.known(root, (), {"name", "item", "cost", "max_exchanges", "seller", "buyer", "moderator", "critic",
                         "between_games", "between_games_no_feedback", "constant_feedback"})  # fmt: skip
    cost = doc.get(root, (), "cost", float)
    item = doc.get(root, (), "item", str)
    players = {}
    for role in ROLES:
        d = doc.get(root, (), role, dict)
        doc.known(d, (role,), {"system", "opening", "start"})
        players[role] = Player(  # the cost is said once, in `cost`, and written into the prompts from there
            system=_template(doc, d, (role,), "system", {"item", "cost"}).format(item=item, cost=_money(cost)),
            opening=doc.get(d, (role,), "opening", str),
            start=doc.get(d, (role,), "start", str, required=False) or "",
        )
    mod = doc.get(root, (), "moderator", dict)
    doc.known(mod, ("moderator",), {"system", "question", "examples"})
    examples = []
    for i, ex in enumerate(doc.get(mod, ("moderator",), "examples", list, required=False) or []):
        path = ("moderator", "examples", i)
        if not isinstance(ex, dict):
            raise doc.fail(path, "an example is a mapping with transcript and answer")
        doc.known(ex, path, {"transcript", "answer"})
        examples.append(Example(doc.get(ex, path, "transcript", str), doc.get(ex, path, "answer", str)))
    critic = doc.get(root, (), "critic", dict)
    doc.known(critic, ("critic",), {"system", "prompt"})
    max_exchanges = doc.get(root, (), "max_exchanges", int, required=False)
    if max_exchanges is not None and max_exchanges < 1:
        raise doc.fail(("max_exchanges",), "must be at least 1")
    return Game(
        name=doc.get(root, (), "name", str),
        item=item,
        cost=cost,
        max_exchanges=max_exchanges or 10,
        seller=players["seller"],
        buyer=players["buyer"],
        moderator_system=doc.get(mod, ("moderator",), "system", str),
        moderator_question=_template(doc, mod, ("moderator",), "question", {"transcript"}),
        moderator_examples=tuple(examples),
        critic_system=doc.get(critic, ("critic",), "system", str),
        critic_prompt=_template(
            doc, critic, ("critic",), "prompt", {"item", "role", "transcript", "outcome", "previous"}
        ),
        between_games=_template(doc, root, (), "between_games", {"outcome", "feedback", "opponent"}),
        between_games_no_feedback=_template(doc, root, (), "between_games_no_feedback", {"outcome", "opponent"}),
        constant_feedback=doc.get(root, (), "constant_feedback", str),
        text=text,
    )


def load_game(name_or_path: str) -> Game:
    """A built-in game by name, or a YAML file."""
    text, where = builtin_or_file(name_or_path, "mendlab.negotiation", "games", BUILTIN, "game")
    return parse_game(text, where)
