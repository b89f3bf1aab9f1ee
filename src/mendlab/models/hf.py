"""HF model folders (and GGUF files via `gguf_file=`) through transformers, on CUDA when present.

This is the backend that fine-tuning shares: the model measured before and after training is the
same torch module, with the template from `tokenizer.apply_chat_template`.

The n samples of a prompt are one batched `generate` call, but each row draws its tokens from its
own generator seeded seed+i, as llama.cpp seeds sample i: a resumed run that asks for sample i alone
gets the text the batched run gave it (exactly on the CPU; on a GPU, kernels chosen by batch size may
round logits differently and, rarely, turn a draw).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

from mendlab.errors import ContextOverflow, ModelUnavailable, NoChatTemplate
from mendlab.models.base import Completion, Message, ModelInfo, SamplingParams, StreamDelta


def _from_pretrained_args(path: Path) -> tuple[str, dict[str, Any]]:
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), {"gguf_file": path.name}
    if path.is_dir():
        return str(path), {}
    raise ModelUnavailable(f"not a model folder or GGUF file: {path}")


def load_tokenizer(path: Path, chat_template: str | None = None) -> Any:
    """The model's own tokenizer; refuses a model without a chat template unless one is given."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ModelUnavailable("the transformers backend needs: pip install 'mendlab[hf]'") from None
    where, kwargs = _from_pretrained_args(path)
    try:
        tok = AutoTokenizer.from_pretrained(where, local_files_only=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot load tokenizer from {path}: {exc}") from None
    if chat_template is not None:
        tok.chat_template = Path(chat_template).read_text(encoding="utf-8")
    if not getattr(tok, "chat_template", None):
        raise NoChatTemplate(
            f"{path.name} has no chat template (a base model?): refusing to chat with it; "
            'give one with chat_template = "file.jinja" in mendlab.toml'
        )
    return tok


def resolve_device(device: str) -> str:
    """`auto` is the GPU when torch sees one."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str, *, bf16_supported: bool | None = None) -> str:
    """`auto`: bfloat16 on CUDA (float16 on GPUs without it: pre-Ampere), float32 on the CPU, where
    half precision is slow and changes the answers for nothing."""
    if dtype != "auto":
        return dtype
    if not device.startswith("cuda"):
        return "float32"
    if bf16_supported is None:
        import torch

        bf16_supported = bool(torch.cuda.is_bf16_supported())
    return "bfloat16" if bf16_supported else "float16"


class SeededSampler:
    """A logits processor for greedy `generate` that samples instead: row i draws from its own
    generator seeded seeds[i], so a row's tokens do not depend on the other rows of the batch, and the
    global torch RNG (shared by every thread) is never touched. Temperature then top-p, no top-k,
    like the llama.cpp backend."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, device: str) -> None:
        import torch

        self.temperature, self.top_p = temperature, top_p
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        probs = torch.softmax(scores.double() / self.temperature, dim=-1)
        if self.top_p < 1.0:
            ranked, order = probs.sort(dim=-1, descending=True)
            # a token goes when the more likely ones already reach top_p; the likeliest always stays
            drop_ranked = (ranked.cumsum(dim=-1) - ranked) >= self.top_p
            probs = probs.masked_fill(drop_ranked.scatter(-1, order, drop_ranked), 0.0)
        cdf = probs.cumsum(dim=-1)
        draws = torch.stack(
            [torch.rand((), generator=g, device=scores.device, dtype=torch.float64) for g in self.generators]
        )
        picks = torch.searchsorted(cdf, (draws * cdf[:, -1]).unsqueeze(-1), right=True)
        picks = picks.clamp_(max=scores.shape[-1] - 1)
        return torch.full_like(scores, float("-inf")).scatter_(-1, picks, 0.0)


def render_prompt(tokenizer: Any, messages: Sequence[Message]) -> str:
    return str(
        tokenizer.apply_chat_template([m.to_openai() for m in messages], tokenize=False, add_generation_prompt=True)
    )


class TransformersModel:
    """A ChatModel over transformers' `generate`."""

    def __init__(
        self,
        name: str,
        path: Path,
        *,
        dtype: str = "auto",
        device: str = "auto",
        chat_template: str | None = None,
        source: str = "",
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.tokenizer = load_tokenizer(path, chat_template)
        where, kwargs = _from_pretrained_args(path)
        self.device = device = resolve_device(device)
        dtype = resolve_dtype(dtype, device)
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise ModelUnavailable(f"unknown dtype {dtype!r} for {name}")
        try:
            loaded: Any = AutoModelForCausalLM.from_pretrained(
                where, local_files_only=True, dtype=torch_dtype, **kwargs
            )
            self.model: Any = loaded.to(device)
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(f"cannot load model from {path}: {exc}") from None
        self.model.eval()
        self._lock = threading.Lock()
        window = getattr(self.model.config, "max_position_embeddings", None)
        self._info = ModelInfo(
            name=name,
            backend="transformers",
            source=source or str(path),
            context_window=int(window) if window else None,
            extra={"device": device, "dtype": dtype},
        )

    @property
    def info(self) -> ModelInfo:
        return self._info

    def render(self, messages: Sequence[Message]) -> str:
        return render_prompt(self.tokenizer, messages)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _inputs(self, messages: Sequence[Message]) -> Any:
        prompt = self.render(messages)
        enc = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").to(self.device)
        n = int(enc["input_ids"].shape[1])
        window = self._info.context_window
        if window is not None and n >= window:
            raise ContextOverflow(f"{self._info.name}: prompt has {n} tokens, context window is {window}")
        return enc

    def _gen_kwargs(self, params: SamplingParams, n_prompt: int, rows: int = 1) -> dict[str, Any]:
        """Row i of the batch is sample i (seed + i)."""
        from transformers import LogitsProcessorList

        max_new = params.max_tokens
        if self._info.context_window is not None:
            max_new = min(max_new, self._info.context_window - n_prompt)
        kw: dict[str, Any] = {
            "max_new_tokens": max_new,
            "pad_token_id": self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id,
        }
        # Always "greedy" for transformers; at temperature > 0 our processor has already drawn each
        # row's token and left it the only one possible.
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if params.temperature > 0:
            seeds = [params.seed + i for i in range(rows)]
            kw["logits_processor"] = LogitsProcessorList(
                [SeededSampler(seeds, params.temperature, params.top_p, self.device)]
            )
        if params.stop:
            kw.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        return kw

    def _finish(self, ids: list[int], params: SamplingParams, padded: bool = False) -> tuple[str, int, str]:
        """`padded`: a row of a batch, filled with pad tokens after it stopped (a stop string) while
        others went on; those are not the model's tokens."""
        pad = self.tokenizer.pad_token_id
        if padded and pad is not None:
            while ids and ids[-1] == pad:
                ids = ids[:-1]
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(self.tokenizer.eos_token_id)
        finish = "length"
        kept: list[int] = []
        for t in ids:
            if t in eos_ids:
                finish = "stop"
                break
            kept.append(t)
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        for s in params.stop:
            i = text.find(s)
            if s and i != -1:
                text, finish = text[:i], "stop"
        return text, len(kept), finish

    def chat(self, messages: Sequence[Message], params: SamplingParams) -> list[Completion]:
        import torch

        enc = self._inputs(messages)
        n_prompt = int(enc["input_ids"].shape[1])
        # Greedy samples are all the same text: generate it once.
        rows = params.n if params.temperature > 0 else 1
        inputs = {k: v.repeat(rows, 1) for k, v in enc.items()} if rows > 1 else dict(enc)
        with self._lock, torch.inference_mode():
            start = time.perf_counter()
            out = self.model.generate(**inputs, **self._gen_kwargs(params, n_prompt, rows))
            latency = time.perf_counter() - start
        results = []
        for i in range(params.n):
            row = out[min(i, rows - 1), n_prompt:].tolist()
            text, n_out, finish = self._finish(row, params, padded=rows > 1)
            results.append(
                Completion(
                    text=text,
                    prompt_tokens=n_prompt,
                    completion_tokens=n_out,
                    finish_reason=finish,  # type: ignore[arg-type]
                    latency_s=latency,
                    prompt_tokens_evaluated=n_prompt,
                    sample_index=i,
                )
            )
        return results

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> Iterator[StreamDelta | Completion]:
        import torch
        from transformers import TextIteratorStreamer

        enc = self._inputs(messages)
        n_prompt = int(enc["input_ids"].shape[1])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        holder: dict[str, Any] = {}

        def work() -> None:
            try:
                with torch.inference_mode():
                    holder["out"] = self.model.generate(**enc, streamer=streamer, **self._gen_kwargs(params, n_prompt))
            except Exception as exc:  # surfaced in the caller's thread below
                holder["error"] = exc
                streamer.end()  # type: ignore[no-untyped-call]

        with self._lock:
            start = time.perf_counter()
            first: float | None = None
            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            sent = ""
            for piece in streamer:
                if first is None:
                    first = time.perf_counter() - start
                sent += piece
                cut = min((sent.find(s) for s in params.stop if s and s in sent), default=-1)
                if cut != -1:
                    piece = piece[: max(0, len(piece) - (len(sent) - cut))]
                if piece:
                    yield StreamDelta(piece)
                if cut != -1:
                    break
            thread.join()
            latency = time.perf_counter() - start
        if "error" in holder:
            raise holder["error"]
        text, n_out, finish = self._finish(holder["out"][0, n_prompt:].tolist(), params)
        yield Completion(
            text=text,
            prompt_tokens=n_prompt,
            completion_tokens=n_out,
            finish_reason=finish,  # type: ignore[arg-type]
            latency_s=latency,
            first_token_s=first,
            prompt_tokens_evaluated=n_prompt,
        )

    def memory_bytes(self) -> int:
        """Weights and buffers where they live (GPU memory for a CUDA model): what staying resident costs."""
        return int(self.model.get_memory_footprint())

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def close(self) -> None:
        """Give the memory back now, not at the next garbage collection: on a GPU, the caching
        allocator keeps freed blocks until `empty_cache`, and the next model would not fit."""
        with self._lock:
            model, self.model = self.model, None
        if model is None:
            return
        del model
        gc.collect()
        if self.on_gpu:
            import torch

            torch.cuda.empty_cache()
