"""OpenAI `tool_calls` as the Python-call text the dialog grader reads, so a model that answers with
tool calls is graded exactly as one that writes `add_event(title="x", ...)`.

The arguments are JSON from an untrusted model. They are parsed with `json.loads` and written back
with `repr` (never evaluated); arguments that are not a JSON object are kept as they came, so that a
broken call reads as one (the grader's syntax_error), not as a silently empty one.
"""

from __future__ import annotations

import json
from typing import Any


def tool_call_text(name: str, arguments: str | None) -> str:
    """`name(k=v, ...)` with each value's `repr`; keys that are not Python names go in a `**{...}`."""
    try:
        args = json.loads(arguments) if arguments and arguments.strip() else {}
    except ValueError:
        return f"{name}({arguments})"
    if not isinstance(args, dict):
        return f"{name}({arguments})"
    named = [f"{k}={v!r}" for k, v in args.items() if isinstance(k, str) and k.isidentifier()]
    other = {k: v for k, v in args.items() if not (isinstance(k, str) and k.isidentifier())}
    if other:
        named.append(f"**{other!r}")
    return f"{name}({', '.join(named)})"


def message_text(message: Any) -> str:
    """A response's message as one text: its content, then one line per tool call."""
    parts = [message.content] if getattr(message, "content", None) else []
    for call in getattr(message, "tool_calls", None) or []:
        fn = getattr(call, "function", None)
        if fn is not None and getattr(fn, "name", None):
            parts.append(tool_call_text(str(fn.name), getattr(fn, "arguments", None)))
    return "\n".join(parts)
