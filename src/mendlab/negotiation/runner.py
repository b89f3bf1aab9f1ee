"""`mendlab negotiate`: rounds of bargaining games with feedback, stored as they finish, then the report.

Each model is loaded once, whatever roles it plays, and wrapped in `RecordedModel` so that every answer
is stored as it comes and a rerun after a kill asks again only for what is missing.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from mendlab.engine import Engine, EngineConfig, engine_concurrency
from mendlab.errors import IncompleteRun, MendlabError
from mendlab.models import ChatModel, load_model, load_registry
from mendlab.negotiation.experiment import stream_task
from mendlab.negotiation.game import load_game
from mendlab.negotiation.report import fmt_mean, fmt_rate_change, round_stats, write_negotiation_report
from mendlab.negotiation.rounds import (
    SHARED,
    Cast,
    GameRecord,
    NegotiationConfig,
    NegotiationRun,
    config_json,
    stored_games,
)
from mendlab.progress import progress_bar
from mendlab.store import ResultsStore
from mendlab.store.recorded import RecordedModel
from mendlab.textfile import read_text


def read_human_feedback(path: Path) -> str:
    text = read_text(path, MendlabError).strip()
    if not text:
        raise MendlabError(f"{path}: the human feedback file is empty")
    return text


def run_negotiation(
    db: Path,
    config: Path | None,
    cfg: NegotiationConfig,
    run_id: str,
    new_run: bool,
    out: Path,
    console: Console,
    *,
    retry_errors: bool = False,
) -> list[Path]:
    """Streams are the engine's samples, as many at once as the slowest of the cast's models allows."""
    game = load_game(cfg.game)
    registry = load_registry(config)
    names = dict.fromkeys([cfg.seller, cfg.buyer, cfg.critic, cfg.moderator])
    specs = {name: registry.get(name) for name in names}  # a bad name fails before any work
    with ResultsStore(db) as store:
        opened = store.ensure_run(run_id, "negotiation", cfg.identity(game), new_if_changed=new_run)
        if opened.moved:
            console.print(opened.moved, soft_wrap=True)
        run_id = opened.id
        loaded: dict[str, ChatModel] = {}
        settings = cfg.settings()
        try:
            for name, spec in specs.items():
                loaded[name] = RecordedModel(load_model(spec), store, f"{run_id}:gen")
            cast = Cast(loaded[cfg.seller], loaded[cfg.buyer], loaded[cfg.critic], loaded[cfg.moderator])
            negotiation = NegotiationRun(store, run_id, game, cfg, cast)
            per_stream = 1 + (cfg.rounds - 1) * len(settings)
            engine = Engine(store, opened)
            with progress_bar(console) as bar:
                task_bar = bar.add_task(f"negotiation ({cfg.learner} learns)", total=cfg.games * per_stream)

                def tick(record: GameRecord, fresh: bool) -> None:
                    if record.round > 1 or (record.setting == SHARED and fresh):
                        bar.advance(task_bar)

                task = stream_task(negotiation, settings, tick)
                todo = len(engine.pending(task, cfg.learner, retry_errors))
                bar.update(task_bar, completed=(cfg.games - todo) * per_stream)
                budget = min(engine_concurrency(spec) for spec in specs.values())
                learner = loaded[cfg.seller if cfg.learner == "seller" else cfg.buyer]
                engine.run(task, learner, EngineConfig(budget, retry_errors), subject=cfg.learner)
                bar.update(task_bar, completed=cfg.games * per_stream)
            failed = [r for r in store.samples(run_id, "negotiation", cfg.learner) if r.status == "error"]
            failed = [r for r in failed if r.sample_id in {s.id for s in task.samples}]
        finally:
            for model in loaded.values():
                model.close()
        records = [r for r in stored_games(store, run_id) if r.stream < cfg.games and r.round <= cfg.rounds]
    _print_table(console, records, settings, game.cost)
    meta = {**config_json(cfg), "run": run_id, "max_exchanges": cfg.max_exchanges or game.max_exchanges,
            "cost": game.cost}  # fmt: skip
    written = write_negotiation_report(records, run_id, meta, out, settings)
    if failed:
        for path in written:
            console.print(f"wrote {path}")
        raise IncompleteRun(
            f"run {run_id!r}: {len(failed)} stream(s) stopped at a failed game (first: {failed[0].error}); "
            "their finished games are kept. Rerun with --retry-errors to play the rest"
        )
    return written


def _print_table(console: Console, records: list[GameRecord], settings: list[str], cost: float) -> None:
    table = Table(title="Negotiation: deal rate and mean deal price by round (95% intervals)")
    for col in ("feedback", "round", "games", "deal rate", "mean price", "price vs round 1", "deal rate vs round 1"):
        table.add_column(col)
    for s in settings:
        for r in round_stats(records, s, cost):
            table.add_row(s, str(r.round), str(r.games), str(r.deal_rate), fmt_mean(r.price),
                          fmt_mean(r.price_change, signed=True), fmt_rate_change(r.deal_rate_change))  # fmt: skip
    console.print(table)
