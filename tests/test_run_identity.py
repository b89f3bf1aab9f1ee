"""Runs that never mix: a run's configuration is stored with it; the same one resumes, another one stops
with the differing fields named, or moves to a fresh id when asked. On a real SQLite file, with a
scripted model for the calendar's logic (the real models are run end to end in test_calendar_run.py)."""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from mendlab.dialogs.runner import CalendarConfig, run_experiments
from mendlab.dialogs.scenario import load_scenario
from mendlab.models import Completion, Message, ModelSpec, SamplingParams
from mendlab.store import GenerationRecord, ResultsStore, RunMismatch
from mendlab.store.recorded import RecordedModel
from tests.conftest import MENDLAB, cli_env
from tests.scripted import ScriptedModel, right, step_index

CAL = load_scenario("calendar")
SMALL = CalendarConfig(
    tries=2, reps=2, max_fixes=1, attempts=2, per_kind=1, params=SamplingParams(temperature=0.7, max_tokens=32)
)


def test_same_config_resumes_another_stops_naming_each_field(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "s.db") as store:
        cfg = {"reps": 3, "params": {"temperature": 0.7, "max_tokens": 96}, "rungs": ["vague", "pointed"]}
        first = store.ensure_run("r", "calendar", cfg)
        assert (first.id, first.resumed) == ("r", False)
        again = store.ensure_run("r", "calendar", dict(reversed(list(cfg.items()))))  # key order is not identity
        assert (again.id, again.resumed) == ("r", True)
        other = {"reps": 5, "params": {"temperature": 0.3, "max_tokens": 96}, "rungs": ["vague", "pointed"]}
        with pytest.raises(RunMismatch) as exc:
            store.ensure_run("r", "calendar", other)
        msg = str(exc.value)
        assert "params.temperature 0.7 → 0.3" in msg and "reps 3 → 5" in msg and "max_tokens" not in msg
        assert "\n" not in msg and "--new-run" in msg
        with pytest.raises(RunMismatch, match="kind"):
            store.ensure_run("r", "repair", cfg)
        with pytest.raises(RunMismatch, match=r"critic \(none\) → null"):
            store.ensure_run("r", "calendar", {**cfg, "critic": None})  # a field the old run never recorded
        # asked for a fresh id: a new run beside the old one, and the same request again resumes it
        new = store.ensure_run("r", "calendar", other, new_if_changed=True)
        assert (new.id, new.requested, new.resumed) == ("r-2", "r", False)
        assert [str(d) for d in new.diffs] == ["params.temperature 0.7 → 0.3", "reps 3 → 5"]
        assert store.ensure_run("r", "calendar", other, new_if_changed=True).id == "r-2"
        assert store.ensure_run("r", "calendar", cfg, new_if_changed=True).id == "r"  # the old one, resumed
        third = store.ensure_run("r", "calendar", {**other, "reps": 7}, new_if_changed=True)
        assert third.id == "r-3"
        assert store.run("r-2") is not None and store.run("r-2").config == other  # type: ignore[union-attr]


def test_scopes_give_each_job_its_own_sample(tmp_path: Path) -> None:
    """The first turn of every rung's dialog is the same prompt; each rung must get its own sample."""
    fake = ScriptedModel("m", lambda messages, params, i: f"answer {params.seed}")
    msgs = [Message("user", "hi")]
    params = SamplingParams(temperature=0.7)
    with ResultsStore(tmp_path / "s.db") as store:
        store.ensure_run("r", "calendar", {})
        recorded = RecordedModel(fake, store, "r")
        recorded.scoped("dialog:vague:0").chat(msgs, params)
        recorded.scoped("dialog:pointed:0").chat(msgs, params)
        recorded.scoped("dialog:pointed:0").chat(msgs, params)  # the same job again: reused
        assert fake.calls == 2 and len(store.generations("r")) == 2
        assert {g.meta["scope"] for g in store.generations("r")} == {"dialog:vague:0", "dialog:pointed:0"}
        # a fresh wrapper (a resumed process) finds both
        again = RecordedModel(fake, store, "r").scoped("dialog:vague:0")
        again.chat(msgs, params)
        assert fake.calls == 2 and again.reused == 1
        # an unscoped record keeps the key it always had (stores written before scopes still resume)
        rec = GenerationRecord.of("r", "m", "x", msgs, params, Completion("a", 1, 1, "stop", 0.0), 0)
        assert "scope" not in rec.meta


def _policy(messages: Sequence[Message], params: SamplingParams, i: int) -> str:
    """The first request (reliability, every dialog's first turn) is answered with 2023 for odd seeds;
    everything else, fixes included, right."""
    if len(messages) == 2:
        return right(CAL, 0, "2023") if (params.seed + i) % 2 else right(CAL, 0)
    return right(CAL, step_index(CAL, messages))


def _loader(made: list[ScriptedModel], fail_after: int | None = None) -> Callable[[ModelSpec], ScriptedModel]:
    def load(spec: ModelSpec) -> ScriptedModel:
        m = ScriptedModel(spec.name, _policy, fail_after)
        made.append(m)
        return m

    return load


def _run(db: Path, cfg: CalendarConfig, made: list[ScriptedModel], out: io.StringIO, **kw: object) -> object:
    return run_experiments(
        db,
        None,
        "all",
        ["smollm2-135m", "qwen2.5-coder-0.5b"],
        cfg,
        run_id=kw.pop("run_id", None),  # type: ignore[arg-type]
        new_run=bool(kw.pop("new_run", False)),
        report_dir=kw.pop("report_dir", None),  # type: ignore[arg-type]
        console=Console(file=out, width=200),
        load=_loader(made, kw.pop("fail_after", None)),  # type: ignore[arg-type]
    )


def _rows(db: Path) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT run_id, resume_key, params, meta FROM generations ORDER BY id").fetchall()


def test_calendar_run_resumes_refuses_another_config_and_starts_a_new_run(tmp_path: Path) -> None:
    db = tmp_path / "mendlab.db"
    made: list[ScriptedModel] = []
    # killed part-way: the first model stops after 5 answers
    with pytest.raises(KeyboardInterrupt):
        _run(db, SMALL, made, io.StringIO(), fail_after=5)
    assert len(_rows(db)) == 5
    # resumed: the 5 answers come back from the store, only the rest is asked
    made.clear()
    _run(db, SMALL, made, io.StringIO(), report_dir=tmp_path / "report")
    rows = _rows(db)
    assert sum(m.calls for m in made) == len(rows) - 5
    assert len({r[1] for r in rows}) == len(rows)  # nothing doubled
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["run"] == "calendar" and summary["config"]["reps"] == 2
    assert {(x["model"], x["rung"]) for x in summary["dialogs"]} == {
        (m, r) for m in ("smollm2-135m", "qwen2.5-coder-0.5b") for r in ("vague", "pointed", "explicit")
    }
    # every rung's dialog sampled its own first answer: six (rung, rep) pairs, six seeds, six samples
    firsts = [
        (json.loads(p)["seed"], json.loads(meta)["scope"])
        for run, key, p, meta in rows
        if json.loads(meta).get("scope", "").startswith("dialog:") and run == "calendar"
    ]
    first_turns = {scope: seed for seed, scope in firsts}
    assert len(first_turns) == 6 and len(set(first_turns.values())) == 6
    # run again: everything from the store, nothing asked
    made.clear()
    _run(db, SMALL, made, io.StringIO())
    assert sum(m.calls for m in made) == 0 and len(_rows(db)) == len(rows)
    # another temperature: stopped before any model is loaded, the fields named
    made.clear()
    hotter = replace(SMALL, params=replace(SMALL.params, temperature=0.3), reps=3)
    with pytest.raises(RunMismatch) as exc:
        _run(db, hotter, made, io.StringIO())
    assert "params.temperature 0.7 → 0.3" in str(exc.value) and "reps 2 → 3" in str(exc.value) and not made
    assert len(_rows(db)) == len(rows)
    # asked for a new run: printed, and the old run's rows are untouched
    out = io.StringIO()
    run, _ = _run(db, hotter, made, out, new_run=True)  # type: ignore[misc]
    assert run.id == "calendar-2"
    assert "new run calendar-2: run 'calendar' was made with" in out.getvalue()
    after = _rows(db)
    assert after[: len(rows)] == rows and all(r[0].startswith("calendar-2") for r in after[len(rows) :])
    # adding a model to a run is fine: same configuration
    made.clear()
    run_experiments(
        db, None, "reliability", ["qwen2.5-coder-1.5b"], SMALL, run_id=None, report_dir=None,
        console=Console(file=io.StringIO()), load=_loader(made),
    )  # fmt: skip
    assert sum(m.calls for m in made) == SMALL.tries


def test_scenario_content_is_part_of_the_identity(tmp_path: Path) -> None:
    text = (Path(__file__).parents[1] / "src/mendlab/dialogs/scenarios/calendar.yaml").read_text()
    edited = tmp_path / "cal.yaml"
    edited.write_text(text.replace("at 5PM", "at 6PM").replace('time: "17:00"', 'time: "18:00"'))
    base = SMALL.identity(CAL)
    other = replace(SMALL, scenario=str(edited)).identity(load_scenario(str(edited)))
    assert base["scenario"] == other["scenario"] == "calendar"
    assert base["scenario_sha256"] != other["scenario_sha256"]


def test_cli_mismatch_is_one_line_before_any_model_loads(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "mendlab.db") as store:
        store.ensure_run("calendar", "calendar", CalendarConfig().identity(CAL))
    r = subprocess.run(
        [MENDLAB, "run", "reliability", "--temperature", "0.3", "--tries", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "params.temperature 0.7 → 0.3" in r.stderr and "tries 5 → 2" in r.stderr
    # generate: an explicit --run made with -n 2 is not topped up with -n 3 samples
    convs = tmp_path / "c.jsonl"
    convs.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    with ResultsStore(tmp_path / "mendlab.db") as store:
        from mendlab.conversation import read_jsonl
        from mendlab.sampling import open_sample_run

        open_sample_run(store, "mine", "smollm2-135m", read_jsonl(convs), SamplingParams(n=2))
    r = subprocess.run(
        [MENDLAB, "generate", "smollm2-135m", str(convs), "--run", "mine", "-n", "3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
    )
    assert r.returncode == 2 and "params.n 2 → 3" in r.stderr and "Traceback" not in r.stderr
    # `mendlab runs` shows what each run was made with
    r = subprocess.run([MENDLAB, "runs"], cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=120)
    assert r.returncode == 0 and "params.temperature=0.7" in r.stdout and "params.n=2" in r.stdout
