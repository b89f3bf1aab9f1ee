"""`mendlab train sft`: supervised fine-tuning on dialogues, with TRL's `SFTTrainer`.

What is trained is exactly what `mendlab train labels` shows: the conversations are tokenized here,
with `labels.py` (assistant turns and their end-of-turn token, from the model's own template), and
handed to TRL as `input_ids` + `labels` with its dataset preparation skipped; TRL's collator pads
`labels` with -100 by position and never rebuilds them. TRL's own `assistant_only_loss` is not used:
it needs `{% generation %}` markers the bundled templates lack.

The loss is the model's own cross-entropy (the `Trainer`'s `compute_loss`), not TRL's fused head
with its entropy and accuracy metrics: on 2 CPU cores those metrics cost a fifth of each step, and
the benchmark (bench/bench_train_sft.py) holds the trainer to 0.9 of a bare torch loop.

A GGUF model (the bundled ones) is dequantized once into an HF folder in the cache, so every run,
every rank of a multi-GPU launch, and ZeRO-3's sharded loading read a plain `from_pretrained` folder.

The output folder holds run.json (the config, checked on resume), checkpoints/, model/ (an HF folder:
LoRA merged in, so it loads as a plain model), adapter/ (LoRA only), loss.png and summary.json.
A run killed at any point (kill -9 included) resumes from its last complete checkpoint when the same
command is run again; a checkpoint of another config is refused rather than continued.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from mendlab.errors import InputError, MendlabError, ModelUnavailable
from mendlab.training.labels import IGNORE, Labeled, TrainMessage, label_conversation, parse_messages

ChatFormat = Literal["model", "starchat"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
CHAT_FORMATS: tuple[ChatFormat, ...] = ("model", "starchat")
PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "bf16", "fp16")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
LORA_LR, FULL_LR = 2e-4, 2e-5  # StarChat's full fine-tuning used 2e-5; LoRA needs about ten times more


@dataclass(frozen=True)
class SFTOptions:
    model: str
    data: Path
    out: Path
    name: str | None = None  # registered as; default: MODEL-sft
    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("all-linear",)
    learning_rate: float | None = None  # None: LORA_LR or FULL_LR
    epochs: float = 3.0
    max_steps: int | None = None  # overrides epochs
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 1024
    drop_long: bool = False
    scheduler: str = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    save_steps: int = 50
    save_total_limit: int = 2
    chat_format: ChatFormat = "model"
    train_embeddings: Literal["new", "all"] = "all"  # StarChat under LoRA: all rows (whole matrices), or the new ones
    chat_template: Path | None = None  # for a base model trained in its own format
    precision: Precision = "auto"
    gradient_checkpointing: bool = False
    overwrite: bool = False
    register: bool = True
    gguf: str | None = None  # also write the tuned model as GGUF of this type (q8_0, f16, f32), for llama.cpp
    config: Path | None = None  # mendlab.toml to read models from and register in

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return LORA_LR if self.lora else FULL_LR

    def check(self) -> None:
        """Values typer cannot bound; each a one-line error."""
        positive: dict[str, float] = {
            "--lora-r": self.lora_r,
            "--lora-alpha": self.lora_alpha,
            "--epochs": self.epochs,
            "--batch-size": self.batch_size,
            "--grad-accum": self.grad_accum,
            "--max-length": self.max_length,
            "--save-steps": self.save_steps,
            "--save-total-limit": self.save_total_limit,
            "--lr": self.lr,
        }
        if self.max_steps is not None:
            positive["--max-steps"] = self.max_steps
        for flag, value in positive.items():
            if not value > 0 or math.isinf(value):
                raise MendlabError(f"{flag} must be a positive number, got {value}")
        if not 0 <= self.lora_dropout < 1:
            raise MendlabError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        for flag, value in (("--warmup-steps", self.warmup_steps), ("--weight-decay", self.weight_decay)):
            if value < 0 or math.isnan(value):
                raise MendlabError(f"{flag} must be 0 or more, got {value}")
        if self.max_grad_norm <= 0 or math.isnan(self.max_grad_norm):
            raise MendlabError(f"--max-grad-norm must be positive, got {self.max_grad_norm}")
        if self.scheduler not in SCHEDULERS:
            raise MendlabError(f"--scheduler {self.scheduler!r} is not one of: {', '.join(SCHEDULERS)}")
        if self.chat_format not in CHAT_FORMATS:
            raise MendlabError(f"--chat-format {self.chat_format!r} is not one of: {', '.join(CHAT_FORMATS)}")
        if self.train_embeddings not in ("new", "all"):
            raise MendlabError(f"--train-embeddings {self.train_embeddings!r} is not one of: new, all")
        if self.precision not in PRECISIONS:
            raise MendlabError(f"--precision {self.precision!r} is not one of: {', '.join(PRECISIONS)}")
        if not self.target_modules or not all(t.strip() for t in self.target_modules):
            raise MendlabError("--target-modules: give module names (q_proj,v_proj…) or all-linear")
        if self.gguf is not None:
            from mendlab.training.gguf_export import QTYPES

            if self.gguf not in QTYPES:
                raise MendlabError(f"--gguf {self.gguf!r} is not one of: {', '.join(QTYPES)}")
            if self.chat_format == "starchat":
                raise MendlabError(
                    "--gguf and --chat-format starchat: new tokens need a new GGUF tokenizer (use @transformers)"
                )
        if self.chat_template is not None:
            if self.chat_format == "starchat":
                raise MendlabError("--chat-template and --chat-format starchat: the recipe brings its own template")
            if not self.chat_template.is_file():
                raise MendlabError(f"{self.chat_template}: no such chat template file")


@dataclass(frozen=True)
class Base:
    """The model to start from: what the user named it, and its files."""

    ref: str
    path: Path  # GGUF file or HF folder
    chat_template: str | None  # a Jinja file from its mendlab.toml entry


@dataclass(frozen=True)
class Example:
    where: str  # file:line
    labeled: Labeled


@dataclass(frozen=True)
class Result:
    out: Path
    model_dir: Path
    name: str | None
    config_file: Path | None
    summary: dict[str, Any]
    already_done: bool = False


# ---------------------------------------------------------------- the base model and its tokenizer


def resolve_base(model: str, config: Path | None) -> Base:
    """A registry name (bundled, mendlab.toml) or a GGUF file / HF folder given by path."""
    from mendlab.models import load_registry, model_path

    as_path = Path(model)
    if as_path.exists() and (as_path.is_dir() or as_path.suffix == ".gguf"):
        return Base(model, as_path.resolve(), None)
    spec = load_registry(config).get(model)
    if spec.backend == "openai":
        raise ModelUnavailable(f"model {model!r} is an endpoint: there are no weights here to train")
    return Base(model, model_path(spec), spec.chat_template)


def _cache_key(path: Path, what: str) -> str:
    import transformers

    st = path.stat()
    text = f"{what}\n{path.resolve()}\n{st.st_size}\n{st.st_mtime_ns}\n{transformers.__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def hf_folder(path: Path, console: Console | None = None) -> Path:
    """An HF folder for the model: itself, or for a GGUF, its weights dequantized to float32 once and
    kept in the cache. transformers loads a GGUF only through a conversion (25 s for SmolLM2 on 2
    cores, against 0.2 s for the folder), and a GGUF-loaded model refuses `save_pretrained` until its
    `quantization_config` is dropped and its weights moved into a model built from the config."""
    if path.is_dir():
        return path
    from mendlab.models.bundled import cache_dir

    folder = cache_dir() / "hf" / f"{path.stem}-{_cache_key(path, 'hf-fp32')}"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM

    from mendlab.training.labels import _gguf_tokenizer_folder

    status = console.status(f"converting {path.name} to an HF folder (once)…") if console else None
    if status:
        status.start()
    gguf_utils: Any = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    bar = gguf_utils.tqdm  # its own tqdm, deaf to transformers' progress-bar switch: ours is the status line
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        try:
            loaded = AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, local_files_only=True, dtype=torch.float32
            )
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(f"cannot load {path} through transformers: {exc}") from None
        finally:
            gguf_utils.tqdm = bar
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
        clean.load_state_dict(loaded.state_dict(), strict=True)
        clean.generation_config = loaded.generation_config
        del loaded
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.")
        try:
            clean.save_pretrained(tmp)
            from transformers import AutoTokenizer

            AutoTokenizer.from_pretrained(str(_gguf_tokenizer_folder(path))).save_pretrained(tmp)
            os.replace(tmp, folder)  # whole or not at all; a concurrent conversion may have won
        except OSError:
            if not (folder / "config.json").is_file():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if status:
            status.stop()
    return folder


def training_tokenizer(
    model: str, config: Path | None, chat_format: ChatFormat = "model", chat_template: Path | None = None
) -> Any:
    """The tokenizer the conversations are labelled with: the model's own (and its template, as
    `train labels` uses it), or for StarChat, its vocabulary plus the four tokens and their template."""
    from mendlab.training.labels import load_chat_tokenizer

    if chat_format == "model":
        return load_chat_tokenizer(model, config, str(chat_template) if chat_template else None)
    from transformers import AutoTokenizer

    from mendlab.training import starchat
    from mendlab.training.labels import _gguf_tokenizer_folder

    base = resolve_base(model, config)
    folder = _gguf_tokenizer_folder(base.path) if base.path.is_file() else base.path
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot load the tokenizer of {base.path}: {exc}") from None
    starchat.add_tokens(tok)
    return tok


# ---------------------------------------------------------------- data


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_conversations(path: Path) -> list[tuple[str, tuple[TrainMessage, ...]]]:
    """Every conversation of an OpenAI `messages` JSONL file, or a one-line error naming its line."""
    from mendlab.jsonl import read_objects

    rows = [(where, parse_messages(row, where)) for where, row in read_objects(path, "training data file")]
    if not rows:
        raise InputError(f"{path}: no conversations in file")
    return rows


def label_all(
    tokenizer: Any,
    rows: Sequence[tuple[str, Sequence[TrainMessage]]],
    max_length: int,
    drop_long: bool,
    note: Callable[[str], None],
) -> list[Example]:
    """Labels of each conversation; one longer than max_length is an error (truncating it would
    train a turn without its end-of-turn token) unless dropping those is asked for."""
    out: list[Example] = []
    long: list[str] = []
    for where, messages in rows:
        try:
            labeled = label_conversation(tokenizer, messages)
        except MendlabError as exc:
            raise InputError(f"{where}: {exc}") from None
        if len(labeled.input_ids) > max_length:
            if not drop_long:
                raise InputError(
                    f"{where}: {len(labeled.input_ids)} tokens, more than --max-length {max_length} "
                    "(raise it, or --drop-long to leave such conversations out)"
                )
            long.append(where)
            continue
        out.append(Example(where, labeled))
    if long:
        note(f"left out {len(long)} conversations longer than {max_length} tokens (first: {long[0]})")
    if not out:
        raise InputError(f"every conversation is longer than --max-length {max_length}")
    return out


# ---------------------------------------------------------------- the output folder and resuming


RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"


def fingerprint(opts: SFTOptions, base: Base, data_sha: str, processes: int) -> dict[str, Any]:
    """What decides the numbers a run produces: a checkpoint continues only a run with all of these."""
    keep = (
        "lora",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "epochs",
        "max_steps",
        "batch_size",
        "grad_accum",
        "max_length",
        "drop_long",
        "scheduler",
        "warmup_steps",
        "weight_decay",
        "max_grad_norm",
        "seed",
        "chat_format",
        "train_embeddings",
        "precision",
    )
    d = asdict(opts)
    fp: dict[str, Any] = {k: d[k] for k in keep}
    fp["target_modules"] = list(opts.target_modules)
    fp["lr"] = opts.lr
    fp["model"] = base.ref
    fp["model_file"] = str(base.path)
    fp["data_sha256"] = data_sha
    fp["chat_template_sha256"] = file_sha256(opts.chat_template) if opts.chat_template else None
    fp["processes"] = processes
    if not opts.lora:
        for k in ("lora_r", "lora_alpha", "lora_dropout", "target_modules"):
            fp.pop(k)
    if not opts.lora or opts.chat_format != "starchat":
        fp.pop("train_embeddings")
    return fp


def complete_checkpoint(folder: Path) -> bool:
    """trainer_state.json is the last file the Trainer writes into a checkpoint: one that parses and
    names the folder's step means the rest is there; a kill -9 during the save leaves none or a torn one."""
    try:
        step = int(folder.name.rsplit("-", 1)[1])
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, IndexError):
        return False
    return isinstance(state, dict) and state.get("global_step") == step


def last_checkpoint(out: Path, clean: bool) -> Path | None:
    """The latest complete checkpoint; with `clean`, torn ones after it are removed (they would
    sort as the latest)."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return None
    found = []
    for d in root.iterdir():
        if d.is_dir() and d.name.startswith("checkpoint-") and d.name[len("checkpoint-") :].isdigit():
            found.append((int(d.name[len("checkpoint-") :]), d))
    best: Path | None = None
    for _, d in sorted(found, reverse=True):
        if complete_checkpoint(d):
            best = d
            break
        if clean:
            shutil.rmtree(d, ignore_errors=True)
    return best


def _shown(value: Any) -> str:
    if isinstance(value, str) and len(value) > 16 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    return json.dumps(value)


def check_out(out: Path, fp: dict[str, Any], overwrite: bool, main: bool) -> tuple[Path | None, bool]:
    """(checkpoint to resume from, finished already). Another config's checkpoint or model is refused
    in one line; with `overwrite`, what the folder holds is removed and training starts again."""
    if out.exists() and not out.is_dir():
        raise MendlabError(f"{out}: not a folder")
    run_file = out / RUN_FILE
    if not run_file.is_file():
        if out.is_dir() and any(out.iterdir()):
            raise MendlabError(f"{out}: not empty, and not a training folder (no {RUN_FILE}): give a new --out")
        if main:
            _write_run(out, fp)
        return None, False
    try:
        old = json.loads(run_file.read_text(encoding="utf-8"))["config"]
        if not isinstance(old, dict):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError):
        raise MendlabError(f"{run_file}: unreadable; remove the folder or give another --out") from None
    ckpt = last_checkpoint(out, clean=main)
    finished = (out / "summary.json").is_file() and (out / "model" / "config.json").is_file()
    diffs = [k for k in dict.fromkeys([*old, *fp]) if old.get(k) != fp.get(k)]
    if not diffs and not overwrite:
        return ckpt, finished
    if diffs and (ckpt is not None or finished) and not overwrite:
        what = f"its checkpoint {ckpt.name}" if ckpt is not None else "its model"
        shown = "; ".join(f"{k}: {_shown(old.get(k))} there, {_shown(fp.get(k))} here" for k in diffs[:3])
        more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
        raise MendlabError(
            f"{out}: {what} was trained with another config ({shown}{more}): "
            "give another --out, or --overwrite to start again"
        )
    if main:
        stale = [p.name for p in out.glob("model-*.gguf*")]  # --gguf exports of the old model, stamps too
        for name in (CHECKPOINTS, "model", "adapter", "summary.json", "loss.png", *stale):
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        _write_run(out, fp)
    return None, False


def _write_run(out: Path, fp: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / RUN_FILE, {"config": fp, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})


def _write_json(path: Path, obj: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- training


def resolve_precision(precision: Precision) -> Literal["fp32", "bf16", "fp16"]:
    """`auto`: bf16 mixed precision on a GPU that has it (fp16 on older ones), fp32 on the CPU."""
    if precision != "auto":
        return precision
    import torch

    if not torch.cuda.is_available():
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def embedding_module_names(model: Any) -> list[str]:
    """The (last) names of the input embeddings and the LM head, for PEFT's modules_to_save."""
    names = []
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        for name, m in model.named_modules():
            if m is module and name:
                names.append(name.rsplit(".", 1)[-1])
                break
    return list(dict.fromkeys(names))


def load_model(folder: Path, opts: SFTOptions, tokenizer: Any) -> Any:
    """The base weights in float32 (mixed precision casts on the fly), resized for added tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot load model from {folder}: {exc}") from None
    if opts.chat_format == "starchat":
        from mendlab.training import starchat

        starchat.resize_model(model, tokenizer)
    elif tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def lora_config(opts: SFTOptions, model: Any, tokenizer: Any) -> Any:
    from peft import LoraConfig

    targets: str | list[str] = (
        "all-linear" if opts.target_modules == ("all-linear",) else [t.strip() for t in opts.target_modules]
    )
    kwargs: dict[str, Any] = {}
    if opts.chat_format == "starchat":
        # The new tokens' rows must be learnt and saved, or the model can neither read nor write them.
        # "all" (the default): both matrices train whole (tied ones stay one), saved in the adapter and
        # every checkpoint; on SmolLM2 it learns to stop at <|end|> in 14 steps of 4 where "new" has not.
        names = embedding_module_names(model)
        tied = bool(getattr(model.config, "tie_word_embeddings", False))
        if opts.train_embeddings == "all":
            kwargs["modules_to_save"] = names
            kwargs["ensure_weight_tying"] = tied
        else:  # only the new rows: PEFT's trainable tokens (the tied head's rows with them); light
            from mendlab.training import starchat

            ids = [int(tokenizer.convert_tokens_to_ids(t)) for t in starchat.TOKENS]
            kwargs["trainable_token_indices"] = {names[0]: ids}
            if not tied and len(names) > 1:  # an untied head trains whole, as TRL's clone_chat_template does
                kwargs["modules_to_save"] = names[1:]
    return LoraConfig(
        r=opts.lora_r,
        lora_alpha=opts.lora_alpha,
        lora_dropout=opts.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
        **kwargs,
    )


def sft_config(opts: SFTOptions, out: Path, precision: str) -> Any:
    """TRL's config: dataset preparation skipped (our tokens and labels are final), no truncation (we
    refuse or drop long conversations instead), no packing, checkpoints every `save_steps`."""
    import torch
    from trl.trainer.sft_config import SFTConfig

    return SFTConfig(
        output_dir=str(out / CHECKPOINTS),
        per_device_train_batch_size=opts.batch_size,
        gradient_accumulation_steps=opts.grad_accum,
        num_train_epochs=opts.epochs,
        max_steps=opts.max_steps if opts.max_steps is not None else -1,
        learning_rate=opts.lr,
        lr_scheduler_type=opts.scheduler,
        warmup_steps=opts.warmup_steps,
        weight_decay=opts.weight_decay,
        max_grad_norm=opts.max_grad_norm,
        seed=opts.seed,
        data_seed=opts.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=opts.gradient_checkpointing,
        logging_steps=1,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=opts.save_steps,
        save_total_limit=opts.save_total_limit,
        report_to="none",
        disable_tqdm=True,
        max_length=None,
        packing=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )


def make_trainer_class() -> type:
    """SFTTrainer with the model's own loss, and counts of the tokens seen and trained in the logs
    (so they survive a resume: the log history is in every checkpoint)."""
    import torch
    from transformers import Trainer
    from trl.trainer.sft_trainer import SFTTrainer

    class MendlabSFTTrainer(SFTTrainer):
        seen_tokens = 0
        seen_trained = 0

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            if model.training:
                self.seen_tokens += int(inputs["attention_mask"].sum())
                self.seen_trained += int((inputs["labels"][:, 1:] != IGNORE).sum())
            inputs = {**inputs, "use_cache": False}
            return Trainer.compute_loss(
                self, model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            if "loss" in logs:
                counts = torch.tensor([self.seen_tokens, self.seen_trained], device=self.accelerator.device)
                counts = self.accelerator.reduce(counts, reduction="sum")
                self.seen_tokens = self.seen_trained = 0
                prev = next((h for h in reversed(self.state.log_history) if "tokens" in h), {})
                logs["tokens"] = int(prev.get("tokens", 0)) + int(counts[0])
                logs["trained_tokens"] = int(prev.get("trained_tokens", 0)) + int(counts[1])
            super().log(logs, start_time)

    return MendlabSFTTrainer


def progress_callback(console: Console) -> Any:
    """A rich bar over the optimizer steps, the last loss beside it (the Trainer's tqdm bar is off)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        def __init__(self) -> None:
            self.bar: Progress | None = None
            self.task: Any = None
            self.started = 0.0
            self.first_step = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.started = time.perf_counter()
            self.first_step = state.global_step
            if not state.is_world_process_zero:
                return
            self.bar = Progress(
                TextColumn("[bold]training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[loss]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            )
            self.bar.start()
            self.task = self.bar.add_task("training", total=state.max_steps, completed=state.global_step, loss="")

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.update(self.task, completed=state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if self.bar is not None and logs and "loss" in logs:
                self.bar.update(self.task, loss=f"loss {float(logs['loss']):.4f}")
                every = max(1, state.max_steps // 20)
                if not console.is_terminal and state.global_step % every == 0:  # a log file: a line now and then
                    done = time.perf_counter() - self.started
                    self.bar.console.print(
                        f"step {state.global_step}/{state.max_steps}: loss {float(logs['loss']):.4f} ({done:.0f} s)",
                        highlight=False,
                    )

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.console.print(f"checkpoint at step {state.global_step}", highlight=False)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.stop()
                self.bar = None

    return RichProgress()


def build_trainer(
    opts: SFTOptions, args: Any, model: Any, tokenizer: Any, examples: Sequence[Example], callbacks: Sequence[Any]
) -> Any:
    """The SFTTrainer of `train_sft` (the benchmark builds the same one): our tokens and labels as its
    dataset, LoRA applied by TRL when asked, the Trainer's printing of every log line off."""
    from datasets import Dataset
    from transformers import PrinterCallback

    dataset = Dataset.from_dict(
        {
            "input_ids": [list(e.labeled.input_ids) for e in examples],
            "labels": [list(e.labeled.labels) for e in examples],
        }
    )
    trainer = make_trainer_class()(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(opts, model, tokenizer) if opts.lora else None,
        callbacks=list(callbacks),
    )
    trainer.remove_callback(PrinterCallback)
    return trainer


def _is_zero3(trainer: Any) -> bool:
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    return plugin is not None and getattr(plugin, "zero_stage", 0) == 3


def save_model(trainer: Any, opts: SFTOptions, tokenizer: Any, folder: Path, out: Path) -> Path:
    """The tuned model as a plain HF folder (LoRA merged), written beside and renamed in whole. Every
    rank takes part (ZeRO-3 gathers the shards); the main one writes."""
    model_dir = out / "model"
    tmp = out / ".model.tmp"
    main = trainer.is_world_process_zero()
    if main and tmp.exists():
        shutil.rmtree(tmp)
    if opts.lora:
        adapter = out / "adapter"
        trainer.save_model(str(adapter))  # the adapter and, for StarChat, the whole new embeddings
        if main:
            if _is_zero3(trainer):  # the trained weights are shards: merge into a fresh base on the CPU
                from peft import PeftModel

                base_model = load_model(folder, opts, tokenizer)
                merged = PeftModel.from_pretrained(base_model, str(adapter)).merge_and_unload()
            else:
                merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
    else:
        trainer.save_model(str(tmp))
    if main:
        if opts.chat_format == "starchat":  # the saved config's EOS is the stop token, whatever TRL wrote
            from transformers import AutoConfig, GenerationConfig

            from mendlab.training import starchat

            end = int(tokenizer.convert_tokens_to_ids(starchat.END))
            cfg = AutoConfig.from_pretrained(str(tmp))
            cfg.eos_token_id = end
            cfg.save_pretrained(str(tmp))
            gen = GenerationConfig.from_pretrained(str(tmp))
            gen.eos_token_id = end
            gen.save_pretrained(str(tmp))
        if model_dir.exists():
            shutil.rmtree(model_dir)
        os.replace(tmp, model_dir)
    return model_dir


def plot_losses(history: Sequence[dict[str, Any]], path: Path, title: str, resumed_at: int | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(h["step"]) for h in history if "loss" in h]
    losses = [float(h["loss"]) for h in history if "loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(steps, losses, marker="." if len(steps) < 60 else None, linewidth=1.2)
    if resumed_at:
        ax.axvline(resumed_at, color="grey", linestyle=":", linewidth=1)
        ax.annotate(f"resumed at {resumed_at}", (resumed_at, max(losses)), fontsize=8, color="grey")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (assistant tokens)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)


def default_name(base: Base, opts: SFTOptions) -> str:
    stem = base.ref.split("@", 1)[0]
    if Path(stem).exists():
        stem = Path(stem).stem if Path(stem).suffix == ".gguf" else Path(stem).name
    suffix = "starchat" if opts.chat_format == "starchat" else "sft"
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).strip("-.") or "model"
    return f"{cleaned}-{suffix}"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Our rich bar and notes only: transformers' tqdm bars (GGUF conversion, loading, writing shards)
    and the deprecation warnings of the libraries' own calls to each other are not the user's business."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        with warnings.catch_warnings():
            for module in ("transformers", "trl", "peft", "accelerate", "torch"):
                warnings.filterwarnings("ignore", category=FutureWarning, module=module)
                warnings.filterwarnings("ignore", category=UserWarning, module=module)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def train_sft(opts: SFTOptions, console: Console) -> Result:
    """Train, save, plot, summarize, register; resume where a killed run of the same config stopped."""
    opts.check()
    with quiet():
        return _train_sft(opts, console)


def _train_sft(opts: SFTOptions, console: Console) -> Result:
    from mendlab.training.register import check_name

    name = opts.name
    note: Callable[[str], None] = lambda text: console.print(text, highlight=False, soft_wrap=True)  # noqa: E731
    rows = read_conversations(opts.data)  # a bad file fails before anything is loaded
    base = resolve_base(opts.model, opts.config)
    if opts.gguf is not None and base.path.suffix != ".gguf":
        raise MendlabError(f"--gguf: {opts.model} is not a GGUF model, there is no GGUF to take the metadata from")
    if opts.register:
        name = name or default_name(base, opts)
        check_name(name)
    with console.status(f"loading the tokenizer of {opts.model}…"):
        tokenizer = training_tokenizer(opts.model, opts.config, opts.chat_format, opts.chat_template)
    examples = label_all(tokenizer, rows, opts.max_length, opts.drop_long, note)  # as `train labels` shows them
    trained_per_epoch = sum(e.labeled.trained_tokens for e in examples)
    tokens_per_epoch = sum(len(e.labeled.input_ids) for e in examples)

    from accelerate import PartialState

    state = PartialState()
    main = bool(state.is_main_process)
    fp = fingerprint(opts, base, file_sha256(opts.data), int(state.num_processes))
    with state.main_process_first():
        resume, finished = check_out(opts.out, fp, opts.overwrite, main)
    if finished:
        done = json.loads((opts.out / "summary.json").read_text(encoding="utf-8"))
        config_file = _register(opts, name, base, done, main)
        note(f"already trained with this config: {opts.out / 'model'}")
        return Result(opts.out, opts.out / "model", name, config_file, done, already_done=True)

    precision = resolve_precision(opts.precision)
    args = sft_config(opts, opts.out, precision)  # before the model: ZeRO-3 shards it as it loads
    with state.main_process_first():
        folder = hf_folder(base.path, console if main else None)
    with console.status(f"loading {opts.model}…"):
        model = load_model(folder, opts, tokenizer)

    trainer = build_trainer(opts, args, model, tokenizer, examples, [progress_callback(console)])
    if main:
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in trainer.model.parameters())
        how = f"LoRA r={opts.lora_r} α={opts.lora_alpha}" if opts.lora else "full fine-tuning"
        note(
            f"{len(examples)} conversations, {trained_per_epoch} of {tokens_per_epoch} tokens trained per epoch; "
            f"{how}: {trainable:,} of {total:,} parameters; {precision} on {trainer.args.device}"
            + (f"; resuming from {resume.name}" if resume else "")
        )
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    elapsed = time.perf_counter() - started
    model_dir = save_model(trainer, opts, tokenizer, folder, opts.out)

    history = [h for h in trainer.state.log_history if "loss" in h]
    resumed_at = int(resume.name.rsplit("-", 1)[1]) if resume else None
    before: dict[str, Any] = next(
        (h for h in reversed(history) if resumed_at is not None and h["step"] <= resumed_at), {}
    )
    run_tokens = int(history[-1].get("tokens", 0)) - int(before.get("tokens", 0)) if history else 0
    run_trained = int(history[-1].get("trained_tokens", 0)) - int(before.get("trained_tokens", 0)) if history else 0
    summary: dict[str, Any] = {
        "model": base.ref,
        "name": name,
        "data": str(opts.data),
        "conversations": len(examples),
        "method": "lora" if opts.lora else "full",
        "chat_format": opts.chat_format,
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "tokens": int(history[-1].get("tokens", 0)) if history else 0,
        "trained_tokens": int(history[-1].get("trained_tokens", 0)) if history else 0,
        "resumed_from_step": resumed_at,
        "this_run": {
            "steps": int(trainer.state.global_step) - (resumed_at or 0),
            "seconds": round(elapsed, 2),
            "tokens": run_tokens,
            "tokens_per_s": round(run_tokens / elapsed, 1) if elapsed > 0 else None,
            "trained_tokens_per_s": round(run_trained / elapsed, 1) if elapsed > 0 else None,
        },
        "first_loss": float(history[0]["loss"]) if history else None,
        "final_loss": float(history[-1]["loss"]) if history else None,
        "losses": [{"step": int(h["step"]), "loss": float(h["loss"])} for h in history],
        "precision": precision,
        "device": str(trainer.args.device),
        "model_dir": str(model_dir.resolve()),
        "config": fp,
    }
    if main:
        title = f"{base.ref} → {name or model_dir}: {summary['method']}, {len(examples)} conversations"
        plot_losses(history, opts.out / "loss.png", title, resumed_at)
        _write_json(opts.out / "summary.json", summary)
    config_file = _register(opts, name, base, summary, main)
    state.wait_for_everyone()
    return Result(opts.out, model_dir, name, config_file, summary)


def gguf_path(opts: SFTOptions) -> Path | None:
    return opts.out / f"model-{opts.gguf}.gguf" if opts.gguf else None


def _register(opts: SFTOptions, name: str | None, base: Base, summary: dict[str, Any], main: bool) -> Path | None:
    """The HF folder as NAME (transformers) and, with --gguf, the GGUF as NAME-gguf (llama.cpp)."""
    gguf = gguf_path(opts)
    if gguf is not None and main:
        from mendlab.training.gguf_export import export_gguf, export_stamp, read_stamp, same_source

        stamp = export_stamp(opts.out / "model", base.path, str(opts.gguf))
        made = read_stamp(gguf)  # none yet, a kill's leftover, another model's or an older export's: written again
        if made is None or not same_source(made, stamp) or made.get("export_version") != stamp["export_version"]:
            export_gguf(opts.out / "model", base.path, gguf, str(opts.gguf), stamp=stamp, label=name)
    if not opts.register or name is None or not main:
        return None
    from mendlab.training.register import register

    how = "LoRA merged" if opts.lora else "full"
    desc = f"{base.ref} fine-tuned ({how}, {summary.get('steps')} steps, {opts.chat_format} format) on {opts.data.name}"
    config = register(name, opts.out / "model", opts.config, desc)
    if gguf is not None:
        register(f"{name}-gguf", gguf, opts.config, f"{desc}, GGUF {opts.gguf}", "llama.cpp")
    return config
