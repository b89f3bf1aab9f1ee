"""`mendlab train loop`: closing the loop. Measure a model, teach it on its own mistakes, measure again.

Seed 000 ends with "some fine-tuning could greatly improve those results"; SCoRe (arXiv 2409.12917)
warns that offline correction traces often fail, either because the mistakes are not the model's own
or because the model learns to answer right first and stops fixing. So every stage here is on-policy
and every measure is the one SCoRe reports:

1. training scenarios are drawn (`data scenarios`), disjoint from the evaluation ones;
2. the base model plays them (the dialog experiment): its own mistakes, the feedback, its own fixes;
3. those become dialogues (`data build`: fix, expected and clean ones), checked against the eval set;
4. LoRA (or full) fine-tuning on them (`train sft`), loss on the last assistant turn only;
5. both models are brought to the same footing: for a GGUF base, the base *and* the tuned weights are
   written to GGUF by the same export (so only the tuning differs, not the quantization) and run by
   llama.cpp; for an HF base, both run through transformers;
6. both play the evaluation scenarios in one run (reliability, dialog, replay of one shared mistake
   bank, the false-feedback probe), and greedy HumanEval on a subset (did tuning break coding?);
7. one report: before, after and the difference with its interval, beside the loss curve.

Every stage resumes (runs by id, training from its checkpoint, exports are atomic), and the whole
loop's configuration is stored in `loop.json`: another configuration in the same folder is refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from mendlab.dialogs.runner import CalendarConfig, run_experiments
from mendlab.engine import Engine, EngineConfig, Task
from mendlab.engine.task import Outcome, Sample, SampleFailed
from mendlab.errors import MendlabError
from mendlab.models import ChatModel, SamplingParams, load_model, load_registry
from mendlab.progress import progress_bar
from mendlab.repair.sandbox import Sandbox, Verdict
from mendlab.repair.tasks import Task as CodeTask
from mendlab.repair.tasks import load_humaneval
from mendlab.repair.trees import extract_code, generation_prompt, program_for
from mendlab.store import ResultsStore
from mendlab.store.recorded import RecordedModel

LOOP_FILE = "loop.json"
BEFORE, AFTER = "before", "after"  # the two models' names in the loop's own mendlab.toml and store


@dataclass(frozen=True)
class TrainPart:
    """The fine-tuning, as `train sft` takes it (the rest of its options at their defaults)."""

    lora: bool = True
    lora_r: int = 16
    lora_alpha: int = 32
    learning_rate: float | None = None
    epochs: float = 2.0
    max_steps: int | None = None
    batch_size: int = 1  # a 2048-token conversation's logits over a 150k vocabulary are 1.2 GB in fp32
    grad_accum: int = 4
    max_length: int = 2048  # a dialog's later steps carry its whole history
    drop_long: bool = True  # longer ones are left out (and counted), not a stop after the harvest


@dataclass(frozen=True)
class LoopConfig:
    """Everything that changes a loop's results; the folder and the model file are not part of it."""

    model: str
    train_scenarios: int = 20
    seed: int = 0
    eval_scenarios: tuple[str, ...] = ("calendar",)
    harvest: CalendarConfig = field(
        default_factory=lambda: CalendarConfig(
            reps=1, max_fixes=2, params=SamplingParams(temperature=0.7, max_tokens=64)
        )
    )
    clean_ratio: float = 1.0
    train: TrainPart = field(default_factory=TrainPart)
    evaluate: CalendarConfig = field(
        default_factory=lambda: CalendarConfig(
            reps=3, tries=5, max_fixes=2, attempts=2, per_kind=2, params=SamplingParams(temperature=0.7, max_tokens=64)
        )
    )
    humaneval: int = 20  # the first N HumanEval tasks, one greedy program each
    humaneval_tokens: int = 384
    gguf_type: str = "q8_0"

    def __post_init__(self) -> None:
        if self.train_scenarios < 1:
            raise MendlabError("--scenarios must be at least 1")
        if self.humaneval < 0:
            raise MendlabError("--humaneval must be 0 or more")
        if not self.eval_scenarios:
            raise MendlabError("--eval-scenario: give at least one")
        from mendlab.training.gguf_export import QTYPES

        if self.gguf_type not in QTYPES:
            raise MendlabError(f"--gguf-type {self.gguf_type!r}: one of {', '.join(QTYPES)}")

    @classmethod
    def quick(cls, model: str) -> LoopConfig:
        """Every stage in a few minutes (the tests'): two training scenarios, two steps, two optimizer
        steps, two HumanEval tasks. A first look, never a result."""
        short = SamplingParams(temperature=0.7, max_tokens=40)
        return cls(
            model=model,
            train_scenarios=2,
            harvest=CalendarConfig(reps=1, rungs=("pointed",), max_fixes=1, params=short, steps=2),
            train=TrainPart(max_steps=2, batch_size=2, grad_accum=1, max_length=768),
            evaluate=CalendarConfig(
                reps=1, tries=1, rungs=("explicit",), max_fixes=1, attempts=1, per_kind=1, params=short, steps=2
            ),
            humaneval=2,
            humaneval_tokens=160,
        )

    def identity(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(json.dumps(asdict(self), default=str))
        return out

    def seeded(self, part: CalendarConfig) -> CalendarConfig:
        """The loop's seed is the dialogs' sampling seed too: two loops with other seeds are replicates."""
        return replace(part, params=replace(part.params, seed=self.seed))


# ---------------------------------------------------------------- the loop's folder


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def base_identity(path: Path) -> dict[str, Any]:
    """The base model's bytes, so that a replaced model under the same name is another loop."""
    from mendlab.training.gguf_export import file_sha256

    if path.is_dir():
        files = sorted(p for p in path.glob("*.safetensors"))
        return {"path": str(path.resolve()), "sha256": {p.name: file_sha256(p) for p in files}}
    return {"path": str(path.resolve()), "sha256": file_sha256(path)}


def check_folder(out: Path, cfg: LoopConfig, base: dict[str, Any]) -> bool:
    """True when the folder holds this very loop (it resumes). Another loop's folder is refused in one
    line naming the first differences; a folder that is not a loop's and not empty, too."""
    if out.exists() and not out.is_dir():
        raise MendlabError(f"{out}: not a folder")
    path = out / LOOP_FILE
    want = {**cfg.identity(), "base": base}
    if not path.is_file():
        if out.is_dir() and any(out.iterdir()):
            raise MendlabError(f"{out}: not empty, and not a loop's folder (no {LOOP_FILE}): give a new --out")
        _atomic_text(path, json.dumps(want, indent=2) + "\n")
        return False
    try:
        have = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise MendlabError(f"{path}: unreadable; remove the folder or give another --out") from None
    diffs = _diffs(have, want)
    if diffs:
        shown = "; ".join(diffs[:3]) + (f" and {len(diffs) - 3} more" if len(diffs) > 3 else "")
        raise MendlabError(f"{out}: a loop made with another configuration ({shown}): give another --out")
    return True


def _diffs(old: Any, new: Any, where: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in dict.fromkeys([*old, *new]) for d in _diffs(old.get(k), new.get(k), f"{where}{k}.")]
    return [] if old == new else [f"{where.rstrip('.')}: {json.dumps(old)} there, {json.dumps(new)} here"]


# ---------------------------------------------------------------- HumanEval, greedy


def humaneval_task(tasks: Sequence[CodeTask], sandbox: Sandbox, max_tokens: int) -> Task[CodeTask, Any]:
    """One greedy program per task, judged in the sandbox: pass@1 without sampling noise, so that the
    before/after difference is the tuning's (and pairs by task)."""
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)

    def solve(sample: Sample[CodeTask], model: ChatModel) -> tuple[str, int, Verdict]:
        (comp,) = model.chat(generation_prompt(sample.input), params)
        code = extract_code(comp.text)
        return code, comp.completion_tokens, sandbox.run(sample.input, program_for(sample.input, code))

    def score(sample: Sample[CodeTask], played: tuple[str, int, Verdict]) -> Outcome:
        code, tokens, verdict = played
        if verdict.status == "sandbox_error":
            raise SampleFailed(f"the sandbox could not judge the program: {verdict.message}")
        return Outcome(data={"code": code, **verdict.to_json()}, score={"passed": verdict.passed, "tokens": tokens})

    return Task("humaneval", [Sample(t.id, t) for t in tasks], solve, score)


def run_humaneval(
    db: Path, config: Path, models: Sequence[str], n: int, max_tokens: int, console: Console
) -> dict[str, dict[str, bool]]:
    """{model: {task id: passed}}; resumable (run `humaneval` of the loop's store)."""
    tasks = load_humaneval()[:n]
    registry = load_registry(config)
    sandbox = Sandbox()
    out: dict[str, dict[str, bool]] = {}
    try:
        with ResultsStore(db) as store:
            identity = {"tasks": [t.id for t in tasks], "max_tokens": max_tokens, "isolation": sandbox.isolation.level}
            run = store.ensure_run("humaneval", "humaneval", identity)
            engine = Engine(store, run)
            with progress_bar(console) as progress:
                bar = progress.add_task("humaneval", total=len(tasks) * len(models))
                for name in models:
                    progress.update(bar, description=f"{name}: humaneval")
                    model = RecordedModel(load_model(registry.get(name)), store, run.id)
                    try:
                        task = humaneval_task(tasks, sandbox, max_tokens)
                        retrying = EngineConfig(1, retry_errors=True)  # a task the sandbox failed is played again
                        engine.run(task, model, retrying, on_done=lambda rec: progress.advance(bar))
                    finally:
                        model.close()
                    progress.update(bar, completed=len(tasks) * (models.index(name) + 1))
            for name in models:
                recs = [r for r in store.samples(run.id, "humaneval", name) if r.status == "ok"]
                out[name] = {r.sample_id: bool(r.score["passed"]) for r in recs}
                failed = [r for r in store.samples(run.id, "humaneval", name) if r.status == "error"]
                if failed:
                    raise MendlabError(
                        f"humaneval on {name}: {len(failed)} task(s) failed ({failed[0].error}); run the loop again "
                        "to play them again"
                    )
    finally:
        sandbox.close()
    return out


# ---------------------------------------------------------------- the stages


@dataclass(frozen=True)
class LoopResult:
    out: Path
    report: tuple[Path, ...]
    summary: dict[str, Any]


def sft_options(cfg: LoopConfig, base: Path, out: Path) -> Any:
    """`train sft`'s options for the loop: its data and folder inside the loop's, nothing registered."""
    from mendlab.training.sft import SFTOptions

    t = cfg.train
    return SFTOptions(
        model=str(base), data=out / "data.jsonl", out=out / "sft", name=None, lora=t.lora, lora_r=t.lora_r,
        lora_alpha=t.lora_alpha, learning_rate=t.learning_rate, epochs=t.epochs, max_steps=t.max_steps,
        batch_size=t.batch_size, grad_accum=t.grad_accum, max_length=t.max_length, drop_long=t.drop_long,
        seed=cfg.seed, register=False,
    )  # fmt: skip


def run_loop(cfg: LoopConfig, out: Path, config: Path | None, console: Console) -> LoopResult:
    from mendlab.reports.loop import build_summary, write_loop_report
    from mendlab.training.data import BuildConfig, build, write_jsonl
    from mendlab.training.gguf_export import check_exportable, export_gguf, export_stamp, read_stamp, same_source
    from mendlab.training.overlap import build_eval_set, scenario_refs
    from mendlab.training.register import register
    from mendlab.training.scenarios import generate, write_scenarios
    from mendlab.training.sft import hf_folder, quiet, resolve_base, train_sft

    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    # Everything that can be refused is refused before anything is written or played.
    load_registry(config).get(cfg.model)  # the dialogs ask for it by name
    base = resolve_base(cfg.model, config)
    eval_refs = list(dict.fromkeys(scenario_refs(cfg.eval_scenarios)))
    stems = [Path(r).stem for r in eval_refs]
    if len(set(stems)) != len(stems):
        raise MendlabError(f"--eval-scenario: two scenarios named {next(s for s in stems if stems.count(s) > 1)!r}")
    ev = build_eval_set(eval_refs)
    options = sft_options(cfg, base.path, out)
    options.check()
    if base.path.suffix == ".gguf":
        check_exportable(base.path)
    resumed = check_folder(out, cfg, base_identity(base.path))
    say(f"[bold]closing the loop[/] on {cfg.model} in {out}" + (" (resuming)" if resumed else ""))
    db = out / "results.db"
    models_file = out / "mendlab.toml"

    say("[bold]1/7[/] training scenarios, disjoint from " + ", ".join(ev.names))
    paths = write_scenarios(generate(cfg.train_scenarios, cfg.seed, ev, "loop"), out / "scenarios")

    say(f"[bold]2/7[/] {cfg.model} plays them (its own mistakes, the feedback, its own fixes)")
    run_ids = []
    for path in paths:
        run, _ = run_experiments(
            db, config, "dialog", [cfg.model], cfg.seeded(replace(cfg.harvest, scenario=str(path))),
            run_id=path.stem, retry_errors=True, report_dir=None, console=console,
        )  # fmt: skip
        run_ids.append(run.id)

    say("[bold]3/7[/] training dialogues")
    with ResultsStore(db) as store:
        built = build(
            store,
            BuildConfig(
                runs=tuple(run_ids), models=(cfg.model,), clean_ratio=cfg.clean_ratio, seed=cfg.seed, drop_overlap=True
            ),
            ev,
        )
    for note in built.notes:  # an answer that happens to equal an evaluation call is left out, and said so
        say("  " + note)
    if not built.dialogues:
        raise MendlabError(f"{cfg.model} left no training dialogues on {len(paths)} scenarios: use more --scenarios")
    data = out / "data.jsonl"
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".data.jsonl.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        write_jsonl(built.dialogues, fh)
    os.chmod(tmp, 0o644)
    os.replace(tmp, data)
    say("  " + ", ".join(f"{v} {k}" for k, v in sorted(built.counts.items())) + f" → {data}")

    say("[bold]4/7[/] fine-tuning")
    sft = train_sft(options, console)

    say("[bold]5/7[/] both models on the same footing")
    if base.path.suffix == ".gguf":
        for name, folder in ((BEFORE, hf_folder(base.path, console)), (AFTER, sft.model_dir)):
            gguf = out / "gguf" / f"{name}.gguf"
            stamp = export_stamp(folder, base.path, cfg.gguf_type)
            made = read_stamp(gguf)
            if made is not None and not same_source(made, stamp):
                raise MendlabError(
                    f"{gguf} was written from other weights than {folder} now holds: what is stored under "
                    f"{name!r} would mix two models; give a new --out"
                )
            if made is None or made.get("export_version") != stamp["export_version"]:
                # none yet, one a kill left without its stamp, or one an older export wrote: the same weights
                with console.status(f"writing {gguf} ({cfg.gguf_type})…"), quiet():
                    export_gguf(folder, base.path, gguf, cfg.gguf_type, stamp=stamp, label=f"{cfg.model} {name}")
            register(name, gguf, models_file, f"{cfg.model} {name} closing the loop ({cfg.gguf_type})", "llama.cpp")
        say(f"  {BEFORE} and {AFTER}: the base's and the tuned weights, both exported to GGUF {cfg.gguf_type}")
    else:
        register(BEFORE, base.path, models_file, f"{cfg.model}, before closing the loop")
        register(AFTER, sft.model_dir, models_file, f"{cfg.model}, after closing the loop")
        say(f"  {BEFORE} and {AFTER}: HF folders, both through transformers")

    say("[bold]6/7[/] measuring before and after on " + ", ".join(Path(r).stem for r in eval_refs))
    evals = []
    for ref in eval_refs:
        run, results = run_experiments(
            db, models_file, "all,false_feedback", [BEFORE, AFTER], cfg.seeded(replace(cfg.evaluate, scenario=ref)),
            run_id=f"eval-{Path(ref).stem}", retry_errors=True, report_dir=None, console=console,
        )  # fmt: skip
        evals.extend(results)
    code = (
        run_humaneval(db, models_file, [BEFORE, AFTER], cfg.humaneval, cfg.humaneval_tokens, console)
        if (cfg.humaneval)
        else {}
    )

    say("[bold]7/7[/] report")
    summary = build_summary(cfg, evals, code, sft.summary, built.counts)
    written = write_loop_report(summary, out, sft.out / "loss.png")
    for p in written:
        say(f"wrote {p}")
    return LoopResult(out, tuple(written), summary)
