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
    chat_format: Annotated[
        str, typer.Option(help="model (its own template) or starchat (the four StarChat tokens added), as train sft.")
    ] = "model",
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
    tokenizer = load_tokenizer_for(ctx, model, chat_template, chat_format)
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


def load_tokenizer_for(
    ctx: typer.Context, model: str, chat_template: Path | None = None, chat_format: str = "model"
) -> Any:
    from mendlab.training.sft import CHAT_FORMATS, training_tokenizer

    if chat_format not in CHAT_FORMATS:
        raise MendlabError(f"--chat-format {chat_format!r} is not one of: {', '.join(CHAT_FORMATS)}")
    if chat_format == "starchat" and chat_template is not None:
        raise MendlabError("--chat-template and --chat-format starchat: the recipe brings its own template")
    with err.status(f"loading the tokenizer of {model}…"):
        return training_tokenizer(model, _root(ctx).config, chat_format, chat_template)


@train_app.command("sft")
def sft(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help='Training conversations: JSONL, one {"messages": [...]} per line.')],
    model: Annotated[str, typer.Option("--model", "-m", help="Model to start from: a name, or a GGUF / HF folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (run it again to resume).")],
    name: Annotated[
        str | None, typer.Option(help="Name to register the tuned model under in mendlab.toml (default: MODEL-sft).")
    ] = None,
    lora: Annotated[bool, typer.Option("--lora/--full", help="LoRA (merged when saved), or all weights.")] = True,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 16,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha (the update is scaled by alpha/r).")] = 32,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = 0.05,
    target_modules: Annotated[
        str, typer.Option(help="LoRA targets: all-linear, or module names, comma-separated (q_proj,v_proj).")
    ] = "all-linear",
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate (default 2e-4 with LoRA, 2e-5 full).")] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the data.")] = 3.0,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps, instead of --epochs.")] = None,
    batch_size: Annotated[int, typer.Option(help="Conversations per device and step.")] = 4,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    max_length: Annotated[int, typer.Option(help="Longest conversation, in tokens.")] = 1024,
    drop_long: Annotated[
        bool, typer.Option("--drop-long", help="Leave out longer conversations instead of stopping.")
    ] = False,
    scheduler: Annotated[str, typer.Option(help="cosine, linear, constant, constant_with_warmup.")] = "cosine",
    warmup_steps: Annotated[int, typer.Option(help="Learning-rate warmup steps.")] = 0,
    weight_decay: float = 0.0,
    max_grad_norm: Annotated[float, typer.Option(help="Gradient clipping norm.")] = 1.0,
    seed: int = 0,
    save_steps: Annotated[int, typer.Option(help="A checkpoint every N steps.")] = 50,
    save_total_limit: Annotated[int, typer.Option(help="Checkpoints kept.")] = 2,
    chat_format: Annotated[
        str, typer.Option(help="model: its own template; starchat: <|system|> <|user|> <|assistant|> <|end|> added.")
    ] = "model",
    train_embeddings: Annotated[
        str,
        typer.Option(
            help="StarChat with LoRA: embeddings and head trained whole (all), or only the new tokens' rows (new)."
        ),
    ] = "all",
    chat_template: Annotated[
        Path | None, typer.Option(help="A Jinja chat template, for a base model trained in its own format.")
    ] = None,
    precision: Annotated[str, typer.Option(help="auto (bf16 on a GPU, fp32 on the CPU), fp32, bf16, fp16.")] = "auto",
    gradient_checkpointing: Annotated[
        bool, typer.Option("--gradient-checkpointing", help="Less memory, a third more compute.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start again in an --out trained with another config.")
    ] = False,
    register: Annotated[bool, typer.Option("--register/--no-register", help="Declare it in mendlab.toml.")] = True,
    gguf: Annotated[
        str | None, typer.Option("--gguf", help="Also write it as GGUF (q8_0, f16, f32), registered as NAME-gguf.")
    ] = None,
) -> None:
    """Fine-tune on dialogues (TRL SFTTrainer): loss on the assistant turns only, as `train labels` shows."""
    from mendlab.training.sft import SFTOptions, train_sft

    opts = SFTOptions(
        model=model,
        data=data,
        out=out,
        name=name,
        lora=lora,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=tuple(t.strip() for t in target_modules.split(",") if t.strip()),
        learning_rate=lr,
        epochs=epochs,
        max_steps=max_steps,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=max_length,
        drop_long=drop_long,
        scheduler=scheduler,
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        seed=seed,
        save_steps=save_steps,
        save_total_limit=save_total_limit,
        chat_format=chat_format,  # type: ignore[arg-type]  # checked by the options
        train_embeddings=train_embeddings,  # type: ignore[arg-type]  # checked by the options
        chat_template=chat_template,
        precision=precision,  # type: ignore[arg-type]  # checked by the options
        gradient_checkpointing=gradient_checkpointing,
        overwrite=overwrite,
        register=register,
        gguf=gguf,
        config=_root(ctx).config,
    )
    result = train_sft(opts, err)
    s = result.summary
    if not result.already_done:
        err.print(
            f"{s['steps']} steps, loss {s['first_loss']:.4f} → {s['final_loss']:.4f}, "
            f"{s['this_run']['tokens_per_s']} tokens/s; model: {result.model_dir}",
            highlight=False,
            soft_wrap=True,
        )
    if result.name and result.config_file:
        err.print(
            f"registered as {result.name} in {result.config_file}: e.g. mendlab chat {result.name}",
            highlight=False,
            soft_wrap=True,
        )


@train_app.command("loop")
def loop(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="The model to measure, tune and measure again.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The loop's folder (run it again to resume).")],
    scenarios: Annotated[int, typer.Option("--scenarios", help="Generated training scenarios it plays.")] = 20,
    harvest_reps: Annotated[int, typer.Option(help="Dialogs per training scenario and rung.")] = 1,
    eval_scenario: Annotated[
        list[str] | None, typer.Option("--eval-scenario", help="Held-out scenario(s) to measure on (default calendar).")
    ] = None,
    reps: Annotated[int, typer.Option(help="Evaluation dialogs per model and rung.")] = 3,
    rung: Annotated[str, typer.Option(help="Evaluation rung(s): vague, pointed, explicit, all.")] = "all",
    epochs: Annotated[float, typer.Option(help="Passes over the training dialogues.")] = 2.0,
    max_steps: Annotated[int | None, typer.Option(help="Optimizer steps, instead of --epochs.")] = None,
    lora: Annotated[bool, typer.Option("--lora/--full", help="LoRA (merged), or all weights.")] = True,
    humaneval: Annotated[int, typer.Option(help="HumanEval tasks (greedy pass@1) before and after; 0: none.")] = 20,
    gguf_type: Annotated[str, typer.Option(help="Both models' GGUF: q8_0, f16 or f32.")] = "q8_0",
    seed: Annotated[int, typer.Option(help="Seed of the scenarios, the dialogs and the training.")] = 0,
    quick: Annotated[bool, typer.Option("--quick", help="Every stage in minutes, at toy size (a first look).")] = False,
) -> None:
    """Closing the loop: measure, build data from the model's own mistakes, tune, measure again."""
    from dataclasses import replace

    from mendlab.dialogs.runner import parse_rungs
    from mendlab.training.loop import LoopConfig, TrainPart, run_loop

    if quick:
        given = {
            "--scenarios": scenarios != 20, "--harvest-reps": harvest_reps != 1,
            "--eval-scenario": bool(eval_scenario), "--reps": reps != 3, "--rung": rung != "all",
            "--epochs": epochs != 2.0, "--max-steps": max_steps is not None, "--full": not lora,
            "--humaneval": humaneval != 20, "--gguf-type": gguf_type != "q8_0",
        }  # fmt: skip
        if any(given.values()):
            raise MendlabError(f"--quick sets every option itself: drop {', '.join(k for k, v in given.items() if v)}")
        cfg = replace(LoopConfig.quick(model), seed=seed)
    else:
        base = LoopConfig(model=model)
        cfg = LoopConfig(
            model=model,
            train_scenarios=scenarios,
            seed=seed,
            eval_scenarios=tuple(eval_scenario or ("calendar",)),
            harvest=replace(base.harvest, reps=harvest_reps),
            train=TrainPart(lora=lora, epochs=epochs, max_steps=max_steps),
            evaluate=replace(base.evaluate, reps=reps, rungs=parse_rungs(rung)),
            humaneval=humaneval,
            gguf_type=gguf_type,
        )
    result = run_loop(cfg, out, _root(ctx).config, err)
    err.print(f"the before/after table: {result.out / 'report.md'}", highlight=False, soft_wrap=True)


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
