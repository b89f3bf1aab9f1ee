"""The calendar figures on hand-built transcripts whose right answers are known (counted by hand below),
and the cluster bootstrap against an exact enumeration of its resamples."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from mendlab.dialogs.experiments import DialogResult, Mistake, play_dialog, run_replay
from mendlab.dialogs.grading import grade_conversation
from mendlab.dialogs.metrics import dialog_stats, replay_stats
from mendlab.dialogs.scenario import load_scenario
from mendlab.models import Message, SamplingParams
from mendlab.reports.calendar import build_report, write_report
from mendlab.stats import Estimate, cluster_bootstrap, ratio_ci, wilson
from tests.scripted import ScriptedModel, as_model, right

CAL = load_scenario("calendar")
P = SamplingParams(max_tokens=64, temperature=0.7)
K = 3  # fix attempts allowed per step
TWELVE_H = 'time="5:00 PM"'


def perfect(idx: int, k: int) -> str:
    return right(CAL, idx)


def errs_once_then_fixes(idx: int, k: int) -> str:
    return right(CAL, idx, "2023") if (idx, k) == (0, 0) else right(CAL, idx)


def never_fixes(idx: int, k: int) -> str:
    return right(CAL, idx, "2023")  # the year 2023 in every call, whatever it is told


def regresses(idx: int, k: int) -> str:
    if idx == 0 and k == 0:
        return right(CAL, 0, "2023")
    if idx == 0 and k == 1:
        return right(CAL, 0).replace('time="17:00"', TWELVE_H)  # the year is fixed, the time broken
    return right(CAL, idx)


POLICIES = {"perfect": perfect, "once": errs_once_then_fixes, "never": never_fixes, "regress": regresses}


def dialogs(rung: str = "pointed") -> list[DialogResult]:
    return [play_dialog(as_model(CAL, name, f), CAL, P, rung, max_fixes=K) for name, f in POLICIES.items()]  # type: ignore[arg-type]


def kn(e: Estimate) -> tuple[int, int]:
    return (e.successes, e.trials)


def test_dialog_figures_on_known_transcripts() -> None:
    stats = {s.model: s for s in dialog_stats(dialogs())}
    # The calendar has 6 scripted steps; "The current year is 2024." is step 2, a step like the others.
    # perfect: 6 answers, all right; nothing was ever pointed out, so there is no fix figure at all
    # (the old code counted the scripted "current year" turn as a failed fix: "fixed within K: 0/1").
    s = stats["perfect"]
    assert kn(s.first_try) == (6, 6)
    assert kn(s.pointed_gone) == (0, 0) and kn(s.correct_next) == (0, 0)
    assert kn(s.fixed_within_k) == (0, 0) and str(s.fixed_within_k) == "n/a"
    assert s.turns_to_fix.n == 0 and kn(s.regressions) == (0, 0) and kn(s.recurring) == (0, 6)
    # once: step 1 answered 2023, told once, fixed; 7 answers, 1 fix attempt.
    s = stats["once"]
    assert kn(s.first_try) == (5, 6)
    assert kn(s.pointed_gone) == (1, 1) and kn(s.correct_next) == (1, 1)
    assert kn(s.fixed_within_k) == (1, 1) and (s.turns_to_fix.value, s.turns_to_fix.n) == (1.0, 1)
    assert kn(s.regressions) == (0, 1) and kn(s.recurring) == (0, 7)
    # never: every step wrong, then K=3 useless attempts each: 6 × 4 = 24 answers, 18 attempts, 6 episodes.
    # wrong_year first appears on step 1; each of the 4 answers of steps 2..6 repeats it: 20 recurring.
    s = stats["never"]
    assert kn(s.first_try) == (0, 6)
    assert kn(s.pointed_gone) == (0, 18) and kn(s.correct_next) == (0, 18)
    assert kn(s.fixed_within_k) == (0, 6) and s.turns_to_fix.n == 0
    assert kn(s.regressions) == (0, 0)
    assert kn(s.recurring) == (20, 24) and s.recurring_types == (("wrong_year", 20),)
    # regress: 2023 → year fixed but 12 h time (gone, not correct, a regression) → right; 8 answers.
    s = stats["regress"]
    assert kn(s.first_try) == (5, 6)
    assert kn(s.pointed_gone) == (2, 2) and kn(s.correct_next) == (1, 2)
    assert kn(s.fixed_within_k) == (1, 1) and (s.turns_to_fix.value, s.turns_to_fix.n) == (2.0, 1)
    assert kn(s.regressions) == (1, 2) and kn(s.recurring) == (0, 8)


def test_each_rung_is_measured_on_its_own_words_only() -> None:
    said = {"vague": "That's not right.", "pointed": "The year is wrong.", "explicit": "Use the year 2024."}
    scripted = {step.user for step in CAL.steps}
    for rung, sentence in said.items():
        res = play_dialog(as_model(CAL, "once", errs_once_then_fixes), CAL, P, rung, max_fixes=K)  # type: ignore[arg-type]
        free = [m.content for m in res.messages if m.role == "user" and m.content not in scripted]
        assert free == [sentence]  # the rung spoke once, after the one mistake
        (attempt,) = [g for g in res.grades if g.attempt > 0]
        assert attempt.step == 1 and attempt.pointed == ("wrong_year",)
        year = next(g for g in res.grades if g.step == 2)  # the scripted "The current year is 2024."
        assert year.attempt == 0 and not year.pointed and year.marks == ("✓",)


def test_replay_intervals_resample_whole_mistakes() -> None:
    """Mistake a: the 3 attempts all fix it; mistake b: none does. With 2 mistakes, a resample holds
    a twice, b twice, or one of each: the rate is 1, 0 or 1/2, so the 95% interval is [0, 1]. Treating
    the 6 attempts as independent would claim [19%, 81%] (Wilson's for 3/6)."""
    bank = [
        Mistake("ma", 2, right(CAL, 2).replace('time="20:00"', 'time="8:00 PM"'), ("time_12h",), "wrong time", "x"),
        Mistake("mb", 4, "Sure! " + right(CAL, 4), ("chatter",), "API only", "x"),
    ]

    def policy(messages, params, i):  # type: ignore[no-untyped-def]
        wrong = messages[-2].content
        return right(CAL, 2) if "8:00 PM" in wrong else wrong  # fixes a, repeats b

    out = run_replay(ScriptedModel("m", policy), CAL, bank, P, "pointed", attempts=3)
    (s,) = replay_stats(out)
    assert (s.mistakes, s.attempts) == (2, 6)
    assert kn(s.pointed_gone) == (3, 6) and kn(s.correct_next) == (3, 6) and kn(s.regressions) == (0, 3)
    assert s.pointed_gone.low == 0.0 and s.pointed_gone.high == 1.0


def test_summary_json_holds_every_figure(tmp_path: Path) -> None:
    results = dialogs() + dialogs("vague")
    report = build_report(results, CAL, "t", {"max_fixes": K})
    paths = write_report(report, tmp_path)
    assert tmp_path / "summary.json" in paths
    data = json.loads((tmp_path / "summary.json").read_text())  # strict JSON: no NaN anywhere
    rows = {(x["model"], x["rung"]): x for x in data["dialogs"]}
    assert len(rows) == 8
    never = rows[("never", "vague")]
    assert (never["pointed_errors_gone"]["k"], never["pointed_errors_gone"]["n"]) == (0, 18)
    assert never["fixed_within_k"]["n"] == 6 and never["k"] == K
    assert never["fixed_within_k"]["low"] == 0.0
    assert math.isclose(never["fixed_within_k"]["high"], wilson(0, 6)[1], abs_tol=1e-6)
    perfect_row = rows[("perfect", "pointed")]
    assert perfect_row["fixed_within_k"] == {"k": 0, "n": 0, "value": None, "low": None, "high": None}
    assert perfect_row["turns_to_fix"]["n"] == 0 and perfect_row["turns_to_fix"]["mean"] is None
    regress = rows[("regress", "pointed")]
    assert (regress["regressions"]["k"], regress["regressions"]["n"]) == (1, 2)
    assert regress["turns_to_fix"]["mean"] == 2.0
    # the tables are rendered from the same figures
    assert "0% [0%, 39%] (0/6)" in report.markdown  # never: fixed within K, 0/6 with Wilson's upper bound
    assert "fixed within K=3" in report.markdown
    chat = next(c for c in data["complete_chat"] if (c["model"], c["rung"]) == ("regress", "pointed"))
    assert chat["steps"][0]["marks"] == [["✓", "🍄"], ["🥦", "🍄"], ["🥦"]]  # 2023, then 12 h, then right
    assert chat["steps"][1]["marks"] == [["✓"]]


def test_grading_replayed_transcripts_matches_the_live_grades() -> None:
    for res in dialogs():
        assert tuple(grade_conversation(CAL, res.messages)) == res.grades


def _exact_quantile(values: list[float], q: float) -> float:
    """The q-quantile of equally likely values: the smallest v with P(X <= v) >= q."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@pytest.mark.parametrize("clusters", [[(0, 2), (1, 3), (2, 2), (3, 5)], [(1, 1), (0, 4), (4, 4), (2, 3), (1, 2)]])
def test_cluster_bootstrap_matches_exact_enumeration(clusters: list[tuple[int, int]]) -> None:
    """Every way of drawing len(clusters) whole clusters with replacement, equally likely: the bootstrap's
    percentiles must land where the exact distribution puts them (within its Monte Carlo error)."""
    n = len(clusters)
    ratios = []
    for idx in itertools.product(range(n), repeat=n):
        s = sum(clusters[i][0] for i in idx)
        t = sum(clusters[i][1] for i in idx)
        ratios.append(s / t)
    reps = 4000
    eps = 4 * math.sqrt(0.025 * 0.975 / reps)
    low, high = cluster_bootstrap(clusters, reps=reps, seed=1)
    assert _exact_quantile(ratios, 0.025 - eps) <= low <= _exact_quantile(ratios, 0.025 + eps)
    assert _exact_quantile(ratios, 0.975 - eps) <= high <= _exact_quantile(ratios, 0.975 + eps)
    # and it is not the per-trial bootstrap: whole clusters move together
    flat = [1] * sum(c[0] for c in clusters) + [0] * sum(c[1] - c[0] for c in clusters)
    rng = np.random.default_rng(0)
    per_trial = rng.choice(flat, size=(reps, len(flat))).mean(axis=1)
    assert high - low > float(np.quantile(per_trial, 0.975) - np.quantile(per_trial, 0.025))


def test_ratio_ci_is_never_narrower_than_wilson() -> None:
    est = ratio_ci([(1, 1)] * 5)
    assert est.high == 1.0 and math.isclose(est.low, wilson(5, 5)[0])
    assert ratio_ci([(0, 0)]).trials == 0 and ratio_ci([(0, 0)]).to_json()["value"] is None


def test_messages_are_kept_verbatim() -> None:
    res = play_dialog(as_model(CAL, "once", errs_once_then_fixes), CAL, P, "explicit", max_fixes=K)  # type: ignore[arg-type]
    assert res.messages[0] == Message("system", CAL.system_prompt)
    assert sum(m.role == "assistant" for m in res.messages) == len(res.grades) == 7
