"""A resumable sampling run: conversations × n samples through one model, every result stored.

Sample i of a conversation is generated on its own with seed + i, so a run resumed after a kill
makes only the missing samples, with the seeds they would have had. (Texts can still differ from an
uninterrupted run in rare tokens: llama.cpp's rounding depends on how the prompt was batched.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from mendlab.conversation import Conversation
from mendlab.models import ChatModel, Completion, SamplingParams, chat_many
from mendlab.store import GenerationRecord, ResultsStore, Run, resume_key


@dataclass(frozen=True)
class Job:
    conversation: Conversation
    sample_index: int
    key: str


def derive_seed(base: int, *parts: str | int) -> int:
    """A seed of its own for each independent stream of samples (one rung's dialog, one repetition):
    streams that shared `base` would draw the same tokens for the same prompt, and so would not be
    independent measurements. Same inputs, same seed, so a resumed run asks for the same samples."""
    digest = hashlib.sha256(json.dumps([base, *parts]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _conversations_digest(conversations: Sequence[Conversation]) -> str:
    payload = json.dumps([c.to_json()["messages"] for c in conversations], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def sample_config(model: str, conversations: Sequence[Conversation], params: SamplingParams) -> dict[str, object]:
    """What a sampling run is: the model, how it samples, and exactly which conversations."""
    return {
        "model": model,
        "params": params.as_dict(),
        "conversations": len(conversations),
        "conversations_sha256": _conversations_digest(conversations),
    }


def default_run_id(kind: str, model: str, conversations: Sequence[Conversation], params: SamplingParams) -> str:
    """Same inputs, same id: re-running the same command resumes instead of starting over."""
    digest = hashlib.sha256(
        json.dumps(
            {"model": model, "params": params.as_dict(), "conv": [c.to_json()["messages"] for c in conversations]},
            sort_keys=True,
        ).encode()
    ).hexdigest()[:10]
    return f"{kind}-{model.replace('/', '_')}-{digest}"


def open_sample_run(
    store: ResultsStore,
    run_id: str | None,
    model: str,
    conversations: Sequence[Conversation],
    params: SamplingParams,
    new_if_changed: bool = False,
) -> Run:
    """The run to sample into: `run_id` (or the id derived from the inputs) with this configuration;
    a stored run of that id with another one raises `RunMismatch`, or with `new_if_changed` moves to
    a fresh id beside it."""
    rid = run_id or default_run_id("sample", model, conversations, params)
    return store.ensure_run(rid, "sample", sample_config(model, conversations, params), new_if_changed=new_if_changed)


def pending_jobs(
    store: ResultsStore, run_id: str, model: str, conversations: Sequence[Conversation], params: SamplingParams
) -> list[Job]:
    done = store.done_keys(run_id)
    jobs = []
    for conv in conversations:
        for i in range(params.n):
            key = resume_key(run_id, model, conv.messages, params, i)
            if key not in done:
                jobs.append(Job(conv, i, key))
    return jobs


def sample_run(
    model: ChatModel,
    conversations: Sequence[Conversation],
    params: SamplingParams,
    store: ResultsStore,
    run_id: str,
    on_done: Callable[[GenerationRecord], None] = lambda rec: None,
) -> int:
    """Generate every missing sample; return how many were generated now."""
    name = model.info.name
    store.ensure_run(run_id, "sample", sample_config(name, conversations, params))
    jobs = pending_jobs(store, run_id, name, conversations, params)
    made = 0

    def save(i: int, samples: list[Completion]) -> None:
        nonlocal made
        job = jobs[i]
        rec = GenerationRecord.of(
            run_id,
            name,
            model.info.backend,
            job.conversation.messages,
            params,
            samples[0],
            job.sample_index,
            meta={"conversation": job.conversation.id},
        )
        if store.add(rec):
            made += 1
        on_done(rec)

    chat_many(
        model,
        [(j.conversation.messages, replace(params, n=1, seed=params.seed + j.sample_index)) for j in jobs],
        on_result=save,
    )
    return made
