"""GGUF models in-process through llama-cpp-python.

One `Llama` object per model keeps its KV cache between calls. The prompt of turn k+1 starts with
the prompt and answer of turn k, and llama.cpp's prefix matching then evaluates only the new
suffix: a 6-turn dialog costs about its final length in prompt tokens, not the sum of all prefixes.
The same holds for the n samples of one prompt. Generation is a plain loop over `Llama.generate`
so that the token counts are exact and streaming and non-streaming share one code path.
"""

from __future__ import annotations

import codecs
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mendlab.errors import ContextOverflow, ModelUnavailable, NoChatTemplate
from mendlab.models.base import Completion, Message, ModelInfo, SamplingParams, StreamDelta

_LOG_SINK: Any = None


def _silence_llama_logs() -> None:
    """llama.cpp prints load-time chatter to stderr even when not verbose; a CLI must not."""
    global _LOG_SINK
    if _LOG_SINK is not None:
        return
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def sink(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        return None

    _LOG_SINK = sink  # keep a reference: the C side calls it for the life of the process
    llama_cpp.llama_log_set(sink, ctypes.c_void_p(0))


def _quiet_llama(path: Path, **kwargs: Any) -> Any:
    import llama_cpp

    _silence_llama_logs()

    if not path.is_file():
        raise ModelUnavailable(f"GGUF file not found: {path}")
    try:
        return llama_cpp.Llama(model_path=str(path), verbose=False, **kwargs)
    except (ValueError, RuntimeError) as exc:
        raise ModelUnavailable(f"cannot load {path}: {exc} (truncated or not a GGUF file?)") from None


def default_gpu_layers() -> int:
    """Every layer on the GPU when this llama.cpp build can offload (CUDA, Metal, ...), else none:
    a GPU build that keeps the default 0 silently runs on the CPU."""
    import llama_cpp

    return -1 if llama_cpp.llama_supports_gpu_offload() else 0


def template_from_gguf(metadata: dict[str, str], path: Path, override: str | None) -> str:
    """The chat template to use: the user's file if given, else the GGUF's own, else refuse."""
    if override is not None:
        tpl_path = Path(override)
        if not tpl_path.is_file():
            raise ModelUnavailable(f"chat template file not found: {tpl_path}")
        return tpl_path.read_text(encoding="utf-8")
    template = metadata.get("tokenizer.chat_template")
    if not template:
        raise NoChatTemplate(
            f"{path.name} has no chat template (a base model?): refusing to chat with it; "
            'give one with chat_template = "file.jinja" in mendlab.toml'
        )
    return template


class LlamaTemplate:
    """Renders messages with the GGUF's own Jinja template, exactly as transformers would."""

    def __init__(self, llm: Any, template: str) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        model = llm._model
        self.bos_text = model.token_get_text(model.token_bos()) if model.token_bos() >= 0 else ""
        self.eos_text = model.token_get_text(model.token_eos()) if model.token_eos() >= 0 else ""
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=self.eos_text, bos_token=self.bos_text)

    def render(self, messages: Sequence[Message]) -> str:
        return str(self._formatter(messages=[m.to_openai() for m in messages]).prompt)  # type: ignore[misc]


def render_prompt(path: Path, messages: Sequence[Message], chat_template: str | None = None) -> str:
    """Render without loading the weights (vocab only): for template checks and tools."""
    llm = _quiet_llama(path, vocab_only=True)
    try:
        template = template_from_gguf(llm.metadata, path, chat_template)
        return LlamaTemplate(llm, template).render(messages)
    finally:
        llm.close()


class LlamaCppModel:
    """A ChatModel over a GGUF file. Thread-safe: one generation at a time per loaded model."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_gpu_layers: int | None = None,
        chat_template: str | None = None,
        cache_reuse: bool = True,
        source: str = "",
    ) -> None:
        self.path = path
        self.cache_reuse = cache_reuse
        self._lock = threading.Lock()
        self.n_gpu_layers = default_gpu_layers() if n_gpu_layers is None else n_gpu_layers
        kwargs: dict[str, Any] = {"n_ctx": n_ctx, "n_gpu_layers": self.n_gpu_layers}
        # llama-cpp-python assumes hyperthreads and uses half the cores; a 2-core laptop or CI
        # runner then generates on one. Use every core unless told otherwise.
        # Two llama.cpp processes on the same cores thrash (their threads spin): $MENDLAB_THREADS caps it.
        threads = n_threads or int(os.environ.get("MENDLAB_THREADS", "0")) or os.cpu_count() or 1
        kwargs.update(n_threads=threads, n_threads_batch=threads)
        self.llm = _quiet_llama(path, **kwargs)
        # llama.cpp may pad the context (64 becomes 256) but the Python side keeps n_ctx token slots.
        self.n_ctx = min(self.llm.n_ctx(), len(self.llm.input_ids))
        try:
            template = template_from_gguf(self.llm.metadata, path, chat_template)
        except Exception:
            self.llm.close()
            raise
        self.template = LlamaTemplate(self.llm, template)
        # Count what llama.cpp really evaluates: the first eval of a generation is the prompt suffix
        # left after prefix matching, the later ones are the sampled tokens fed back.
        self._eval_sizes: list[int] = []
        raw_eval = self.llm.eval

        def counting_eval(tokens: Sequence[int]) -> None:
            self._eval_sizes.append(len(tokens))
            raw_eval(tokens)

        self.llm.eval = counting_eval
        self._info = ModelInfo(
            name=name,
            backend="llama.cpp",
            source=source or str(path),
            context_window=self.n_ctx,
            extra={"n_ctx_train": str(self.llm._model.n_ctx_train()), "n_gpu_layers": str(self.n_gpu_layers)},
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    def render(self, messages: Sequence[Message]) -> str:
        return self.template.render(messages)

    def tokenize_prompt(self, messages: Sequence[Message]) -> list[int]:
        prompt = self.render(messages)
        add_bos = bool(self.llm._model.add_bos_token()) and not (
            self.template.bos_text and prompt.startswith(self.template.bos_text)
        )
        return list(self.llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True))

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def chat(self, messages: Sequence[Message], params: SamplingParams) -> list[Completion]:
        out: list[Completion] = []
        tokens = self.tokenize_prompt(messages)
        for i in range(params.n):
            for event in self._generate(tokens, params, i):
                if isinstance(event, Completion):
                    out.append(event)
        return out

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> Iterator[StreamDelta | Completion]:
        tokens = self.tokenize_prompt(messages)
        yield from self._generate(tokens, params, 0)

    def _generate(self, tokens: list[int], params: SamplingParams, index: int) -> Iterator[StreamDelta | Completion]:
        import llama_cpp

        n_ctx = self.n_ctx
        room = n_ctx - len(tokens)
        if room < 1:
            raise ContextOverflow(f"{self.info.name}: prompt has {len(tokens)} tokens, context window is {n_ctx}")
        max_new = min(params.max_tokens, room)
        stops = tuple(s for s in params.stop if s)
        hold = max((len(s) for s in stops), default=1) - 1
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

        with self._lock:
            if not self.cache_reuse:
                self.llm.reset()
            self.llm.set_seed(params.seed + index)
            self._eval_sizes.clear()
            pre = self._evaluate_all_but_last(tokens)
            start = time.perf_counter()
            first: float | None = None
            text = ""
            emitted = 0
            n_out = 0
            finish: str = "length"
            prev: list[int] = list(tokens)
            gen = self.llm.generate(
                tokens, temp=params.temperature, top_p=params.top_p, top_k=0, min_p=0.0, repeat_penalty=1.0
            )
            try:
                for token in gen:
                    if first is None:
                        first = time.perf_counter() - start
                    if llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token):
                        finish = "stop"
                        break
                    n_out += 1
                    text += decoder.decode(self.llm.detokenize([token], prev_tokens=prev))
                    prev.append(token)
                    cut = _find_stop(text, stops, emitted)
                    if cut is not None:
                        text = text[:cut]
                        finish = "stop_string"
                        break
                    safe = len(text) - hold if stops else len(text)
                    if safe > emitted:
                        yield StreamDelta(text[emitted:safe])
                        emitted = safe
                    if n_out >= max_new:
                        break
            finally:
                gen.close()
            if finish != "stop_string":
                text += decoder.decode(b"", final=True)
            latency = time.perf_counter() - start
            # The prompt's evals: ours (all but the last token, when not cached), then generate's first.
            prompt_evaluated = sum(self._eval_sizes[: 2 if pre else 1])
        if len(text) > emitted:
            yield StreamDelta(text[emitted:])
        yield Completion(
            text=text,
            prompt_tokens=len(tokens),
            completion_tokens=n_out,
            finish_reason="length" if finish == "length" else "stop",
            latency_s=latency,
            first_token_s=first,
            prompt_tokens_evaluated=prompt_evaluated,
            sample_index=index,
        )

    def _evaluate_all_but_last(self, tokens: list[int]) -> int:
        """Bring the KV cache to exactly `tokens[:-1]`, so that `generate` evaluates the last prompt
        token alone. The first sampled token's logits then come from a one-token eval whether the
        prompt was cold or cached: llama.cpp's logits depend on how a batch was cut, and otherwise the
        first sample of a cold prompt and the same seed on a cached one draw different texts.
        Returns how many tokens were evaluated here."""
        target = len(tokens) - 1
        if target < 1:
            return 0
        llm = self.llm
        n = llm.n_tokens
        prefix = 0
        for a, b in zip(llm._input_ids[:n], tokens[:target], strict=False):
            if a != b:
                break
            prefix += 1
        if prefix >= target:
            return 0
        if prefix == 0 or not llm._ctx.kv_cache_seq_rm(-1, prefix, -1):
            llm.reset()
            prefix = 0
        else:
            llm.n_tokens = prefix
        llm.eval(tokens[prefix:target])
        return target - prefix

    def memory_bytes(self) -> int:
        """Weights plus the f16 KV cache for the whole context: what keeping this model resident costs."""
        md = self.llm.metadata
        arch = str(md.get("general.architecture", "llama"))
        try:
            layers = int(md[f"{arch}.block_count"])
            embd = int(md[f"{arch}.embedding_length"])
            heads = int(md[f"{arch}.attention.head_count"])
            kv_heads = int(md.get(f"{arch}.attention.head_count_kv", heads))
            kv = 2 * layers * int(self.n_ctx) * (embd // heads) * kv_heads * 2
        except (KeyError, ValueError, ZeroDivisionError):
            kv = 0
        return int(self.path.stat().st_size) + kv

    def close(self) -> None:
        with self._lock:
            self.llm.close()


def _find_stop(text: str, stops: tuple[str, ...], emitted: int) -> int | None:
    """Index where the earliest stop string begins, searching only text not yet safe-emitted."""
    best: int | None = None
    for s in stops:
        i = text.find(s, max(0, emitted - len(s)))
        if i != -1 and (best is None or i < best):
            best = i
    return best
