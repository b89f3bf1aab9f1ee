"""Every file a user hands us, fuzzed: it loads, or it fails with one line of ours naming the file.

Each reader gets any bytes, any JSON (or YAML, or TOML), and valid files with a part replaced, cut or
garbled. What must never come out is anything but a value or a MendlabError (a KeyError, a
UnicodeDecodeError, a ValueError from deep inside is a traceback for the user), and the error must
name the file, on one line.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mendlab.cli import app
from mendlab.conversation import read_jsonl
from mendlab.dialogs.scenario import load_scenario
from mendlab.errors import MendlabError
from mendlab.models.registry import load_registry, readiness
from mendlab.negotiation.game import load_game
from mendlab.negotiation.runner import read_human_feedback
from mendlab.repair.check import done_rows, read_samples
from mendlab.repair.tasks import load_task_file
from mendlab.repair.trees import load_human_feedback

DATA = Path(__file__).parent / "data"
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

# ---------------------------------------------------------------- what the files may hold

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
yaml_values = st.recursive(
    json_scalars | st.dates(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5), inner, max_size=4)
    ),
    max_leaves=10,
)
garbage = st.binary(max_size=300) | st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass"))


def paths_of(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON/YAML tree (the root too)."""
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += paths_of(v, (*prefix, i))
    return out


def mutate(draw: st.DrawFn, data: Any, values: st.SearchStrategy[Any]) -> Any:
    """`data` with one place replaced by another value, deleted, or given an extra key."""
    path = draw(st.sampled_from(paths_of(data)))
    if not path:
        return draw(values)
    parent = data
    for k in path[:-1]:
        parent = parent[k]
    how = draw(st.sampled_from(["replace", "delete", "extra"]))
    last = path[-1]
    if how == "replace":
        parent[last] = draw(values)
    elif how == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = draw(values)
    else:
        parent.append(draw(values))
    return data


@st.composite
def garbled(draw: st.DrawFn, text: str) -> bytes:
    """A valid file's text with a slice cut out, replaced or repeated, or some bytes flipped."""
    raw = text.encode("utf-8")
    i = draw(st.integers(0, len(raw)))
    j = draw(st.integers(i, min(len(raw), i + 40)))
    how = draw(st.sampled_from(["cut", "insert", "repeat", "flip", "truncate"]))
    if how == "cut":
        return raw[:i] + raw[j:]
    if how == "insert":
        return raw[:i] + draw(garbage) + raw[i:]
    if how == "repeat":
        return raw[:j] + raw[i:j] + raw[j:]
    if how == "flip":
        return raw[:i] + bytes(b ^ draw(st.integers(1, 255)) for b in raw[i:j]) + raw[j:]
    return raw[:i]


def ours_or_nothing(load: Callable[[Path], object], path: Path, line: bool = False) -> None:
    """`load(path)` returns, or raises a one-line MendlabError that names `path` (and a line, if asked)."""
    try:
        load(path)
    except MendlabError as exc:
        msg = str(exc)
        assert str(path) in msg, msg
        assert "\n" not in msg, msg
        if line:
            assert re.search(re.escape(str(path)) + r"(:\d+)*: ", msg), msg


def write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return path


def jsonl(rows: list[Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# ---------------------------------------------------------------- mendlab.toml

VALID_TOML = """\
[models.local]
backend = "llama.cpp"
path = "models/x.gguf"
n_ctx = 2048

[models.remote]
backend = "openai"
base_url = "http://localhost:8000/v1"
model = "m"
api_key_env = "MY_KEY"
timeout_s = 30.5
"""
MODEL_FIELDS = ["backend", "path", "n_ctx", "n_threads", "base_url", "model", "chat_template", "timeout_s",
                "max_retries", "chat", "size_mb", "description", "concurrency", "nonsense"]  # fmt: skip


def toml_value(v: Any) -> str:
    """A minimal TOML writer for the values hypothesis draws (no TOML writer is a dependency)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    return '""'


@st.composite
def toml_files(draw: st.DrawFn) -> str:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.text(max_size=10))
        out.append(f"[models.{json.dumps(name)}]")
        for key in draw(st.lists(st.sampled_from(MODEL_FIELDS), max_size=5, unique=True)):
            value = draw(json_values | st.sampled_from(["llama.cpp", "openai", "transformers", "a.gguf"]))
            if value is not None:
                out.append(f"{key} = {toml_value(value)}")
    return "\n".join(out) + "\n"


def load_and_list(path: Path) -> None:
    """What `mendlab models` does with the file: load it and ask every model whether it is ready."""
    for spec in load_registry(path):
        readiness(spec)


@FUZZ
@given(content=garbage | garbled(VALID_TOML) | toml_files().map(str.encode))
def test_mendlab_toml(tmp_path: Path, content: bytes) -> None:
    ours_or_nothing(load_and_list, write(tmp_path / "mendlab.toml", content), line=True)


# ---------------------------------------------------------------- scenario and game YAML


def builtin(package: str, folder: str, name: str) -> str:
    return (resources.files(package) / folder / name).read_text(encoding="utf-8")


CALENDAR = builtin("mendlab.dialogs", "scenarios", "calendar.yaml")
BALLOON = builtin("mendlab.negotiation", "games", "balloon.yaml")


@st.composite
def mutated_yaml(draw: st.DrawFn, text: str) -> bytes:
    data = mutate(draw, yaml.safe_load(text), yaml_values)
    return yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass")


def _as_path(load: Callable[[str], object]) -> Callable[[Path], object]:
    return lambda p: load(str(p))


@FUZZ
@given(content=garbage | garbled(CALENDAR) | mutated_yaml(CALENDAR))
def test_scenario_yaml(tmp_path: Path, content: bytes) -> None:
    ours_or_nothing(_as_path(load_scenario), write(tmp_path / "scenario.yaml", content), line=True)


@FUZZ
@given(content=garbage | garbled(BALLOON) | mutated_yaml(BALLOON))
def test_game_yaml(tmp_path: Path, content: bytes) -> None:
    ours_or_nothing(_as_path(load_game), write(tmp_path / "game.yaml", content), line=True)


def test_the_builtin_files_load() -> None:
    """The mutations above start from valid files: were they not, every case would be an error."""
    assert load_scenario("calendar").name == "calendar" and load_game("balloon").name
    assert load_task_file(DATA / "tasks.jsonl") and load_task_file(DATA / "apps.jsonl")


# ---------------------------------------------------------------- JSONL: conversations, tasks, samples

CONVERSATIONS = jsonl(
    [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "id": "x"},
    ]
)


@st.composite
def mutated_jsonl(draw: st.DrawFn, text: str) -> bytes:
    rows = mutate(draw, [json.loads(line) for line in text.splitlines()], json_values)
    return jsonl(rows if isinstance(rows, list) else [rows]).encode("utf-8", "surrogatepass")


any_jsonl = st.lists(json_values, max_size=4).map(lambda rows: jsonl(rows).encode("utf-8", "surrogatepass"))


@FUZZ
@given(content=garbage | any_jsonl | garbled(CONVERSATIONS) | mutated_jsonl(CONVERSATIONS))
def test_conversations_jsonl(tmp_path: Path, content: bytes) -> None:
    """What `mendlab generate` reads."""
    ours_or_nothing(read_jsonl, write(tmp_path / "conversations.jsonl", content), line=True)


TASKS = (DATA / "tasks.jsonl").read_text(encoding="utf-8") + (DATA / "apps.jsonl").read_text(encoding="utf-8")


@FUZZ
@given(content=garbage | any_jsonl | garbled(TASKS) | mutated_jsonl(TASKS))
def test_task_files(tmp_path: Path, content: bytes) -> None:
    ours_or_nothing(load_task_file, write(tmp_path / "tasks.jsonl", content), line=True)


SAMPLES = jsonl(
    [{"task_id": "double", "completion": "def double(x):\n    return 2 * x\n"}, {"task_id": "1", "completion": ""}]
)


@FUZZ
@given(content=garbage | any_jsonl | garbled(SAMPLES) | mutated_jsonl(SAMPLES))
def test_check_samples(tmp_path: Path, content: bytes) -> None:
    tasks = load_task_file(DATA / "tasks.jsonl") + load_task_file(DATA / "apps.jsonl")
    ours_or_nothing(lambda p: read_samples(tasks, p), write(tmp_path / "samples.jsonl", content), line=True)


@FUZZ
@given(content=garbage | any_jsonl | garbled(SAMPLES))
def test_check_output_to_resume(tmp_path: Path, content: bytes) -> None:
    """`mendlab check -o FILE` reads FILE back to resume: any file a user points it at is refused cleanly."""
    tasks = load_task_file(DATA / "tasks.jsonl")
    samples = read_samples(tasks, write(tmp_path / "samples.jsonl", SAMPLES.splitlines()[0] + "\n"))
    ours_or_nothing(lambda p: done_rows(p, samples, "none"), write(tmp_path / "out.jsonl", content), line=True)


FEEDBACK = jsonl([{"task_id": "double", "program": 0, "feedback": "It adds instead of multiplying."}])


@FUZZ
@given(content=garbage | any_jsonl | garbled(FEEDBACK) | mutated_jsonl(FEEDBACK))
def test_repair_human_feedback(tmp_path: Path, content: bytes) -> None:
    ours_or_nothing(load_human_feedback, write(tmp_path / "feedback.jsonl", content), line=True)


@FUZZ
@given(content=garbage)
def test_negotiation_human_feedback(tmp_path: Path, content: bytes) -> None:
    ours_or_nothing(read_human_feedback, write(tmp_path / "feedback.txt", content))


# ---------------------------------------------------------------- `mendlab grade`, in process

GRADE = jsonl(
    [
        {
            "scenario": "calendar",
            "messages": [
                {"role": "user", "content": "Add a meeting with Fred on Nov 11 at 5PM"},
                {
                    "role": "assistant",
                    "content": 'action.add_calendar_entry("Meeting with Fred", date="2024-11-11", time="17:00")',
                },
                {"role": "user", "content": "The current year is 2024."},
                {"role": "assistant", "content": "ok"},
            ],
        }
    ]
)


def invoke_ok_or_ours(args: list[str], path: Path) -> None:
    result = CliRunner().invoke(app, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert isinstance(result.exception, MendlabError), repr(result.exception)
        msg = str(result.exception)
        assert str(path) in msg and "\n" not in msg, msg


@FUZZ
@given(content=garbage | any_jsonl | garbled(GRADE) | mutated_jsonl(GRADE))
def test_grade_transcripts(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path / "transcripts.jsonl", content)
    invoke_ok_or_ours(["grade", str(path), "-o", str(tmp_path / "graded.jsonl")], path)


def test_grade_names_the_line_of_an_unknown_scenario(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", GRADE + GRADE.replace('"calendar"', '"no-such-scenario"'))
    result = CliRunner().invoke(app, ["grade", str(path)])
    assert isinstance(result.exception, MendlabError)
    assert str(result.exception).startswith(f"{path}:2: field 'scenario': "), str(result.exception)


# ---------------------------------------------------------------- a few exact cases the fuzzing found


@pytest.mark.parametrize(
    "content",
    [
        b'[models.x]\nbackend = "llama.cpp"\npath = "a\\u0000b.gguf"\n',
        b'[models.x]\nbackend = "transformers"\npath = "a\\u0000b"\n',
        b'[models.x]\nbackend = "llama.cpp"\npath = "a.gguf"\nchat_template = "t\\u0000"\n',
    ],
)
def test_registry_nul_in_a_path(tmp_path: Path, content: bytes) -> None:
    ours_or_nothing(load_and_list, write(tmp_path / "mendlab.toml", content), line=True)


def test_yaml_dates_before_year_one_and_odd_keys(tmp_path: Path) -> None:
    for text in ["world: {today: 0000-01-01}\n", "? [a, b]\n: 1\n", "name: !!binary AAAA\n", "*x\n", '"a\\nb": 1\n']:
        ours_or_nothing(_as_path(load_scenario), write(tmp_path / "s.yaml", text), line=True)
        ours_or_nothing(_as_path(load_game), write(tmp_path / "g.yaml", text), line=True)


def test_a_scenario_date_is_read_whatever_yaml_made_of_it(tmp_path: Path) -> None:
    text = CALENDAR.replace("today: 2024-11-01", "today: 2024-11-01 10:00:00")
    ours_or_nothing(_as_path(load_scenario), write(tmp_path / "s.yaml", text), line=True)
    assert dt.date(2024, 11, 1) == load_scenario("calendar").today


def test_json_nested_past_the_stack_or_too_many_digits(tmp_path: Path) -> None:
    for text in ["[" * 100_000 + "\n", '{"a": ' + "1" * 5000 + "}\n"]:
        path = write(tmp_path / "c.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\n' + text)
        with pytest.raises(MendlabError, match=re.escape(f"{path}:2: invalid JSON")):
            read_jsonl(path)


def test_yaml_aliases_that_never_end(tmp_path: Path) -> None:
    laughs = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdef", "bcdefg", strict=True)
    )
    for text, why in [("a: &x [*x]\n", "refers to itself"), (laughs, "expands to more than")]:
        path = write(tmp_path / "s.yaml", text)
        with pytest.raises(MendlabError, match=re.escape(str(path)) + ".*" + why):
            load_scenario(str(path))


def test_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "g.yaml", b"name: x\nitem: y\ncost: \xff\n")
    with pytest.raises(MendlabError, match=re.escape(f"{path}:3: not UTF-8 text")):
        load_game(str(path))
    toml = write(tmp_path / "m.toml", b"[models.x]\n\xc3\n")
    with pytest.raises(MendlabError, match=re.escape(f"{toml}:2: not UTF-8 text")):
        load_registry(toml)
