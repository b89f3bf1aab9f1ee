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
from mendlab.store import GenerationRecord, ResultsStore, resume_key


@dataclass(frozen=True)
class Job:
    conversation: Conversation
    sample_index: int
    key: str


def default_run_id(kind: str, model: str, conversations: Sequence[Conversation], params: SamplingParams) -> str:
    """Same inputs, same id: re-running the same command resumes instead of starting over."""
    digest = hashlib.sha256(
        json.dumps(
            {"model": model, "params": params.as_dict(), "conv": [c.to_json()["messages"] for c in conversations]},
            sort_keys=True,
        ).encode()
    ).hexdigest()[:10]
    return f"{kind}-{model.replace('/', '_')}-{digest}"


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
    store.ensure_run(run_id, "sample", {"model": name, "params": params.as_dict(), "conversations": len(conversations)})
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
