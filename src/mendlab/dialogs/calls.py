"""Find the API calls in a model's reply with `ast`, never `eval`.

A reply is untrusted text. We look for call expressions in it (inside a code fence, on a line of
its own, or embedded in prose), read their arguments only when they are literals or literal
arithmetic (`60*3`), and call everything else in the reply chatter.
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass, field
from typing import Any

FENCE_RE = re.compile(r"```[a-zA-Z0-9_+-]*\s*\n?(.*?)(?:```|$)", re.DOTALL)
THINK_RE = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
THINK_END = "</think>"


def strip_reasoning(reply: str) -> str:
    """The reply without a reasoning model's `<think>…</think>` block: what it thought is neither its
    answer's chatter nor a call it made. One cut short by the token limit runs to the end; a lone
    `</think>` (the opening tag was in the chat template) ends the thinking before it."""
    text = THINK_RE.sub(" ", reply)
    end = text.lower().rfind(THINK_END)
    return text[end + len(THINK_END) :] if end >= 0 else text


class NotLiteral:
    """An argument we refuse to evaluate (a name, a function call...): shown as its source."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __repr__(self) -> str:
        return f"<{self.source}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NotLiteral) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


@dataclass(frozen=True)
class Call:
    obj: str | None  # `action` in action.add_calendar_entry(...)
    function: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class Extraction:
    calls: tuple[Call, ...]
    chatter: str  # what the reply holds besides its calls (stripped); "" if nothing
    syntax_error: bool  # something looked like an API call but did not parse


_BINOPS: dict[type, Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
}


def literal(node: ast.AST, source: str = "") -> Any:
    """The value of a literal or of literal arithmetic; NotLiteral for anything else. True and False
    are values (a flag's), never numbers."""
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        return node.value
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (str, int, float))
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = literal(node.operand, source)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = literal(node.left, source), literal(node.right, source)
        if _num(left) and _num(right):
            if isinstance(node.op, (ast.Div, ast.FloorDiv)) and right == 0:
                return NotLiteral(ast.get_source_segment(source, node) or "?")
            if abs(left) < 1e9 and abs(right) < 1e9:  # no 9**9**9 games: only + - * / on small numbers
                result = _BINOPS[type(node.op)](left, right)
                return int(result) if isinstance(result, float) and result.is_integer() else result
        if isinstance(node.op, ast.Add) and isinstance(left, str) and isinstance(right, str):
            return left + right
    return NotLiteral(ast.get_source_segment(source, node) or ast.dump(node)[:40])


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _call_name(func: ast.expr) -> tuple[str | None, str] | None:
    if isinstance(func, ast.Name):
        return None, func.id
    if isinstance(func, ast.Attribute):
        base = func.value
        if isinstance(base, ast.Name):
            return base.id, func.attr
        if isinstance(base, ast.Attribute):
            return ast.unparse(base), func.attr
    return None


def _calls_in(tree: ast.AST, source: str, obj: str, functions: set[str]) -> list[Call]:
    """Top-level calls that look like API calls: `obj.anything(...)` or a known function name."""
    found: list[Call] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node.func)
        if name is None:
            continue
        owner, fn = name
        if owner != obj and fn not in functions:
            continue
        args = tuple(literal(a, source) for a in node.args if not isinstance(a, ast.Starred))
        kwargs = {kw.arg: literal(kw.value, source) for kw in node.keywords if kw.arg is not None}
        found.append(Call(owner, fn, args, kwargs, ast.get_source_segment(source, node) or ""))
    found.sort(key=lambda c: source.find(c.source))
    return found


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):
        return None


def _only_calls(tree: ast.Module, calls: list[Call]) -> bool:
    """True if every statement is one of the calls (so nothing else is chatter)."""
    if not calls:
        return False
    return all(isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) for stmt in tree.body) and len(
        tree.body
    ) == len(calls)


def _from_code(code: str, obj: str, functions: set[str]) -> tuple[list[Call], list[str], bool]:
    """Calls, leftover text and whether an API-looking line failed to parse, for one block of code."""
    tree = _parse(code)
    if tree is not None:
        calls = _calls_in(tree, code, obj, functions)
        if _only_calls(tree, calls):
            return calls, [], False
        if calls:
            leftover = []
            for stmt in tree.body:
                seg = ast.get_source_segment(code, stmt) or ""
                if not any(c.source and c.source == seg for c in calls):
                    leftover.append(seg)
            return calls, leftover, False
    calls, leftover, broken = [], [], False
    for line in code.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        found, rest, bad = _from_line(stripped, obj, functions)
        calls += found
        leftover += rest
        broken = broken or bad
    return calls, leftover, broken


PUNCT = " `'\".,:;!"


def _from_line(line: str, obj: str, functions: set[str]) -> tuple[list[Call], list[str], bool]:
    tree = _parse(line)
    if tree is not None:
        calls = _calls_in(tree, line, obj, functions)
        if calls:
            return calls, ([] if _only_calls(tree, calls) else [line]), False
    # A call embedded in prose: start at the API name, take the longest piece that parses.
    starts = [m.start() for m in re.finditer(rf"\b{re.escape(obj)}\s*\.\s*\w+\s*\(", line)]
    starts += [m.start() for f in functions for m in re.finditer(rf"(?<![\w.]){re.escape(f)}\s*\(", line)]
    if not starts:
        return [], [line], False
    start = min(starts)
    for end in range(len(line), start, -1):
        if line[end - 1] != ")":
            continue
        snippet = line[start:end]
        tree = _parse(snippet)
        calls = _calls_in(tree, snippet, obj, functions) if tree is not None else []
        if not calls:
            continue
        before = line[:start].strip(PUNCT)
        tail = line[end:].strip(PUNCT)
        more, rest, bad = _from_line(tail, obj, functions) if tail else ([], [], False)
        return calls + more, ([before] if before else []) + rest, bad
    return [], [line], True


def extract_calls(reply: str, obj: str, functions: set[str]) -> Extraction:
    """All API-looking calls in `reply`, plus the chatter around them (its reasoning is neither)."""
    reply = strip_reasoning(reply)
    fences = list(FENCE_RE.finditer(reply))
    if fences:
        calls: list[Call] = []
        leftover: list[str] = []
        broken = False
        for m in fences:
            c, rest, bad = _from_code(m.group(1), obj, functions)
            calls += c
            leftover += rest
            broken = broken or bad
        outside = FENCE_RE.sub(" ", reply).strip()
        if outside:
            leftover.insert(0, outside)
    else:
        calls, leftover, broken = _from_code(reply.strip(), obj, functions)
    chatter = "\n".join(t for t in (s.strip() for s in leftover) if t and not t.startswith("#"))
    return Extraction(tuple(calls), chatter, broken and not calls)
