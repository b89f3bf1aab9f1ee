"""What is judged: pairs of answers to the same prompt, from a file, from the store, or generated here.

A pair's id is its content's (prompt, both answers, both authors, and for stored answers the job and
sample they came from), so the same pairs in another order are the same samples, and a resumed judge
run finds its verdicts by id alone. From the store, two
answers are a pair when they answer the very same messages in the same job (the generation scope:
one rung's dialog, a replayed mistake) with the same sample index: a calendar run's first turns and
replays, or two `mendlab generate` runs of one prompts file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mendlab.conversation import Conversation
from mendlab.errors import InputError, MendlabError
from mendlab.jsonl import read_objects
from mendlab.models import Message
from mendlab.store import GenerationRecord, ResultsStore


@dataclass(frozen=True)
class Pair:
    """Two answers (a, b) to one prompt, and who wrote each."""

    id: str
    prompt: tuple[Message, ...]
    answer_a: str
    answer_b: str
    model_a: str = "A"
    model_b: str = "B"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": [m.to_openai() for m in self.prompt],
            "model_a": self.model_a,
            "model_b": self.model_b,
            "answer_a": self.answer_a,
            "answer_b": self.answer_b,
            **({"meta": dict(self.meta)} if self.meta else {}),
        }


@dataclass(frozen=True)
class Prompt:
    """A prompt to answer: the conversation so far, ending with the user's turn."""

    id: str
    messages: tuple[Message, ...]


def content_id(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:12]


def pair_of(prompt: Sequence[Message], a: str, b: str, model_a: str, model_b: str, **meta: Any) -> Pair:
    """A pair named by its content and `meta` (where it came from: two samples of one prompt that happen
    to say the same are two pairs, each judged)."""
    plain = tuple(Message(m.role, m.content) for m in prompt)
    pid = content_id([m.to_openai() for m in plain], a, b, model_a, model_b, meta)
    return Pair(pid, plain, a, b, model_a, model_b, meta)


def _messages(row: dict[str, Any], where: str) -> tuple[Message, ...]:
    """`messages` (OpenAI form), or `prompt` (one user turn) with an optional `system`."""
    if "messages" in row:
        msgs = Conversation.from_json({"messages": row["messages"]}, where).messages
    elif isinstance(row.get("prompt"), str) and row["prompt"].strip():
        system = row.get("system")
        if system is not None and not isinstance(system, str):
            raise InputError(f"{where}: field 'system' must be a string")
        msgs = (*((Message("system", system),) if system else ()), Message("user", row["prompt"]))
    else:
        raise InputError(f"{where}: missing field 'messages' (a list) or 'prompt' (a string)")
    if msgs[-1].role != "user":
        raise InputError(f"{where}: field 'messages': the last message must be the user's (what the answers reply to)")
    return msgs


def _text(row: dict[str, Any], key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        why = "must be a string" if key in row else "is missing"
        raise InputError(f"{where}: field '{key}' {why}")
    return value


def read_pairs(path: Path) -> list[Pair]:
    """`{"messages": [...] | "prompt": "...", "answer_a": "...", "answer_b": "...", "model_a"?, "model_b"?,
    "id"?}` per line. A line that repeats another is refused (it would be judged twice as one sample)."""
    out: list[Pair] = []
    seen: dict[str, str] = {}
    for where, row in read_objects(path, "pairs file"):
        msgs = _messages(row, where)
        a, b = _text(row, "answer_a", where), _text(row, "answer_b", where)
        model_a = str(row.get("model_a") or "A")
        model_b = str(row.get("model_b") or "B")
        if model_a == model_b:
            raise InputError(f"{where}: fields 'model_a' and 'model_b' are both {model_a!r}")
        pair = pair_of(msgs, a, b, model_a, model_b)
        if "id" in row:
            if not isinstance(row["id"], (str, int)) or isinstance(row["id"], bool):
                raise InputError(f"{where}: field 'id' must be a string or a number")
            pair = replace(pair, id=str(row["id"]))
        if pair.id in seen:
            raise InputError(f"{where}: the same pair as {seen[pair.id]} (id {pair.id!r})")
        seen[pair.id] = where
        out.append(pair)
    if not out:
        raise InputError(f"{path}: no pairs in file")
    return out


def read_prompts(path: Path) -> list[Prompt]:
    """`{"messages": [...]}` or `{"prompt": "...", "system"?: "..."}` per line, each answered by both models."""
    out: list[Prompt] = []
    seen: dict[str, str] = {}
    for where, row in read_objects(path, "prompts file"):
        msgs = _messages(row, where)
        pid = str(row["id"]) if isinstance(row.get("id"), (str, int)) else content_id([m.to_openai() for m in msgs])
        if pid in seen:
            raise InputError(f"{where}: the same prompt as {seen[pid]} (id {pid!r})")
        seen[pid] = where
        out.append(Prompt(pid, msgs))
    if not out:
        raise InputError(f"{path}: no prompts in file")
    return out


def _key(g: GenerationRecord) -> str:
    return json.dumps(
        [[m.to_openai() for m in g.messages], str(g.meta.get("scope", "")), g.sample_index], ensure_ascii=False
    )


def stored_pairs(store: ResultsStore, runs: Sequence[str], models: Sequence[str]) -> tuple[list[Pair], tuple[str, str]]:
    """Pairs of stored answers to the same messages: model a from the first run, model b from the last
    (one run may hold both). Without models, the run's two answerers (refused if it has another count)."""
    if not 1 <= len(runs) <= 2:
        raise MendlabError("--from-run: one run holding both models, or two runs (model a's, then model b's)")
    known = {r["id"] for r in store.runs()}
    for rid in runs:
        if rid not in known:
            raise MendlabError(f"{store.path}: no run named {rid!r} (see `mendlab runs`)")
    gens = {rid: store.generations(rid) for rid in dict.fromkeys(runs)}
    if not models:
        names = list(dict.fromkeys(g.model for rid in gens for g in gens[rid]))
        if len(names) != 2:
            raise MendlabError(f"run {'/'.join(runs)} has {len(names)} models ({', '.join(names)}): name two with -m")
        models = names
    if len(models) != 2:
        raise MendlabError(f"-m: two models to compare, got {len(models)}")
    model_a, model_b = models
    run_a, run_b = runs[0], runs[-1]
    if (run_a, model_a) == (run_b, model_b):
        raise MendlabError(f"-m {model_a} twice in one run: nothing to compare")
    by_key: dict[str, GenerationRecord] = {}
    for g in gens[run_b]:
        if g.model == model_b:
            by_key.setdefault(_key(g), g)
    out: list[Pair] = []
    seen: set[str] = set()
    for g in gens[run_a]:
        if g.model != model_a or (other := by_key.get(_key(g))) is None:
            continue
        pair = pair_of(
            g.messages,
            g.output,
            other.output,
            model_a,
            model_b,
            run_a=run_a,
            run_b=run_b,
            scope=str(g.meta.get("scope", "")),
            sample_index=g.sample_index,
        )
        if pair.id not in seen:  # the same answers to the same prompt in two jobs: judged once
            seen.add(pair.id)
            out.append(pair)
    if not out:
        raise MendlabError(
            f"no prompt answered by both {model_a} (run {run_a}) and {model_b} (run {run_b}) in {store.path}"
        )
    return out, (model_a, model_b)
