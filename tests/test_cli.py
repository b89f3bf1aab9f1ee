"""The commands as a user types them."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pexpect

from tests.conftest import MENDLAB, cli_env


def test_demo_side_by_side_and_served_from_store_on_rerun(tmp_path: Path) -> None:
    r = subprocess.run([MENDLAB, "demo"], cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "smollm2-135m" in r.stdout and "qwen2.5-coder-0.5b" in r.stdout
    assert "action.add_calendar_entry" in r.stdout and "2024-11-11" in r.stdout  # Qwen fixes its year
    db = tmp_path / "mendlab.db"
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT model, output FROM generations ORDER BY id").fetchall()
    assert [m for m, _ in rows] == ["smollm2-135m"] * 2 + ["qwen2.5-coder-0.5b"] * 2
    again = subprocess.run([MENDLAB, "demo"], cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert again.returncode == 0 and again.stdout == r.stdout
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM generations").fetchone()[0] == 4
    runs = subprocess.run([MENDLAB, "runs"], cwd=tmp_path, capture_output=True, text=True, env=cli_env())
    assert "demo-qwen2.5-coder-0.5b" in runs.stdout


def test_terminal_chat_streams_and_saves(tmp_path: Path) -> None:
    child = pexpect.spawn(
        MENDLAB,
        ["chat", "smollm2-135m", "--temperature", "0", "--max-tokens", "16", "--system", "Be brief."],
        cwd=str(tmp_path),
        env=cli_env(),
        encoding="utf-8",
        timeout=120,
    )
    child.expect("you>")
    child.sendline("What is the capital of France? Answer in one word.")
    child.expect("Paris")
    child.expect(r"(\d+) tokens, [\d.]+ tok/s")
    child.expect("you>")
    child.sendline("/reset")
    child.expect("new conversation")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    with sqlite3.connect(tmp_path / "mendlab.db") as con:
        (n_gen,) = con.execute("SELECT COUNT(*) FROM generations").fetchone()
        (msgs,) = con.execute("SELECT messages FROM conversations").fetchone()
    assert n_gen == 1 and "Paris" in msgs and "Be brief." in msgs


def test_export_without_store_is_one_line_error(tmp_path: Path) -> None:
    r = subprocess.run([MENDLAB, "export"], cwd=tmp_path, capture_output=True, text=True, env=cli_env())
    assert r.returncode == 2 and "no results store" in r.stderr and r.stderr.count("\n") == 1
    conv = tmp_path / "c.jsonl"
    conv.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": "nope"}\n')
    r = subprocess.run(
        [MENDLAB, "generate", "smollm2-135m", str(conv)], cwd=tmp_path, capture_output=True, text=True, env=cli_env()
    )
    assert r.returncode == 2 and "c.jsonl:2: field 'messages'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "mendlab.db").exists()  # nothing half-written for a rejected input
