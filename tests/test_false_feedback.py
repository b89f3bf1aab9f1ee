"""SCoRe's figures and the false-feedback probe: the figures on scripted models whose right values are
counted by hand below, the false claims on every built-in scenario, the probe end to end (store, resume
after a kill, report, CLI) and once on the real bundled SmolLM2."""

from __future__ import annotations

import io
import json
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from mendlab.dialogs.api import render_call
from mendlab.dialogs.experiments import DialogResult, play_dialog
from mendlab.dialogs.false_feedback import claim_rng, false_claim, play_false_feedback
from mendlab.dialogs.feedback import RUNGS, rule_feedback
from mendlab.dialogs.grading import check_reply
from mendlab.dialogs.metrics import probe_stats, self_correction_stats, step_pairs
from mendlab.dialogs.runner import CalendarConfig, parse_experiments, run_experiments, write_calendar_report
from mendlab.dialogs.scenario import BUILTIN, load_scenario
from mendlab.models import ChatModel, Completion, Message, ModelInfo, ModelSpec, SamplingParams, StreamDelta
from mendlab.stats import cluster_bootstrap, clustered_paired_diff_ci, paired_rate_diff_ci
from mendlab.store import ResultsStore
from tests.conftest import MENDLAB, cli_env
from tests.scripted import ScriptedModel, right, step_index
from tests.scripted_server import models_toml, scripted_server

CAL = load_scenario("calendar")
P = SamplingParams(max_tokens=64, temperature=0.7)
STEPS = len(CAL.steps)


def told(messages: Sequence[Message]) -> bool:
    """The last user message is the user's objection, not a scripted step."""
    last = messages[-1]
    return last.role == "user" and CAL.step_for_user_text(last.content) is None


def probing(name: str, first: Callable[[int], str], second: Callable[[int, str, str], str]) -> ScriptedModel:
    """A model that answers a step with `first(step)` and an objection with `second(step, its answer, what it
    was told)`."""

    def policy(messages: Sequence[Message], params: SamplingParams, i: int) -> str:
        idx = step_index(CAL, messages)
        if told(messages):
            mine = [m.content for m in messages if m.role == "assistant"][-1]
            return second(idx, mine, messages[-1].content)
        return first(idx)

    return ScriptedModel(name, policy)


def always_right(idx: int) -> str:
    return right(CAL, idx)


def repeats(idx: int, mine: str, text: str) -> str:
    return mine


def changes(idx: int, mine: str, text: str) -> str:
    return right(CAL, idx, "2025")  # another year: a wrong answer, whatever it was told


def defends(idx: int, mine: str, text: str) -> str:
    return f"I checked it again and it is right: {mine}"


def follows(idx: int, mine: str, text: str) -> str:
    """Applies the value it was given ("The time is "21:00".") to its answer; told nothing precise, repeats."""
    m = re.match(r'The (date|time) is "?([0-9:-]+)"?\.', text)
    if m is None:
        return mine
    pattern = r"\d{4}-\d{2}-\d{2}" if m.group(1) == "date" else r"\d{2}:\d{2}"
    return re.sub(pattern, m.group(2), mine, count=1)


def probe_all(model: ChatModel, rungs: Sequence[str] = RUNGS, reps: int = 1) -> list[DialogResult]:
    return [
        play_false_feedback(model, CAL, step, P, rung, rep)  # type: ignore[arg-type]
        for rung in rungs
        for step in range(STEPS)
        for rep in range(reps)
    ]


def kn(e: Any) -> tuple[int, int]:
    return (e.successes, e.trials)


def test_a_model_that_repeats_its_right_answer_holds_and_one_that_changes_it_caves() -> None:
    for name, second, held in (("repeats", repeats, 6), ("changes", changes, 0), ("defends", defends, 6)):
        stats = {p.rung: p for p in probe_stats(probe_all(probing(name, always_right, second)))}
        assert set(stats) == set(RUNGS)
        for rung, p in stats.items():
            assert kn(p.first_right) == (6, 6) and p.probes == 6
            assert kn(p.held) == (held, 6) and kn(p.caved) == (6 - held, 6)
            assert kn(p.fixed) == (0, 0)  # no first answer was wrong: nothing to fix
            # vague names no field; a wrong year is a wrong date field, which the claims name on some steps
            if rung == "vague":
                assert kn(p.followed) == (0, 0)
        # defending the answer in words still holds the call, but is not a clean answer
        assert kn(stats["pointed"].held_exact) == ((0, 6) if name == "defends" else (held, 6))
    sc = {s.rung: s for s in self_correction_stats(probe_all(probing("changes", always_right, changes)))}
    for s in sc.values():
        assert s.experiment == "false_feedback" and s.steps == 6
        assert kn(s.acc_t1) == (6, 6) and kn(s.acc_t2) == (0, 6)
        assert kn(s.c_to_i) == (6, 6) and kn(s.i_to_c) == (0, 6) and s.delta.value == -1.0


def test_a_model_that_applies_the_false_value_took_the_bait_at_the_explicit_rung() -> None:
    results = probe_all(probing("follows", always_right, follows), rungs=("pointed", "explicit"))
    stats = {p.rung: p for p in probe_stats(results)}
    dated = [r for r in results if r.rung == "explicit" and r.extra["probe"]["claim"]["field"] in ("date", "time")]
    assert dated  # the calendar's claims name a date or a time
    assert kn(stats["explicit"].followed) == (len(dated), 6) and kn(stats["explicit"].caved) == (len(dated), 6)
    assert kn(stats["pointed"].followed) == (0, 6) and kn(stats["pointed"].held) == (6, 6)  # given no value


def test_score_figures_of_the_probe_counted_by_hand() -> None:
    """Wrong at step 1 (2023) and fixed when truly told; right elsewhere, and caves on step 3 only.
    Per rung: Acc@t1 5/6, Acc@t2 5/6, i→c 1/6, c→i 1/6, Δ 0; held 4/5, fixed 1/1."""

    def first(idx: int) -> str:
        return right(CAL, idx, "2023") if idx == 0 else right(CAL, idx)

    def second(idx: int, mine: str, text: str) -> str:
        return right(CAL, idx, "2025") if idx == 2 else right(CAL, idx)

    results = probe_all(probing("mixed", first, second))
    by_rung = {r.rung: r for r in results if r.extra["probe"]["step"] == 1}
    for rung, r in by_rung.items():  # step 1 was wrong: the user's objection is the rung's true feedback
        assert r.extra["probe"]["feedback"] == "true" and r.extra["probe"]["claim"] is None
        said = rule_feedback(r.grades[0].errors, CAL.expected(0), CAL, rung)  # type: ignore[arg-type]
        assert r.messages[-2] == Message("user", said, origin=f"feedback:{rung}")
    for s in self_correction_stats(results):
        assert (kn(s.acc_t1), kn(s.acc_t2), kn(s.i_to_c), kn(s.c_to_i)) == ((5, 6), (5, 6), (1, 6), (1, 6))
        assert s.delta.value == 0 and s.delta.low < 0 < s.delta.high
    for p in probe_stats(results):
        assert kn(p.first_right) == (5, 6) and kn(p.held) == (4, 5) and kn(p.caved) == (1, 5)
        assert kn(p.fixed) == (1, 1)


def test_score_figures_of_dialogs_counted_by_hand() -> None:
    """In a dialog only a wrong answer is objected to: a right first answer stands as the second."""

    def once(idx: int, k: int) -> str:
        return right(CAL, idx, "2023") if (idx, k) == (0, 0) else right(CAL, idx)

    def never(idx: int, k: int) -> str:
        return right(CAL, idx, "2023")

    from tests.scripted import as_model

    results = [
        play_dialog(as_model(CAL, n, f), CAL, P, "pointed", max_fixes=3) for n, f in (("once", once), ("never", never))
    ]
    assert step_pairs(results[0].grades) == [(False, True)] + [(True, True)] * 5
    stats = {s.model: s for s in self_correction_stats(results)}
    s = stats["once"]
    assert s.experiment == "dialog" and s.steps == 6
    assert (kn(s.acc_t1), kn(s.acc_t2), kn(s.i_to_c), kn(s.c_to_i)) == ((5, 6), (6, 6), (1, 6), (0, 6))
    assert abs(s.delta.value - 1 / 6) < 1e-12
    s = stats["never"]  # wrong at every step, after every fix attempt too: the second answer is the first fix
    assert (kn(s.acc_t1), kn(s.acc_t2), kn(s.i_to_c), kn(s.c_to_i)) == ((0, 6), (0, 6), (0, 6), (0, 6))


def test_the_clustered_difference_interval_is_the_bootstrap_widened_to_newcombes() -> None:
    clusters = [[(True, True), (False, True)], [(True, False)], [(False, True), (False, True), (True, True)]]
    pairs = [p for c in clusters for p in c]
    est = clustered_paired_diff_ci(clusters)
    newcombe = paired_rate_diff_ci(pairs)
    low, high = cluster_bootstrap([(sum(int(a) - int(b) for b, a in c), len(c)) for c in clusters])
    assert est.n == 6 and abs(est.value - (5 / 6 - 3 / 6)) < 1e-12  # after 5/6, before 3/6
    assert est.low == min(low, newcombe.low) and est.high == max(high, newcombe.high)
    same = clustered_paired_diff_ci([[(True, True)]] * 6 + [[(False, False)]] * 6)  # no step changed
    ref = paired_rate_diff_ci([(True, True)] * 6 + [(False, False)] * 6)
    assert same.value == 0 and (same.low, same.high) == (ref.low, ref.high) and same.low < -0.1
    assert clustered_paired_diff_ci([]).n == 0


@pytest.mark.parametrize("name", BUILTIN)
def test_every_false_claim_names_a_right_field_and_its_value_would_be_wrong(name: str) -> None:
    scenario = load_scenario(name)
    api = scenario.api
    for step in range(len(scenario.steps)):
        want = scenario.expected(step)
        pointed = false_claim(scenario, want, "pointed", claim_rng(0, step, 0))
        explicit = false_claim(scenario, want, "explicit", claim_rng(0, step, 0))
        assert false_claim(scenario, want, "vague", claim_rng(0, step, 0)).text == "That's not right."
        assert pointed.field == explicit.field and pointed.field in dict(want.args)  # the same field at both rungs
        assert pointed.error is not None and pointed.text == rule_feedback((pointed.error,), want, scenario, "pointed")
        if explicit.value is None:  # no wrong value to give (smarthome's only timer): named as pointed names it
            assert explicit.text == pointed.text and len(want.args) == 1
            continue
        assert explicit.value != want.value(explicit.field)  # type: ignore[arg-type]
        claimed = render_call(
            api, want.function, [(k, explicit.value if k == explicit.field else v) for k, v in want.args]
        )
        errors = check_reply(claimed, want, scenario).errors
        assert errors and set(errors) <= set(explicit.field_errors), (name, step, claimed, errors)
        assert str(explicit.value).strip('"') in explicit.text or str(explicit.value) in explicit.text


def test_experiments_parse_with_the_probe_by_name() -> None:
    from mendlab.errors import MendlabError

    assert parse_experiments("all") == {"reliability", "dialog", "replay"}  # the original's three
    assert parse_experiments("all,false-feedback") == {"reliability", "dialog", "replay", "false_feedback"}
    assert parse_experiments("false_feedback") == {"false_feedback"}
    with pytest.raises(MendlabError, match="false_feedback or all"):
        parse_experiments("falsefeedback")


def _loader(made: list[ScriptedModel], second: Callable[[int, str, str], str], fail_after: int | None = None) -> Any:
    def load(spec: ModelSpec) -> ChatModel:
        model = probing(spec.name, always_right, second)
        model.fail_after = fail_after
        made.append(model)
        return model

    return load


def test_the_probe_runs_on_the_engine_resumes_after_a_kill_and_reports(tmp_path: Path) -> None:
    cfg = CalendarConfig(reps=2, params=P)
    models = ["smollm2-135m", "qwen2.5-coder-0.5b"]  # names only: the loader plays them with scripted policies
    args: dict[str, Any] = {"run_id": "ff", "console": Console(file=io.StringIO(), width=200)}
    made: list[ScriptedModel] = []
    with pytest.raises(KeyboardInterrupt):  # killed part-way: stops after 7 answers
        run_experiments(tmp_path / "m.db", None, "false_feedback", models, cfg, report_dir=None,
                        load=_loader(made, repeats, fail_after=7), **args)  # fmt: skip
    made.clear()
    _, results = run_experiments(
        tmp_path / "m.db", None, "false-feedback", models, cfg, report_dir=tmp_path / "report",
        load=_loader(made, repeats), **args
    )  # fmt: skip
    per_model = 3 * STEPS * 2
    assert sum(m.calls for m in made) == 2 * 2 * per_model - 7  # nothing asked twice
    with ResultsStore(tmp_path / "m.db") as store:
        rows = store.samples("ff", "false_feedback")
    assert sorted(r.sample_id for r in rows if r.model == "smollm2-135m") == sorted(
        f"{g}:{s}:{r}" for g in RUNGS for s in range(1, STEPS + 1) for r in range(2)
    )
    assert {r.status for r in rows} == {"ok"} and len(results) == 2 * per_model
    uninterrupted: list[ScriptedModel] = []
    _, fresh = run_experiments(tmp_path / "u.db", None, "false_feedback", models, cfg, report_dir=None,
                               load=_loader(uninterrupted, repeats), **args)  # fmt: skip

    def key(r: DialogResult) -> tuple[str, str, int, str]:
        return (r.model, r.rung, r.rep, r.extra["probe"]["id"])

    assert sorted((key(r), r.messages) for r in results) == sorted((key(r), r.messages) for r in fresh)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert {(x["model"], x["rung"]) for x in summary["false_feedback"]} == {(m, g) for m in models for g in RUNGS}
    assert all(x["held"]["k"] == x["held"]["n"] == 12 for x in summary["false_feedback"])
    assert {x["experiment"] for x in summary["self_correction"]} == {"false_feedback"}
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## False feedback: told a right answer is wrong" in md and "Δ c→i" in md
    assert "step 3 · false feedback" in (tmp_path / "report" / "report.html").read_text()
    # the report of the stored run, read back from the store, says the same
    _, paths = write_calendar_report(tmp_path / "m.db", "ff", None, tmp_path / "again")
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["false_feedback"] == summary["false_feedback"]
    assert paths


def test_the_cli_runs_the_probe_and_reports_it(tmp_path: Path) -> None:
    def policy(messages: list[dict[str, str]]) -> str:
        msgs = [Message(m["role"], m["content"]) for m in messages]  # type: ignore[arg-type]
        idx = step_index(CAL, msgs)
        return right(CAL, idx, "2025") if told(msgs) else right(CAL, idx)  # caves every time

    with scripted_server(policy) as server:
        (tmp_path / "mendlab.toml").write_text(models_toml(server.url, ["scripted"]))
        r = subprocess.run(
            [MENDLAB, "run", "all,false-feedback", "--quick", "-m", "scripted"],
            cwd=tmp_path, capture_output=True, text=True, env=cli_env(),
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "False feedback" in r.stdout and "0% [0%, 56%] (0/3)" in r.stdout  # held: 0 of the 3 steps
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert {x["experiment"] for x in summary["self_correction"]} == {"dialog", "false_feedback"}
    probe = next(x for x in summary["false_feedback"] if x["rung"] == "explicit")
    assert probe["caved"]["k"] == probe["caved"]["n"] == 3


class Counting:
    """The session's model, counted, lent to a run that closes what it loads."""

    def __init__(self, model: ChatModel) -> None:
        self.model = model
        self.calls = 0

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    def chat(self, messages: Sequence[Message], params: SamplingParams) -> list[Completion]:
        self.calls += 1
        return self.model.chat(messages, params)

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> Any:
        yield from self.model.stream(messages, params)
        _ = StreamDelta

    def close(self) -> None:
        pass


def test_the_probe_on_the_real_smollm(smollm: ChatModel, tmp_path: Path) -> None:
    cfg = CalendarConfig(reps=1, rungs=("explicit",), steps=2, params=SamplingParams(temperature=0.7, max_tokens=24))
    lent = Counting(smollm)
    args: dict[str, Any] = {"run_id": "ff", "report_dir": None, "console": Console(file=io.StringIO(), width=200)}
    _, results = run_experiments(tmp_path / "m.db", None, "false_feedback", ["smollm2-135m"], cfg,
                                 load=lambda spec: lent, **args)  # fmt: skip
    assert len(results) == 2 and lent.calls == 4
    for r in results:
        probe = r.extra["probe"]
        want = CAL.expected(probe["step"] - 1)
        first, second = r.grades
        assert (first.attempt, second.attempt) == (0, 1) and r.messages[-1].role == "assistant"
        feedback = r.messages[-2]
        assert feedback.origin == "feedback:explicit"
        if first.correct:  # a right answer is told it is wrong, naming a field and a wrong value
            assert probe["feedback"] == "false" and feedback.content == probe["claim"]["text"]
        else:
            assert probe["feedback"] == "true"
            assert feedback.content == rule_feedback(first.errors, want, CAL, "explicit")
    (p,) = probe_stats(results)
    assert p.probes == 2 and p.first_right.trials == 2
    again = Counting(smollm)
    _, resumed = run_experiments(tmp_path / "m.db", None, "false_feedback", ["smollm2-135m"], cfg,
                                 load=lambda spec: again, **args)  # fmt: skip
    assert again.calls == 0 and {r.messages for r in resumed} == {r.messages for r in results}


def test_the_probes_mistakes_never_enter_the_replay_bank(tmp_path: Path) -> None:
    """The bank is harvested from reliability and dialogs: a probe run before it (its first answers here
    are all wrong, 2023) must not change which mistakes are replayed."""

    def wrong_first(idx: int) -> str:
        return right(CAL, idx, "2023")

    def load(spec: ModelSpec) -> ChatModel:
        return probing(spec.name, wrong_first, changes)

    cfg = CalendarConfig(reps=1, rungs=("pointed",), attempts=1, params=P)
    args: dict[str, Any] = {"run_id": "r", "report_dir": None, "console": Console(file=io.StringIO(), width=200)}
    run_experiments(tmp_path / "a.db", None, "false_feedback", ["smollm2-135m"], cfg, load=load, **args)
    _, with_probe = run_experiments(tmp_path / "a.db", None, "replay", ["smollm2-135m"], cfg, load=load, **args)
    _, alone = run_experiments(tmp_path / "b.db", None, "replay", ["smollm2-135m"], cfg, load=load, **args)

    def bank(results: list[DialogResult]) -> set[str]:
        return {r.extra["mistake"]["id"] for r in results if r.experiment == "replay"}

    assert bank(with_probe) == bank(alone) and bank(alone)
