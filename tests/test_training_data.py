"""Training data: generated scenarios that play and never overlap the evaluation ones, (mistake,
feedback, fix) dialogues harvested from a real run in the store, users' chats and OpenAssistant trees."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from mendlab.dialogs.experiments import play_dialog
from mendlab.dialogs.scenario import Scenario, load_scenario, parse_scenario
from mendlab.errors import InputError
from mendlab.jsonl import read_objects
from mendlab.models import ChatModel, Message, SamplingParams
from mendlab.training.chats import read_chats
from mendlab.training.labels import TrainMessage, label_conversation, load_chat_tokenizer, parse_messages, trained_text
from mendlab.training.overlap import build_eval_set, dialogue_overlap, scenario_overlap
from mendlab.training.scenarios import generate, write_scenarios
from tests.conftest import MENDLAB, cli_env
from tests.scripted import attempts_on_step, step_index
from tests.scripted_server import models_toml, scripted_server
from tests.test_user_files import FUZZ, any_jsonl, garbage, garbled, mutated_jsonl, ours_or_nothing, write

EV = build_eval_set()


def test_generated_scenarios_load_vary_and_are_disjoint_from_the_evaluation_ones(tmp_path: Path) -> None:
    made = generate(30, 7, EV)
    assert made == generate(30, 7, EV) and made != generate(30, 8, EV)  # a seed is the same files
    paths = write_scenarios(made, tmp_path)
    scenarios = [load_scenario(str(p)) for p in paths]  # the loader of the built-in ones
    assert [s.name for s in scenarios] == [f"train-s7-{i:04d}" for i in range(1, 31)]
    for s in scenarios:
        assert scenario_overlap(s, EV) is None
        assert 4 <= sum(not st.feedback for st in s.steps) <= 7 and s.mistakes
        assert s.system_prompt == load_scenario("calendar").system_prompt
    kinds = {tuple(st.effect.kind if st.effect else "feedback" for st in s.steps) for s in scenarios}
    assert len(kinds) >= 15  # step orders differ
    titles = {i.name for s in scenarios for i in s.items.values()}
    assert len(titles) >= 30 and not titles & {"Meeting with Fred", "Rock Concert", "Dentist appointment"}
    calls = [s.expected(i) for s in scenarios for i, st in enumerate(s.steps) if not st.feedback]
    assert len({c.value("duration") for c in calls} - {None}) >= 6
    assert len({str(c.value("date"))[:4] for c in calls}) >= 5 and not {"2024", "2025"} & {
        str(c.value("date"))[:4] for c in calls
    }


def test_overlap_with_the_evaluation_set_is_refused() -> None:
    assert "content is that of evaluation scenario 'calendar'" in str(scenario_overlap(load_scenario("calendar"), EV))
    (_, text), *_ = generate(1, 0, EV)  # its first user turn replaced by one of the calendar's:
    copied_turn = text.replace("turns:\n  - user: ", 'turns:\n  - user: "Cancel the   meeting with FRED."\n    # ', 1)
    assert "user turn" in str(scenario_overlap(parse_scenario(copied_turn, "x.yaml"), EV))
    s = parse_scenario(text, "x.yaml")
    key = next(iter(s.items))
    same_title = text.replace(f"{key}: {{title: {json.dumps(s.items[key].name)}", f'{key}: {{title: "Yoga class"', 1)
    assert "the item name 'Yoga class' is an item of evaluation scenario 'dentist'" in str(
        scenario_overlap(parse_scenario(same_title, "x.yaml"), EV)
    )
    # a dialogue: an evaluation user turn, or its expected call however it is written
    assert dialogue_overlap([{"role": "user", "content": "add a meeting with fred on nov 11 at 5PM "}], EV)
    written = "action.add_calendar_entry('meeting with fred', time='17:00', date=\"2024-11-11\", duration=60*0.5)"
    why = dialogue_overlap([{"role": "user", "content": "hi"}, {"role": "assistant", "content": written}], EV)
    assert why == f"messages[1]: the call {written!r} is the expected call of turn 1 of evaluation scenario 'calendar'"
    other_day = written.replace("11-11", "11-12")
    assert dialogue_overlap([{"role": "assistant", "content": other_day}], EV) is None


def test_a_generated_scenario_plays_a_dialog_against_smollm(smollm: ChatModel) -> None:
    (_, text), *_ = generate(1, 3, EV)
    s = parse_scenario(text, "gen.yaml")
    short = replace(s, steps=s.steps[:2], mistakes=())
    played = play_dialog(smollm, short, SamplingParams(max_tokens=8, temperature=0.0), "pointed", max_fixes=1)
    users = [m.content for m in played.messages if m.role == "user"]
    assert users[0] == s.steps[0].user and len(played.grades) >= 2
    assert {g.step for g in played.grades} == {1, 2}


def _policy(s: Scenario, never: int) -> Any:
    """Step 0 wrong (duration) then fixed when told; step `never` always with chatter; the rest right."""

    def answer(messages: list[dict[str, str]]) -> str:
        msgs = [Message(m["role"], m["content"]) for m in messages]  # type: ignore[arg-type]
        step, tries = step_index(s, msgs), attempts_on_step(s, msgs)
        right = s.expected(step).render(s.api)
        if step == 0 and tries == 0:
            d = s.expected(0).value("duration")
            return right.replace(f"duration={d}", f"duration={int(str(d)) + 1}")
        if step == never:
            return "Sure! Here you go: " + right
        return right

    return answer


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MENDLAB, *args], cwd=cwd, capture_output=True, text=True, env=cli_env(), timeout=300)


def test_data_build_from_a_run_in_the_store(tmp_path: Path) -> None:
    (path,) = write_scenarios(generate(1, 0, EV), tmp_path / "train")
    s = load_scenario(str(path))
    never = next(i for i, st in enumerate(s.steps) if i > 0 and not st.feedback)
    with scripted_server(_policy(s, never)) as server:
        (tmp_path / "mendlab.toml").write_text(models_toml(server.url, ["scripted"]))
        opts = ["-m", "scripted", "--rung", "pointed", "--reps", "1", "--max-fixes", "2"]
        r = _cli(tmp_path, "run", "dialog", "--scenario", str(path), *opts)
        assert r.returncode == 0, r.stderr
        r = _cli(tmp_path, "run", "dialog", "--scenario", "calendar", "--steps", "2", *opts)
        assert r.returncode == 0, r.stderr

    out = tmp_path / "data.jsonl"
    r = _cli(tmp_path, "data", "build", "--all-clean", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "left out run 'calendar': it plays the evaluation scenario 'calendar'" in r.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    kinds = [row["source"]["kind"] for row in rows]
    assert kinds.count("fix") == 1 and kinds.count("expected") == 3  # never fixed: 3 tries, the last untold
    assert kinds.count("clean") == len(s.steps) - 2
    fix = next(row for row in rows if row["source"]["kind"] == "fix")
    assert (
        fix["source"] | {"scenario": s.name, "run": s.name, "model": "scripted", "turn": 1, "step": 1} == fix["source"]
    )
    assert fix["source"]["errors"] == ["wrong_duration"] and fix["source"]["feedback"] == "stored"
    system, user, wrong, feedback, answer = fix["messages"]
    assert (system["role"], user["content"]) == ("system", s.steps[0].user)
    assert wrong["weight"] == 0 and wrong["content"] != answer["content"]
    assert feedback == {"role": "user", "content": "The duration is wrong."}
    assert answer == {"role": "assistant", "content": s.expected(0).render(s.api)}
    expected = [row for row in rows if row["source"]["kind"] == "expected"]
    assert [row["source"]["feedback"] for row in expected] == ["stored", "stored", "rules:pointed"]
    assert all(row["messages"][-1]["content"] == s.expected(never).render(s.api) for row in expected)
    for row in rows:  # only the last answer is trained, every earlier assistant turn has weight 0
        assert all(m.get("weight") == 0 for m in row["messages"][:-1] if m["role"] == "assistant")
        assert "weight" not in row["messages"][-1]

    tok = load_chat_tokenizer("smollm2-135m")
    for row in rows:
        msgs = [TrainMessage(m["role"], m["content"], m.get("weight", 1)) for m in row["messages"]]
        assert trained_text(tok, label_conversation(tok, msgs)) == row["messages"][-1]["content"] + "<|im_end|>"

    r = _cli(tmp_path, "data", "build", "--clean-ratio", "2", "--kinds", "fix,clean")
    assert r.returncode == 0, r.stderr
    mixed = [json.loads(line)["source"]["kind"] for line in r.stdout.splitlines()]
    assert mixed == ["fix", "clean", "clean"]  # two clean dialogues per mistake, in the order played
    r = _cli(tmp_path, "data", "build", "--run", "calendar")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: run 'calendar' cannot be trained on: it plays the evaluation scenario 'calendar'"
    ]
    r = _cli(tmp_path, "data", "build", "-m", "nobody")
    assert r.returncode == 2 and "model 'nobody' has no dialog results" in r.stderr


OA_TREE = {
    "message_tree_id": "t1",
    "prompt": {
        "text": "What is 2+2?",
        "role": "prompter",
        "replies": [
            {"text": "4.", "role": "assistant", "replies": [
                {"text": "And 3+3?", "role": "prompter", "replies": [
                    {"text": "6.", "role": "assistant", "replies": []},
                ]},
                {"text": "Thanks!", "role": "prompter", "replies": []},
            ]},
            {"text": "Four.", "role": "assistant", "replies": []},
            {"text": "spam", "role": "assistant", "deleted": True, "replies": []},
        ],
    },
}  # fmt: skip


def test_users_chats_and_openassistant_trees(tmp_path: Path) -> None:
    chats = tmp_path / "chats.jsonl"
    mine = {"messages": [{"role": "user", "content": "Hola"}, {"role": "assistant", "content": "¡Hola! 👋"}]}
    chats.write_text(json.dumps(mine) + "\n" + json.dumps(OA_TREE) + "\n", encoding="utf-8")
    lines = list(read_chats(chats))
    assert [[m["content"] for m in c.messages] for c in lines] == [
        ["Hola", "¡Hola! 👋"],
        ["What is 2+2?", "4.", "And 3+3?", "6."],
        ["What is 2+2?", "4."],  # the path that ends with "Thanks!" ends at the answer before it
        ["What is 2+2?", "Four."],
    ]
    assert [c.where for c in lines] == [f"{chats}:1", *[f"{chats}:2"] * 3] and lines[1].messages[2]["role"] == "user"

    out = tmp_path / "data.jsonl"
    r = _cli(tmp_path, "--db", str(tmp_path / "none.db"), "data", "build", "--chat", str(chats), "-o", str(out))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["source"] for row in rows][1] == {"kind": "chat", "file": str(chats), "line": 2, "path": 0}

    leak = tmp_path / "leak.jsonl"
    turn = {
        "messages": [
            {"role": "user", "content": "Cancel the meeting with Fred."},
            {"role": "assistant", "content": "ok"},
        ]
    }
    leak.write_text(json.dumps(mine) + "\n" + json.dumps(turn) + "\n", encoding="utf-8")
    r = _cli(tmp_path, "--db", str(tmp_path / "none.db"), "data", "build", "--chat", str(leak))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: {leak}:2: overlaps the evaluation set: messages[0]: the user turn 'Cancel the meeting with Fred.' is "
        "turn 6 of evaluation scenario 'calendar' (--drop-overlap leaves such dialogues out)"
    ]
    r = _cli(tmp_path, "--db", str(tmp_path / "none.db"), "data", "build", "--chat", str(leak), "--drop-overlap")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 1 and "left out 1 dialogue(s)" in r.stderr

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(mine) + "\n" + json.dumps({"prompt": {"text": "q", "role": "robot"}}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:2: prompt.role must be prompter, assistant or system"):
        list(read_chats(bad))
    # a role that is a list is no dict key either (the fuzzer found a TypeError here)
    bad.write_text(json.dumps({"prompt": {"text": "q", "role": "prompter", "replies": [{"text": "a", "role": []}]}}))
    with pytest.raises(InputError, match=r"bad.jsonl:1: prompt.replies\[0\].role must be prompter, assistant"):
        list(read_chats(bad))
    bad.write_text('{"messages": [{"role": "user", "content": "a\\ud800"}]}\n')  # JSON's lone surrogate: no text
    with pytest.raises(InputError, match=r"bad.jsonl:1: messages\[0\].content holds a lone surrogate"):
        list(read_chats(bad))
    bad.write_text('{"conversation": []}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: neither OpenAI messages"):
        list(read_chats(bad))


def test_data_scenarios_command(tmp_path: Path) -> None:
    r = _cli(tmp_path, "data", "scenarios", "--n", "3", "--seed", "5", "-o", "gen")
    assert r.returncode == 0, r.stderr
    files = sorted((tmp_path / "gen").glob("*.yaml"))
    assert [f.name for f in files] == [f"train-s5-000{i}.yaml" for i in (1, 2, 3)]
    first = files[0].read_bytes()
    r = _cli(tmp_path, "data", "scenarios", "--n", "3", "--seed", "5", "-o", "gen", "--eval", "gen")
    assert r.returncode == 0 and files[0].read_bytes() != first  # disjoint from the held-out set given
    r = _cli(tmp_path, "data", "scenarios", "--n", "0", "-o", "gen")
    assert r.returncode == 2 and r.stderr.strip() == "error: --n must be at least 1"


CHATS = "".join(
    json.dumps(r) + "\n"
    for r in [
        {"messages": [{"role": "user", "content": "Hola"}, {"role": "assistant", "content": "¡Hola!", "weight": 1}]},
        OA_TREE,
    ]
)


@FUZZ
@given(content=garbage | any_jsonl | garbled(CHATS) | mutated_jsonl(CHATS))
def test_chat_files_fuzzed(tmp_path: Path, content: bytes) -> None:
    """What `data build --chat` and `train labels` read: it loads, or one line of ours names the file."""
    path = write(tmp_path / "chats.jsonl", content)
    ours_or_nothing(lambda p: list(read_chats(p)), path, line=True)
    ours_or_nothing(lambda p: [parse_messages(row, where) for where, row in read_objects(p)], path, line=True)
