"""`mendlab judge compare` and `mendlab judge agreement`: runs on the engine, figures and files.

A judge run is a run like the others: its configuration (judge, mode, max tokens, the prompts' words,
the pairs judged, by content) is stored with it, the same command resumes it, another configuration
stops with the differing fields named (or moves beside it with `--new-run`). Every judge call goes
through the engine: concurrently within an endpoint's budget, stored as it completes, resumed after
a kill. Answers generated here for `-m A -m B` are samples of the same run (task "answer").

Files written: verdicts.jsonl (one line per pair, both raw judgments kept), summary.json (every figure,
each rate as k, n, value and its 95% interval) and report.md; for agreement, grades.jsonl as well.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mendlab.conversation import Conversation
from mendlab.engine import Engine, EngineConfig, Outcome, Sample, Task, TaskSummary, engine_concurrency
from mendlab.errors import IncompleteRun, MendlabError
from mendlab.judge.agreement import (
    AGREEMENT_EXPERIMENTS,
    AgreementStats,
    Turn,
    agreement_stats,
    balanced,
    calendar_turns,
    grade_task,
    right_wrong_pairs,
)
from mendlab.judge.metrics import JudgeStats, PairResult, judge_stats
from mendlab.judge.pairs import Pair, Prompt, content_id, pair_of, read_pairs, read_prompts, stored_pairs
from mendlab.judge.pairwise import judge_params, judge_task
from mendlab.judge.prompts import MODES, Mode, prompt_version
from mendlab.models import ChatModel, Message, ModelSpec, SamplingParams, load_model, load_registry
from mendlab.progress import progress_bar
from mendlab.stats import Estimate, MeanEstimate, ratio_ci
from mendlab.store import ResultsStore, Run, SampleRecord, config_sha256
from mendlab.store.recorded import RecordedModel

Loader = Callable[[ModelSpec], ChatModel]


@dataclass(frozen=True)
class CompareConfig:
    """What to judge (one source: a pairs file, a prompts file with two models, or stored runs) and how."""

    judge: str
    mode: Mode = "ab"
    max_tokens: int = 512
    pairs_file: Path | None = None
    prompts_file: Path | None = None
    from_runs: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    answer_params: SamplingParams = field(default_factory=lambda: SamplingParams(temperature=0.7, max_tokens=256))

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise MendlabError(f"--mode {self.mode!r}: ab (MT-Bench: [[A]], [[B]] or [[C]]) or score (1–8 each)")
        if self.max_tokens < 1:
            raise MendlabError("--max-tokens must be at least 1")
        sources = sum((self.pairs_file is not None, self.prompts_file is not None, bool(self.from_runs)))
        if sources != 1:
            raise MendlabError(
                "judge what: a pairs file (PAIRS.jsonl), --prompts FILE with -m A -m B, or --from-run RUN (one of them)"
            )
        if self.prompts_file is not None and len(self.models) != 2:
            raise MendlabError(f"--prompts: two models answer them (-m A -m B), got {len(self.models)}")
        if self.pairs_file is not None and self.models:
            raise MendlabError("-m: a pairs file names its models (model_a, model_b)")


def _digest(items: Sequence[Any]) -> str:
    return config_sha256({"items": list(items)})


def _open(store: ResultsStore, run_id: str | None, kind: str, identity: dict[str, Any], new_run: bool) -> Run:
    rid = run_id or f"{kind}-{config_sha256(identity)[:10]}"
    return store.ensure_run(rid, kind, identity, new_if_changed=new_run)


def _announce(console: Console, run: Run) -> None:
    if run.moved:
        console.print(run.moved)
    elif run.resumed:
        console.print(f"run [bold]{run.id}[/]: resuming (judgments already stored are reused)")


class _Runner:
    """Plays tasks for one run with a progress bar; collects what failed."""

    def __init__(self, store: ResultsStore, run: Run, console: Console, retry_errors: bool) -> None:
        self.store, self.run, self.console, self.retry_errors = store, run, console, retry_errors
        self.engine = Engine(store, run)
        self.summaries: list[TaskSummary] = []

    def play(self, task: Task[Any, Any], spec: ModelSpec, model: ChatModel) -> None:
        recorded = RecordedModel(model, self.store, self.run.id)
        cfg = EngineConfig(engine_concurrency(spec), self.retry_errors)
        with progress_bar(self.console) as progress:
            bar = progress.add_task(f"{spec.name}: {task.name}", total=len(task.samples))
            progress.update(
                bar, completed=len(task.samples) - len(self.engine.pending(task, spec.name, cfg.retry_errors))
            )
            done = self.engine.run(task, recorded, cfg, subject=spec.name, on_done=lambda rec: progress.advance(bar))
            self.summaries.append(done)

    def errors(self, task: str, model: str, ids: set[str]) -> list[SampleRecord]:
        return [r for r in self.store.samples(self.run.id, task, model) if r.status == "error" and r.sample_id in ids]


def answer_task(prompts: Sequence[Prompt], params: SamplingParams, run_id: str) -> Task[Prompt, str]:
    """Each prompt answered once by the engine's model (the answers the judge compares)."""

    def solve(sample: Sample[Prompt], model: ChatModel) -> str:
        (done,) = model.chat(sample.input.messages, params)
        return done.text

    def score(sample: Sample[Prompt], text: str) -> Outcome:
        msgs = (*sample.input.messages, Message("assistant", text))
        conv = Conversation(msgs, id=f"{run_id}:answer:{sample.id}", meta={"run": run_id, "experiment": "answer"})
        return Outcome(conversations=(conv,), data={"answer": text}, score={})

    return Task("answer", [Sample(p.id, p) for p in prompts], solve, score)


def _write(out_dir: Path, files: Mapping[str, str]) -> list[Path]:
    """Each file whole or not at all (a temporary file, then a rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out_dir / name)
        written.append(out_dir / name)
    return written


def _jsonl(rows: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _mean(m: MeanEstimate | None) -> dict[str, Any] | None:
    return None if m is None else m.to_json()


def stats_json(s: JudgeStats, model_a: str, model_b: str) -> dict[str, Any]:
    return {
        "model_a": model_a,
        "model_b": model_b,
        "pairs": s.pairs,
        "unparsed": {
            "pairs": s.unparsed_pairs,
            "judgments": s.unparsed_judgments,
            "reasons": dict(s.unparsed_reasons),
        },
        "win_rate_a": s.win_rate.to_json(),
        "win_rate_a_without_ties": s.win_rate_without_ties.to_json(),
        "tie_rate": s.tie_rate.to_json(),
        "flipped_to_tie": s.flipped,
        "position": {
            "first_shown_wins": s.first_position_wins.to_json(),
            "consistency": s.consistency.to_json(),
            "both_orders_chose_first": s.both_first,
            "both_orders_chose_second": s.both_second,
        },
        "length": {"longer_wins": s.longer_wins.to_json()},
        **(
            {
                "scores": {
                    "mean_a": _mean(s.mean_score_a),
                    "mean_b": _mean(s.mean_score_b),
                    "histogram": {str(k): v for k, v in s.score_histogram},
                    "extreme_1_or_8": s.extreme_scores.to_json() if s.extreme_scores else None,
                }
            }
            if s.mean_score_a is not None
            else {}
        ),
    }


DEFINITIONS = {
    "win_rate_a": "pairs model a won, ties counted as half a win (FastChat's win rate adjusted); a pair's verdict "
    "is the winner when both orders agree, else a tie",
    "win_rate_a_without_ties": "of the pairs not tied, those model a won",
    "flipped_to_tie": "pairs whose two orders disagreed, counted as ties",
    "unparsed": "judgments with no readable verdict (kept raw in verdicts.jsonl); their pairs are in no rate",
    "first_shown_wins": "of the judgments with a winner, those won by the answer shown first (0.5: no position bias)",
    "consistency": "of the pairs judged in both orders, those with the same verdict both times",
    "longer_wins": "of the judgments with a winner, between answers of unequal length, those won by the longer",
    "intervals": "95%; rates over pairs: percentile bootstrap over pairs, at least as wide as Wilson's (the win "
    "rate at its fractional count); over judgments: resampled by pair; mean scores: Student's t",
}


def _rate(e: Estimate) -> str:
    return str(e)


def _markdown(title: str, s: JudgeStats, model_a: str, model_b: str, mode: str) -> str:
    lines = [
        f"# {title}",
        "",
        f"{model_a} (a) vs {model_b} (b), judged in both orders ({mode} mode); {s.pairs} pairs, "
        f"{s.unparsed_pairs} without a readable verdict ({s.unparsed_judgments} judgments).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| win rate of a, ties half | {s.win_rate} |",
        f"| win rate of a, ties left out | {_rate(s.win_rate_without_ties)} |",
        f"| ties | {_rate(s.tie_rate)} ({s.flipped} flipped with the order) |",
        f"| answer shown first wins | {_rate(s.first_position_wins)} |",
        f"| same verdict in both orders | {_rate(s.consistency)} |",
        f"| both orders chose the first shown / the second | {s.both_first} / {s.both_second} |",
        f"| longer answer wins | {_rate(s.longer_wins)} |",
    ]
    if s.mean_score_a is not None and s.mean_score_b is not None:
        hist = " · ".join(f"{k}: {v}" for k, v in s.score_histogram)
        lines += [
            f"| mean score of a / b (1–8) | {s.mean_score_a} / {s.mean_score_b} |",
            f"| scores given | {hist} |",
            f"| scores of 1 or 8 | {_rate(s.extreme_scores) if s.extreme_scores else 'n/a'} |",
        ]
    if s.unparsed_reasons:
        lines += ["", "Unreadable judgments: " + "; ".join(f"{why} ×{n}" for why, n in s.unparsed_reasons)]
    lines += ["", "Every pair with both raw judgments: `verdicts.jsonl`; every figure: `summary.json`."]
    return "\n".join(lines) + "\n"


def _table(console: Console, title: str, rows: Sequence[tuple[str, str]]) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("figure")
    table.add_column("value")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _judged(store: ResultsStore, run_id: str, judge: str, pairs: Sequence[Pair]) -> list[PairResult]:
    wanted = {p.id for p in pairs}
    return [
        PairResult.from_sample(r.data, r.score)
        for r in store.samples(run_id, "judge", judge)
        if r.status == "ok" and r.sample_id in wanted
    ]


def _verdict_rows(results: Sequence[PairResult], pairs: Sequence[Pair]) -> list[dict[str, Any]]:
    by_id = {r.id: r for r in results}
    rows = []
    for p in pairs:
        r = by_id.get(p.id)
        if r is None:
            continue
        rows.append(
            {
                **p.to_json(),
                "verdict": r.winner,
                "winner_model": {"a": p.model_a, "b": p.model_b}.get(r.winner or ""),
                "consistent": r.consistent,
                "judgments": [j.to_json() for j in r.judgments],
            }
        )
    return rows


def run_compare(
    db: Path,
    config: Path | None,
    cfg: CompareConfig,
    *,
    run_id: str | None,
    new_run: bool,
    retry_errors: bool,
    out_dir: Path,
    console: Console,
    load: Loader = load_model,
) -> dict[str, Any]:
    """Judge the pairs and write the files; returns summary.json's content."""
    registry = load_registry(config)
    judge_spec = registry.get(cfg.judge)
    answer_specs = [registry.get(m) for m in cfg.models] if cfg.prompts_file is not None else []
    params = judge_params(cfg.max_tokens)
    with ResultsStore(db) as store:
        prompts: list[Prompt] = []
        pairs: list[Pair] = []
        if cfg.pairs_file is not None:
            pairs = read_pairs(cfg.pairs_file)
            source: dict[str, Any] = {"file": str(cfg.pairs_file), "pairs_sha256": _digest([p.id for p in pairs])}
        elif cfg.prompts_file is not None:
            prompts = read_prompts(cfg.prompts_file)
            source = {
                "prompts_sha256": _digest([[p.id, [m.to_openai() for m in p.messages]] for p in prompts]),
                "models": [s.name for s in answer_specs],
                "answer_params": {k: v for k, v in cfg.answer_params.as_dict().items() if k != "n"},
            }
        else:
            pairs, names = stored_pairs(store, cfg.from_runs, cfg.models)
            source = {
                "runs": list(cfg.from_runs),
                "models": list(names),
                "pairs_sha256": _digest([p.id for p in pairs]),
            }
        identity = {
            "mode": cfg.mode,
            "judge": judge_spec.name,
            "max_tokens": cfg.max_tokens,
            "prompts": prompt_version(),
            "source": source,
        }
        run = _open(store, run_id, "judge", identity, new_run)
        _announce(console, run)
        runner = _Runner(store, run, console, retry_errors)
        failed: list[SampleRecord] = []
        if prompts:
            answers: dict[str, dict[str, str]] = {}
            for spec in answer_specs:
                model = load(spec)
                try:
                    runner.play(answer_task(prompts, cfg.answer_params, run.id), spec, model)
                finally:
                    model.close()
                ids = {p.id for p in prompts}
                failed += runner.errors("answer", spec.name, ids)
                answers[spec.name] = {
                    r.sample_id: str(r.data["answer"])
                    for r in store.samples(run.id, "answer", spec.name)
                    if r.status == "ok"
                }
            a, b = (s.name for s in answer_specs)
            pairs = [
                pair_of(p.messages, answers[a][p.id], answers[b][p.id], a, b, prompt_id=p.id)
                for p in prompts
                if p.id in answers[a] and p.id in answers[b]
            ]
        judge_model = load(judge_spec)
        try:
            runner.play(judge_task(pairs, cfg.mode, params, run.id, judge_spec.name), judge_spec, judge_model)
        finally:
            judge_model.close()
        failed += runner.errors("judge", judge_spec.name, {p.id for p in pairs})
        results = _judged(store, run.id, judge_spec.name, pairs)
    model_a = pairs[0].model_a if pairs else (answer_specs[0].name if answer_specs else "a")
    model_b = pairs[0].model_b if pairs else (answer_specs[1].name if answer_specs else "b")
    stats = judge_stats(results, cfg.mode)
    summary = {
        "run": run.id,
        "judge": judge_spec.name,
        "mode": cfg.mode,
        "config": dict(run.config),
        "level": 0.95,
        "asked": len(pairs) if not prompts else len(prompts),
        "failed": [{"task": r.task, "model": r.model, "sample": r.sample_id, "error": r.error} for r in failed],
        **stats_json(stats, model_a, model_b),
        "definitions": DEFINITIONS,
    }
    title = f"mendlab judge — {judge_spec.name} on {model_a} vs {model_b}"
    files = {
        "verdicts.jsonl": _jsonl(_verdict_rows(results, pairs)),
        "summary.json": json.dumps(summary, ensure_ascii=False, indent=1) + "\n",
        "report.md": _markdown(title, stats, model_a, model_b, cfg.mode),
    }
    _table(
        console,
        f"{judge_spec.name} judges {model_a} (a) vs {model_b} (b), both orders, 95% CI",
        [
            ("pairs (unreadable)", f"{stats.pairs} ({stats.unparsed_pairs})"),
            ("win rate of a, ties half", str(stats.win_rate)),
            ("win rate of a, ties left out", str(stats.win_rate_without_ties)),
            ("ties (flipped with the order)", f"{stats.tie_rate} ({stats.flipped})"),
            ("answer shown first wins", str(stats.first_position_wins)),
            ("same verdict in both orders", str(stats.consistency)),
            ("longer answer wins", str(stats.longer_wins)),
            *(
                [("mean score a / b (1–8)", f"{stats.mean_score_a} / {stats.mean_score_b}")]
                if stats.mean_score_a is not None
                else []
            ),
        ],
    )
    for path in _write(out_dir, files):
        console.print(f"wrote {path}")
    if failed:
        first = failed[0]
        raise IncompleteRun(
            f"judge run {run.id!r}: {len(failed)} sample(s) failed and are left out, e.g. {first.task} "
            f"{first.sample_id} on {first.model}: {first.error}. Rerun with --retry-errors to play them again"
        )
    return summary


@dataclass(frozen=True)
class AgreementConfig:
    """Which calendar turns the judge grades, and whether it also compares right and wrong answers."""

    judge: str
    from_run: str | None = None  # default: the latest calendar run
    experiments: tuple[str, ...] = ("reliability", "dialog", "replay")
    limit: int | None = 200
    seed: int = 0
    max_tokens: int = 512
    pairs: bool = False

    def __post_init__(self) -> None:
        bad = [e for e in self.experiments if e not in AGREEMENT_EXPERIMENTS]
        if bad or not self.experiments:
            raise MendlabError(f"--experiments: {', '.join(bad) or '(none)'} (of {', '.join(AGREEMENT_EXPERIMENTS)})")
        if self.limit is not None and self.limit < 1:
            raise MendlabError("--limit must be at least 1")
        if self.max_tokens < 1:
            raise MendlabError("--max-tokens must be at least 1")


def agreement_json(s: AgreementStats) -> dict[str, Any]:
    return {
        "turns": s.turns,
        "unparsed": s.unparsed,
        "agreement": s.agreement.to_json(),
        "kappa": s.kappa.to_json(),
        "judge_calls_wrong_when_rules_do": s.catches_wrong.to_json(),
        "judge_calls_right_when_rules_do": s.passes_right.to_json(),
        "confusion": s.confusion,
        "missed_errors": dict(s.missed_errors),
    }


AGREEMENT_DEFINITIONS = {
    "agreement": "turns where the judge's [[RIGHT]]/[[WRONG]] is the rule grader's verdict (right: no error)",
    "kappa": "Cohen's kappa of judge and rules: agreement beyond their base rates (1 perfect, 0 chance); "
    "interval: percentile bootstrap over conversations; null where undefined",
    "judge_calls_wrong_when_rules_do": "of the turns the rules call wrong, those the judge calls wrong",
    "judge_calls_right_when_rules_do": "of the turns the rules call right, those the judge calls right",
    "missed_errors": "error types of the wrong turns the judge called right",
    "prefers_right": "pairs of a right and a wrong answer to the same history: those whose verdict (both orders "
    "agreeing) is the right answer; ties and flips count as not preferring it",
    "intervals": "95%; percentile bootstrap over conversations, at least as wide as Wilson's",
}


def kappa_text(k: MeanEstimate) -> str:
    """Kappa with two decimals; n/a where it is undefined (a rater that gave one verdict throughout)."""
    if k.value != k.value:
        return "n/a (undefined: one verdict throughout)"
    if k.low != k.low:
        return f"{k.value:.2f} (turns={k.n})"
    return f"{k.value:.2f} [{k.low:.2f}, {k.high:.2f}] (turns={k.n})".replace("-0.00", "0.00")


def run_agreement(
    db: Path,
    config: Path | None,
    cfg: AgreementConfig,
    *,
    run_id: str | None,
    new_run: bool,
    retry_errors: bool,
    out_dir: Path,
    console: Console,
    load: Loader = load_model,
) -> dict[str, Any]:
    """Grade calendar turns with the judge beside the rules; returns summary.json's content."""
    from mendlab.dialogs.experiments import load_results
    from mendlab.dialogs.runner import latest_calendar_run

    judge_spec = load_registry(config).get(cfg.judge)
    params = judge_params(cfg.max_tokens)
    with ResultsStore(db) as store:
        cal = cfg.from_run or latest_calendar_run(store)
        if cal is None:
            raise MendlabError(f"{db}: no calendar run in this store (run `mendlab run` first, or pass --from-run)")
        stored = store.run(cal)
        if stored is None or stored.kind != "calendar":
            raise MendlabError(f"{db}: no calendar run named {cal!r} (see `mendlab runs`)")
        turns = calendar_turns(load_results(store, cal), cal, cfg.experiments)
        if not turns:
            raise MendlabError(f"run {cal!r}: no graded turns in {', '.join(cfg.experiments)}")
        chosen: list[Turn] = balanced(turns, [t.correct for t in turns], cfg.limit, cfg.seed)
        all_pairs = right_wrong_pairs(turns) if cfg.pairs else []
        pairs: list[Pair] = balanced(all_pairs, [True] * len(all_pairs), cfg.limit, cfg.seed) if all_pairs else []
        identity = {
            "calendar_run": cal,
            "experiments": list(cfg.experiments),
            "limit": cfg.limit,
            "seed": cfg.seed,
            "judge": judge_spec.name,
            "max_tokens": cfg.max_tokens,
            "prompts": prompt_version(),
            "turns_sha256": _digest([t.id for t in chosen]),
            **({"pairs_sha256": _digest([p.id for p in pairs])} if cfg.pairs else {}),
        }
        run = _open(store, run_id, "judge-agreement", identity, new_run)
        _announce(console, run)
        runner = _Runner(store, run, console, retry_errors)
        model = load(judge_spec)
        try:
            runner.play(grade_task(chosen, params, run.id, judge_spec.name), judge_spec, model)
            if pairs:
                runner.play(judge_task(pairs, "ab", params, run.id, judge_spec.name), judge_spec, model)
        finally:
            model.close()
        failed = runner.errors("grade", judge_spec.name, {t.id for t in chosen})
        failed += runner.errors("judge", judge_spec.name, {p.id for p in pairs})
        graded = {r.sample_id: r for r in store.samples(run.id, "grade", judge_spec.name) if r.status == "ok"}
        judged = _judged(store, run.id, judge_spec.name, pairs)
    rows = [
        (t.conversation, t.correct, graded[t.id].score.get("judge_correct"), t.errors) for t in chosen if t.id in graded
    ]
    stats = agreement_stats(rows)
    summary: dict[str, Any] = {
        "run": run.id,
        "judge": judge_spec.name,
        "calendar_run": cal,
        "config": dict(run.config),
        "level": 0.95,
        "available": {"right": sum(t.correct for t in turns), "wrong": sum(not t.correct for t in turns)},
        "failed": [{"task": r.task, "sample": r.sample_id, "error": r.error} for r in failed],
        "grade": agreement_json(stats),
    }
    table_rows = [
        ("turns graded (unreadable)", f"{stats.turns} ({stats.unparsed})"),
        ("agreement with the rules", str(stats.agreement)),
        ("Cohen's kappa", kappa_text(stats.kappa)),
        ("wrong turns the judge calls wrong", str(stats.catches_wrong)),
        ("right turns the judge calls right", str(stats.passes_right)),
    ]
    if cfg.pairs:
        pair_stats = judge_stats(judged, "ab")
        by_conv: dict[str, list[int]] = {}
        pair_conv = {p.id: str(p.meta.get("conversation", p.id)) for p in pairs}
        for r in judged:
            if r.winner is not None:
                by_conv.setdefault(pair_conv[r.id], []).append(int(r.winner == "a"))
        prefers = ratio_ci([(sum(v), len(v)) for v in by_conv.values()])
        summary["pairs"] = {
            "available": len(all_pairs),
            "prefers_right": prefers.to_json(),
            **stats_json(pair_stats, "right", "wrong"),
        }
        table_rows.append(("right answer preferred over a wrong one", str(prefers)))
        table_rows.append(("  answer shown first wins", str(pair_stats.first_position_wins)))
    summary["definitions"] = AGREEMENT_DEFINITIONS
    grade_rows = [
        {**t.to_json(), "judge_correct": graded[t.id].score.get("judge_correct"), "raw": graded[t.id].data.get("raw"),
         "error": graded[t.id].data.get("error")}
        for t in chosen
        if t.id in graded
    ]  # fmt: skip
    md = [
        f"# mendlab judge agreement — {judge_spec.name} vs the rule grader on run `{cal}`",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in table_rows),
        "",
        f"Missed error types: {', '.join(f'{e} ×{n}' for e, n in stats.missed_errors) or 'none'}.",
        "Every turn with the judge's raw answer: `grades.jsonl`; every figure: `summary.json`.",
    ]
    files = {
        "grades.jsonl": _jsonl(grade_rows),
        "summary.json": json.dumps(summary, ensure_ascii=False, indent=1) + "\n",
        "report.md": "\n".join(md) + "\n",
    }
    if cfg.pairs:
        files["verdicts.jsonl"] = _jsonl(_verdict_rows(judged, pairs))
    _table(console, f"{judge_spec.name} vs the rule grader on {cal}, 95% CI over conversations", table_rows)
    for path in _write(out_dir, files):
        console.print(f"wrote {path}")
    if failed:
        raise IncompleteRun(
            f"judge run {run.id!r}: {len(failed)} sample(s) failed and are left out, e.g. {failed[0].sample_id}: "
            f"{failed[0].error}. Rerun with --retry-errors to play them again"
        )
    return summary


__all__ = ["AgreementConfig", "CompareConfig", "content_id", "run_agreement", "run_compare"]
