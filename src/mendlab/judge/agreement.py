"""How far to trust a judge: its verdicts on calendar turns beside the rule grader's.

The rule grader knows the truth (the simulated calendar); a judge model only reads the conversation.
Two ways to ask it, over the stored turns of a calendar run:

- *grade*: is this answer right? ([[RIGHT]] or [[WRONG]]), one judgment per distinct (history, answer);
  agreement with the rules, Cohen's kappa (agreement beyond what the two raters' base rates give by
  chance), and which error types the judge misses;
- *pairs*: a right and a wrong answer to the very same history (reliability tries, first turns of
  dialogs, replayed mistakes), judged pairwise in both orders: how often the judge prefers the right one.

Turns are chosen balanced (as many right as wrong, when the run has them), by a seeded draw over
their ids, so two judges asked with the same `--limit` and seed see the same turns. Intervals
resample whole conversations (the turns of one dialog are not independent).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mendlab.conversation import Conversation
from mendlab.dialogs.experiments import DialogResult
from mendlab.engine import Outcome, Sample, Task
from mendlab.judge.pairs import Pair, content_id, pair_of
from mendlab.judge.prompts import grade_messages, parse_grade
from mendlab.models import ChatModel, Message, SamplingParams
from mendlab.stats import Estimate, MeanEstimate, cohen_kappa_ci, ratio_ci

AGREEMENT_EXPERIMENTS = ("reliability", "dialog", "replay", "false_feedback")


@dataclass(frozen=True)
class Turn:
    """One graded assistant turn: its history, its text, and the rule grader's verdict."""

    id: str
    conversation: str  # where it was first seen (the cluster of its interval)
    history: tuple[Message, ...]
    reply: str
    correct: bool
    errors: tuple[str, ...]
    model: str
    experiment: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "conversation": self.conversation,
            "model": self.model,
            "experiment": self.experiment,
            "history": [m.to_openai() for m in self.history],
            "reply": self.reply,
            "rule_correct": self.correct,
            "rule_errors": list(self.errors),
        }


def calendar_turns(results: Sequence[DialogResult], run_id: str, experiments: Sequence[str]) -> list[Turn]:
    """Every graded assistant turn of the chosen experiments, each distinct (history, answer) once."""
    out: dict[str, Turn] = {}
    for r in results:
        if r.experiment not in experiments:
            continue
        at = [i for i, m in enumerate(r.messages) if m.role == "assistant"]
        conv = r.conversation_id(run_id)
        for g in r.grades:
            if not 0 < g.turn <= len(at):
                continue
            pos = at[g.turn - 1]
            history = tuple(Message(m.role, m.content) for m in r.messages[:pos])
            reply = r.messages[pos].content
            tid = content_id([m.to_openai() for m in history], reply)
            if tid not in out:
                out[tid] = Turn(tid, conv, history, reply, g.correct, g.errors, r.model, r.experiment)
    return list(out.values())


def balanced(items: Sequence[Any], right: Sequence[bool], limit: int | None, seed: int) -> list[Any]:
    """Up to `limit` items, half right and half wrong where there are enough of each (the rest from the
    other side), drawn by `seed` over the items sorted by id; all of them without a limit."""
    ordered = sorted(zip(items, right, strict=True), key=lambda t: str(t[0].id))
    if limit is None or limit >= len(ordered):
        return [t[0] for t in ordered]
    rng = random.Random(seed)
    yes = [t[0] for t in ordered if t[1]]
    no = [t[0] for t in ordered if not t[1]]
    rng.shuffle(yes)
    rng.shuffle(no)
    take_no = min(len(no), max(limit // 2, limit - len(yes)))
    chosen = no[:take_no] + yes[: limit - take_no]
    return sorted(chosen, key=lambda x: str(x.id))


@dataclass(frozen=True)
class GradeVerdict:
    raw: str
    judge_correct: bool | None
    error: str = ""


def grade_task(turns: Sequence[Turn], params: SamplingParams, run_id: str, judge_name: str) -> Task[Turn, GradeVerdict]:
    def solve(sample: Sample[Turn], judge: ChatModel) -> GradeVerdict:
        (done,) = judge.chat(grade_messages(sample.input.history, sample.input.reply), params)
        verdict, why = parse_grade(done.text)
        return GradeVerdict(done.text, verdict, why)

    def score(sample: Sample[Turn], v: GradeVerdict) -> Outcome:
        t = sample.input
        conv = Conversation(
            messages=(*grade_messages(t.history, t.reply), Message("assistant", v.raw)),
            id=f"{run_id}:grade:{t.id}",
            model=judge_name,
            meta={"run": run_id, "experiment": "judge-grade", "turn": t.id},
        )
        return Outcome(
            conversations=(conv,),
            data={"turn": t.to_json(), "raw": v.raw, "error": v.error or None},
            score={"judge_correct": v.judge_correct, "rule_correct": t.correct},
        )

    return Task("grade", [Sample(t.id, t) for t in turns], solve, score)


def right_wrong_pairs(turns: Sequence[Turn]) -> list[Pair]:
    """A right and a wrong answer to the same history: each wrong answer with one right answer to the
    same history (the first by id), a as the right one. Both orders are judged, so a/b is no position."""
    by_history: dict[str, list[Turn]] = defaultdict(list)
    for t in turns:
        by_history[content_id([m.to_openai() for m in t.history])].append(t)
    out = []
    for group in by_history.values():
        rights = sorted((t for t in group if t.correct), key=lambda t: t.id)
        if not rights:
            continue
        for wrong in sorted((t for t in group if not t.correct), key=lambda t: t.id):
            ok = rights[0]
            out.append(
                pair_of(
                    ok.history,
                    ok.reply,
                    wrong.reply,
                    "right",
                    "wrong",
                    right_turn=ok.id,
                    wrong_turn=wrong.id,
                    conversation=wrong.conversation,
                    wrong_errors=list(wrong.errors),
                    models=[ok.model, wrong.model],
                )
            )
    return out


@dataclass(frozen=True)
class AgreementStats:
    """The judge's grades beside the rules', over the turns both read."""

    turns: int
    unparsed: int
    agreement: Estimate
    kappa: MeanEstimate  # Cohen's kappa with a bootstrap interval over conversations (nan where undefined)
    catches_wrong: Estimate  # of the turns the rules call wrong, those the judge calls wrong
    passes_right: Estimate  # of the turns the rules call right, those the judge calls right
    confusion: dict[str, int]  # rule_right/rule_wrong × judge_right/judge_wrong
    missed_errors: tuple[tuple[str, int], ...]  # error types of the wrong turns the judge called right


def agreement_stats(rows: Sequence[tuple[str, bool, bool | None, Sequence[str]]]) -> AgreementStats:
    """`rows`: (conversation, rule says right, judge says right or None, the rule's errors)."""
    read = [r for r in rows if r[2] is not None]
    by_conv: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    for conv, rule, judge, _ in read:
        by_conv[conv].append((rule, bool(judge)))
    clusters = list(by_conv.values())

    def rate(keep: Any, hit: Any) -> Estimate:
        return ratio_ci([(sum(hit(p) for p in c if keep(p)), sum(1 for p in c if keep(p))) for c in clusters])

    confusion = Counter(
        f"rule_{'right' if rule else 'wrong'}_judge_{'right' if judge else 'wrong'}" for _, rule, judge, _ in read
    )
    missed: Counter[str] = Counter(e for _, rule, judge, errs in read if not rule and judge for e in errs)
    keys = [f"rule_{a}_judge_{b}" for a in ("right", "wrong") for b in ("right", "wrong")]
    return AgreementStats(
        turns=len(rows),
        unparsed=len(rows) - len(read),
        agreement=rate(lambda p: True, lambda p: p[0] == p[1]),
        kappa=cohen_kappa_ci(clusters),
        catches_wrong=rate(lambda p: not p[0], lambda p: not p[1]),
        passes_right=rate(lambda p: p[0], lambda p: p[1]),
        confusion={k: confusion.get(k, 0) for k in keys},
        missed_errors=tuple(sorted(missed.items(), key=lambda kv: (-kv[1], kv[0]))),
    )
