"""Training dialogues from the results store: the model's own mistakes, the feedback it got, and a
right answer; plus turns it answered right the first time, so that it keeps doing that.

From every graded answer of the chosen runs:

- a wrong answer becomes a *fix* dialogue when the model fixed it later on the same step (the history
  up to and including the wrong answer, the simulated user's feedback that followed it, then the
  model's own right answer), else an *expected* one (the same, answered with the scenario's expected
  call as the scenario writes it). Where no feedback followed (the last allowed attempt, a reliability
  try) the rules write it at the run's rung (`--rung` for runs without one);
- a right first answer becomes a *clean* dialogue (its history, then that answer).

Only the last answer of a dialogue is trained: every earlier assistant turn, the wrong one above all,
carries OpenAI's `"weight": 0` and stays in the context untrained (see `labels`). On-policy first
(SCoRe, arXiv 2409.12917): mistakes of other models come only from the replay experiment, and only
when asked for; each line's `source` says whose mistake it was.

Runs on an evaluation scenario are never used (see `overlap`): left out when no run is named,
refused when one is; every dialogue is checked against the evaluation set too.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mendlab.dialogs.experiments import DialogResult, load_results
from mendlab.dialogs.feedback import RUNGS, Rung, rule_feedback, rung_of
from mendlab.dialogs.grading import TurnGrade
from mendlab.dialogs.scenario import BUILTIN, Scenario, load_scenario
from mendlab.errors import ConfigError, MendlabError
from mendlab.models.base import Message
from mendlab.store import ResultsStore
from mendlab.training.chats import read_chats
from mendlab.training.overlap import EvalSet, dialogue_overlap, scenario_overlap

KINDS = ("fix", "expected", "clean")
EXPERIMENTS = ("dialog", "replay", "reliability")


def parse_list(text: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    bad = [c for c in chosen if c not in allowed]
    if bad or not chosen:
        raise MendlabError(f"--{what}: {', '.join(bad) or repr(text)} is not one of {', '.join(allowed)}")
    return chosen


@dataclass(frozen=True)
class BuildConfig:
    runs: tuple[str, ...] = ()  # none: every calendar run that is not on an evaluation scenario
    models: tuple[str, ...] = ()  # none: every model of those runs
    experiments: tuple[str, ...] = ("dialog",)
    kinds: tuple[str, ...] = KINDS
    clean_ratio: float | None = 1.0  # clean dialogues per mistake dialogue (None: all of them)
    rung: Rung = "pointed"  # feedback written by the rules where none was stored
    seed: int = 0
    drop_overlap: bool = False

    def __post_init__(self) -> None:
        if self.clean_ratio is not None and self.clean_ratio < 0:
            raise MendlabError("--clean-ratio must be 0 or more")
        if self.rung not in RUNGS:
            raise MendlabError(f"--rung {self.rung!r}: one of {', '.join(RUNGS)}")


@dataclass(frozen=True)
class Dialogue:
    messages: tuple[dict[str, Any], ...]
    source: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.source["kind"])

    def key(self) -> str:
        return json.dumps(self.messages, sort_keys=True, ensure_ascii=False)

    def to_json(self) -> dict[str, Any]:
        return {"messages": list(self.messages), "source": dict(self.source)}


@dataclass(frozen=True)
class Built:
    dialogues: tuple[Dialogue, ...]
    notes: tuple[str, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)


def _context(m: Message) -> dict[str, Any]:
    """A message of the history: assistant turns stay in the context, untrained."""
    d: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.role == "assistant":
        d["weight"] = 0
    return d


def _answer(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def _expected(scenario: Scenario, g: TurnGrade) -> str:
    return scenario.expected(g.step - 1).render(scenario.api)


def _base(r: DialogResult, run_id: str) -> dict[str, Any]:
    return {"model": r.model, "run": run_id, "scenario": r.scenario, "experiment": r.experiment, "rung": r.rung}


def from_dialog(r: DialogResult, scenario: Scenario, run_id: str, default_rung: Rung) -> list[Dialogue]:
    """The dialogues of one played dialog (or reliability try): one per graded answer."""
    msgs = r.messages
    where = [i for i, m in enumerate(msgs) if m.role == "assistant"]
    if len(where) != len(r.grades):
        return []  # a transcript whose grades do not line up with its turns: not guessed at
    rung: Rung = r.rung if r.rung in RUNGS else default_rung
    out = []
    for n, (i, g) in enumerate(zip(where, r.grades, strict=True)):
        history = [_context(m) for m in msgs[:i]]
        src = {**_base(r, run_id), "rep": r.rep, "step": g.step, "turn": g.turn, "attempt": g.attempt}
        if g.correct:
            if g.attempt == 0:
                out.append(Dialogue((*history, _answer(msgs[i].content)), {"kind": "clean", **src}))
            continue
        nxt = msgs[i + 1] if i + 1 < len(msgs) else None
        if nxt is not None and nxt.role == "user" and rung_of(nxt.origin) is not None:
            feedback, said = nxt.content, "stored"
        else:
            feedback = rule_feedback(g.errors, scenario.expected(g.step - 1), scenario, rung)
            said = f"rules:{rung}"
        fix = None
        for later in r.grades[n + 1 :]:
            if later.step != g.step:
                break  # the script moved on
            if later.correct:
                fix = later
                break
        wrong = {**src, "errors": list(g.errors), "feedback": said}
        convo = (*history, _context(msgs[i]), {"role": "user", "content": feedback})
        if fix is not None:
            out.append(Dialogue((*convo, _answer(fix.reply)), {"kind": "fix", **wrong, "fix_turn": fix.turn}))
        else:
            out.append(Dialogue((*convo, _answer(_expected(scenario, g))), {"kind": "expected", **wrong}))
    return out


def from_replays(results: Sequence[DialogResult], scenario: Scenario, run_id: str) -> list[Dialogue]:
    """One dialogue per replayed mistake, rung and model: the first attempt that fixed it, else the
    expected call. The mistake is someone else's (its `mistake_origin`): off-policy data."""
    groups: dict[tuple[str, str, str], list[DialogResult]] = {}
    for r in results:
        mistake = r.extra.get("mistake") or {}
        groups.setdefault((r.model, r.rung, str(mistake.get("id", ""))), []).append(r)
    out = []
    for (_, _, mid), rs in groups.items():
        rs = sorted(rs, key=lambda r: r.rep)
        if not rs[0].grades or len(rs[0].messages) < 3:
            continue
        first = rs[0]
        g = first.grades[-1]
        mistake = first.extra.get("mistake") or {}
        src = {
            "kind": "expected",
            **_base(first, run_id),
            "step": g.step,
            "turn": sum(1 for m in first.messages[:-1] if m.role == "assistant"),  # the mistake's
            "attempt": 0,
            "errors": list(mistake.get("errors", [])),
            "feedback": "stored",
            "mistake": mid,
            "mistake_origin": mistake.get("origin"),
        }
        history = tuple(_context(m) for m in first.messages[:-1])
        fixed = next((r for r in rs if r.grades and r.grades[-1].correct), None)
        if fixed is not None:
            answer, src = fixed.messages[-1].content, {**src, "kind": "fix", "rep": fixed.rep}
        else:
            answer = _expected(scenario, g)
        out.append(Dialogue((*history, _answer(answer)), src))
    return out


def _result_order(r: DialogResult) -> tuple[str, int, str, int, str]:
    mistake = r.extra.get("mistake") or {}
    return (r.model, EXPERIMENTS.index(r.experiment), r.rung, r.rep, str(mistake.get("id", "")))


def _run_scenario(store_refs: Mapping[str, set[str]], rid: str, ev: EvalSet) -> tuple[Scenario | None, str]:
    """The scenario a run played, or None and why it cannot be trained on."""
    refs = store_refs.get(rid, set())
    if not refs:
        return None, "no dialogs stored"
    if len(refs) > 1:
        return None, f"it played several scenarios ({', '.join(sorted(refs))})"
    (ref,) = refs
    if ref in BUILTIN:
        return None, f"it plays the evaluation scenario {ref!r}"
    try:
        scenario = load_scenario(ref)
    except ConfigError as exc:
        return None, f"its scenario cannot be read ({exc})"
    if scenario.mode != "text":
        return None, f"its scenario {ref!r} is played in {scenario.mode} mode (not supported yet)"
    why = scenario_overlap(scenario, ev)
    if why:
        return None, f"its scenario {ref!r} overlaps the evaluation set: {why}"
    return scenario, ""


def build(store: ResultsStore | None, cfg: BuildConfig, ev: EvalSet, chats: Sequence[Path] = ()) -> Built:
    """The dialogues of the chosen runs (none without a store), then those of the users' files."""
    notes: list[str] = []
    made: list[Dialogue] = []
    if store is not None:
        runs = [r for r in store.runs() if r["kind"] == "calendar"]
        known = {r["id"] for r in runs}
        for rid in cfg.runs:
            if rid not in known:
                raise MendlabError(f"no calendar run named {rid!r} in the store (see `mendlab runs`)")
        chosen = list(cfg.runs) or [r["id"] for r in runs]
        refs: dict[str, set[str]] = {}
        for conv in store.conversations():
            run = conv.meta.get("run")
            if isinstance(run, str) and run in chosen:
                refs.setdefault(run, set()).add(str(conv.meta.get("scenario_ref", conv.meta.get("scenario"))))
        models_seen: set[str] = set()
        for rid in chosen:
            scenario, why = _run_scenario(refs, rid, ev)
            if scenario is None:
                if cfg.runs:
                    raise MendlabError(f"run {rid!r} cannot be trained on: {why}")
                notes.append(f"left out run {rid!r}: {why}")
                continue
            results = sorted(
                (r for r in load_results(store, rid) if r.experiment in cfg.experiments), key=_result_order
            )
            models_seen.update(r.model for r in results)
            results = [r for r in results if not cfg.models or r.model in cfg.models]
            for r in results:
                if r.experiment != "replay":
                    made += from_dialog(r, scenario, rid, cfg.rung)
            made += from_replays([r for r in results if r.experiment == "replay"], scenario, rid)
        for m in cfg.models:
            if m not in models_seen:
                raise MendlabError(f"model {m!r} has no {'/'.join(cfg.experiments)} results in the chosen runs")
    made = _mix(_once([d for d in made if d.kind in cfg.kinds]), cfg)
    for path in chats:
        made += [
            Dialogue(c.messages, {"kind": "chat", "file": c.where.rsplit(":", 1)[0], "line": _line(c.where)}
                     | ({"path": c.path} if c.path is not None else {}))
            for c in read_chats(path)
        ]  # fmt: skip
    kept: list[Dialogue] = []
    dropped = 0
    for d in _once(made):
        overlap = dialogue_overlap(d.messages, ev)
        if overlap:
            if not cfg.drop_overlap:
                raise MendlabError(
                    f"{_describe(d)}: overlaps the evaluation set: {overlap} (--drop-overlap leaves such dialogues out)"
                )
            dropped += 1
            continue
        kept.append(d)
    if dropped:
        notes.append(f"left out {dropped} dialogue(s) that overlap the evaluation set")
    counts: dict[str, int] = {}
    for d in kept:
        counts[d.kind] = counts.get(d.kind, 0) + 1
    return Built(tuple(kept), tuple(notes), counts)


def _once(dialogues: Iterable[Dialogue]) -> list[Dialogue]:
    """Each conversation once (the tries of a reliability prompt are often the same answer)."""
    seen: set[str] = set()
    out = []
    for d in dialogues:
        key = d.key()
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _line(where: str) -> int:
    tail = where.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _describe(d: Dialogue) -> str:
    s = d.source
    if s["kind"] == "chat":
        return f"{s['file']}:{s['line']}" + (f" (path {s['path']})" if "path" in s else "")
    return f"run {s['run']!r}, {s['model']}, {s['experiment']} {s.get('rung', '')} turn {s.get('turn')}"


def _mix(made: list[Dialogue], cfg: BuildConfig) -> list[Dialogue]:
    """At most `clean_ratio` clean dialogues per mistake dialogue, drawn with `seed`, in their order."""
    clean = [i for i, d in enumerate(made) if d.kind == "clean"]
    mistakes = sum(1 for d in made if d.kind != "clean")
    if cfg.clean_ratio is None or not ({"fix", "expected"} & set(cfg.kinds)):
        return made
    keep = min(len(clean), int(cfg.clean_ratio * mistakes + 0.5))  # half up, not to the even
    chosen = set(random.Random(cfg.seed).sample(clean, keep))
    return [d for i, d in enumerate(made) if d.kind != "clean" or i in chosen]


def write_jsonl(dialogues: Iterable[Dialogue], out: Any) -> int:
    n = 0
    for d in dialogues:
        out.write(json.dumps(d.to_json(), ensure_ascii=False) + "\n")
        n += 1
    return n
