"""`mendlab negotiate`: rounds of bargaining games with feedback, stored as they finish, then the report.

Each model is loaded once, whatever roles it plays, and wrapped in `RecordedModel` so that every answer
is stored as it comes and a rerun after a kill asks again only for what is missing.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from mendlab.errors import MendlabError
from mendlab.models import ChatModel, load_model, load_registry
from mendlab.negotiation.game import load_game
from mendlab.negotiation.report import fmt_mean, fmt_rate_change, round_stats, write_negotiation_report
from mendlab.negotiation.rounds import Cast, GameRecord, NegotiationConfig, NegotiationRun, config_json, stored_games
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
    db: Path, config: Path | None, cfg: NegotiationConfig, run_id: str, new_run: bool, out: Path, console: Console
) -> list[Path]:
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
        try:
            for name, spec in specs.items():
                loaded[name] = RecordedModel(load_model(spec), store, f"{run_id}:gen")
            cast = Cast(loaded[cfg.seller], loaded[cfg.buyer], loaded[cfg.critic], loaded[cfg.moderator])
            negotiation = NegotiationRun(store, run_id, game, cfg, cast)
            settings = cfg.settings()
            total = cfg.games * (1 + (cfg.rounds - 1) * len(settings))
            with progress_bar(console) as bar:
                task = bar.add_task(f"negotiation ({cfg.learner} learns)", total=total)
                for stream in range(cfg.games):
                    for i, setting in enumerate(settings):

                        def tick(record: GameRecord, fresh: bool, first: bool = i == 0) -> None:
                            if record.round > 1 or first:
                                bar.advance(task)

                        played = negotiation.play_stream(setting, stream, tick)
                        skipped = cfg.rounds - len(played)  # a stream cut by an error: its rounds are done for now
                        bar.advance(task, skipped)
        finally:
            for model in loaded.values():
                model.close()
        records = [r for r in stored_games(store, run_id) if r.stream < cfg.games and r.round <= cfg.rounds]
    _print_table(console, records, cfg.settings(), game.cost)
    errors = [r for r in records if r.error]
    if errors:
        console.print(f"{len(errors)} game(s) failed (first: {errors[0].error}); the same command again retries them")
    meta = {**config_json(cfg), "run": run_id, "max_exchanges": cfg.max_exchanges or game.max_exchanges,
            "cost": game.cost}  # fmt: skip
    return write_negotiation_report(records, run_id, meta, out, cfg.settings())


def _print_table(console: Console, records: list[GameRecord], settings: list[str], cost: float) -> None:
    table = Table(title="Negotiation: deal rate and mean deal price by round (95% intervals)")
    for col in ("feedback", "round", "games", "deal rate", "mean price", "price vs round 1", "deal rate vs round 1"):
        table.add_column(col)
    for s in settings:
        for r in round_stats(records, s, cost):
            table.add_row(s, str(r.round), str(r.games), str(r.deal_rate), fmt_mean(r.price),
                          fmt_mean(r.price_change, signed=True), fmt_rate_change(r.deal_rate_change))  # fmt: skip
    console.print(table)
