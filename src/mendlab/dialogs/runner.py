"""`mendlab run`: the calendar experiments over several models, one model in memory at a time."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mendlab.dialogs.experiments import (
    DialogResult,
    harvest_mistakes,
    load_results,
    play_dialog,
    run_reliability,
    run_replay,
)
from mendlab.dialogs.feedback import RUNGS, LLMCritic, Rung
from mendlab.dialogs.scenario import Scenario, load_scenario
from mendlab.errors import MendlabError
from mendlab.models import ChatModel, SamplingParams, load_model, load_registry
from mendlab.progress import progress_bar
from mendlab.reports.calendar import build_report, fix_stats, write_report
from mendlab.store import ResultsStore
from mendlab.store.recorded import RecordedModel


def _rungs(rung: str) -> tuple[Rung, ...]:
    if rung == "all":
        return RUNGS
    if rung not in RUNGS:
        raise MendlabError(f"unknown rung {rung!r} (vague, pointed, explicit or all)")
    return (rung,)


def run_experiments(
    db: Path,
    config: Path | None,
    experiment: str,
    models: list[str],
    scenario_name: str,
    *,
    tries: int,
    reps: int,
    rung: str,
    max_fixes: int,
    critic: str | None,
    attempts: int,
    per_kind: int,
    params: SamplingParams,
    run_id: str | None,
    report_dir: Path | None,
    console: Console,
) -> list[DialogResult]:
    scenario = load_scenario(scenario_name)
    registry = load_registry(config)
    specs = [registry.get(m) for m in models]  # fail on a bad name before any work
    critic_spec = registry.get(critic) if critic else None
    rungs = _rungs(rung)
    run = run_id or scenario.name
    do = {"reliability", "dialog", "replay"} if experiment == "all" else {experiment}
    with ResultsStore(db) as store:
        store.ensure_run(run, "calendar", {"scenario": scenario.name})
        units = len(specs) * (
            (1 if "reliability" in do else 0) + (reps * (1 if critic else len(rungs)) if "dialog" in do else 0)
        )
        with progress_bar(console) as progress:
            task = progress.add_task("calendar", total=max(units, 1))
            critic_model: ChatModel | None = None
            if critic_spec is not None:
                critic_model = RecordedModel(load_model(critic_spec), store, f"{run}:critic")
            try:
                for spec in specs:
                    if not ({"reliability", "dialog"} & do):
                        break
                    progress.update(task, description=f"loading {spec.name}")
                    model = RecordedModel(load_model(spec), store, run)
                    try:
                        if "reliability" in do:
                            progress.update(task, description=f"{spec.name}: reliability")
                            for res in run_reliability(model, scenario, tries, params):
                                res.save(store, run, scenario_name)
                            progress.advance(task)
                        if "dialog" in do:
                            for r in rungs if critic_model is None else ("critic",):
                                for rep in range(reps):
                                    progress.update(task, description=f"{spec.name}: dialog {r} #{rep + 1}")
                                    res = play_dialog(
                                        model,
                                        scenario,
                                        replace(params, seed=params.seed + rep),
                                        r if r != "critic" else "pointed",  # type: ignore[arg-type]
                                        max_fixes,
                                        critic=LLMCritic(critic_model) if critic_model is not None else None,
                                        rep=rep,
                                    )
                                    res.save(store, run, scenario_name)
                                    progress.advance(task)
                    finally:
                        model.close()
            finally:
                if critic_model is not None:
                    critic_model.close()
            if "replay" in do:
                bank = harvest_mistakes(scenario, load_results(store, run), per_kind=per_kind)
                progress.update(task, total=units + len(specs) * len(rungs))
                for spec in specs:
                    model = RecordedModel(load_model(spec), store, run)
                    try:
                        for r in rungs:
                            progress.update(task, description=f"{spec.name}: replay {r}")
                            for res in run_replay(model, scenario, bank, params, r, attempts):
                                res.save(store, run, scenario_name)
                            progress.advance(task)
                    finally:
                        model.close()
            progress.update(task, description="done")
        results = load_results(store, run)
    _summary(console, results)
    if report_dir is not None:
        for path in write_report(build_report(results, scenario, run), report_dir):
            console.print(f"wrote {path}")
    return results


def _summary(console: Console, results: list[DialogResult]) -> None:
    stats = fix_stats(results)
    if not stats:  # reliability or replay alone: no dialogs, so say what there is
        for model in sorted({r.model for r in results}):
            rs = [r for r in results if r.model == model]
            right = sum(all(g.correct for g in r.grades) for r in rs)
            console.print(f"{model}: {right}/{len(rs)} conversations with no mistake")
        return
    table = Table(title="Fix rate P(fixed on next turn | pointed out), 95% CI", title_justify="left")
    for col in ("model", "feedback", "fix rate", "fixed within K", "first try right"):
        table.add_column(col)
    for s in stats:
        table.add_row(s.model, s.rung, str(s.next_turn), str(s.within_k), str(s.first_try))
    console.print(table)


def write_calendar_report(db: Path, run_id: str, scenario_name: str | None, out: Path) -> list[Path]:
    with ResultsStore(db) as store:
        results = load_results(store, run_id)
    if not results:
        raise MendlabError(f"{db}: no calendar results for run {run_id!r} (see `mendlab runs`)")
    scenario: Scenario = load_scenario(scenario_name or results[0].scenario)
    return write_report(build_report(results, scenario, run_id), out)
