"""Conversations as immutable values that form a tree.

A conversation's id names a branch: appending a message gives a longer value of the same branch;
forking or editing a past turn gives a new branch that remembers its parent and the turn it split
at, so "fork at turn 3 and resample ten times" is ten children of one node, and no branch that was
recorded is ever overwritten by another. A transplanted turn (another model's answer put in this
model's mouth) keeps its real author in `Message.origin`: the model under test cannot see it, the
analysis can.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from mendlab.errors import InputError
from mendlab.jsonl import read_objects
from mendlab.models.base import ROLES, Message


def new_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Conversation:
    messages: tuple[Message, ...] = ()
    id: str = field(default_factory=new_id)
    parent: str | None = None
    fork_turn: int | None = None  # number of parent messages kept when this branch was made
    model: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.messages)

    def _child(self, messages: tuple[Message, ...], fork_turn: int) -> Conversation:
        return replace(self, messages=messages, id=new_id(), parent=self.id, fork_turn=fork_turn)

    def append(self, message: Message) -> Conversation:
        """This branch, one message longer."""
        return replace(self, messages=(*self.messages, message))

    def fork(self, at: int) -> Conversation:
        """A branch keeping the first `at` messages, to resample or edit from there."""
        if not 0 <= at <= len(self.messages):
            raise IndexError(f"cannot fork at {at}: conversation has {len(self.messages)} messages")
        return self._child(self.messages[:at], at)

    def edit(self, index: int, content: str) -> Conversation:
        """A branch where message `index` says something else and everything after it is dropped."""
        if not 0 <= index < len(self.messages):
            raise IndexError(f"no message {index}: conversation has {len(self.messages)} messages")
        kept = self.messages[:index]
        return self._child((*kept, replace(self.messages[index], content=content)), index)

    def transplant(self, answer: Message | str, origin: str) -> Conversation:
        """Append another model's answer as if this conversation's model had written it."""
        if self.messages and self.messages[-1].role == "assistant":
            raise ValueError("a transplanted answer must follow a user or system turn")
        text = answer.content if isinstance(answer, Message) else answer
        return self.append(Message("assistant", text, origin=origin))

    def to_json(self) -> dict[str, Any]:
        msgs: list[dict[str, str]] = []
        for m in self.messages:
            d = m.to_openai()
            if m.origin is not None:
                d["origin"] = m.origin
            msgs.append(d)
        out: dict[str, Any] = {"messages": msgs, "id": self.id}
        if self.parent is not None:
            out["parent"] = self.parent
            out["fork_turn"] = self.fork_turn
        if self.model is not None:
            out["model"] = self.model
        out.update({k: v for k, v in self.meta.items() if k not in out})
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "conversation") -> Conversation:
        """Parse OpenAI `messages` JSON; `where` (file:line) prefixes any error."""
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected a JSON object with a 'messages' list")
        raw = data.get("messages")
        if not isinstance(raw, list) or not raw:
            raise InputError(f"{where}: field 'messages' must be a non-empty list")
        messages = []
        for i, m in enumerate(raw):
            if not isinstance(m, dict):
                raise InputError(f"{where}: messages[{i}] must be an object")
            role = m.get("role")
            if role not in ROLES:
                raise InputError(f"{where}: messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
            content = m.get("content")
            if not isinstance(content, str):
                raise InputError(f"{where}: messages[{i}].content must be a string")
            origin = m.get("origin")
            messages.append(Message(role, content, origin=origin if isinstance(origin, str) else None))
        known = {"messages", "id", "parent", "fork_turn", "model"}
        fork_turn = data.get("fork_turn")
        return cls(
            messages=tuple(messages),
            id=str(data["id"]) if data.get("id") is not None else new_id(),
            parent=str(data["parent"]) if data.get("parent") is not None else None,
            fork_turn=fork_turn if isinstance(fork_turn, int) else None,
            model=str(data["model"]) if data.get("model") is not None else None,
            meta={k: v for k, v in data.items() if k not in known},
        )


def read_jsonl(path: Path) -> list[Conversation]:
    """Conversations from a JSONL file, one `{"messages": [...]}` per line; errors name the line."""
    out = [Conversation.from_json(row, where) for where, row in read_objects(path)]
    if not out:
        raise InputError(f"{path}: no conversations in file")
    return out


def write_jsonl(conversations: Iterable[Conversation], out: TextIO) -> int:
    n = 0
    for conv in conversations:
        out.write(json.dumps(conv.to_json(), ensure_ascii=False) + "\n")
        n += 1
    return n


@dataclass(frozen=True)
class ConversationTree:
    """Index conversations by parent, to walk the branches that grew from one root."""

    nodes: Mapping[str, Conversation]

    @classmethod
    def of(cls, conversations: Sequence[Conversation]) -> ConversationTree:
        return cls({c.id: c for c in conversations})

    def children(self, conv_id: str) -> list[Conversation]:
        return [c for c in self.nodes.values() if c.parent == conv_id]

    def roots(self) -> list[Conversation]:
        return [c for c in self.nodes.values() if c.parent is None or c.parent not in self.nodes]

    def walk(self, conv_id: str, depth: int = 0) -> Iterator[tuple[int, Conversation]]:
        yield depth, self.nodes[conv_id]
        for child in self.children(conv_id):
            yield from self.walk(child.id, depth + 1)
