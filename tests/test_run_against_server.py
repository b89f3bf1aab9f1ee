"""The README's "Run against vLLM" recipe, against a real OpenAI-compatible server: llama.cpp's.

`mendlab run` on an endpoint model plays its dialogs concurrently (the model's `concurrency`); when
the server is down every sample is stored as that sample's error and the run exits 3 naming
`--retry-errors`; once the server is back, `--retry-errors` plays exactly those samples."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from mendlab.models import Registry, model_path
from tests.conftest import MENDLAB, cli_env
from tests.test_openai_backend import Server, _free_port

TOML = """[models.smol-server]
backend = "openai"
base_url = "{url}"
model = "smol"
concurrency = 4
max_retries = 0
timeout_s = 60
"""


def statuses(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as con:
        return sorted(con.execute("SELECT task, sample_id, status FROM samples"))


def test_a_run_against_a_server_that_dies_resumes_with_retry_errors(registry: Registry, tmp_path: Path) -> None:
    server = Server(model_path(registry.get("smollm2-135m")), _free_port())
    (tmp_path / "mendlab.toml").write_text(TOML.format(url=server.url))
    cmd = [MENDLAB, "run", "dialog", "-m", "smol-server", "--reps", "3", "--rung", "pointed"]
    cmd += ["--max-fixes", "1", "--max-tokens", "24"]
    down = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert down.returncode == 3, down.stderr
    assert "Traceback" not in down.stderr and "--retry-errors" in down.stderr
    assert "cannot reach" in " ".join(down.stderr.split())
    db = tmp_path / "mendlab.db"
    assert statuses(db) == [("dialog", f"pointed:{i}", "error") for i in range(3)]

    server.start()
    try:
        plain = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=300)
        assert plain.returncode == 3  # a plain rerun keeps the errors as they are
        again = subprocess.run(
            [*cmd, "--retry-errors"], cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=300
        )
    finally:
        server.stop()
    assert again.returncode == 0, again.stderr
    assert statuses(db) == [("dialog", f"pointed:{i}", "ok") for i in range(3)]
    with sqlite3.connect(db) as con:
        dialogs = con.execute("SELECT COUNT(*) FROM conversations WHERE json_extract(meta, '$.experiment') = 'dialog'")
        assert dialogs.fetchone()[0] == 3  # failed samples left no transcript behind; played ones left one each
        tokens = con.execute("SELECT MIN(completion_tokens), MIN(generations) FROM samples").fetchone()
    assert tokens[0] > 0 and tokens[1] >= 6  # the server's own token counts, one generation per scripted step
