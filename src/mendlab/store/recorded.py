"""A ChatModel that remembers: every answer goes to the store, and an answer already there is reused.

Wrapping the model is what makes every experiment resumable without the experiment knowing: a
dialog replayed after a kill asks the same questions, gets the stored answers back instantly, and
the model is only called where the last run stopped.

Reuse is per *scope*: `recorded.scoped("dialog:pointed:0")` is the same model and the same memory,
but its samples are keyed by that name too, so two jobs that send the same prompt (the first turn of
every rung's dialog) each get a sample of their own instead of sharing one answer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

from mendlab.models.base import ChatModel, Completion, Message, ModelInfo, SamplingParams, StreamDelta
from mendlab.store.results import GenerationRecord, ResultsStore, resume_key


def _completion(rec: GenerationRecord, index: int) -> Completion:
    return Completion(
        text=rec.output,
        prompt_tokens=rec.prompt_tokens,
        completion_tokens=rec.completion_tokens,
        finish_reason="length" if rec.finish_reason == "length" else "stop",
        latency_s=rec.latency_s,
        first_token_s=rec.first_token_s,
        prompt_tokens_evaluated=0,
        sample_index=index,
    )


class RecordedModel:
    """Store-backed memo around a model, for one run.

    The run's identity (its configuration) is the caller's business: `ensure_run` it first. A run
    that does not exist yet is created here with an empty configuration, as a sub-run whose owner
    (say `calendar` for `calendar:critic`) carries the configuration."""

    def __init__(
        self,
        model: ChatModel,
        store: ResultsStore,
        run_id: str,
        scope: str = "",
        *,
        _memory: dict[str, GenerationRecord] | None = None,
    ) -> None:
        self.model = model
        self.store = store
        self.run_id = run_id
        self.scope = scope
        self.reused = 0
        self.generated = 0
        if _memory is None:
            if store.run(run_id) is None:
                store.ensure_run(run_id, "recorded", {})
            _memory = {r.resume_key: r for r in store.generations(run_id)}
        self._done = _memory

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    def scoped(self, scope: str) -> RecordedModel:
        """The same model and memory, with samples keyed by `scope` (counters are the view's own)."""
        return RecordedModel(self.model, self.store, self.run_id, scope, _memory=self._done)

    def chat(self, messages: Sequence[Message], params: SamplingParams) -> list[Completion]:
        name = self.model.info.name
        keys = [resume_key(self.run_id, name, messages, params, i, self.scope) for i in range(params.n)]
        missing = [i for i, k in enumerate(keys) if k not in self._done]
        if len(missing) == params.n:
            fresh = self.model.chat(messages, params)  # all at once: the samples share the prompt
        else:
            fresh = [self.model.chat(messages, replace(params, n=1, seed=params.seed + i))[0] for i in missing]
        for i, comp in zip(missing, fresh, strict=True):
            rec = GenerationRecord.of(
                self.run_id, name, self.model.info.backend, messages, params, comp, i, scope=self.scope
            )
            if not self.store.add(rec):
                # Another sample asked the same thing at the same moment (concurrent dialogs sharing a
                # critic) and stored first: use its answer, so what is played is what is stored.
                rec = self.store.generation(rec.resume_key) or rec
            self._done[rec.resume_key] = rec
        self.generated += len(missing)
        self.reused += params.n - len(missing)
        return [_completion(self._done[k], i) for i, k in enumerate(keys)]

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> Iterator[StreamDelta | Completion]:
        (done,) = self.chat(messages, replace(params, n=1))
        yield StreamDelta(done.text)
        yield done

    def close(self) -> None:
        self.model.close()
