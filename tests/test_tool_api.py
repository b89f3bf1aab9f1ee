"""Scenarios with any tool API: the declaration in the file decides the grader's checks, its error kinds
and the feedback's words. The smart-home scenario (another API than the calendar's) against
hand-written replies; a user's to-do API; declarations with mistakes; reasoning blocks; models that
answer with OpenAI tool calls, through a real HTTP server and through `mendlab run`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from mendlab.dialogs.experiments import harvest_mistakes, play_dialog
from mendlab.dialogs.feedback import rule_feedback
from mendlab.dialogs.grading import check_reply, grade_conversation
from mendlab.dialogs.scenario import load_scenario, with_tools
from mendlab.errors import ConfigError
from mendlab.models import Message, SamplingParams
from mendlab.models.endpoint import OpenAIModel
from mendlab.models.toolcalls import tool_call_text
from mendlab.store.results import resume_key
from tests.conftest import MENDLAB, cli_env
from tests.scripted import as_model
from tests.scripted_server import ToolCalls, models_toml, scripted_server

HOME = load_scenario("smarthome")
CAL = load_scenario("calendar")
L, T, S, C = "home.set_light", "home.set_thermostat", "home.schedule", "home.cancel"

# (step index 0-based, reply, errors in the grader's order, valid): what a careful person would say
CASES: list[tuple[int, str, tuple[str, ...], bool]] = [
    # step 1: the living room lights to 40 %
    (0, f'{L}(room="living room", level=40)', (), True),
    (0, f'{L}("Living Room", 40)', (), True),  # positional, any case
    (0, f'{L}(room="lounge", level=40)', (), True),  # another of the item's words
    (0, f'{L}(room="living room", level="40")', (), True),  # a number however written
    (0, f'{L}(room="living room", level=20*2)', (), True),
    (0, 'set_light(room="living room", level=40)', (), True),  # the bare function name
    (0, f'{L}(room="living room", level=0.4)', ("wrong_level",), True),  # a fraction, not percent
    (0, f'{L}(room="living room", level=True)', ("wrong_level",), True),  # a flag is no number
    (0, f'{L}(room="kitchen", level=40)', ("wrong_room",), True),
    (0, f'{L}(room="living room")', ("missing_argument",), True),
    (0, f'{L}(room="living room", level=40, fade=2)', ("extra_argument",), True),
    (0, f'{L}("living room", 40, 2)', ("extra_argument",), True),
    (0, f'{T}(room="living room", celsius=40)', ("wrong_function",), True),
    (0, 'home.dim("living room", 40)', ("unknown_function",), False),
    (0, 'lights.set_light(room="living room", level=40)', ("unknown_function",), False),
    (0, f'Sure! {L}(room="living room", level=40)', ("chatter",), True),
    (0, f'{L}(room="living room", level=40)\n{L}(room="living room", level=40)', ("extra_call",), True),
    (0, f'{L}(room="kitchen", level=4, fade=1)', ("wrong_room", "wrong_level", "extra_argument"), True),
    (0, f'{L}(room="living room", level=40', ("syntax_error",), False),
    (0, "Dimming the lights now.", ("no_call",), False),
    # step 2: the bedroom thermostat
    (1, f'{T}(room="bedroom", celsius=19)', (), True),
    (1, f'{T}("bedroom", 19.0)', (), True),
    (1, f'{T}(room="bedroom", celsius=66.2)', ("wrong_celsius",), True),  # Fahrenheit
    (1, f'{T}(room="bedroom", celsius="19°C")', ("wrong_celsius",), True),
    (1, f'{T}(room="living room", celsius=19)', ("wrong_room",), True),
    # step 3 (and 4, the scripted "Sunset is at 18:45 today."): the porch light at sunset
    (2, f'{S}(device="porch light", time="18:45", state="on")', (), True),
    (2, f'{S}(device="porch light", time="18:45")', (), True),  # state's default is "on"
    (2, f'{S}(device="Porch", time="18:45", state="ON")', (), True),
    (2, f'{S}(device="porch light", time="6:45 PM", state="on")', ("time_12h",), True),
    (2, f'{S}(device="porch light", time="sunset")', ("wrong_time", "time_format"), True),
    (2, f'{S}(device="porch light", time="19:30")', ("wrong_time",), True),
    (2, f'{S}(device="porch light", time="18:45:00")', ("time_format",), True),
    (2, f'{S}(device="porch light", time="18:45", state="off")', ("wrong_state",), True),
    (2, f'{S}(device="garage door", time="18:45")', ("wrong_device",), True),
    (2, f'{S}(device="porch light")', ("missing_argument",), True),
    (3, f'{S}(device="porch light", time="18:45", state="on")', (), True),
    (3, f'{S}(device="porch light", time="6:45 pm")', ("time_12h",), True),
    # step 5: "one and a half degrees warmer" than the 19 set at step 2
    (4, f'{T}(room="bedroom", celsius=20.5)', (), True),
    (4, f'{T}(room="bedroom", celsius=19+1.5)', (), True),
    (4, f'{T}(room="bedroom", celsius=1.5)', ("wrong_celsius",), True),
    (4, f'{T}(room="bedroom", celsius=18.5)', ("wrong_celsius",), True),  # from the world's 17, not the 19
    # step 6: cancel the porch timer
    (5, f'{C}(device="porch light")', (), True),
    (5, f'{C}("porch")', (), True),
    (5, f"{C}()", ("missing_argument",), True),
    (5, f'{S}(device="porch light", time="18:45", state="off")', ("wrong_function",), True),
    (5, f'{C}(device="living room")', ("wrong_device",), True),
]


@pytest.mark.parametrize(("step", "reply", "errors", "valid"), CASES)
def test_smarthome_reply_labels(step: int, reply: str, errors: tuple[str, ...], valid: bool) -> None:
    check = check_reply(reply, HOME.expected(step), HOME)
    assert (check.errors, check.valid) == (errors, valid)


def test_smarthome_errors_and_expected_calls_come_from_its_declaration() -> None:
    assert HOME.api.errors == (
        *("no_call", "syntax_error", "unknown_function", "wrong_function"),
        *("wrong_room", "wrong_level", "wrong_celsius", "wrong_device", "time_12h", "wrong_time", "time_format"),
        *("wrong_state", "missing_argument", "extra_argument", "extra_call", "chatter"),
    )
    assert [HOME.expected(i).render(HOME.api) for i in range(6)] == [
        f'{L}(room="living room", level=40)',
        f'{T}(room="bedroom", celsius=19.0)',
        f'{S}(device="porch light", time="18:45", state="on")',
        f'{S}(device="porch light", time="18:45", state="on")',
        f'{T}(room="bedroom", celsius=20.5)',
        f'{C}(device="porch light")',
    ]
    assert [s.feedback for s in HOME.steps] == [False, False, False, True, False, False]


@pytest.mark.parametrize(
    ("step", "errors", "pointed", "explicit"),
    [
        (0, ("wrong_level",), "The light level is wrong.", "The light level is 40 percent."),
        (0, ("wrong_room", "chatter"), "It's the wrong room. Just the API call please.",
         'This is about "living room". Only the line of code, no other text.'),
        (4, ("wrong_celsius",), "The temperature is wrong.", "The temperature is 20.5 degrees Celsius."),
        (2, ("time_12h", "wrong_time"), "Time in 24h format. The time is wrong.",
         'Write the time in 24h format: time="18:45". The time is "18:45".'),
        (2, ("time_format",), "Respect the time format.", 'Write the time as time="18:45".'),
        (2, ("wrong_state",), "The state is wrong.", 'The state is "on".'),
        (2, ("wrong_device",), "It's the wrong device.", 'This is about "porch light".'),
        (2, ("missing_argument",), "An argument is missing.", "Give all of device and time."),
        (5, ("missing_argument",), "An argument is missing.", "Give the device."),
        (5, ("no_call",), "Just the API call please.", "Reply with one line of code only: a call to home.cancel."),
        (1, ("wrong_function",), "Wrong API call.", "Use home.set_thermostat here."),
    ],
)  # fmt: skip
def test_smarthome_feedback_words_come_from_the_declaration(
    step: int, errors: tuple[str, ...], pointed: str, explicit: str
) -> None:
    want = HOME.expected(step)
    assert rule_feedback(errors, want, HOME, "pointed") == pointed
    assert rule_feedback(errors, want, HOME, "explicit") == explicit
    assert rule_feedback(errors, want, HOME, "vague") == "That's not right."


def test_smarthome_dialog_scripted_correction_and_fix() -> None:
    """A model that writes 12-hour times: the scripted sunset turn is a step (not a fix), the rung's
    feedback on the 12-hour time is followed by a fix."""
    right = {i: HOME.expected(i).render(HOME.api) for i in range(6)}
    twelve = f'{S}(device="porch light", time="6:45 PM")'

    def answer(step: int, attempts: int) -> str:
        if step == 2:
            return f'{S}(device="porch light", time="20:00")'  # it cannot know when sunset is, even when told
        if step == 3 and attempts == 0:
            return twelve
        return right[step]

    res = play_dialog(as_model(HOME, "m", answer), HOME, SamplingParams(), "explicit", max_fixes=2)
    got = [(g.step, g.attempt, g.errors, g.fixed) for g in res.grades]
    assert got == [
        (1, 0, (), False),
        (2, 0, (), False),
        (3, 0, ("wrong_time",), False),
        (3, 1, ("wrong_time",), False),  # "The time is "18:45"." cannot be used: it wrote 20:00 again
        (3, 2, ("wrong_time",), False),
        (4, 0, ("time_12h",), False),  # the scripted sunset turn: a step of its own
        (4, 1, (), True),
        (5, 0, (), False),
        (6, 0, (), False),
    ]
    assert res.messages[-6].content == 'Write the time in 24h format: time="18:45".'
    assert [g.errors for g in grade_conversation(HOME, res.messages, "explicit")] == [g.errors for g in res.grades]


def test_smarthome_seed_mistakes_have_kinds_for_the_replay() -> None:
    bank = harvest_mistakes(HOME, [], per_kind=2)
    assert sorted((m.step, m.kind, m.errors) for m in bank) == [
        (0, "API only", ("chatter",)),
        (2, "wrong time", ("time_12h",)),
        (4, "wrong API", ("extra_argument",)),
    ]


def test_a_wrong_value_of_another_api_is_a_replay_kind_of_its_own() -> None:
    """`wrong_level` is none of the calendar's kinds: the bank keeps it as "wrong value" instead of dropping it."""
    from mendlab.dialogs.experiments import DialogResult

    want = HOME.expected(0).render(HOME.api)
    wrong = want.replace(f"level={HOME.expected(0).value('level')}", "level=7")
    grade = check_reply(wrong, HOME.expected(0), HOME)
    assert grade.errors == ("wrong_level",)
    played = DialogResult("dialog", HOME.name, "m", (), (grade_conversation(HOME, [
        Message("system", HOME.system_prompt), Message("user", HOME.steps[0].user), Message("assistant", wrong),
    ])[0],))  # fmt: skip
    bank = harvest_mistakes(HOME, [played], per_kind=2)
    assert [(m.step, m.kind) for m in bank if m.reply == wrong] == [(0, "wrong value")]
    assert bank[-1].kind == "wrong value"  # after the original's five kinds


# ---------------------------------------------------------------- a user's own API


TODO = """\
name: todo
system_prompt: Translate requests into calls of todo.add(task, due="YYYY-MM-DD", urgent=False) and todo.done(task).
api:
  object: todo
  params:
    task: {type: str}
    due: {format: date, label: due date}
    urgent: {type: bool, default: false, label: urgency}
  collections:
    tasks: {key: task, item: task}
  functions:
    add: {params: [task, due, urgent], effect: {add: tasks}, positional: 1}
    done: {params: [task], effect: {remove: tasks}, positional: 1}
world: {today: 2026-05-04}
items:
  taxes: {task: Pay taxes, words: [tax]}
turns:
  - user: Remind me to pay my taxes by the 15th, it's urgent.
    add: {item: taxes, due: 2026-05-15, urgent: true}
  - user: Done with the taxes.
    remove: {item: taxes}
"""


def test_a_users_own_api_is_graded_from_its_declaration(tmp_path: Path) -> None:
    p = tmp_path / "todo.yaml"
    p.write_text(TODO)
    s = load_scenario(str(p))
    want = s.expected(0)
    assert want.render(s.api) == 'todo.add("Pay taxes", due="2026-05-15", urgent=True)'
    assert s.expected(1).render(s.api) == 'todo.done("Pay taxes")'
    cases = {
        'todo.add("taxes", due="2026-05-15", urgent=True)': (),
        'todo.add("taxes", "2026-05-15", True)': (),
        'todo.add("taxes", due="2025-05-15", urgent=True)': ("wrong_year",),
        'todo.add("taxes", due="May 15", urgent=True)': ("date_format",),
        'todo.add("taxes", due="2026-05-15")': ("wrong_urgent",),  # the default is false
        'todo.add("taxes", due="2026-05-15", urgent="yes")': ("wrong_urgent",),
        'todo.add("groceries", due="2026-05-15", urgent=True)': ("wrong_task",),
        'todo.done("taxes")': ("wrong_function",),
    }
    for reply, errors in cases.items():
        assert check_reply(reply, want, s).errors == errors, reply
    assert rule_feedback(s.api.order(("wrong_urgent", "wrong_year")), want, s, "explicit") == (
        "Use the year 2026. The urgency is True."
    )
    assert rule_feedback(("date_format",), want, s, "pointed") == "Respect the due date format."


GOOD = TODO
BAD = [
    ("    urgent: {type: bool, default: false, label: urgency}", "    urgent: {type: boolean}",
     r"todo.yaml:8: field 'api.params.urgent.type': unknown type \(expected one of: str, int, float, bool\)"),
    ("params: [task, due, urgent]", "params: [task, due, urgency]",
     r"todo.yaml:12: field 'api.functions.add.params\[2\]': unknown parameter 'urgency'"),
    ("effect: {remove: tasks}", "effect: {remove: todos}",
     r"todo.yaml:13: field 'api.functions.done.effect.remove': unknown collection 'todos'"),
    ("effect: {remove: tasks}", "effect: {toggle: tasks}",
     r"todo.yaml:13: field 'api.functions.done.effect.toggle': unknown effect"),
    ("effect: {remove: tasks}, ", "",
     r"todo.yaml:13: field 'api.functions.done': needs an effect"),
    ("    add: {params: [task, due, urgent]", "    add: {params: [due, urgent]",
     r"todo.yaml:12: field 'api.functions.add.params': must include 'task', the key of 'tasks'"),
    ("    urgent: {type: bool, default: false, label: urgency}", "    urgent: {type: bool, default: maybe}",
     r"todo.yaml:8: field 'api.params.urgent.default': must be bool, got 'maybe'"),
    ("    due: {format: date, label: due date}", "    due: {format: datetime}",
     r"todo.yaml:7: field 'api.params.due.format': unknown format"),
    ("[task, due, urgent]", "[task, due, urgent, other]",
     r"todo.yaml:12: field 'api.functions.add.params\[3\]': unknown parameter 'other'"),
    ("add: {item: taxes, due: 2026-05-15, urgent: true}", "add: {item: taxes, due: 2026-05-15, urgent: yes please}",
     r"todo.yaml:19: field 'turns\[0\].add.urgent': must be bool, got 'yes please'"),
    ("add: {item: taxes, due: 2026-05-15, urgent: true}", "add: {item: taxes, urgent: true}",
     r"todo.yaml:19: field 'turns\[0\].add': an add needs due"),
    ("add: {item: taxes, due: 2026-05-15, urgent: true}", "add: {item: taxes, due: 2026-05-15, priority: 1}",
     r"todo.yaml:19: field 'turns\[0\].add.priority': unknown field"),
    ("remove: {item: taxes}", "remove: {item: taxes, due: 2026-05-15}",
     r"todo.yaml:21: field 'turns\[1\].remove.due': a removal names its item only"),
    ("  object: todo", "  object: to do",
     r"todo.yaml:4: field 'api.object': must be a Python name"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "match"), BAD)
def test_bad_declarations_name_file_line_field(tmp_path: Path, old: str, new: str, match: str) -> None:
    assert old in GOOD
    p = tmp_path / "todo.yaml"
    p.write_text(GOOD.replace(old, new))
    with pytest.raises(ConfigError, match=match):
        load_scenario(str(p))


def test_the_readme_example_reads_as_it_says(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("### Your own scenario") :]
    block = section[section.index("```yaml\n") + 8 : section.index("```\n", section.index("```yaml\n") + 8)]
    p = tmp_path / "todo.yaml"
    p.write_text(block)
    s = load_scenario(str(p))
    want = s.expected(0)
    assert want.render(s.api) in block and s.expected(1).render(s.api) in block
    words = " ".join(section.split())
    assert rule_feedback(("wrong_date",), want, s, "pointed") in words
    assert rule_feedback(("date_format",), want, s, "explicit") in words


def test_an_api_that_names_its_errors_twice_or_a_missing_builtin(tmp_path: Path) -> None:
    p = tmp_path / "todo.yaml"
    p.write_text(
        GOOD.replace("    task: {type: str}", "    task: {type: str}\n    function: {type: int}").replace(
            "done: {params: [task]", "done: {params: [task, function]"
        )
    )
    with pytest.raises(
        ConfigError,
        match=r"todo.yaml:7: field 'api.params.function': its error would be named "
        "wrong_function, which is taken; rename it",
    ):
        load_scenario(str(p))
    start, end = GOOD.index("api:"), GOOD.index("world:")
    p.write_text(GOOD[:start] + "api: telephone\n" + GOOD[end:])
    with pytest.raises(ConfigError, match=r"todo.yaml:3: field 'api': unknown built-in API 'telephone' \(built in: "):
        load_scenario(str(p))


def test_scenario_values_are_checked_against_their_parameters(tmp_path: Path) -> None:
    text = (Path(__file__).parents[1] / "src/mendlab/dialogs/scenarios/smarthome.yaml").read_text()
    for old, new, match in [
        ("update: {item: living, level: 40}", "update: {item: living, level: 140}",
         r"smarthome.yaml:\d+: field 'turns\[0\].update.level': must be within 0.0..100.0, got 140"),
        ("update: {item: bedroom, celsius: 19.0}", "update: {item: bedroom, celsius: warm}",
         r"field 'turns\[1\].update.celsius': must be float, got 'warm'"),
        ('enum: ["on", "off"], default: "on"', 'enum: [on, off], default: "on"',
         r"field 'api.params.state.enum\[0\]': must be str, got True \(YAML reads unquoted on/off"),
        ("living: {collection: lights, ", "living: {",
         r"field 'items.living': missing field 'collection'"),
        ("update: {item: bedroom, celsius: 20.5}", "update: {item: porch, celsius: 20.5}",
         r"field 'turns\[4\].update': no function of the API can update items of 'schedules'"),
        ("update: {item: bedroom, celsius: 20.5}", "update: {item: bedroom, level: 20}",
         r"field 'turns\[4\].update.level': unknown field \(expected one of: celsius, item\)"),
        ("remove: {item: porch}", "remove: {item: living}",
         r"field 'turns\[5\].remove': no function of the API can remove items of 'lights'"),
    ]:  # fmt: skip
        assert old in text
        p = tmp_path / "smarthome.yaml"
        p.write_text(text.replace(old, new))
        with pytest.raises(ConfigError, match=match):
            load_scenario(str(p))


def test_dentist_names_the_calendar_api_and_old_files_keep_working() -> None:
    dentist = load_scenario("dentist")
    assert dentist.api == CAL.api
    assert dentist.api.errors == CAL.api.errors and "wrong_event" in CAL.api.errors
    assert rule_feedback(("wrong_event",), dentist.expected(0), dentist, "explicit") == (
        'This is about "Dentist appointment".'
    )


# ---------------------------------------------------------------- reasoning blocks


FRED = 'action.add_calendar_entry("Meeting with Fred", date="2024-11-11", time="17:00", duration=30)'


@pytest.mark.parametrize(
    ("reply", "errors"),
    [
        (f"<think>The user wants Fred on Nov 11. The year must be 2024.</think>\n{FRED}", ()),
        (f"<THINK>\nhmm\n</THINK>{FRED}", ()),
        (f"<think>I could write {FRED.replace('2024', '2023')}, or better</think>\n{FRED}", ()),  # not a call made
        (f"<think>first {FRED}", ("no_call",)),  # cut short while thinking: no answer yet
        (f"The year must be 2024.</think>\n{FRED}", ()),  # the template opened the block
        (f"<think>ok</think>\nHere you go: {FRED}", ("chatter",)),  # chatter after the thinking still counts
    ],
)
def test_a_reasoning_block_is_neither_chatter_nor_calls(reply: str, errors: tuple[str, ...]) -> None:
    assert check_reply(reply, CAL.expected(0), CAL).errors == errors


# ---------------------------------------------------------------- OpenAI tool calls


def test_tools_schema_from_the_declaration() -> None:
    tools = {t["function"]["name"]: t["function"] for t in map(json.loads, HOME.tools())}
    assert list(tools) == ["set_light", "set_thermostat", "schedule", "cancel"]
    light = tools["set_light"]["parameters"]
    assert light["required"] == ["room", "level"]
    assert light["properties"]["level"] == {
        "type": "integer",
        "minimum": 0.0,
        "maximum": 100.0,
        "description": "in percent",
    }
    sched = tools["schedule"]["parameters"]
    assert sched["required"] == ["device", "time"]
    assert sched["properties"]["state"] == {"type": "string", "enum": ["on", "off"], "default": "on"}
    assert "24-hour" in sched["properties"]["time"]["description"]
    cal = {t["function"]["name"]: t["function"] for t in map(json.loads, CAL.tools())}
    assert cal["add_calendar_entry"]["parameters"]["properties"]["date"]["description"] == "a date YYYY-MM-DD"


def test_params_without_tools_keep_their_keys(tmp_path: Path) -> None:
    """`tools` is absent from as_dict() when empty: the resume keys of every run made before it are
    the ones the code at HEAD computes (checked against HEAD's own source), and tools change them."""
    plain = SamplingParams(temperature=0.7, max_tokens=96, seed=3, stop=("\n",))
    assert "tools" not in plain.as_dict() and with_tools(plain, CAL) is plain
    msgs = [Message("system", "s"), Message("user", "u")]
    key = resume_key("run", "m", msgs, plain, 1, "dialog:pointed:0")
    head = tmp_path / "head"
    head.mkdir()
    archive = tmp_path / "head.tar"
    subprocess.run(["git", "archive", "-o", str(archive), "HEAD", "src"], cwd=Path(__file__).parents[1], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(head, filter="data")
    code = (
        "from mendlab.models import Message, SamplingParams; from mendlab.store.results import resume_key; "
        "p = SamplingParams(temperature=0.7, max_tokens=96, seed=3, stop=('\\n',)); "
        "print(resume_key('run', 'm', [Message('system', 's'), Message('user', 'u')], p, 1, 'dialog:pointed:0'))"
    )
    old = subprocess.run(
        [str(Path(MENDLAB).with_name("python")), "-c", code],
        env={**cli_env(), "PYTHONPATH": str(head / "src")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert old.stdout.strip() == key
    tooled = with_tools(plain, load_scenario_tool_mode(tmp_path))
    assert tooled.tools == HOME.tools() and tooled.as_dict()["tools"] == [json.loads(t) for t in HOME.tools()]
    assert resume_key("run", "m", msgs, tooled, 1, "dialog:pointed:0") != key


def test_tool_call_text_is_repr_of_json_never_eval() -> None:
    assert (
        tool_call_text("set_light", '{"room": "living room", "level": 40}') == "set_light(room='living room', level=40)"
    )
    assert (
        tool_call_text("f", '{"on": true, "x": null, "t": 19.5, "l": [1, 2]}') == "f(on=True, x=None, t=19.5, l=[1, 2])"
    )
    assert tool_call_text("f", '{"a b": 1, "ok": "__import__(\'os\')"}') == "f(ok=\"__import__('os')\", **{'a b': 1})"
    assert tool_call_text("f", "") == "f()"
    assert tool_call_text("f", '{"room": "liv') == 'f({"room": "liv)'  # broken JSON stays broken
    assert tool_call_text("f", "[1, 2]") == "f([1, 2])"


HOME_TOOLS = """\
name: home-tools
system_prompt: You control a smart home with the tools you are given.
api: smarthome
mode: tool_calls
world:
  lights: [{item: living, level: 100}]
items:
  living: {collection: lights, room: living room, words: [living]}
  porch: {collection: schedules, device: porch light, words: [porch]}
turns:
  - user: Dim the living room lights to 40%.
    update: {item: living, level: 40}
  - user: Turn the porch light on at sunset.
    add: {item: porch, time: "18:45"}
"""


def load_scenario_tool_mode(tmp_path: Path) -> object:
    p = tmp_path / "home-tools.yaml"
    p.write_text(HOME_TOOLS)
    return load_scenario(str(p))


def test_tool_calls_through_a_real_server_are_graded_as_call_text(tmp_path: Path) -> None:
    sc = load_scenario_tool_mode(tmp_path)
    answers = iter(
        [
            ToolCalls((("set_light", {"room": "Living room", "level": 40}),)),
            ToolCalls((("set_light", {"room": "living room", "level": 40}),), content="Sure, dimming now."),
            ToolCalls((("schedule", '{"device": "porch light", "time": '),)),
            ToolCalls((("schedule", {"device": "porch light", "time": "6:45 PM"}), ("cancel", {"device": "porch"}))),
            "schedule(device='porch light', time='18:45')",  # a plain-text answer is graded the same way
            "no tools asked for",
        ]
    )
    with scripted_server(lambda msgs: next(answers)) as server:
        model = OpenAIModel("scripted", server.url, "scripted", max_retries=0)
        params = with_tools(SamplingParams(max_tokens=32), sc)  # type: ignore[arg-type]
        texts = [model.chat([Message("user", "x")], params)[0].text for _ in range(5)]
        model.chat([Message("user", "x")], SamplingParams(max_tokens=32))
        model.close()
        bodies = server.bodies
    assert texts == [
        "set_light(room='Living room', level=40)",
        "Sure, dimming now.\nset_light(room='living room', level=40)",
        'schedule({"device": "porch light", "time": )',
        "schedule(device='porch light', time='6:45 PM')\ncancel(device='porch')",
        "schedule(device='porch light', time='18:45')",
    ]
    assert [check_reply(t, sc.expected(i), sc).errors for i, t in zip([0, 0, 1, 1, 1], texts, strict=True)] == [  # type: ignore[attr-defined, arg-type]
        (),
        ("chatter",),
        ("syntax_error",),
        ("time_12h", "extra_call"),
        (),
    ]
    assert all(b["tools"] == [json.loads(t) for t in HOME.tools()] for b in bodies[:5])
    assert "tools" not in bodies[5]


def test_mendlab_run_in_tool_calls_mode(tmp_path: Path) -> None:
    """`mendlab run dialog` on a tool_calls scenario sends the API as tools with every request; the
    tool calls are stored as call text and graded like any answer (a 12-hour time, then its fix)."""
    (tmp_path / "home-tools.yaml").write_text(HOME_TOOLS)

    def policy(msgs: list[dict[str, str]]) -> str | ToolCalls:
        last = msgs[-1]["content"]
        if last.startswith("Dim"):
            return ToolCalls((("set_light", {"room": "living room", "level": 40}),))
        if last.startswith("Turn the porch"):
            return ToolCalls((("schedule", {"device": "porch light", "time": "6:45 PM"}),))
        return ToolCalls((("schedule", {"device": "porch light", "time": "18:45", "state": "on"}),))

    with scripted_server(policy) as server:
        (tmp_path / "mendlab.toml").write_text(models_toml(server.url, ["scripted"]))
        cmd = [MENDLAB, "run", "dialog", "--scenario", "home-tools.yaml", "-m", "scripted"]
        cmd += ["--reps", "1", "--rung", "pointed", "--max-fixes", "1"]
        r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=120)
        bodies = server.bodies
    assert r.returncode == 0, r.stderr + r.stdout
    assert len(bodies) == 3 and all(len(b["tools"]) == 4 for b in bodies)
    with sqlite3.connect(tmp_path / "mendlab.db") as con:
        (msgs, meta) = con.execute("SELECT messages, meta FROM conversations").fetchone()
    answers = [m["content"] for m in json.loads(msgs) if m["role"] == "assistant"]
    assert answers[0] == "set_light(room='living room', level=40)"
    grades = json.loads(meta)["grades"]
    assert [(g["step"], g["attempt"], g["errors"], g["fixed"]) for g in grades] == [
        (1, 0, [], False),
        (2, 0, ["time_12h"], False),
        (2, 1, [], True),
    ]


@pytest.mark.slow
def test_mendlab_run_smarthome_on_the_bundled_model(tmp_path: Path) -> None:
    cmd = [MENDLAB, "run", "dialog", "--scenario", "smarthome", "-m", "smollm2-135m", "--reps", "1"]
    cmd += ["--rung", "explicit", "--max-fixes", "1", "--max-tokens", "24"]
    start = time.perf_counter()
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    assert time.perf_counter() - start < 300
    with sqlite3.connect(tmp_path / "mendlab.db") as con:
        rows = con.execute("SELECT messages, meta FROM conversations").fetchall()
    assert len(rows) == 1
    msgs, meta = json.loads(rows[0][0]), json.loads(rows[0][1])
    assert meta["scenario"] == "smarthome" and meta["rung"] == "explicit"
    assert [m["content"] for m in msgs if m["role"] == "user" and m.get("origin") is None][:1] == [HOME.steps[0].user]
    grades = meta["grades"]
    assert len(grades) == sum(m["role"] == "assistant" for m in msgs)
    assert sorted({g["step"] for g in grades if g["attempt"] == 0}) == [1, 2, 3, 4, 5, 6]
    known = set(HOME.api.errors)
    assert all(set(g["errors"]) <= known for g in grades)
