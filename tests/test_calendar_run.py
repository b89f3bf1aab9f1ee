"""The calendar experiments end to end on the real bundled models (small sizes: the full runs are the CLI's)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path

from mendlab.dialogs.experiments import harvest_mistakes, play_dialog, replay_history, run_replay
from mendlab.dialogs.feedback import LLMCritic, named_errors
from mendlab.dialogs.scenario import load_scenario
from mendlab.models import ChatModel, Message, SamplingParams
from tests.conftest import MENDLAB, cli_env

CAL = load_scenario("calendar")
GREEDY = SamplingParams(max_tokens=64)


def test_qwen_greedy_dialog_fixes_the_year_when_told(qwen: ChatModel) -> None:
    res = play_dialog(qwen, CAL, GREEDY, "explicit", max_fixes=1)
    first, fix = res.grades[0], res.grades[1]
    assert first.step == 1 and first.attempt == 0 and "wrong_year" in first.errors  # 2023, as MODELS.md says
    assert res.messages[3] == Message("user", "Use the year 2024.", origin="feedback:explicit")  # the rung's words
    assert fix.step == 1 and fix.attempt == 1 and fix.pointed_gone and fix.marks[0] == "🥦"
    # every scripted turn was asked, as a step of its own, and every answer graded
    users = [m.content for m in res.messages if m.role == "user"]
    assert all(step.user in users for step in CAL.steps)
    assert len(res.grades) == sum(m.role == "assistant" for m in res.messages)
    assert sorted({g.step for g in res.grades if g.attempt == 0}) == [1, 2, 3, 4, 5, 6]
    # a fix attempt follows only a wrong answer, and at most max_fixes times per step
    for g in res.grades:
        if g.attempt > 0:
            before = res.grades[g.turn - 2]
            assert before.errors and g.pointed == named_errors(before.errors, "explicit") and g.attempt == 1


def test_replay_puts_the_mistake_in_the_models_mouth(smollm: ChatModel) -> None:
    bank = harvest_mistakes(CAL, [], per_kind=1)
    assert {m.kind for m in bank} >= {"wrong time", "API only", "wrong API"}  # the original's three kinds
    out = run_replay(smollm, CAL, bank[:1], SamplingParams(max_tokens=48, temperature=0.7), "explicit", attempts=2)
    assert len(out) == 2
    convo = out[0].messages
    assert convo[: len(replay_history(CAL, bank[0].step))] == tuple(replay_history(CAL, bank[0].step))
    wrong = convo[-3]
    assert wrong.role == "assistant" and wrong.origin == "scenario" and wrong.content == bank[0].reply
    assert convo[-2].content == 'Write the time in 24h format: time="20:00".'
    assert out[0].grades[0].attempt == 1 and out[0].grades[0].pointed == named_errors(bank[0].errors, "explicit")


def test_llm_critic_writes_one_sentence(smollm: ChatModel) -> None:
    history = [
        Message("user", CAL.steps[0].user),
        Message("assistant", 'action.add_calendar_entry("Fred", date="2023-11-11")'),
    ]
    text = LLMCritic(smollm)(history, ("wrong_year", "missing_argument"), CAL.expected(0))
    assert text and "\n" not in text


def test_run_all_report_resume_and_grade(tmp_path: Path) -> None:
    cmd = [
        MENDLAB,
        "run",
        "all",
        "-m",
        "qwen2.5-coder-0.5b",
        "-m",
        "smollm2-135m",
        "--tries",
        "2",
        "--reps",
        "1",
        "--rung",
        "pointed",
        "--max-fixes",
        "1",
        "--attempts",
        "1",
        "--per-kind",
        "1",
        "--max-tokens",
        "48",
    ]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=900)
    assert r.returncode == 0, r.stderr
    assert "Fix rates" in r.stdout
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["run"] == "calendar" and summary["config"]["params"]["max_tokens"] == 48
    assert {(x["model"], x["rung"]) for x in summary["dialogs"]} == {
        ("qwen2.5-coder-0.5b", "pointed"),
        ("smollm2-135m", "pointed"),
    }
    for row in summary["dialogs"] + summary["replay"] + summary["reliability"]:
        for key, rate in row.items():
            if isinstance(rate, dict) and "k" in rate:  # every rate: k of n, with its interval when n > 0
                assert 0 <= rate["k"] <= rate["n"], key
                assert rate["n"] == 0 or rate["low"] <= rate["k"] / rate["n"] <= rate["high"], key
    md = (tmp_path / "report" / "report.md").read_text()
    page = (tmp_path / "report" / "report.html").read_text()
    for section in (
        "## Reliability",
        "## Complete chat — feedback: pointed",
        "## Fixing others' mistakes",
        "## Recap",
        "## Fix rates, with 95% intervals",
    ):
        assert section in md
    assert (tmp_path / "report" / "fix_rates.png").stat().st_size > 5000
    assert "data:image/png;base64," in page and "http" not in page.split("<body>")[0]  # self-contained
    links = set(re.findall(r'href="#([^"]+)"', page))
    ids = set(re.findall(r'<section id="([^"]+)"', page))
    assert links and links <= ids  # every cell links to a transcript that is in the page
    db = tmp_path / "mendlab.db"
    with sqlite3.connect(db) as con:
        n_gen = con.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
        n_conv = con.execute("SELECT COUNT(*) FROM conversations").fetchone()[0]
    # run again: everything comes back from the store, nothing is generated or doubled
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=900)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == n_gen
        assert con.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == n_conv
        rows = con.execute("SELECT messages, meta FROM conversations").fetchall()
    # `mendlab grade` on the exported transcripts gives the same marks as the live run
    transcripts = tmp_path / "t.jsonl"
    with transcripts.open("w") as fh:
        for msgs, meta in rows:
            if json.loads(meta)["experiment"] == "dialog":
                fh.write(json.dumps({"scenario": "calendar", "messages": json.loads(msgs)}) + "\n")
                live = [g["marks"] for g in json.loads(meta)["grades"]]
    g = subprocess.run([MENDLAB, "grade", str(transcripts)], capture_output=True, text=True, env=cli_env())
    assert g.returncode == 0, g.stderr
    graded = [json.loads(line) for line in g.stdout.splitlines()]
    assert {"conversation", "turn", "marks", "errors"} <= set(graded[0])
    last_conv = max(x["conversation"] for x in graded)
    assert [x["marks"] for x in graded if x["conversation"] == last_conv] == live
    rep = subprocess.run(
        [MENDLAB, "report", "-o", str(tmp_path / "r2")], cwd=tmp_path, capture_output=True, env=cli_env()
    )
    assert rep.returncode == 0 and (tmp_path / "r2" / "report.html").is_file()
    assert json.loads((tmp_path / "r2" / "summary.json").read_text()) == summary  # the same figures, from the store
    # another max-tokens: the run is not reused; with --new-run, a new one beside it
    other = [*cmd[:-1], "40"]
    stop = subprocess.run(other, cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=120)
    assert stop.returncode == 2 and "params.max_tokens 48 → 40" in stop.stderr and "Traceback" not in stop.stderr
    fresh = subprocess.run(
        [*other[:2], "reliability", *other[3:], "--new-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=600,
    )
    assert fresh.returncode == 0, fresh.stderr
    assert "new run calendar-2: run 'calendar' was made with params.max_tokens 48 → 40" in fresh.stdout
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM generations WHERE run_id = 'calendar'").fetchone()[0] == n_gen


def test_bad_scenario_and_grade_input_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("name: x\nsystem_prompt: hi\napi: 3\n")
    r = subprocess.run(
        [MENDLAB, "run", "reliability", "--scenario", str(bad)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=cli_env(),
    )
    assert r.returncode == 2 and "s.yaml:3: field 'api'" in r.stderr and "Traceback" not in r.stderr
    t = tmp_path / "t.jsonl"
    t.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    r = subprocess.run([MENDLAB, "grade", str(t)], capture_output=True, text=True, env=cli_env())
    assert r.returncode == 2 and "missing field 'scenario'" in r.stderr


def test_run_with_a_critic_model(tmp_path: Path) -> None:
    cmd = [
        MENDLAB,
        "run",
        "dialog",
        "-m",
        "smollm2-135m",
        "--critic",
        "smollm2-135m",
        "--reps",
        "1",
        "--max-fixes",
        "1",
        "--max-tokens",
        "24",
    ]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=600)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(tmp_path / "mendlab.db") as con:
        (meta, msgs) = con.execute("SELECT meta, messages FROM conversations").fetchone()
        critic_rows = con.execute("SELECT COUNT(*) FROM generations WHERE run_id = 'calendar:critic'").fetchone()[0]
    assert json.loads(meta)["rung"] == "critic" and critic_rows >= 1
    scripted = {s.user for s in CAL.steps}
    said = [m["content"] for m in json.loads(msgs) if m["role"] == "user" and m["content"] not in scripted]
    assert said  # the critic's sentences are in the transcript, where the rules would have been
