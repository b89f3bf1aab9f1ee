"""`mendlab mistakes …`: the iGSM lab (Physics of Language Models 2.2) from the command line.

Bad input ends in one line naming the file, line and field (a MendlabError, printed by `mendlab.cli.main`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mendlab.errors import InputError, MendlabError
from mendlab.output import stdout_console
from mendlab.progress import progress_bar

mistakes_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Learning from mistakes: iGSM problems, step-by-step grading, GPTs trained from scratch.",
)
_err = Console(stderr=True)
_out = stdout_console()


def _write_lines(out: Path | None, rows: Iterator[dict[str, Any]]) -> int:
    """JSON lines to `out` (or stdout); the count written."""
    n = 0
    fh: TextIO
    if out is None:
        fh = sys.stdout
    else:
        try:
            fh = out.open("w", encoding="utf-8")
        except OSError as exc:
            raise MendlabError(f"{out}: cannot write: {exc.strerror or exc}") from None
    try:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    finally:
        if out is not None:
            fh.close()
    return n


@mistakes_app.command()
def generate(
    n: Annotated[int, typer.Option("--n", help="Problems to write.")] = 100,
    op: Annotated[int | None, typer.Option("--op", help="Operations in each solution, exactly.")] = None,
    op_min: Annotated[int, typer.Option(help="Without --op: the fewest operations (drawn uniformly).")] = 1,
    op_max: Annotated[int, typer.Option(help="Without --op: the most operations.")] = 15,
    max_instance: Annotated[int, typer.Option(help="Most instance parameters stated in a problem.")] = 20,
    order: Annotated[str, typer.Option(help="pq (problem first), qp or random.")] = "random",
    split: Annotated[str, typer.Option(help="train, test (structurally unseen, ~1/23) or any.")] = "any",
    seed: Annotated[int, typer.Option(help="Seed of the set: same seed, same problems.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="JSONL file (default: stdout).")] = None,
) -> None:
    """Write iGSM problems, one JSON object a line: id, problem, question, solution, answer, op, order, split."""
    from mendlab.mistakes.igsm import GenConfig, problems

    if n < 0:
        raise MendlabError("--n must be at least 0")
    if seed < 0:
        raise MendlabError("--seed must be at least 0")
    if split not in ("train", "test", "any"):
        raise MendlabError(f"--split must be train, test or any, not {split!r}")
    try:
        cfg = GenConfig(
            op_min=op if op is not None else op_min,
            op_max=op if op is not None else op_max,
            max_instance=max_instance,
            order=order,
        )
    except ValueError as exc:
        raise MendlabError(f"bad option: {exc}") from None
    start = time.perf_counter()
    try:
        made = problems(cfg, split, n, seed)
    except RuntimeError as exc:  # no problem of that op fits in max_instance stated parameters
        raise MendlabError(str(exc)) from None
    took = time.perf_counter() - start
    rows = (
        {"id": p.id, "problem": p.problem, "question": p.question, "solution": p.solution, "answer": p.answer,
         "op": p.op, "order": p.order, "split": p.split}
        for p in made
    )  # fmt: skip
    count = _write_lines(out, rows)
    rate = f" ({count / took:.0f} problems/s)" if took > 0 and count else ""
    _err.print(f"wrote {count} problems to {out or 'stdout'}{rate}", highlight=False)


def _field(where: str, row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None:
        raise InputError(f"{where}: missing field {name!r}")
    if not isinstance(value, str):
        raise InputError(f"{where}: field {name!r} must be a string")
    return value


@mistakes_app.command()
def check(
    file: Annotated[Path, typer.Argument(help="JSONL with `id` and `solution` per line (generate's output works).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="JSONL verdicts (default: stdout).")] = None,
) -> None:
    """Grade solutions step by step: one line per object with id, correct and, when wrong, the first wrong step."""
    from mendlab.jsonl import read_objects
    from mendlab.mistakes.checker import check as grade
    from mendlab.mistakes.igsm import problem_from_id

    verdicts: list[dict[str, Any]] = []
    for where, row in read_objects(file, "solutions file"):
        pid = _field(where, row, "id")
        solution = _field(where, row, "solution")
        try:
            p = problem_from_id(pid)
        except (ValueError, RuntimeError) as exc:
            raise InputError(f"{where}: field 'id': {exc}") from None
        for name in ("problem", "question"):
            carried = row.get(name)
            if carried is not None and carried != getattr(p, name):
                raise InputError(f"{where}: field {name!r} is not the {name} of id {pid!r}")
        v = grade(p, solution)
        line: dict[str, Any] = {"id": pid, "correct": v.correct}
        if not v.correct:
            line.update(first_wrong=v.first_wrong, kind=v.kind, step=v.step)
        line["answer"] = v.answer
        verdicts.append(line)
    _write_lines(out, iter(verdicts))
    right = sum(1 for v in verdicts if v["correct"])
    share = f" ({100 * right / len(verdicts):.1f}%)" if verdicts else ""
    _err.print(f"{right} of {len(verdicts)} solutions correct{share}", highlight=False)


# -- the lab: train, grade, run a preset, report (the lead's part) --------------------------------------

PresetArg = Annotated[str, typer.Argument(help="Preset: cpu (2 cores, ~40 min), gpu (a CUDA GPU), tiny (seconds).")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Run folder (default: runs/mistakes-PRESET).")]
SeedsOpt = Annotated[str | None, typer.Option("--seeds", help="Training seeds, e.g. 0,1 (default: the preset's).")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:1… (default: the preset's).")]


def _run(preset: str, out: Path | None, seeds: str | None, device: str | None) -> Any:
    from dataclasses import replace

    from mendlab.mistakes.experiment import PRESETS, Run

    if preset not in PRESETS:
        raise MendlabError(f"unknown preset {preset!r} (one of: {', '.join(PRESETS)})")
    p = PRESETS[preset]
    if seeds is not None:
        try:
            p = replace(p, seeds=tuple(int(s) for s in seeds.split(",") if s.strip()))
        except ValueError:
            raise MendlabError(f"--seeds: {seeds!r} is not a comma-separated list of integers") from None
        if not p.seeds:
            raise MendlabError("--seeds: give at least one seed")
    if device is not None:
        import torch

        try:
            torch.device(device)
        except RuntimeError:
            raise MendlabError(f"--device: {device!r} is not a torch device (cpu, cuda, cuda:1…)") from None
        p = replace(p, train=replace(p.train, device=device, bf16=device.startswith("cuda")))
    if p.train.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise MendlabError(f"preset {p.name!r} runs on {p.train.device}; torch sees no CUDA GPU: pass --device cpu")
    return Run(p, out or Path("runs") / f"mistakes-{preset}", log=lambda s: _err.print(escape(s)))


def _work(run: Any, steps: list[tuple[str, Any]], report: bool = True) -> tuple[list[Path], dict[str, Any]]:
    """The steps, then the report, with the run folder held: another process's report must not be
    written over this one's half-way. Returns the files written and the summary they were written
    from (the table printed is the one in the folder, not a second reading after the lock is gone)."""
    from mendlab.mistakes.report import write_report

    with run.exclusive():
        with progress_bar(_err) as bar:
            task = bar.add_task("iGSM lab", total=len(steps))
            for name, work in steps:
                bar.update(task, description=name)
                work()
                bar.advance(task)
        if not report:
            return [], {}
        written: list[Path] = write_report(run)
        summary: dict[str, Any] = json.loads((run.out / "summary.json").read_text(encoding="utf-8"))
        return written, summary


def _print_table(summary: dict[str, Any]) -> None:
    from mendlab.mistakes.report import _diff, _from_json, _pct, _tokens, gate_sentence

    table = Table(title=f"iGSM · preset {summary['preset']} · OOD op {summary['out_of_distribution_ops']}")
    cols = ("method", "tokens", "in distribution", "out of distribution", "n", "error-free, same problems",
            "Δ OOD (paired)", "[BACK]/problem", "paper (OOD)")  # fmt: skip
    for col in cols:
        table.add_column(col, no_wrap=col == "method")
    for row in summary["methods"]:
        backs = "n/a" if row["backs_per_problem"] is None else f"{row['backs_per_problem']:.2f}"
        table.add_row(
            escape(row["method"]),
            _tokens(row["train_tokens"]),
            _pct(_from_json(row["in_distribution"])),
            _pct(_from_json(row["out_of_distribution"])),
            str(row["out_of_distribution"]["n"]),
            _pct(_from_json(row["baseline_same_ood"])),
            _diff(row["diff_ood"]),
            backs,
            escape(row["paper_ood"]),
        )
    _out.print(table)
    _out.print(escape(gate_sentence(summary).replace("**", "")), highlight=False)


@mistakes_app.command("run")
def run_preset(preset: PresetArg = "cpu", out: OutOpt = None, seeds: SeedsOpt = None, device: DeviceOpt = None) -> None:
    """The paper's table end to end: pretrain, decode, probe, fine-tune, grade, report. Resumes."""
    run = _run(preset, out, seeds, device)
    written, summary = _work(run, list(run.steps()))
    _print_table(summary)
    _err.print(f"wrote {', '.join(str(p) for p in written)}")


@mistakes_app.command("train")
def train_one(
    preset: PresetArg = "cpu",
    retry: Annotated[float, typer.Option(help="Retry rate p (0: error-free data).")] = 0.0,
    kind: Annotated[str, typer.Option(help="Wrong steps: strong, weak or miss.")] = "strong",
    masked: Annotated[bool, typer.Option("--masked", help="Leave the wrong steps out of the loss.")] = False,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    out: OutOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Pretrain one model of a preset (the run folder keeps it for `run` and `eval`). Resumes."""
    from mendlab.mistakes.corpus import DataSpec

    if kind not in ("strong", "weak", "miss"):
        raise MendlabError(f"--kind: {kind!r} is not one of strong, weak, miss")
    if not 0 <= retry < 1:
        raise MendlabError(f"--retry: {retry} is not in [0, 1)")
    if retry == 0 and (masked or kind != "strong"):
        raise MendlabError("--kind and --masked describe retry steps: give --retry above 0 with them")
    from mendlab.mistakes.experiment import PRESETS

    spec = DataSpec(retry, kind, masked)
    rows = PRESETS[preset].pretraining() if preset in PRESETS else [spec]
    if spec not in rows:  # before the run folder is made: a refused row leaves nothing behind
        listed = "; ".join(r.label for r in rows)
        raise MendlabError(f"{spec.label} is not a row of preset {preset!r} (its rows: {listed})")
    run = _run(preset, out, str(seed), device)
    _work(run, [(f"pretraining {spec.label}", lambda: run.pretrained(spec, seed))], report=False)


@mistakes_app.command("eval")
def eval_one(
    preset: PresetArg = "cpu",
    method: Annotated[str, typer.Option(help="A row of the table (see `mendlab mistakes run`); default: all.")] = "",
    out: OutOpt = None,
    seeds: SeedsOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Grade one method (training what it needs) and rebuild the report from what is complete."""
    from mendlab.mistakes.experiment import methods

    run = _run(preset, out, seeds, device)
    rows = [m for m in methods(run.preset) if not method or m.name == method]
    if not rows:
        raise MendlabError(f"--method: {method!r} is not one of: {'; '.join(m.name for m in methods(run.preset))}")
    steps = [(f"{m.name} · seed {s}", lambda m=m, s=s: run.graded(m, s)) for s in run.preset.seeds for m in rows]
    _print_table(_work(run, steps)[1])
