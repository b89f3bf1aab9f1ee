"""`mendlab judge …`: an LLM judges two models' answers, or checks calendar turns beside the rule grader.

Registered on the main app by `mendlab.cli` (`app.add_typer`). Like every command, a user's mistake ends
in one line naming the file, line and field, exit code 2; a run with failed samples exits 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mendlab.errors import MendlabError
from mendlab.models import SamplingParams
from mendlab.output import Recorder, stdout_console

judge_app = typer.Typer(
    no_args_is_help=True,
    help="LLM judges: two models' answers compared in both orders; a judge's agreement with the rule grader.",
)

JudgeOpt = Annotated[
    str, typer.Option("--judge", "-j", help="The judging model (any model; a vLLM endpoint in practice).")
]
MaxTokensOpt = Annotated[int, typer.Option(help="Tokens per judgment (the judge explains, then gives its verdict).")]
RunOpt = Annotated[str | None, typer.Option("--run", help="The judge run's id (default: derived from its settings).")]
NewRunOpt = Annotated[
    bool, typer.Option("--new-run", help="If --run was made with other settings, start a new run beside it.")
]
RetryOpt = Annotated[bool, typer.Option("--retry-errors", help="Play again only the samples stored as failed.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print summary.json on stdout; the rest on stderr.")]


def _root(ctx: typer.Context) -> Any:
    return ctx.find_root().obj  # mendlab.cli.Settings: config and db


@judge_app.command("compare")
def compare(
    ctx: typer.Context,
    judge: JudgeOpt,
    pairs: Annotated[
        Path | None,
        typer.Argument(
            help='JSONL: {"messages": [...] or "prompt": "...", "answer_a", "answer_b", "model_a", "model_b"}.'
        ),
    ] = None,
    mode: Annotated[
        str, typer.Option(help="ab: MT-Bench's [[A]]/[[B]]/[[C]]; score: StarChat's 1–8 per answer.")
    ] = "ab",
    prompts: Annotated[
        Path | None, typer.Option(help='JSONL of {"messages": [...]} or {"prompt": "..."}: -m A -m B answer them.')
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="The two models compared (a, then b).")
    ] = None,
    from_run: Annotated[
        list[str] | None,
        typer.Option(help="Stored run(s) whose answers to the same prompts are compared: one, or a's then b's."),
    ] = None,
    max_tokens: MaxTokensOpt = 512,
    answer_temperature: Annotated[float, typer.Option(help="--prompts: the answering models' temperature.")] = 0.7,
    answer_max_tokens: Annotated[int, typer.Option(help="--prompts: tokens per answer.")] = 256,
    seed: Annotated[int, typer.Option(help="--prompts: the answers' seed.")] = 0,
    run_id: RunOpt = None,
    new_run: NewRunOpt = False,
    retry_errors: RetryOpt = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("report-judge"),
    as_json: JsonOpt = False,
) -> None:
    """Judge two models' answers to the same prompts, in both orders: win rate, ties, position bias."""
    from mendlab.judge.runner import CompareConfig, run_compare

    try:
        answer_params = SamplingParams(temperature=answer_temperature, max_tokens=answer_max_tokens, seed=seed)
    except ValueError as exc:
        raise MendlabError(f"bad sampling option: {exc}") from None
    cfg = CompareConfig(
        judge=judge,
        mode=mode,  # type: ignore[arg-type]  # checked by the config
        max_tokens=max_tokens,
        pairs_file=pairs,
        prompts_file=prompts,
        from_runs=tuple(from_run or ()),
        models=tuple(model or ()),
        answer_params=answer_params,
    )
    settings = _root(ctx)
    shown = Recorder() if as_json else stdout_console()
    summary = run_compare(
        settings.db, settings.config, cfg, run_id=run_id, new_run=new_run, retry_errors=retry_errors,
        out_dir=out, console=shown,
    )  # fmt: skip
    if isinstance(shown, Recorder):
        Recorder.unsent.remove(shown)
        from mendlab.output import emit_json

        emit_json(summary)


@judge_app.command("agreement")
def agreement(
    ctx: typer.Context,
    judge: JudgeOpt,
    from_run: Annotated[str | None, typer.Option(help="The calendar run (default: the latest).")] = None,
    experiments: Annotated[
        str, typer.Option(help="Whose turns: reliability, dialog, replay, false_feedback, joined by commas.")
    ] = "reliability,dialog,replay",
    limit: Annotated[
        int, typer.Option(help="Turns graded (half right, half wrong where the run has them); 0: all.")
    ] = 200,
    seed: Annotated[int, typer.Option(help="Which turns are drawn.")] = 0,
    pairs: Annotated[
        bool, typer.Option("--pairs", help="Also judge right vs wrong answers to the same history, pairwise.")
    ] = False,
    max_tokens: MaxTokensOpt = 512,
    run_id: RunOpt = None,
    new_run: NewRunOpt = False,
    retry_errors: RetryOpt = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("report-judge-agreement"),
    as_json: JsonOpt = False,
) -> None:
    """How far to trust the judge: its verdicts on calendar turns beside the rule grader's (agreement, kappa)."""
    from mendlab.judge.runner import AgreementConfig, run_agreement

    if limit < 0:
        raise MendlabError("--limit must be 0 (all) or more")
    cfg = AgreementConfig(
        judge=judge,
        from_run=from_run,
        experiments=tuple(p.strip().replace("-", "_") for p in experiments.split(",") if p.strip()),
        limit=limit or None,
        seed=seed,
        max_tokens=max_tokens,
        pairs=pairs,
    )
    settings = _root(ctx)
    if not Path(settings.db).is_file():
        raise MendlabError(f"{settings.db}: no results store here (run `mendlab run` first, or pass --db)")
    shown = Recorder() if as_json else stdout_console()
    summary = run_agreement(
        settings.db, settings.config, cfg, run_id=run_id, new_run=new_run, retry_errors=retry_errors,
        out_dir=out, console=shown,
    )  # fmt: skip
    if isinstance(shown, Recorder):
        Recorder.unsent.remove(shown)
        from mendlab.output import emit_json

        emit_json(summary)
