"""`mendlab repair`: grow repair trees for configurations (code model, feedback source, repair model),
then estimate pass@t and write the report. Trees are saved per task as they finish; a rerun resumes."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mendlab.engine import Engine, EngineConfig, engine_concurrency
from mendlab.errors import IncompleteRun, MendlabError
from mendlab.models import ChatModel, load_model, load_registry
from mendlab.progress import progress_bar
from mendlab.repair.experiment import TreeSetup, repair_task
from mendlab.repair.passk import baseline_grid, bootstrap, interpolate_baseline, repair_grid
from mendlab.repair.report import Config, write_repair_report
from mendlab.repair.sandbox import Limits, Sandbox
from mendlab.repair.tasks import Task, load_tasks, tasks_digest
from mendlab.repair.trees import TaskTree, TreeConfig, load_human_feedback
from mendlab.store import ResultsStore
from mendlab.store.recorded import RecordedModel


@dataclass(frozen=True)
class Setup:
    code: str
    feedback: str  # a model name, "joint" (the repair model explains and fixes in one answer) or "human"
    repair: str

    @property
    def label(self) -> str:
        return f"code {self.code} · feedback {self.feedback} · repair {self.repair}"

    @property
    def key(self) -> str:
        """Whose samples a setup's trees are, in the engine's store."""
        return f"{self.code}:{self.feedback}:{self.repair}"

    @classmethod
    def parse(cls, text: str) -> Setup:
        parts = text.split(":")
        if len(parts) != 3 or not all(parts):
            raise MendlabError(f"--setup {text!r}: expected CODE:FEEDBACK:REPAIR (FEEDBACK may be joint or human)")
        return cls(*parts)


@dataclass(frozen=True)
class RepairRun:
    """Everything a `mendlab repair` run is made of; what changes its results is its identity."""

    tasks: str  # "humaneval" or a task file
    limit: int | None
    setups: tuple[Setup, ...]
    tree: TreeConfig
    run_id: str = "repair"
    out: Path = Path("report-repair")
    human_feedback: Path | None = None
    reps: int = 1000
    mode: str = "batch"
    allow_unsafe: bool = False
    new_run: bool = False  # the run id holds another configuration: start `ID-2` beside it
    retry_errors: bool = False  # play again the tasks whose tree failed (a sandbox or server error)
    limits: Limits = field(default_factory=Limits)

    def identity(self, tasks: list[Task]) -> dict[str, Any]:
        """The stored configuration: trees grown under another one are another run. Setups are not
        in it (each setup's trees are kept apart), so adding one to a run is fine."""
        return {
            "tasks": self.tasks,
            "tasks_digest": tasks_digest(tasks),
            "limit": self.limit,
            "tree": asdict(self.tree),
            "sandbox_limits": asdict(self.limits),
            "human_feedback": _digest(self.human_feedback),
        }


def _digest(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise MendlabError(f"{path}: cannot read ({exc.strerror})") from None


def run_repair(db: Path, config: Path | None, run: RepairRun, console: Console) -> list[Path]:
    tasks: list[Task] = load_tasks(run.tasks)
    if run.limit is not None:
        tasks = tasks[: run.limit]
    registry = load_registry(config)
    setups, cfg, run_id = run.setups, run.tree, run.run_id
    for s in setups:
        for name in (s.code, s.repair, *([] if s.feedback in ("joint", "human") else [s.feedback])):
            registry.get(name)  # fail on a bad name before any work
    human = load_human_feedback(run.human_feedback) if run.human_feedback else None
    if any(s.feedback == "human" for s in setups) and human is None:
        raise MendlabError("a setup with human feedback needs --human-feedback FILE")
    loaded: dict[str, ChatModel] = {}

    def model(name: str, store: ResultsStore) -> ChatModel:
        if name not in loaded:
            loaded[name] = RecordedModel(load_model(registry.get(name)), store, f"{run_id}:gen")
        return loaded[name]

    configs: list[Config] = []
    summary: list[list[str]] = []
    errors: list[str] = []
    sandbox = Sandbox(run.limits, allow_unsafe=run.allow_unsafe)
    # Trees judged without a sandbox are another run than trees judged in one.
    identity = {**run.identity(tasks), "isolation": sandbox.isolation.level}
    with ResultsStore(db) as store:
        try:
            opened = store.ensure_run(run_id, "repair", identity, new_if_changed=run.new_run)
        except MendlabError:
            sandbox.close()
            raise
        if opened.moved:
            console.print(opened.moved, soft_wrap=True)
        run_id = opened.id
        console.print(f"sandbox: {sandbox.isolation.detail}", soft_wrap=True)
        try:
            engine = Engine(store, opened)
            for s in setups:
                key = f"{run_id}:{s.code}:{s.feedback}:{s.repair}"
                legacy = store.trees(key)  # trees stored before the engine: done, not grown again
                task = repair_task(
                    [t for t in tasks if t.id not in legacy],
                    TreeSetup(
                        None if s.feedback in ("joint", "human") else model(s.feedback, store),
                        model(s.repair, store),
                        sandbox,
                        TreeConfig(**{**asdict(cfg), "joint": s.feedback == "joint"}),
                        human if s.feedback == "human" else None,
                    ),
                )
                names = [s.code, s.repair, *([] if s.feedback in ("joint", "human") else [s.feedback])]
                budget = min(engine_concurrency(registry.get(n)) for n in names)
                todo = len(engine.pending(task, s.key, run.retry_errors))
                with progress_bar(console) as progress:
                    bar = progress.add_task(s.label, total=len(tasks), completed=len(tasks) - todo)
                    engine.run(
                        task,
                        model(s.code, store),
                        EngineConfig(budget, run.retry_errors),
                        subject=s.key,
                        on_done=lambda rec, bar=bar: progress.advance(bar),  # type: ignore[misc]
                    )
                stored = store.samples(run_id, "repair", s.key)
                errors.extend(f"{s.label} · {r.sample_id}: {r.error}" for r in stored if r.status == "error")
                grown = {r.sample_id: dict(r.data) for r in stored if r.status == "ok"}
                trees = [
                    TaskTree.from_json(d).to_tree()
                    for d in {**legacy, **grown}.values()
                    if d["task_id"] in {t.id for t in tasks}
                ]
                max_pairs = max((len(p.pairs) for t in trees for p in t.programs), default=0)
                repair = bootstrap(trees, repair_grid(cfg.n_p, max_pairs), reps=run.reps, mode=run.mode)  # type: ignore[arg-type]
                base = bootstrap(trees, baseline_grid(cfg.n_p), reps=run.reps, mode=run.mode)  # type: ignore[arg-type]
                configs.append(Config(s.label, repair, base))
                progs = [p for t in trees for p in t.programs]
                pairs = [q for p in progs for q in p.pairs]
                best = max(
                    ((pt, interpolate_baseline(base, pt.tokens)) for pt in repair),
                    key=lambda x: -1 if x[1] is None or x[1] == 0 else x[0].pass_rate / x[1],
                    default=None,
                )
                verdict = "n/a"
                if best is not None and best[1] is not None and best[1] > 0:
                    pt, b = best[0], float(best[1])
                    verdict = (
                        f"{pt.pass_rate:.1%} vs {b:.1%} at {pt.tokens:.0f} tokens "
                        f"(n_p={pt.n_p}, n_fr={pt.n_fr}): {'repair wins' if pt.pass_rate > b else 'resampling wins'}"
                    )
                summary.append(
                    [
                        s.label,
                        f"{sum(p.passed for p in progs)}/{len(progs)}",
                        f"{sum(q.passed for q in pairs)}/{len(pairs)}",
                        verdict,
                    ]
                )
        finally:
            sandbox.close()
            for m in loaded.values():
                m.close()
    for line in errors:
        console.print(f"[red]failed, left out of pass@t:[/] {line}", soft_wrap=True)
    table = Table(title=f"self-repair on {run.tasks} ({len(tasks)} tasks)", title_justify="left")
    for col in ("configuration", "programs passing", "repairs passing", "best self-repair vs baseline"):
        table.add_column(col)
    for row in summary:
        table.add_row(*row)
    console.print(table)
    title = f"mendlab — self-repair on {run.tasks}, run {run_id} (sandbox: {sandbox.isolation.level})"
    if errors:
        title += f"; {len(errors)} tree(s) failed and are left out"
    written = write_repair_report(configs, summary, run.out, title)
    if errors:
        for path in written:
            console.print(f"wrote {path}")
        raise IncompleteRun(
            f"run {run_id!r}: {len(errors)} tree(s) failed and are left out of pass@t (the report says so); "
            "rerun with --retry-errors to grow them again"
        )
    return written
