"""The arena: a web page to chat with several models side by side, mark their mistakes, ask for
fixes and vote on them. `serve` is the entry point; `session` holds the rules, `pool` the models."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mendlab.errors import MendlabError
from mendlab.models.registry import Registry, readiness

if TYPE_CHECKING:
    import gradio as gr

    from mendlab.arena.pool import ModelPool
    from mendlab.store import ResultsStore


def chat_models(registry: Registry, wanted: Sequence[str] = ()) -> tuple[str, ...]:
    """The models a pane may pick: the ones asked for, or every installed chat model."""
    if wanted:
        for name in wanted:
            spec = registry.get(name)
            ok, why = readiness(spec)
            if not ok:
                raise MendlabError(f"model {name!r} is not usable: {why}")
        return tuple(wanted)
    return tuple(s.name for s in registry if s.chat and readiness(s)[0])


def default_budget_gb() -> float:
    """Half the machine's memory: room for the page, the OS and a training job beside it."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 4.0
    return round(total / 2 / 1024**3, 1)


def build_arena(
    registry: Registry,
    db: Path,
    models: Sequence[str] = (),
    memory_gb: float | None = None,
    scenario: str | None = "calendar",
    max_tokens: int = 256,
    temperature: float = 0.7,
) -> tuple[gr.Blocks, ModelPool, ResultsStore]:
    """(gradio Blocks, pool, store): split from `serve` so tests and the bench launch it themselves."""
    from mendlab.arena.app import ArenaApp, ArenaConfig
    from mendlab.arena.pool import GiB, ModelPool
    from mendlab.dialogs.scenario import load_scenario
    from mendlab.store import ResultsStore

    names = chat_models(registry, models)
    if not names:
        raise MendlabError("no chat model is installed: see `mendlab models`")
    if scenario:
        load_scenario(scenario)  # a bad name fails here, on the command line, not in the page
    budget = memory_gb if memory_gb is not None else default_budget_gb()
    pool = ModelPool(registry, int(budget * GiB))
    store = ResultsStore(db)
    config = ArenaConfig(models=names, temperature=temperature, max_tokens=max_tokens, default_scenario=scenario)
    return ArenaApp(pool, store, config).build(), pool, store


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = None, block: bool = True) -> str:
    """Serve the page; returns its URL. Sessions run concurrently; local models still take turns."""
    from mendlab.arena.app import CSS

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        _, url, _ = demo.queue(default_concurrency_limit=16).launch(
            server_name=host, server_port=port, css=CSS, quiet=True, footer_links=[], prevent_thread_lock=not block
        )
    except OSError as exc:
        where = f"{host}:{port}" if port else host
        raise MendlabError(f"cannot serve the arena on {where}: {str(exc).split('. ')[0]} (try --port)") from None
    return str(url)
