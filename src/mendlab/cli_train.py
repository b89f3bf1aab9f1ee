"""`mendlab train …` and `mendlab data …`: what a fine-tuning run is trained on, and the data itself.

Registered on the main app by `mendlab.cli` (`app.add_typer`). Like every command, a user's mistake
ends in one line naming the file and line, exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mendlab.errors import InputError, MendlabError

train_app = typer.Typer(no_args_is_help=True, help="Fine-tuning: see exactly which tokens a model is trained on.")
data_app = typer.Typer(
    no_args_is_help=True, help="Training data: dialogues from the store and your chats, generated training scenarios."
)
err = Console(stderr=True)

OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output JSONL (default: stdout).")]
EvalOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--eval", help="Held-out scenario (name, file or folder) never to train on, besides the built-in ones."
    ),
]


def json_line(obj: Any) -> str:
    """One JSON line, UTF-8 as it is where it can be: a lone surrogate (JSON can spell one) escaped."""
    line = json.dumps(obj, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(obj)
    return line


def _root(ctx: typer.Context) -> Any:
    return ctx.find_root().obj  # mendlab.cli.Settings: config and db


def _write(out: Path | None, lines: list[str]) -> None:
    """To stdout, or to `out` whole: a temp file beside it renamed once complete."""
    text = "".join(line + "\n" for line in lines)
    if out is None:
        sys.stdout.write(text)
        return
    if not out.parent.is_dir():
        raise MendlabError(f"{out}: no folder {out.parent}")
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@train_app.command("labels")
def labels(
    ctx: typer.Context,
    conversations: Annotated[Path, typer.Argument(help='JSONL, one {"messages": [...]} per line.')],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name, or a GGUF file / HF folder.")],
    out: OutOpt = None,
    chat_template: Annotated[
        Path | None, typer.Option(help="A Jinja chat template, for a model without one (a base model).")
    ] = None,
) -> None:
    """Per conversation, the text the loss is computed on: assistant turns and their end-of-turn token."""
    from mendlab.jsonl import read_objects
    from mendlab.training.labels import label_conversation, parse_messages, trained_pieces

    rows = [
        (where, row, parse_messages(row, where)) for where, row in read_objects(conversations, "conversations file")
    ]
    if not rows:
        raise InputError(f"{conversations}: no conversations in file")
    if chat_template is not None and not chat_template.is_file():
        raise MendlabError(f"{chat_template}: no such chat template file")
    tokenizer = load_tokenizer_for(ctx, model, chat_template)
    lines = []
    trained = total = 0
    for where, row, messages in rows:
        try:
            labeled = label_conversation(tokenizer, messages)
        except MendlabError as exc:
            raise InputError(f"{where}: {exc}") from None
        pieces = trained_pieces(tokenizer, labeled)
        doc: dict[str, Any] = {
            "trained_text": "".join(pieces),
            "turns": pieces,
            "tokens": len(labeled.input_ids),
            "trained_tokens": labeled.trained_tokens,
        }
        if "source" in row:
            doc["source"] = row["source"]
        lines.append(json_line(doc))
        trained += labeled.trained_tokens
        total += len(labeled.input_ids)
    _write(out, lines)
    err.print(f"{len(rows)} conversations: {trained} of {total} tokens trained", highlight=False)


def load_tokenizer_for(ctx: typer.Context, model: str, chat_template: Path | None = None) -> Any:
    from mendlab.training.labels import load_chat_tokenizer

    with err.status(f"loading the tokenizer of {model}…"):
        return load_chat_tokenizer(model, _root(ctx).config, str(chat_template) if chat_template else None)


@data_app.command("build")
def build(
    ctx: typer.Context,
    out: OutOpt = None,
    run: Annotated[
        list[str] | None, typer.Option("--run", help="Run(s) to harvest (default: every one not on an eval scenario).")
    ] = None,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Only these models' answers.")] = None,
    experiment: Annotated[str, typer.Option(help="dialog, replay, reliability, comma-separated.")] = "dialog",
    kinds: Annotated[str, typer.Option(help="fix, expected, clean, comma-separated.")] = "fix,expected,clean",
    clean_ratio: Annotated[float, typer.Option(help="Clean dialogues per mistake dialogue, at most.")] = 1.0,
    all_clean: Annotated[bool, typer.Option("--all-clean", help="Every clean dialogue, whatever the ratio.")] = False,
    rung: Annotated[str, typer.Option(help="Rung of the feedback written where none was stored.")] = "pointed",
    seed: Annotated[int, typer.Option(help="Seed of the draw of clean dialogues.")] = 0,
    chat: Annotated[
        list[Path] | None, typer.Option("--chat", help="Your chats: OpenAI messages or OpenAssistant trees, JSONL.")
    ] = None,
    eval_refs: EvalOpt = None,
    drop_overlap: Annotated[
        bool, typer.Option("--drop-overlap", help="Leave out dialogues that overlap the eval set instead of stopping.")
    ] = False,
) -> None:
    """(mistake, feedback, fix) dialogues and clean ones from the store, as OpenAI messages JSONL."""
    from mendlab.store import ResultsStore
    from mendlab.training.data import EXPERIMENTS, KINDS, BuildConfig, parse_list
    from mendlab.training.data import build as build_data
    from mendlab.training.overlap import build_eval_set

    cfg = BuildConfig(
        runs=tuple(run or ()),
        models=tuple(model or ()),
        experiments=parse_list(experiment, EXPERIMENTS, "experiment"),
        kinds=parse_list(kinds, KINDS, "kinds"),
        clean_ratio=None if all_clean else clean_ratio,
        rung=rung,  # type: ignore[arg-type]  # checked by the config
        seed=seed,
        drop_overlap=drop_overlap,
    )
    db: Path = _root(ctx).db
    ev = build_eval_set(eval_refs or ())
    if db.is_file():
        with ResultsStore(db) as store:
            built = build_data(store, cfg, ev, chat or ())
    elif chat and not run:
        built = build_data(None, cfg, ev, chat)
    else:
        raise MendlabError(f"{db}: no results store here (run something first, or pass --db)")
    for note in built.notes:
        err.print(note, highlight=False, soft_wrap=True)
    if not built.dialogues:
        raise MendlabError("no training dialogues in the chosen runs (see `mendlab runs`; --experiment, --kinds)")
    _write(out, [json_line(d.to_json()) for d in built.dialogues])
    shown = ", ".join(f"{n} {k}" for k, n in sorted(built.counts.items()))
    err.print(f"{len(built.dialogues)} dialogues: {shown}" + (f" → {out}" if out else ""), highlight=False)


@data_app.command("scenarios")
def scenarios(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the scenario files to.")],
    n: Annotated[int, typer.Option("--n", "-n", help="How many scenarios.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed: the same seed writes the same files.")] = 0,
    prefix: Annotated[str, typer.Option(help="Names are PREFIX-sSEED-0001….")] = "train",
    eval_refs: EvalOpt = None,
) -> None:
    """Calendar-like training scenarios (other names, dates, durations, events, orders), disjoint from the eval set."""
    from mendlab.training.overlap import build_eval_set
    from mendlab.training.scenarios import generate, write_scenarios

    if not prefix or not all(c.isalnum() or c in "-_" for c in prefix):
        raise MendlabError(f"--prefix {prefix!r}: letters, digits, - and _ only")
    if out.exists() and not out.is_dir():
        raise MendlabError(f"{out}: not a folder")
    ev = build_eval_set(eval_refs or ())
    paths = write_scenarios(generate(n, seed, ev, prefix), out)
    err.print(
        f"wrote {len(paths)} scenarios to {out} (disjoint from {', '.join(ev.names)}); play them with "
        f"mendlab run dialog --scenario {paths[0]} …",
        highlight=False,
        soft_wrap=True,
    )
