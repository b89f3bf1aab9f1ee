"""Models kept resident for the arena, within a memory budget.

The original arena kept eight models loaded so switching was instant; on a laptop that is not
possible, so we keep as many as the budget allows, load each on first use, and evict the least
recently used idle model when a new one needs room. Endpoint models cost no local memory. A model
placed on a GPU (transformers on CUDA, llama.cpp offloading layers, keras on a GPU or TPU) costs GPU
memory instead of RAM, under its own budget: 90% of the free GPU memory when the first such model loads
(the rest is for activations, the KV cache of long answers and the CUDA context). A keras model sharded
over several devices costs the sum of its pieces on all of them. Evicting a RAM model never makes room
on the GPU, nor the other way round.

Local backends share the machine's cores: two llama.cpp models generating at once each spin every
core and both crawl, so local generations take turns (`local_parallel`); endpoints never wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mendlab.errors import MendlabError
from mendlab.models import ChatModel, MemoryKind, ModelSpec, Registry, load_model, memory_kind, model_path

GiB = 1024**3
GPU_SHARE = 0.9  # of the free GPU memory, for resident models
DeviceMemory = Callable[[], tuple[int, int]]  # (free, total) bytes, as torch.cuda.mem_get_info()


class MemoryBudgetError(MendlabError):
    """A model does not fit in the arena's memory budget."""


@dataclass
class _Slot:
    spec: ModelSpec
    model: ChatModel | None = None
    state: str = "not loaded"  # not loaded | loading | ready | evicted | failed
    cost: int = 0
    last_used: float = 0.0
    users: int = 0
    error: str = ""
    kind: MemoryKind = "ram"


def cuda_memory() -> tuple[int, int]:
    """(free, total) bytes on the current CUDA device; without torch's CUDA (keras on a TPU), over
    JAX's accelerators."""
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except ImportError:
        cuda = False
    if not cuda:
        from mendlab.models.kerashub import accelerator_memory

        return accelerator_memory()
    free, total = torch.cuda.mem_get_info()
    return int(free), int(total)


def estimate_bytes(spec: ModelSpec) -> int:
    """Before loading: the size of the weights on disk (0 for a remote endpoint)."""
    if spec.backend == "openai":
        return 0
    if spec.bundle is None and spec.path is not None and not Path(spec.path).exists():
        return 0  # loading will fail with a clear message; nothing to reserve
    path = model_path(spec)
    if spec.backend == "keras":  # it runs the weights dequantized from a GGUF, not the file
        from mendlab.models.kerashub import estimate_bytes as keras_bytes
        from mendlab.models.kerashub import platform, resolve_dtype

        return keras_bytes(path, resolve_dtype(spec.dtype, platform()))
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def measured_bytes(model: ChatModel, fallback: int) -> int:
    report = getattr(model, "memory_bytes", None)
    return int(report()) if callable(report) else fallback


class ModelPool:
    """Thread-safe: arena sessions share one pool, each model is loaded at most once."""

    def __init__(
        self,
        registry: Registry,
        budget_bytes: int,
        *,
        local_parallel: int = 1,
        loader: Callable[[ModelSpec], ChatModel] = load_model,
        wait_s: float = 300.0,
        gpu_budget_bytes: int | None = None,
        device_memory: DeviceMemory = cuda_memory,
    ) -> None:
        self.registry = registry
        self.budget = budget_bytes
        self.gpu_budget = gpu_budget_bytes  # None: read from `device_memory` when first needed
        self._gpu_why = "given" if gpu_budget_bytes is not None else ""
        self.device_memory = device_memory
        self.loader = loader
        self.wait_s = wait_s
        self._cond = threading.Condition()
        self._slots: dict[str, _Slot] = {}
        self._local = threading.Semaphore(local_parallel)

    def _slot(self, name: str, kind: MemoryKind = "ram") -> _Slot:
        if name not in self._slots:
            self._slots[name] = _Slot(self.registry.get(name), kind=kind)
        return self._slots[name]

    def _budget(self, kind: MemoryKind, name: str) -> int:
        """Holds _cond."""
        if kind != "gpu":
            return self.budget
        if self.gpu_budget is None:
            try:
                free, _ = self.device_memory()
            except Exception as exc:
                raise MemoryBudgetError(
                    f"model {name!r} goes on the GPU, but its memory cannot be read: {exc}"
                ) from None
            self.gpu_budget = int(free * GPU_SHARE)
            self._gpu_why = f"{GPU_SHARE:.0%} of the {free / GiB:.2f} GiB that were free"
        return self.gpu_budget

    def status(self, name: str) -> str:
        with self._cond:
            slot = self._slots.get(name)
            if slot is None:
                return "not loaded"
            return f"failed: {slot.error}" if slot.state == "failed" else slot.state

    def used(self, kind: MemoryKind = "ram") -> int:
        """Bytes held in RAM (or on the GPU: kind="gpu") by resident and loading models."""
        with self._cond:
            return sum(
                s.cost for s in self._slots.values() if s.kind == kind and (s.model is not None or s.state == "loading")
            )

    def resident(self) -> list[tuple[str, int]]:
        with self._cond:
            return [(n, s.cost) for n, s in self._slots.items() if s.model is not None]

    def _make_room(self, need: int, keep: str) -> None:
        """Evict idle models in the same memory (RAM or GPU), least recently used first, until `need`
        more bytes fit. Holds _cond."""
        deadline = time.monotonic() + self.wait_s
        kind = self._slots[keep].kind
        budget = self._budget(kind, keep)
        while self.used(kind) + need > budget:
            idle = [
                s
                for n, s in self._slots.items()
                if n != keep and s.kind == kind and s.model is not None and s.users == 0 and s.cost > 0
            ]
            if idle:
                victim = min(idle, key=lambda s: s.last_used)
                model, victim.model = victim.model, None
                victim.state, victim.cost = "evicted", 0
                assert model is not None
                model.close()
                continue
            busy = sum(s.cost for n, s in self._slots.items() if n != keep and s.kind == kind and s.model is not None)
            if busy == 0:
                if kind == "gpu":
                    raise MemoryBudgetError(
                        f"model {keep!r} needs {need / GiB:.2f} GiB of GPU memory but the arena's GPU budget is "
                        f"{budget / GiB:.2f} GiB ({self._gpu_why})"
                    )
                raise MemoryBudgetError(
                    f"model {keep!r} needs {need / GiB:.2f} GiB but the arena's memory budget is "
                    f"{budget / GiB:.2f} GiB (raise it with --memory-gb)"
                )
            if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                raise MemoryBudgetError(f"no room for {keep!r}: the models in use fill the memory budget")

    def _acquire(self, name: str) -> ChatModel:
        kind = self._slots[name].kind if name in self._slots else memory_kind(self.registry.get(name))
        with self._cond:
            slot = self._slot(name, kind)
            while slot.state == "loading":
                self._cond.wait()
            if slot.model is not None:
                slot.users += 1
                slot.last_used = time.monotonic()
                return slot.model
            try:
                need = estimate_bytes(slot.spec)
                self._make_room(need, name)
            except MendlabError as exc:
                slot.state, slot.error = "failed", str(exc)
                raise
            slot.state, slot.cost, slot.error = "loading", need, ""
            slot.users += 1
        try:
            model = self.loader(slot.spec)
        except BaseException as exc:
            with self._cond:
                slot.users -= 1
                slot.state, slot.cost, slot.error = "failed", 0, str(exc).splitlines()[0] if str(exc) else repr(exc)
                self._cond.notify_all()
            raise
        with self._cond:
            slot.model, slot.state = model, "ready"
            slot.cost = measured_bytes(model, need)
            slot.last_used = time.monotonic()
            self._cond.notify_all()
            try:
                self._make_room(0, name)  # the measured cost (KV cache) may exceed the estimate
            except MemoryBudgetError:
                pass  # it fits alone or others are busy: they go once idle
        return model

    def _release(self, name: str) -> None:
        with self._cond:
            slot = self._slots[name]
            slot.users -= 1
            slot.last_used = time.monotonic()
            self._cond.notify_all()

    @contextmanager
    def use(self, name: str) -> Iterator[ChatModel]:
        """The loaded model for `name`, kept resident while the block runs; local ones take turns."""
        model = self._acquire(name)
        local = self.registry.get(name).backend != "openai"
        try:
            if local:
                with self._local:
                    yield model
            else:
                yield model
        finally:
            self._release(name)

    def close(self) -> None:
        with self._cond:
            for slot in self._slots.values():
                if slot.model is not None:
                    slot.model.close()
                    slot.model, slot.state, slot.cost = None, "evicted", 0
