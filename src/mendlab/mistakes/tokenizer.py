"""A closed word-level tokenizer for iGSM text, built from our vocabulary and templates (no hub).

One token per word, number (0..22), variable letter, punctuation mark, "'s" and special. Spacing is not
stored: decode puts one space between tokens except before . , ; ? and 's, which is exactly how the
generator writes, so decode(encode(t)) == t for every generated text (and for everything decode wrote).
Encoding ignores how much whitespace separates tokens; a word outside the vocabulary is an error that
names it, never a silent [UNK]: a model can only be asked about text it can read.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from functools import lru_cache

from mendlab.mistakes.vocab import all_names

SPECIALS = ("[PAD]", "[BOS]", "[EOS]", "[SOL]", "[BACK]")
PUNCT = (".", ",", ";", "?", "=", "+", "-", "*", "'s")
TEMPLATE_WORDS = (
    "The number of each equals more less than times as much the sum and difference How many does have Define so"
)
_NO_SPACE_BEFORE = frozenset({".", ",", ";", "?", "'s"})
_TOKEN = re.compile(r"\[[A-Z]+\]|'s|[A-Za-z]+|\d+|\S")


class Tokenizer:
    def __init__(self, words: Sequence[str]) -> None:
        self.itos: list[str] = list(words)
        self.stoi: dict[str, int] = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate tokens in the vocabulary")
        self.pad_id = self.stoi["[PAD]"]
        self.bos_id = self.stoi["[BOS]"]
        self.eos_id = self.stoi["[EOS]"]
        self.sol_id = self.stoi["[SOL]"]
        self.back_id = self.stoi["[BACK]"]
        self.period_id = self.stoi["."]
        self.vocab_size = len(self.itos)
        self._glue = [w in _NO_SPACE_BEFORE for w in self.itos]

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids and each token's char span in `text` (for loss masks over char spans)."""
        ids: list[int] = []
        spans: list[tuple[int, int]] = []
        stoi = self.stoi
        for m in _TOKEN.finditer(text):
            w = m.group()
            i = stoi.get(w)
            if i is None:
                raise ValueError(f"unknown word {w!r} at char {m.start()}: not in the iGSM vocabulary")
            ids.append(i)
            spans.append(m.span())
        return ids, spans

    def encode(self, text: str) -> list[int]:
        return self.encode_offsets(text)[0]

    def decode(self, ids: Sequence[int]) -> str:
        out: list[str] = []
        itos, glue = self.itos, self._glue
        for k, i in enumerate(ids):
            i = int(i)
            if not 0 <= i < len(itos):
                raise ValueError(f"token id {i} out of range 0..{len(itos) - 1}")
            if k and not glue[i]:
                out.append(" ")
            out.append(itos[i])
        return "".join(out)


def vocabulary() -> list[str]:
    """The token list, in a fixed order: specials, punctuation, numbers, letters, template words, items."""
    words: list[str] = [*SPECIALS, *PUNCT, *(str(n) for n in range(23)), *string.ascii_letters]
    seen = set(words)
    for w in TEMPLATE_WORDS.split():
        if w not in seen:
            seen.add(w)
            words.append(w)
    items = sorted({w for name in all_names() for w in name.split(" ")} - seen)
    return words + items


@lru_cache(maxsize=1)
def tokenizer() -> Tokenizer:
    """The one tokenizer: same ids on every run and machine."""
    return Tokenizer(vocabulary())
