"""The commands as a script uses them: through a pipe (not a terminal), with --json, as `python -m mendlab`,
and fed garbage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.table import Table

from mendlab.cli import app
from mendlab.output import Recorder, table_json
from mendlab.store import ResultsStore
from mendlab.store.results import Vote
from tests.conftest import MENDLAB
from tests.scripted_server import models_toml, scripted_server

LONG = "a-scripted-model-whose-name-is-long-enough-to-wrap"


def piped(
    args: list[str], cwd: Path, columns: str | None = None, module: bool = False
) -> subprocess.CompletedProcess[str]:
    """The command with stdout and stderr pipes, as `cmd | grep` or a script would run it."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["NO_COLOR"] = "1"
    if columns is not None:
        env["COLUMNS"] = columns
    cmd = [sys.executable, "-m", "mendlab", *args] if module else [MENDLAB, *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def a_store(path: Path) -> None:
    with ResultsStore(path) as store:
        store.ensure_run(LONG + "-run", "calendar", {"scenario": "calendar", "tries": 1})
        for i, winner in enumerate(["left", "left", "tie", "right"]):
            store.add_vote(Vote("s", "fix", winner, LONG, "smollm2-135m", f"a{i}", f"b{i}", 1, True))


# ---------------------------------------------------------------- tables in a pipe keep names whole


@pytest.mark.parametrize("columns", [None, "80"])
def test_models_table_through_a_pipe_keeps_names_on_one_line(tmp_path: Path, columns: str | None) -> None:
    (tmp_path / "mendlab.toml").write_text(models_toml("http://127.0.0.1:9/v1", [LONG]))
    r = piped(["models"], tmp_path, columns)
    assert r.returncode == 0, r.stderr
    for name in ("qwen2.5-coder-0.5b", "smollm2-135m", "qwen2.5-coder-1.5b", LONG):
        assert [line for line in r.stdout.splitlines() if name in line], (name, r.stdout)


def test_runs_and_leaderboard_tables_keep_names_on_one_line(tmp_path: Path) -> None:
    a_store(tmp_path / "mendlab.db")
    runs = piped(["runs"], tmp_path, "80")
    assert runs.returncode == 0, runs.stderr
    assert LONG + "-run" in runs.stdout
    board = piped(["leaderboard", "--boot", "50"], tmp_path, "80")
    assert board.returncode == 0, board.stderr
    assert LONG in board.stdout


# ---------------------------------------------------------------- --json: one document on stdout


def test_models_json(tmp_path: Path) -> None:
    r = piped(["models", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    models = {m["name"]: m for m in json.loads(r.stdout)}
    assert models["qwen2.5-coder-0.5b"]["ready"] is True and models["qwen2.5-coder-0.5b"]["size_mb"] == 491
    assert models["gemma-3-270m-base"]["chat"] is False
    assert models["qwen2.5-coder-1.5b"]["optional"] is True


def test_runs_and_leaderboard_json(tmp_path: Path) -> None:
    a_store(tmp_path / "mendlab.db")
    runs = json.loads(piped(["runs", "--json"], tmp_path).stdout)
    assert [(r["run"], r["kind"], r["config"]["tries"]) for r in runs] == [(LONG + "-run", "calendar", 1)]
    r = piped(["leaderboard", "--json", "--boot", "50"], tmp_path)
    board = json.loads(r.stdout)
    assert board["first"]["ratings"] == [] and board["fix"]["votes"] == 4
    ratings = {x["model"]: x for x in board["fix"]["ratings"]}
    assert ratings[LONG]["wins"] == 2.5 and ratings["smollm2-135m"]["wins"] == 1.5
    assert ratings[LONG]["rank"] == 1 and ratings[LONG]["few_votes"] is True
    assert ratings[LONG]["low"] <= ratings[LONG]["rating"] <= ratings[LONG]["high"]


def test_run_json_is_the_summary_table_with_progress_on_stderr(tmp_path: Path) -> None:
    """A long command: its table and messages go to stderr as they come, and one JSON document to stdout."""
    with scripted_server(lambda msgs: "I do not know.") as server:
        (tmp_path / "mendlab.toml").write_text(models_toml(server.url, [LONG]))
        args = ["run", "dialog", "-m", LONG, "--reps", "1", "--rung", "pointed", "--max-fixes", "1"]
        r = piped([*args, "--json"], tmp_path)
        again = piped(args, tmp_path, "80")  # resumed from the store: the same table, for a person
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    (table,) = doc["tables"]
    assert table["columns"][:2] == ["model", "feedback"]
    assert [(row["model"], row["feedback"]) for row in table["rows"]] == [(LONG, "pointed")]
    assert LONG in r.stderr  # the table, for the person watching
    assert again.returncode == 0 and [line for line in again.stdout.splitlines() if LONG in line]


def test_recorder_keeps_tables_and_messages() -> None:
    table = Table(title="[bold]t[/]")
    table.add_column("model")
    table.add_column("score")
    table.add_row("m1", "[green]0.5")
    rec = Recorder()
    rec.print("run [bold]r[/]: resuming")
    rec.print(table)
    rec.print("wrote report/summary.json")
    assert rec.document(run="r") == {
        "run": "r",
        "tables": [{"title": "t", "columns": ["model", "score"], "rows": [{"model": "m1", "score": "0.5"}]}],
        "wrote": ["report/summary.json"],
        "messages": ["run r: resuming"],
    }
    assert table.columns[0].no_wrap and not table.columns[1].no_wrap
    assert table_json(Table("a"))["rows"] == []


# ---------------------------------------------------------------- python -m mendlab


def test_python_m_mendlab_has_every_command(tmp_path: Path) -> None:
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    assert {"models", "runs", "leaderboard", "arena", "check", "repair", "negotiate"} <= names
    r = piped(["--help"], tmp_path, "200", module=True)
    assert r.returncode == 0, r.stderr
    assert "python -m mendlab" in r.stdout
    assert all(f" {n} " in r.stdout for n in names), r.stdout
    models = piped(["models", "--json"], tmp_path, module=True)
    assert models.returncode == 0 and json.loads(models.stdout)
    # the commands registered last are there too when the module itself is run
    last = subprocess.run(
        [sys.executable, "-m", "mendlab.cli", "leaderboard", "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert last.returncode == 0, last.stderr
    missing = piped(["runs"], tmp_path, module=True)
    assert missing.returncode == 2 and "no results store" in missing.stderr


# ---------------------------------------------------------------- garbage in: one line, no traceback

GARBAGE = bytes(range(256)) * 3


@pytest.mark.parametrize(
    "args",
    [
        ["grade", "{f}"],
        ["check", "{f}", "--tasks", "tests/data/tasks.jsonl"],
        ["check", "tests/data/samples-absent.jsonl", "--tasks", "{f}"],
        ["generate", "smollm2-135m", "{f}"],
        ["run", "reliability", "--scenario", "{f}"],
        ["negotiate", "--game", "{f}"],
        ["repair", "--tasks", "{f}"],
        ["-c", "{f}", "models"],
    ],
)
def test_binary_garbage_is_one_line_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    bad = tmp_path / "garbage.jsonl"
    bad.write_bytes(GARBAGE)
    root = Path(__file__).parent.parent
    r = piped([a.replace("{f}", str(bad)).replace("tests/", f"{root}/tests/") for a in args], tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert str(bad) in r.stderr and r.stdout == ""


def test_run_json_when_samples_fail_still_prints_its_document(tmp_path: Path) -> None:
    """A run that ends incomplete (exit 3) gives a script what did work, and why it is incomplete."""
    with scripted_server(lambda msgs: "I do not know.") as server:
        server.fail_after = 1  # the first dialog's request is answered, every later one fails
        (tmp_path / "mendlab.toml").write_text(models_toml(server.url, [LONG]))
        args = ["run", "dialog", "-m", LONG, "--reps", "2", "--rung", "pointed", "--max-fixes", "1", "--json"]
        r = piped(args, tmp_path)
    assert r.returncode == 3, r.stderr
    doc = json.loads(r.stdout)
    assert doc["experiment"] == "dialog" and "--retry-errors" in doc["incomplete"]
    assert "Traceback" not in r.stderr and "error:" in r.stderr
