"""The results store: nothing lost on kill -9 or a dead server, nothing doubled on resume."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from mendlab.models import Completion, Message, SamplingParams, model_path
from mendlab.store import GenerationRecord, ResultsStore
from tests.conftest import MENDLAB, cli_env
from tests.test_openai_backend import Server, _free_port


def _rows(db: Path) -> dict[str, tuple[int, str]]:
    with sqlite3.connect(db) as con:
        return {k: (i, out) for i, k, out in con.execute("SELECT id, resume_key, output FROM generations")}


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return int(con.execute("SELECT COUNT(*) FROM generations").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def _write_convs(path: Path, n: int) -> None:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(
                json.dumps({"messages": [{"role": "user", "content": f"Tell me fact number {i} about cats."}]}) + "\n"
            )


def test_same_key_is_stored_once(tmp_path: Path) -> None:
    msgs = (Message("user", "hi"),)
    p = SamplingParams()
    rec = GenerationRecord.of("r", "m", "llama.cpp", msgs, p, Completion("yo", 3, 1, "stop", 0.1), 0)
    with ResultsStore(tmp_path / "s.db") as store:
        store.ensure_run("r", "sample", {})
        assert store.add(rec) is True
        assert store.add(rec) is False
        assert len(store.generations("r")) == 1
        other = GenerationRecord.of("r", "m", "llama.cpp", msgs, p, Completion("yo", 3, 1, "stop", 0.1), 1)
        assert store.add(other) is True
        (back, _) = store.generations("r")
        assert back.messages == msgs and back.output == "yo" and back.params["seed"] == 0


def test_kill9_then_resume_loses_and_doubles_nothing(tmp_path: Path) -> None:
    convs = tmp_path / "convs.jsonl"
    _write_convs(convs, 6)
    db = tmp_path / "run.db"
    cmd = [
        MENDLAB,
        "--db",
        str(db),
        "generate",
        "smollm2-135m",
        str(convs),
        "-n",
        "2",
        "--temperature",
        "0.8",
        "--max-tokens",
        "24",
        "--seed",
        "3",
    ]
    child = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _count(db) < 3 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = _rows(db)
    assert 3 <= len(before) < 12, "the kill should land mid-run"
    r = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"resuming, {len(before)} of 12" in r.stdout
    after = _rows(db)
    assert len(after) == 12  # nothing lost, nothing doubled (resume keys are unique)
    assert all(after[k] == v for k, v in before.items())  # rows written before the kill are untouched
    # export writes every generation as JSONL, atomically
    out = tmp_path / "export.jsonl"
    r = subprocess.run([MENDLAB, "--db", str(db), "export", "-o", str(out)], env=cli_env(), capture_output=True)
    assert r.returncode == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 12 and {"messages", "output", "prompt_tokens", "completion_tokens", "params"} <= set(lines[0])


def test_dead_server_then_resume(tmp_path: Path, registry) -> None:  # type: ignore[no-untyped-def]
    port = _free_port()
    srv = Server(model_path(registry.get("smollm2-135m")), port)
    (tmp_path / "mendlab.toml").write_text(
        f'[models.smol-server]\nbackend = "openai"\nbase_url = "{srv.url}"\nmodel = "smol"\n'
        "concurrency = 1\nmax_retries = 1\ntimeout_s = 5\n"
    )
    convs = tmp_path / "convs.jsonl"
    _write_convs(convs, 8)
    db = tmp_path / "run.db"
    cmd = [MENDLAB, "--db", str(db), "generate", "smol-server", str(convs), "--max-tokens", "24"]
    srv.start()
    try:
        child = subprocess.Popen(
            cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 120
        while _count(db) < 1 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        srv.stop()  # the model server dies mid-run
        _, stderr = child.communicate(timeout=120)
    finally:
        srv.stop()
    stored = _count(db)
    # results are saved as each request completes, so the first is stored long before the last
    assert child.returncode == 2 and "cannot reach" in stderr and "Traceback" not in stderr
    assert 0 < stored < 8
    before = _rows(db)
    srv.start()
    try:
        r = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    finally:
        srv.stop()
    assert r.returncode == 0, r.stderr
    after = _rows(db)
    assert len(after) == 8 and all(after[k] == v for k, v in before.items())
