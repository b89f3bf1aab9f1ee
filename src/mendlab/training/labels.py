"""Assistant-only labels, computed from the model's own chat template.

TRL's `assistant_only_loss` needs `{% generation %}` markers that the bundled templates lack, and the
original StarChat masking masked nothing: a bug that trains on every token is silent. So the labels
are found by rendering the conversation prefix by prefix with the model's template and checking, at
each assistant turn, that the template and the tokenizer agree with themselves:

- the prompt before the turn (rendered with the generation prompt, as at inference) is a prefix of
  the turn rendered, which is a prefix of the whole conversation rendered (else the template is not
  prefix-stable: it rewrites earlier turns once later ones follow);
- the tokens of every such text prefix are the first tokens of the whole conversation (else a token
  straddles a boundary and the model would be trained on a context it never sees at inference);
- the turn ends with a special end-of-turn token (`<|im_end|>`, `<end_of_turn>`, `<|end|>`), which is
  trained: a model that never sees it as a target never learns to stop. What the template writes
  after it (the newline of ChatML and Gemma) is not trained: at inference generation stops at the
  end-of-turn token and the template itself writes the newline before the next turn.

Anything that does not hold is an error naming the message, never a silently wrong mask. An
assistant message with `"weight": 0` (OpenAI's fine-tuning field) stays in the context untrained:
the wrong answer of a (mistake, feedback, fix) dialogue must be seen, not learned.

Labels are by position, never by token id: SmolLM2's pad token *is* its end-of-turn token, and a
collator that masks `labels[input_ids == pad_id]` would mask every `<|im_end|>`. `pad_batch` pads
by position for that reason.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mendlab.errors import InputError, ModelUnavailable
from mendlab.models.base import ROLES

IGNORE = -100  # the label torch's cross-entropy skips


class LabelError(InputError):
    """A conversation whose labels cannot be computed safely; the message says why."""


@dataclass(frozen=True)
class TrainMessage:
    role: str
    content: str
    weight: int = 1  # 0: an assistant turn kept in the context but not trained

    def to_openai(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Turn:
    """Where one assistant message lies in the tokens: [start, end) covers its content and its
    end-of-turn token (the last one)."""

    message: int
    start: int
    end: int
    end_of_turn: str
    trained: bool


@dataclass(frozen=True)
class Labeled:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    turns: tuple[Turn, ...]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def parse_messages(row: Any, where: str) -> tuple[TrainMessage, ...]:
    """The `messages` of one JSONL line (OpenAI format, `weight` 0/1 allowed on assistant turns)."""
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object with a 'messages' list")
    raw = row.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InputError(f"{where}: field 'messages' must be a non-empty list")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise InputError(f"{where}: messages[{i}] must be an object")
        role = m.get("role")
        if role not in ROLES:
            raise InputError(f"{where}: messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
        content = m.get("content")
        if not isinstance(content, str):
            raise InputError(f"{where}: messages[{i}].content must be a string")
        check_text(content, f"{where}: messages[{i}].content")
        if m.get("tool_calls"):
            raise InputError(f"{where}: messages[{i}].tool_calls: not supported (give the call as content)")
        weight = m.get("weight", 1)
        if weight not in (0, 1) or isinstance(weight, bool):
            raise InputError(f"{where}: messages[{i}].weight must be 0 or 1, got {weight!r}")
        if weight == 0 and role != "assistant":
            raise InputError(f"{where}: messages[{i}].weight: only assistant turns are trained or not")
        out.append(TrainMessage(str(role), content, int(weight)))
    return tuple(out)


def check_text(text: str, what: str) -> None:
    """JSON can spell a lone UTF-16 surrogate ("\\ud800"), which is no text: no tokenizer reads it and
    no UTF-8 file can hold it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{what} holds a lone surrogate ({text[exc.start]!r}), not text") from None


def _render(tokenizer: Any, messages: Sequence[TrainMessage], generation: bool, at: int) -> str:
    try:
        text = tokenizer.apply_chat_template(
            [m.to_openai() for m in messages], tokenize=False, add_generation_prompt=generation
        )
    except Exception as exc:  # jinja's TemplateError, raise_exception() of the template, KeyError…
        what = f"the first {len(messages)} messages" if messages else "no messages"
        raise LabelError(f"messages[{at}]: the chat template fails on {what}: {exc}") from None
    if not isinstance(text, str):
        raise LabelError(f"messages[{at}]: the chat template did not render text")
    return text


def _encode(tokenizer: Any, text: str) -> list[int]:
    # As the transformers backend tokenizes a rendered prompt: the template writes any BOS itself.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def special_tokens(tokenizer: Any) -> dict[str, int]:
    """The control tokens (text → id) that can end a turn: special added tokens and the declared
    special tokens (eos, pad…). Plain added tokens (Qwen3's `<think>`) are not control tokens."""
    out: dict[str, int] = {}
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    for tid, tok in decoder.items():
        if getattr(tok, "special", False):
            out[str(tok.content)] = int(tid)
    for text in getattr(tokenizer, "all_special_tokens", []) or []:
        tid = tokenizer.convert_tokens_to_ids(text)
        if isinstance(tid, int):
            out.setdefault(str(text), tid)
    return {t: i for t, i in out.items() if t}


def _first_special(text: str, specials: dict[str, int]) -> tuple[int, str] | None:
    found = [(text.find(s), -len(s), s) for s in specials if s in text]
    if not found:
        return None
    at, _, token = min(found)  # the earliest, and the longest of tokens starting there
    return at, token


def _content_in(segment: str, content: str, specials: dict[str, int]) -> tuple[int, int] | None:
    """Where the message's text lies in what the template wrote for its turn: at the start (ChatML),
    stripped (Gemma's `| trim`), or after a prefix the template adds (an empty `<think></think>`);
    an occurrence counts only when just a control token (after blanks) or nothing follows it."""
    for body in dict.fromkeys((content, content.strip())):
        if segment.startswith(body):
            return 0, len(body)
        at = segment.find(body)
        while body and at >= 0:
            rest = segment[at + len(body) :].lstrip()
            if not rest or any(rest.startswith(s) for s in specials):
                return at, at + len(body)
            at = segment.find(body, at + 1)
    return None


def _prefix_tokens(tokenizer: Any, full: str, chars: int, ids: Sequence[int], at: int, what: str) -> int:
    """How many of the whole conversation's tokens hold its first `chars` characters; an error when
    those characters tokenize otherwise on their own (a token straddles the boundary)."""
    head = _encode(tokenizer, full[:chars])
    if list(ids[: len(head)]) != head:
        near = full[max(0, chars - 12) : chars + 12]
        raise LabelError(
            f"messages[{at}]: the tokenization is not prefix-stable at the {what} (around {near!r}): the "
            "tokens there merge across the boundary, so training would not match what the model sees at inference"
        )
    return len(head)


def label_conversation(tokenizer: Any, messages: Sequence[TrainMessage]) -> Labeled:
    """Input ids and labels: -100 everywhere but each trained assistant turn's content and its
    end-of-turn token."""
    if not any(m.role == "assistant" for m in messages):
        raise LabelError("no assistant turn: nothing to train")
    full = _render(tokenizer, messages, False, len(messages) - 1)
    ids = _encode(tokenizer, full)
    specials = special_tokens(tokenizer)
    special_ids = set(specials.values())
    labels = [IGNORE] * len(ids)
    turns: list[Turn] = []
    for i, m in enumerate(messages):
        if m.role != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], True, i)
        upto = _render(tokenizer, messages[: i + 1], False, i)
        if not upto.startswith(prompt):
            raise LabelError(
                f"messages[{i}]: the chat template renders the prompt before this assistant turn otherwise than "
                "the turn itself (it is not prefix-stable), so its tokens cannot be told apart"
            )
        if not full.startswith(upto):
            raise LabelError(
                f"messages[{i}]: the chat template renders this assistant turn otherwise once more messages "
                "follow (it is not prefix-stable: it rewrites earlier turns), so its labels would be wrong"
            )
        segment = upto[len(prompt) :]
        found = _content_in(segment, m.content, specials)
        if found is None:
            raise LabelError(f"messages[{i}]: the chat template changes this assistant message's text")
        content_end = found[1]
        tail = segment[content_end:]
        hit = _first_special(tail, specials)
        if hit is None:
            raise LabelError(
                f"messages[{i}]: the chat template ends this assistant turn with no special end-of-turn token "
                f"(it writes {tail!r}): a model trained on it would never learn to stop"
            )
        gap, eot = hit
        if tail[:gap].strip():
            raise LabelError(f"messages[{i}]: the chat template writes {tail[:gap]!r} between the answer and {eot}")
        start_char = len(prompt)
        end_char = start_char + content_end + gap + len(eot)
        start = _prefix_tokens(tokenizer, full, start_char, ids, i, "start of the assistant turn")
        end = _prefix_tokens(tokenizer, full, end_char, ids, i, "end of the assistant turn")
        if end <= start or ids[end - 1] != specials[eot]:
            raise LabelError(f"messages[{i}]: {eot} is not one token at the end of the assistant turn")
        inside = [t for t in ids[start : end - 1] if t in special_ids]
        if inside:
            shown = tokenizer.convert_ids_to_tokens(inside[0])
            raise LabelError(
                f"messages[{i}]: the assistant message holds the special token {shown!r}: "
                "the model would learn to stop or switch turns there"
            )
        if m.weight:
            labels[start:end] = ids[start:end]
        turns.append(Turn(i, start, end, eot, bool(m.weight)))
    if not any(t.trained for t in turns):
        raise LabelError("every assistant turn has weight 0: nothing to train")
    return Labeled(tuple(ids), tuple(labels), tuple(turns))


def trained_pieces(tokenizer: Any, labeled: Labeled) -> list[str]:
    """Each trained turn's tokens, decoded as they are (special tokens included)."""
    out = []
    for t in labeled.turns:
        if t.trained:
            kept = [x for x in labeled.labels[t.start : t.end] if x != IGNORE]
            out.append(str(tokenizer.decode(kept, skip_special_tokens=False)))
    return out


def trained_text(tokenizer: Any, labeled: Labeled) -> str:
    """The decoded tokens whose label is not -100: what the loss is computed on."""
    return "".join(trained_pieces(tokenizer, labeled))


def pad_batch(examples: Sequence[Labeled], pad_id: int) -> dict[str, list[list[int]]]:
    """Right-padded input ids, attention mask and labels. Padding is masked by position, so a pad
    id equal to the end-of-turn id (SmolLM2's `<|im_end|>`) never masks a real end-of-turn."""
    width = max((len(e.input_ids) for e in examples), default=0)
    batch: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
    for e in examples:
        fill = width - len(e.input_ids)
        batch["input_ids"].append([*e.input_ids, *([pad_id] * fill)])
        batch["attention_mask"].append([1] * len(e.input_ids) + [0] * fill)
        batch["labels"].append([*e.labels, *([IGNORE] * fill)])
    return batch


# ---------------------------------------------------------------- the model's own tokenizer


def _gguf_tokenizer_folder(path: Path) -> Path:
    """A GGUF's tokenizer, converted by transformers once and kept as an HF folder in the cache:
    the conversion reads the whole vocabulary from the GGUF (7 s for SmolLM2, 18 s for Qwen on 2
    cores), loading the folder well under a second. Keyed by the file's size, mtime and the
    transformers version, so a replaced file or another converter converts again."""
    import transformers

    from mendlab.models.bundled import cache_dir

    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}\n{st.st_size}\n{st.st_mtime_ns}\n{transformers.__version__}".encode())
    folder = cache_dir() / "tokenizers" / f"{path.stem}-{key.hexdigest()[:12]}"
    if (folder / "tokenizer_config.json").is_file():
        return folder
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot load the tokenizer of {path}: {exc}") from None
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.")
    try:
        tok.save_pretrained(tmp)
        os.replace(tmp, folder)  # whole or not at all; a concurrent conversion may have won
    except OSError:
        if not (folder / "tokenizer_config.json").is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_chat_tokenizer(model: str, config: Path | None = None, chat_template: str | None = None) -> Any:
    """The tokenizer and chat template of a model named in the registry (a bundled GGUF, an entry of
    mendlab.toml), or of a GGUF file or HF folder given by path. A base model without a template is
    refused, as for chat, unless its entry or `chat_template` (a Jinja file) gives one."""
    from mendlab.models import load_registry, model_path
    from mendlab.models.hf import load_tokenizer

    template: str | None = None
    as_path = Path(model)
    if as_path.exists() and (as_path.is_dir() or as_path.suffix == ".gguf"):
        path = as_path
    else:
        spec = load_registry(config).get(model)
        if spec.backend == "openai":
            raise ModelUnavailable(f"model {model!r} is an endpoint: its tokenizer and template are not here")
        path, template = model_path(spec), spec.chat_template
    folder = _gguf_tokenizer_folder(path) if path.is_file() else path
    return load_tokenizer(folder, chat_template or template)
