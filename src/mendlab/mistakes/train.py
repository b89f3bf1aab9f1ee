"""The training loop, as plain as nanoGPT's: AdamW, linear warmup then cosine to 1%, gradient clipping,
bf16 autocast on a GPU, a checkpoint every few hundred steps, and resume after kill -9.

Batch k is a function of (seed, k) alone (an epoch-seeded permutation of the packed rows), so a resumed
run sees exactly the batches the uninterrupted one would have: resume changes nothing but the wall time.
A run may be sized in tokens rather than steps (`TrainConfig.tokens`): data sets whose rows hold more or
fewer real tokens then train on the same number of tokens, the paper's "equal training tokens".
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from mendlab.errors import MendlabError
from mendlab.mistakes.corpus import Rows
from mendlab.mistakes.model import GPT, GPTConfig

# -- config: the paper's optimizer (AdamW 0.9/0.98, lr 2e-3, wd 0.05, warmup then cosine to 1%) -----------


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000  # ignored when `tokens` > 0
    tokens: int = 0  # > 0: as many steps as it takes to see about this many real (not padding) tokens
    batch_size: int = 32
    lr: float = 2e-3
    min_lr_ratio: float = 0.01
    warmup: int = 100
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False  # autocast to bfloat16 (GPU)
    checkpoint_every: int = 200

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)  # one per step
    tokens: int = 0  # real tokens read (prompts and solutions; padding excluded): what a budget counts
    trained: int = 0  # of them, the tokens the loss is on (solutions, less any masked wrong steps)
    seconds: float = 0.0  # training wall time, summed over the processes a resumed run went through
    resumed_from: int = 0


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    lo = cfg.lr * cfg.min_lr_ratio
    return lo + 0.5 * (cfg.lr - lo) * (1 + math.cos(math.pi * min(1.0, frac)))


def batch_rows(n_rows: int, step: int, cfg: TrainConfig) -> torch.Tensor:
    """The row numbers of batch `step`: deterministic from (seed, step), epochs reshuffled."""
    per_epoch = max(1, n_rows // cfg.batch_size)
    epoch, k = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    perm = torch.randperm(n_rows, generator=g)
    picked = perm[k * cfg.batch_size : (k + 1) * cfg.batch_size]
    if len(picked) < cfg.batch_size:  # fewer rows than a batch: repeat
        picked = perm.repeat(cfg.batch_size // n_rows + 1)[: cfg.batch_size]
    return picked


def optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """Weight decay on matrices only, as nanoGPT: not on norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=True)  # one kernel, on CPU too


def steps_for(cfg: TrainConfig, rows: Rows) -> TrainConfig:
    """`cfg` with its step count fixed: from the token budget and the rows' mean real tokens, if any.

    Batches draw whole rows, so a step sees batch_size rows' worth of tokens on average; the schedule
    needs the count up front, and the tokens actually seen (counted, and reported) land within about
    a step of the budget."""
    if cfg.tokens <= 0:
        return cfg
    per_step = cfg.batch_size * rows.tokens / max(1, len(rows))
    return replace(cfg, steps=max(1, round(cfg.tokens / max(per_step, 1.0))))


def identity(cfg: TrainConfig, model_cfg: GPTConfig, data_key: str) -> str:
    """A checkpoint resumes only the run it was written by: same model, data and schedule. Not the
    device (nor bf16, which follows it): a run moved to another machine resumes as the same run."""
    train = {k: v for k, v in cfg.as_dict().items() if k not in ("device", "bf16")}
    blob = json.dumps({"train": train, "model": model_cfg.as_dict(), "data": data_key}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` survive a power cut, not only a kill."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without directory handles: the rename is as durable as it gets
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_atomic(path: Path, state: object) -> None:
    """Atomically and durably: the temp file is synced before it replaces `path`, the folder after."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def save_final(model: torch.nn.Module, folder: Path) -> Path:
    """Write `folder/model.pt` (atomic, synced), then drop the training checkpoint it supersedes: a final
    model is never resumed, and a stale checkpoint is hundreds of MB at the paper's size."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / "model.pt"
    save_atomic(final, model.state_dict())
    drop_checkpoint(folder)
    return final


def drop_checkpoint(folder: Path) -> None:
    """Remove the checkpoint of a model whose final weights exist (one killed between the two writes)."""
    for name in ("checkpoint.pt", "checkpoint.pt.tmp"):
        (folder / name).unlink(missing_ok=True)


def train(
    model: GPT,
    rows: Rows,
    cfg: TrainConfig,
    out_dir: Path | None = None,
    data_key: str = "",
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train `model` in place for `cfg.steps` steps (or `cfg.tokens` tokens); with `out_dir`, checkpoint
    there and resume from it."""
    cfg = steps_for(cfg, rows)
    torch.manual_seed(cfg.seed)
    model.to(cfg.device)
    model.train()
    opt = optimizer(model, cfg)
    result = TrainResult(steps=cfg.steps)
    ckpt = out_dir / "checkpoint.pt" if out_dir is not None else None
    run_id = identity(cfg, model.cfg, data_key)
    start = 0
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=cfg.device, weights_only=True)
        if state["identity"] != run_id:
            raise MendlabError(f"{ckpt} belongs to another run (its configuration differs); use a new folder")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, result.losses, result.tokens = state["step"], state["losses"], state["tokens"]
        result.trained, result.seconds = state.get("trained", 0), state.get("seconds", 0.0)
        result.resumed_from = start

    def checkpoint(step: int) -> None:
        if ckpt is None:
            return
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        state = {"identity": run_id, "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}
        seconds = result.seconds + time.perf_counter() - t0
        extra = {"losses": result.losses, "tokens": result.tokens, "trained": result.trained, "seconds": seconds}
        save_atomic(ckpt, {**state, **extra})

    t0 = time.perf_counter()
    for step in range(start, cfg.steps):
        batch = rows.take(batch_rows(len(rows), step, cfg))
        idx, targets, weights, doc, pos = (
            t.to(cfg.device, non_blocking=True)
            for t in (batch.idx, batch.targets, batch.weights, batch.doc, batch.positions)
        )
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        with torch.autocast(device_type=cfg.device.split(":")[0], dtype=torch.bfloat16, enabled=cfg.bf16):
            _, loss = model(idx, targets, weights, doc, pos)
        assert loss is not None
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        value = float(loss.item())
        result.losses.append(value)
        result.tokens += batch.tokens
        result.trained += int(batch.weights.sum())
        if on_step is not None:
            on_step(step + 1, value)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            checkpoint(step + 1)
    result.seconds += time.perf_counter() - t0
    model.eval()
    return result
