"""Users' own chat data, as training dialogues: OpenAI `messages` lines, or OpenAssistant-style
message trees flattened to their paths.

An OpenAssistant tree (oasst1's `*.trees.jsonl`) is one message per node, `{"text", "role":
"prompter"|"assistant", "replies": [...]}`, under a line's `"prompt"` (or the line itself). Each
root-to-leaf path is one conversation, as in the StarChat data; a path that ends with a prompter's
message ends at the answer before it (nothing to train after it), and paths that become equal that
way are kept once. Deleted messages (`"deleted": true`) are left out with their replies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mendlab.errors import InputError
from mendlab.jsonl import read_objects
from mendlab.training.labels import check_text, parse_messages

ROLE_OF = {"prompter": "user", "user": "user", "assistant": "assistant", "system": "system"}


@dataclass(frozen=True)
class ChatLine:
    messages: tuple[dict[str, Any], ...]
    where: str  # file:line
    path: int | None  # which path of a tree, None for a messages line


def _node(node: Any, where: str, at: str) -> tuple[dict[str, Any], list[Any]]:
    if not isinstance(node, dict):
        raise InputError(f"{where}: {at} must be a message object")
    role = node.get("role")
    if not isinstance(role, str) or role not in ROLE_OF:  # a list or an object is no role, nor a dict key
        raise InputError(f"{where}: {at}.role must be prompter, assistant or system, got {role!r}")
    text = node.get("text", node.get("content"))
    if not isinstance(text, str):
        raise InputError(f"{where}: {at}.text must be a string")
    check_text(text, f"{where}: {at}.text")
    replies = node.get("replies", [])
    if not isinstance(replies, list):
        raise InputError(f"{where}: {at}.replies must be a list")
    return {"role": ROLE_OF[role], "content": text}, replies


def tree_paths(root: Any, where: str, at: str = "prompt") -> list[tuple[dict[str, Any], ...]]:
    """Every root-to-leaf path of a message tree, each cut after its last assistant message."""
    paths: list[tuple[dict[str, Any], ...]] = []
    stack: list[tuple[Any, str, tuple[dict[str, Any], ...]]] = [(root, at, ())]
    while stack:  # depth first, by hand: a tree deeper than Python's stack is still a tree
        node, name, above = stack.pop()
        if isinstance(node, dict) and node.get("deleted") is True:
            continue  # a deleted root: nothing of the tree is kept
        message, replies = _node(node, where, name)
        path = (*above, message)
        live = [i for i, r in enumerate(replies) if not (isinstance(r, dict) and r.get("deleted") is True)]
        if not live:
            paths.append(path)
        for i in reversed(live):
            stack.append((replies[i], f"{name}.replies[{i}]", path))
    out: list[tuple[dict[str, Any], ...]] = []
    seen: set[str] = set()
    for path in paths:
        end = max((i for i, m in enumerate(path) if m["role"] == "assistant"), default=-1)
        cut = path[: end + 1]
        key = json.dumps(cut, sort_keys=True, ensure_ascii=False)
        if cut and key not in seen:
            seen.add(key)
            out.append(cut)
    return out


def read_chats(path: Path) -> Iterator[ChatLine]:
    """The conversations of a user's file, line by line; errors name the file and line."""
    n = 0
    for where, row in read_objects(path, "chat file"):
        if "messages" in row:
            msgs = parse_messages(row, where)  # checked as `train labels` will read them
            raw = row["messages"]
            yield ChatLine(tuple(_plain(m, w.weight) for m, w in zip(raw, msgs, strict=True)), where, None)
        elif "prompt" in row or "replies" in row or "text" in row:
            root = row["prompt"] if "prompt" in row else row
            paths = tree_paths(root, where, "prompt" if "prompt" in row else "message")
            if not paths:
                raise InputError(f"{where}: the message tree has no assistant answer")
            for i, p in enumerate(paths):
                yield ChatLine(p, where, i)
        else:
            raise InputError(
                f"{where}: neither OpenAI messages (a 'messages' list) nor an OpenAssistant message tree "
                "(a 'prompt' with 'text', 'role' and 'replies')"
            )
        n += 1
    if n == 0:
        raise InputError(f"{path}: no conversations in file")


def _plain(m: dict[str, Any], weight: int) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m["role"], "content": m["content"]}
    if weight == 0:
        out["weight"] = 0
    return out
