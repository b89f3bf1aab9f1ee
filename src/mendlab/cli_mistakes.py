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

from mendlab.errors import InputError, MendlabError

mistakes_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Learning from mistakes: iGSM problems, step-by-step grading, GPTs trained from scratch.",
)
_err = Console(stderr=True)


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
