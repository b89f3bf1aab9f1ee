"""The StarChat recipe: a base model learns to chat in turns marked by four new special tokens.

`<|system|> <|user|> <|assistant|>` open a turn, `<|end|>` closes every one, and `<|end|>` is the
model's stop token. The original's two bugs are the ones this module is careful about: its system
turn was opened with `<|assistant|>` (here each role opens its own turn, and an unknown role is an
error), and its masking trained every token (here the labels come from `labels.py`, which trains
each assistant turn's `<|end|>` and nothing else of the template).

The template writes the tokenizer's BOS only where the tokenizer adds one by default (Gemma's `<bos>`,
without which Gemma is lost), so the saved model renders its prompts as its pretraining began them.
"""

from __future__ import annotations

from typing import Any

from mendlab.errors import MendlabError

SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
TOKENS = (SYSTEM, USER, ASSISTANT, END)

_BODY = (
    "{%- for message in messages -%}"
    "{%- if message['role'] not in ['system', 'user', 'assistant'] -%}"
    "{{ raise_exception('StarChat turns are system, user or assistant, not ' + message['role']) }}"
    "{%- endif -%}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
)


def adds_bos(tokenizer: Any) -> bool:
    """Does the tokenizer put its BOS before a text by default (Gemma, Llama) or not (SmolLM2, Qwen)?"""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def chat_template(tokenizer: Any) -> str:
    """The StarChat template for this tokenizer: `<|role|>\\ncontent<|end|>\\n` per message."""
    return ("{{ bos_token }}" if adds_bos(tokenizer) else "") + _BODY


def add_tokens(tokenizer: Any) -> list[int]:
    """Add the four tokens as special tokens (one id each, never split, never merged with the text
    around them), set the template and `<|end|>` as EOS; the ids of the tokens, in TOKENS order."""
    vocab = tokenizer.get_vocab()
    clash = [t for t in TOKENS if t in vocab and t not in getattr(tokenizer, "all_special_tokens", [])]
    if clash:
        raise MendlabError(f"the tokenizer already has {clash[0]!r} as an ordinary token: StarChat needs it special")
    template = chat_template(tokenizer)  # before EOS changes: adds_bos encodes a text
    tokenizer.add_special_tokens({"additional_special_tokens": list(TOKENS)})
    tokenizer.chat_template = template
    tokenizer.eos_token = END
    if tokenizer.pad_token is None:
        tokenizer.pad_token = END  # harmless: labels are padded by position (labels.pad_batch)
    ids = [int(tokenizer.convert_tokens_to_ids(t)) for t in TOKENS]
    for token, tid in zip(TOKENS, ids, strict=True):
        if tokenizer(token, add_special_tokens=False)["input_ids"] != [tid]:
            raise MendlabError(f"{token!r} does not encode as one token after being added")
    return ids


def resize_model(model: Any, tokenizer: Any) -> None:
    """Room for the new tokens: embeddings (and an untied LM head) grow to the tokenizer's size, each new
    row exactly the mean of the old ones: a typical token rather than noise, and the same every time
    the base is rebuilt (a resumed run and the merge rebuild it, and a LoRA adapter holds only the
    rows' changes, not their start). `<|end|>` becomes the model's EOS, so generation stops there."""
    import torch

    end = int(tokenizer.convert_tokens_to_ids(END))
    old = model.get_input_embeddings().weight.shape[0]
    if old < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            for layer in {id(m): m for m in (model.get_input_embeddings(), model.get_output_embeddings())}.values():
                if layer is not None:
                    layer.weight[old:] = layer.weight[:old].mean(dim=0)
    set_stop_token(model, tokenizer, end)


def set_stop_token(model: Any, tokenizer: Any, end: int) -> None:
    model.config.eos_token_id = end
    model.generation_config.eos_token_id = end
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
