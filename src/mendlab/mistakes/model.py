"""A GPT as small and plain as nanoGPT's, with what Physics of LMs 2.2 changed: rotary positions.

Pre-norm blocks, tied input/output embeddings, no biases. Two ways in: `forward` for training on packed
rows (several whole problems per row, each attending only to itself and starting at position 0, so
packing never lets one problem see another), and `step` for decoding with a key/value cache over a
left-padded batch, so greedy, beam and retry decoding share one fast path.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 512  # longest row (training) and longest prompt + solution (decoding)
    rope_base: float = 10000.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Cache = list[tuple[Tensor, Tensor]]  # per layer: keys and values, (batch, heads, seen, head_dim)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None, past: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        if past is not None:
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).contiguous().view(b, t, c)), (k, v)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.attn = Attention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.out = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)

    def forward(
        self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None, past: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        a, kv = self.attn(self.ln1(x), cos, sin, mask, past)
        x = x + a
        return x + self.out(F.gelu(self.fc(self.ln2(x)))), kv


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if cfg.n_embd % cfg.n_head or (cfg.n_embd // cfg.n_head) % 2:
            raise ValueError("n_embd must split into n_head heads of even size (rotary pairs)")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=False)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied
        head = cfg.n_embd // cfg.n_head
        inv = 1.0 / (cfg.rope_base ** (torch.arange(0, head, 2, dtype=torch.float32) / head))
        self.register_buffer("inv_freq", inv, persistent=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith(("proj.weight", "out.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _rope(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """cos/sin of shape (batch, 1, time, head/2), for per-token positions of shape (batch, time)."""
        inv: Tensor = self.inv_freq  # type: ignore[assignment]
        ang = positions.to(inv.dtype)[..., None] * inv
        return ang.cos()[:, None], ang.sin()[:, None]

    def hidden(
        self,
        idx: Tensor,
        positions: Tensor | None = None,
        mask: Tensor | None = None,
        cache: Cache | None = None,
    ) -> tuple[Tensor, Cache]:
        """Final hidden states (after the last norm) and the new cache."""
        b, t = idx.shape
        if positions is None:
            positions = torch.arange(t, device=idx.device).expand(b, t)
        cos, sin = self._rope(positions)
        cos, sin = cos.to(self.wte.weight.dtype), sin.to(self.wte.weight.dtype)
        x = self.wte(idx)
        new: Cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, cos, sin, mask, None if cache is None else cache[i])
            new.append(kv)
        return self.ln_f(x), new

    def forward(
        self,
        idx: Tensor,
        targets: Tensor | None = None,
        weights: Tensor | None = None,
        doc: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Logits and the mean loss over target tokens of weight 1 (weight 0: not trained).

        `doc` (batch, time) numbers the problems packed in a row: a token attends only to earlier tokens
        of its own problem, and `positions` restart at 0 for each."""
        mask = None
        if doc is not None:
            t = idx.shape[1]
            causal = torch.ones(t, t, dtype=torch.bool, device=idx.device).tril()
            mask = (doc[:, :, None] == doc[:, None, :]) & causal
            mask = mask[:, None]
        h, _ = self.hidden(idx, positions, mask)
        logits = self.lm_head(h)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.view(-1), reduction="none")
        if weights is None:
            return logits, loss.mean()
        w = weights.view(-1).to(loss.dtype)
        return logits, (loss * w).sum() / w.sum().clamp(min=1.0)

    @torch.no_grad()
    def step(
        self, idx: Tensor, positions: Tensor, keys_valid: Tensor, cache: Cache | None
    ) -> tuple[Tensor, Tensor, Cache]:
        """Logits and hidden state of the last position after feeding `idx` (batch, time) on top of `cache`.

        `keys_valid` (batch, seen + time) is False at left padding; causality within `idx` is kept."""
        t = idx.shape[1]
        seen = keys_valid.shape[1] - t
        causal = torch.ones(t, seen + t, dtype=torch.bool, device=idx.device).tril(diagonal=seen)
        own = torch.zeros(t, seen + t, dtype=torch.bool, device=idx.device)
        own[:, seen:] = torch.eye(t, dtype=torch.bool, device=idx.device)
        # A padding query sees only itself: a row with no key at all would be NaN, and NaN values leak
        # through the zero weights of every later token.
        mask = ((causal[None] & keys_valid[:, None, :]) | own[None])[:, None]
        h, new = self.hidden(idx, positions, mask, cache)
        last = h[:, -1]
        return self.lm_head(last).float(), last.float(), new
