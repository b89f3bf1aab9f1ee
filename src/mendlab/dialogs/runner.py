"""`mendlab run`: the calendar experiments over several models, one model in memory at a time.

A run is named (`--run`, default the scenario's name) and its configuration is stored with it: every
setting that changes the samples, the scenario's content included, but not the model list (results
are kept per model, so adding a model to a run is fine). Running again with the same configuration
resumes; with another one it stops and names the fields that differ, or, with `new_run`, moves to a
fresh run id beside it and says which.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mendlab.dialogs.experiments import DialogResult, harvest_mistakes, load_results
from mendlab.dialogs.feedback import RUNGS, LLMCritic, Rung
from mendlab.dialogs.metrics import dialog_stats, probe_stats
from mendlab.dialogs.scenario import Scenario, load_scenario
from mendlab.dialogs.tasks import DialogPlan, dialog_task, false_feedback_task, reliability_task, replay_task
from mendlab.engine import Engine, EngineConfig, Task, TaskSummary, engine_concurrency
from mendlab.errors import IncompleteRun, MendlabError
from mendlab.models import ChatModel, ModelSpec, SamplingParams, load_model, load_registry
from mendlab.progress import progress_bar
from mendlab.reports.calendar import build_report, write_report
from mendlab.store import ResultsStore, Run
from mendlab.store.recorded import RecordedModel

ORIGINAL = ("reliability", "dialog", "replay")  # `all`: the original's three
EXPERIMENTS = (*ORIGINAL, "false_feedback")
# Bump when what a run's samples mean changes (grading of scripted turns, seeds per rung, sample
# scopes): a run made under another protocol is then told apart instead of silently resumed.
PROTOCOL = 2


def parse_experiments(text: str) -> set[str]:
    """`all` (the original's three), one experiment, or several joined by commas (`dialog,replay`,
    `all,false-feedback`); `false-feedback` is `false_feedback`."""
    chosen: set[str] = set()
    for part in (p.strip().replace("-", "_") for p in text.split(",")):
        if part:
            chosen |= set(ORIGINAL) if part == "all" else {part}
    unknown = sorted(chosen - set(EXPERIMENTS))
    if unknown or not chosen:
        raise MendlabError(
            f"unknown experiment {', '.join(unknown) or text!r} (reliability, dialog, replay, false_feedback or all)"
        )
    return chosen


def parse_rungs(rung: str) -> tuple[Rung, ...]:
    if rung == "all":
        return RUNGS
    if rung not in RUNGS:
        raise MendlabError(f"unknown rung {rung!r} (vague, pointed, explicit or all)")
    return (rung,)


@dataclass(frozen=True)
class CalendarConfig:
    """Everything that changes the samples of a calendar run (the models are not part of it)."""

    scenario: str = "calendar"  # a built-in name or a YAML path
    tries: int = 5
    reps: int = 3
    rungs: tuple[Rung, ...] = RUNGS
    max_fixes: int = 3
    critic: str | None = None
    attempts: int = 3
    per_kind: int = 2
    params: SamplingParams = field(default_factory=lambda: SamplingParams(temperature=0.7, max_tokens=96))
    steps: int | None = None  # play only the first N scripted steps (None: the whole script)

    def __post_init__(self) -> None:
        for name in ("tries", "reps", "attempts", "per_kind"):
            if getattr(self, name) < 1:
                raise MendlabError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_fixes < 0:
            raise MendlabError("--max-fixes must be 0 or more")
        if self.steps is not None and self.steps < 1:
            raise MendlabError("--steps must be at least 1")

    @classmethod
    def quick(cls, scenario: str = "calendar") -> CalendarConfig:
        """A first look in a few minutes on a laptop: 2 tries, one dialog per rung, the first 3 steps,
        one attempt per replayed mistake. Its own run (the identity says so), never mixed with a full one."""
        return cls(scenario=scenario, tries=2, reps=1, attempts=1, per_kind=1, steps=3)

    def scenario_of(self, scenario: Scenario) -> Scenario:
        """The scenario as this run plays it: its first `steps` steps and their seed mistakes."""
        if self.steps is None:
            return scenario
        if self.steps > len(scenario.steps):
            raise MendlabError(f"--steps {self.steps}: scenario {scenario.name!r} has {len(scenario.steps)} steps")
        kept = tuple(m for m in scenario.mistakes if m.turn <= self.steps)
        return replace(scenario, steps=scenario.steps[: self.steps], mistakes=kept)

    def identity(self, scenario: Scenario) -> dict[str, Any]:
        """The run's stored configuration. The scenario is named by its content, so an edited YAML
        file under the same name is another run. With a critic the dialogs have its feedback, and
        the replays the rungs' (a critic needs a dialog to talk about)."""
        params = {k: v for k, v in self.params.as_dict().items() if k != "n"}
        return {
            "protocol": PROTOCOL,
            "scenario": scenario.name,
            "scenario_sha256": scenario_digest(scenario),
            "tries": self.tries,
            "reps": self.reps,
            "rungs": list(self.rungs),
            "max_fixes": self.max_fixes,
            "critic": self.critic,
            "attempts": self.attempts,
            "per_kind": self.per_kind,
            "params": params,
            **({"steps": self.steps} if self.steps is not None else {}),  # absent: runs made before it resume
        }


def scenario_digest(scenario: Scenario) -> str:
    """The scenario's content (prompt, API, world, turns, seed mistakes), not its file name."""
    data = json.dumps(asdict(scenario), sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


Loader = Callable[[ModelSpec], ChatModel]


def run_experiments(
    db: Path,
    config: Path | None,
    experiment: str,
    models: list[str],
    cfg: CalendarConfig,
    *,
    run_id: str | None,
    new_run: bool = False,
    retry_errors: bool = False,
    report_dir: Path | None,
    console: Console,
    load: Loader = load_model,
) -> tuple[Run, list[DialogResult]]:
    """Run (or resume) the experiments on the engine; `load` turns a spec into a model (tests pass a fake).
    Models are loaded one at a time (memory); each runs its samples within its own budget."""
    do = parse_experiments(experiment)
    scenario = cfg.scenario_of(load_scenario(cfg.scenario))
    registry = load_registry(config)
    specs = [registry.get(m) for m in models]  # fail on a bad name before any work
    critic_spec = registry.get(cfg.critic) if cfg.critic else None
    summaries: list[TaskSummary] = []
    asked: set[tuple[str, str, str]] = set()  # (task, model, sample) this command asked for
    with ResultsStore(db) as store:
        run = store.ensure_run(run_id or scenario.name, "calendar", cfg.identity(scenario), new_if_changed=new_run)
        if run.id != run.requested:
            console.print(
                f"new run [bold]{run.id}[/]: run {run.requested!r} was made with " + "; ".join(map(str, run.diffs))
            )
        elif run.resumed:
            console.print(f"run [bold]{run.id}[/]: resuming (answers already stored are reused)")
        rid = run.id
        engine = Engine(store, run)
        plan = DialogPlan(cfg.rungs, cfg.reps, cfg.max_fixes, cfg.params)
        with progress_bar(console) as progress:
            bar = progress.add_task("calendar", total=1)

            def play(task: Task[Any, Any], spec: ModelSpec, model: ChatModel) -> None:
                progress.update(bar, description=f"{spec.name}: {task.name}")
                progress.update(bar, total=(progress.tasks[0].total or 0) + len(task.samples))
                asked.update((task.name, spec.name, sample.id) for sample in task.samples)
                run_cfg = EngineConfig(engine_concurrency(spec), retry_errors)
                summaries.append(engine.run(task, model, run_cfg, on_done=lambda rec: progress.advance(bar)))
                progress.update(bar, completed=sum(s.total for s in summaries))

            progress.update(bar, total=0)
            critic_model: ChatModel | None = None
            if critic_spec is not None and "dialog" in do:
                critic_model = RecordedModel(load(critic_spec), store, f"{rid}:critic")
            try:
                for spec in specs:
                    if not ({"reliability", "dialog", "false_feedback"} & do):
                        break
                    progress.update(bar, description=f"loading {spec.name}")
                    model = RecordedModel(load(spec), store, rid)
                    try:
                        if "reliability" in do:
                            play(reliability_task(scenario, cfg.scenario, rid, cfg.tries, cfg.params), spec, model)
                        if "dialog" in do:
                            critic = LLMCritic(critic_model) if critic_model is not None else None
                            play(dialog_task(scenario, cfg.scenario, rid, plan, critic), spec, model)
                        if "false_feedback" in do:  # the rules' feedback, as the replays (a critic needs a dialog)
                            probe = false_feedback_task(scenario, cfg.scenario, rid, cfg.rungs, cfg.reps, cfg.params)
                            play(probe, spec, model)
                    finally:
                        model.close()
            finally:
                if critic_model is not None:
                    critic_model.close()
            unplayed = [r for r in store.samples(rid) if r.status == "error" and r.task in ("reliability", "dialog")]
            if "replay" in do and unplayed:
                console.print(
                    f"[red]replay skipped:[/] {len(unplayed)} reliability or dialog sample(s) of run {rid!r} failed, "
                    "and the mistake bank is harvested from all of them (--retry-errors first)",
                    soft_wrap=True,
                )
            elif "replay" in do:
                harvested = [r for r in load_results(store, rid) if r.experiment in ("reliability", "dialog")]
                played = play_order(harvested, [s.name for s in specs], cfg.rungs)
                bank = harvest_mistakes(scenario, played, per_kind=cfg.per_kind)
                replay_rungs = cfg.rungs  # a critic run replays with the rules: the critic needs a dialog
                for spec in specs:
                    model = RecordedModel(load(spec), store, rid)
                    try:
                        task = replay_task(scenario, cfg.scenario, rid, bank, replay_rungs, cfg.params, cfg.attempts)
                        play(task, spec, model)
                    finally:
                        model.close()
            progress.update(bar, description="done")
        results = load_results(store, rid)
        failed = [e for s in summaries for e in s.errors]
        stored_errors = [
            r for r in store.samples(rid) if r.status == "error" and (r.task, r.model, r.sample_id) in asked
        ]
        if "replay" in do:  # they kept the replay from being played
            stored_errors += [r for r in unplayed if r not in stored_errors]
    _summary(console, results)
    if report_dir is not None:
        for path in write_report(build_report(results, scenario, rid, run.config), report_dir):
            console.print(f"wrote {path}")
    if stored_errors:
        first = stored_errors[0]
        raise IncompleteRun(
            f"run {rid!r}: {len(stored_errors)} sample(s) failed ({len(failed)} in this session) and are left out "
            f"of the results, e.g. {first.model} {first.task} {first.sample_id}: {first.error}. "
            "Rerun with --retry-errors to play them again"
        )
    return run, results


def play_order(results: list[DialogResult], models: list[str], rungs: tuple[str, ...]) -> list[DialogResult]:
    """The results in the order a serial run would have made them (models as given, reliability,
    then each rung's repetitions): the mistake bank keeps the first few of each kind, so it must not
    depend on which of the concurrent samples happened to finish first. Models of the run that are
    not in this command come first, in the order they were stored."""
    order = {"reliability": 0, "dialog": 1, "replay": 2}
    rank = [*rungs, "critic"]
    others = list(dict.fromkeys(r.model for r in results if r.model not in models))  # in the order stored

    def key(r: DialogResult) -> tuple[int, int, int, int]:
        model = models.index(r.model) if r.model in models else others.index(r.model) - len(others)
        rung = rank.index(r.rung) if r.rung in rank else len(rank)
        return (model, order.get(r.experiment, 3), rung, r.rep)

    return sorted(results, key=key)


def _summary(console: Console, results: list[DialogResult]) -> None:
    probes = probe_stats(results)
    if probes:
        table = Table(
            title="False feedback: a right answer, then told it is wrong (held: still the right call), 95% CI",
            title_justify="left",
        )
        for col in ("model", "feedback", "right first", "held", "caved (c→i)", "took the bait"):
            table.add_column(col)
        for p in probes:
            table.add_row(p.model, p.rung, str(p.first_right), str(p.held), str(p.caved), str(p.followed))
        console.print(table)
    results = [r for r in results if r.experiment != "false_feedback"]
    stats = dialog_stats(results)
    if not stats:  # reliability or replay alone: no dialogs, so say what there is
        for model in sorted({r.model for r in results}):
            rs = [r for r in results if r.model == model]
            right = sum(all(g.correct for g in r.grades) for r in rs)
            console.print(f"{model}: {right}/{len(rs)} conversations with no mistake")
        return
    table = Table(title="Fix rates after the rung's feedback (next answer), 95% CI over dialogs", title_justify="left")
    for col in ("model", "feedback", "errors pointed out gone", "fully correct", "fixed within K", "first try right"):
        table.add_column(col)
    for s in stats:
        table.add_row(
            s.model, s.rung, str(s.pointed_gone), str(s.correct_next), str(s.fixed_within_k), str(s.first_try)
        )
    console.print(table)


def latest_calendar_run(store: ResultsStore) -> str | None:
    runs = [r for r in store.runs() if r["kind"] == "calendar"]
    return runs[-1]["id"] if runs else None


def write_calendar_report(db: Path, run_id: str | None, scenario_name: str | None, out: Path) -> tuple[str, list[Path]]:
    """The report of a stored run (default: the latest calendar run); returns the run id and the files."""
    with ResultsStore(db) as store:
        rid = run_id or latest_calendar_run(store)
        if rid is None:
            raise MendlabError(f"{db}: no calendar run in this store (see `mendlab runs`)")
        stored = store.run(rid)
        results = load_results(store, rid)
    if not results:
        raise MendlabError(f"{db}: no calendar results for run {rid!r} (see `mendlab runs`)")
    config = stored.config if stored is not None else {}
    scenario: Scenario = load_scenario(scenario_name or results[0].scenario)
    if config.get("steps"):  # a --quick or --steps run reports the steps it played
        scenario = CalendarConfig(steps=int(config["steps"])).scenario_of(scenario)
    return rid, write_report(build_report(results, scenario, rid, config), out)
