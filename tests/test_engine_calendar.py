"""The calendar experiments on the engine give what the serial loop they replaced gave, sample for sample.

The serial loop below is the one `run_experiments` had before the engine (reliability, each rung's
dialogs, then the replays of the harvested bank, one call at a time). Against a deterministic server
at concurrency 16, and against the real bundled SmolLM2 through llama.cpp, both must store the same
transcripts: concurrency changes when a sample is played, never what it is."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from mendlab.dialogs.experiments import (
    DialogResult,
    dialog_params,
    harvest_mistakes,
    play_dialog,
    run_reliability,
    run_replay,
)
from mendlab.dialogs.runner import CalendarConfig, run_experiments
from mendlab.dialogs.scenario import Scenario, load_scenario
from mendlab.models import ChatModel, Completion, Message, ModelInfo, ModelSpec, SamplingParams, StreamDelta
from mendlab.models.endpoint import OpenAIModel
from mendlab.store import ResultsStore
from tests.scripted_server import models_toml, scripted_server

CAL = load_scenario("calendar")


def canned(scenario: Scenario) -> list[str]:
    """Right answers of every step, the scenario's seed mistakes and chatter."""
    return [
        *(scenario.expected(i).render(scenario.api) for i in range(len(scenario.steps))),
        *(m.reply for m in scenario.mistakes),
        "Sure, I have added it to your calendar!",
    ]


def policy(messages: list[dict[str, str]]) -> str:
    """A deterministic model: the answer depends on the whole conversation and nothing else."""
    answers = canned(CAL)
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).digest()
    return answers[int.from_bytes(digest[:4], "big") % len(answers)]


def serial(model: ChatModel, scenario: Scenario, cfg: CalendarConfig) -> list[DialogResult]:
    """The loop the engine replaced, for one model."""
    out = list(run_reliability(model, scenario, cfg.tries, cfg.params))
    for rung in cfg.rungs:
        for rep in range(cfg.reps):
            params = dialog_params(cfg.params, rung, rep)
            out.append(play_dialog(model, scenario, params, rung, cfg.max_fixes, rep=rep))  # type: ignore[arg-type]
    bank = harvest_mistakes(scenario, out, per_kind=cfg.per_kind)
    for rung in cfg.rungs:
        out.extend(run_replay(model, scenario, bank, cfg.params, rung, cfg.attempts))  # type: ignore[arg-type]
    return out


def keyed(results: Sequence[DialogResult]) -> dict[tuple[Any, ...], tuple[tuple[Message, ...], list[Any]]]:
    out = {}
    for r in results:
        key = (r.experiment, r.rung, r.rep, r.extra.get("mistake", {}).get("id"))
        assert key not in out
        plain = tuple(Message(m.role, m.content) for m in r.messages)
        out[key] = (plain, [(g.step, g.attempt, g.errors, g.fixed) for g in r.grades])
    return out


def test_dialogs_at_concurrency_16_equal_the_serial_loop(tmp_path: Path) -> None:
    cfg = CalendarConfig(
        tries=3, reps=3, max_fixes=2, attempts=2, per_kind=1, params=SamplingParams(temperature=0.7, max_tokens=64)
    )
    with scripted_server(policy) as server:
        toml = tmp_path / "mendlab.toml"
        toml.write_text(
            models_toml(server.url, ["scripted"]).replace("timeout_s = 10", "timeout_s = 10\nconcurrency = 16")
        )
        run, results = run_experiments(
            tmp_path / "m.db", toml, "all", ["scripted"], cfg, run_id=None, report_dir=None, console=Console(width=200)
        )
        expected = serial(OpenAIModel("scripted", server.url, "scripted", max_retries=0), CAL, cfg)
    assert len(results) == 3 + 9 + len([r for r in expected if r.experiment == "replay"])
    assert keyed(results) == keyed(expected)
    assert any(r.experiment == "replay" for r in results) and any(len(r.grades) > 6 for r in results)
    with ResultsStore(tmp_path / "m.db") as store:
        rows = store.samples(run.id)
    assert sorted({(r.task, r.status) for r in rows}) == [("dialog", "ok"), ("reliability", "ok"), ("replay", "ok")]
    made = sum(len(r.grades) for r in results if r.experiment != "replay") + sum(
        r.experiment == "replay"
        for r in results  # a replay's history is scripted: one generated answer
    )
    assert sum(r.generations for r in rows) == made and sum(r.completion_tokens for r in rows) == 5 * made


class Borrowed:
    """The session's model, lent to a run that closes what it loads."""

    def __init__(self, model: ChatModel) -> None:
        self.model = model

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    def chat(self, messages: Sequence[Message], params: SamplingParams) -> list[Completion]:
        return self.model.chat(messages, params)

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> Any:
        yield from self.model.stream(messages, params)
        _ = StreamDelta

    def close(self) -> None:
        pass


def test_the_engine_run_of_a_real_model_equals_the_serial_loop(smollm: ChatModel, tmp_path: Path) -> None:
    cfg = CalendarConfig(
        tries=2,
        reps=1,
        rungs=("pointed",),
        max_fixes=1,
        attempts=1,
        per_kind=1,
        params=SamplingParams(temperature=0.7, max_tokens=24, seed=3),
    )

    def load(spec: ModelSpec) -> ChatModel:
        return Borrowed(smollm)

    _, results = run_experiments(
        tmp_path / "m.db", None, "all", ["smollm2-135m"], cfg, run_id=None, report_dir=None,
        console=Console(width=200), load=load,
    )  # fmt: skip
    assert keyed(results) == keyed(serial(smollm, CAL, cfg))


def test_the_mistake_bank_does_not_depend_on_which_sample_finished_first() -> None:
    import random

    from mendlab.dialogs.runner import play_order

    cfg = CalendarConfig(tries=3, reps=3, max_fixes=1, params=SamplingParams(temperature=0.7, max_tokens=64))
    with scripted_server(policy) as server:
        played = [
            r
            for r in serial(OpenAIModel("s", server.url, "scripted", max_retries=0), CAL, cfg)
            if r.experiment != "replay"
        ]
    bank = harvest_mistakes(CAL, played, per_kind=1)
    shuffles = [random.Random(i).sample(played, len(played)) for i in range(20)]
    assert any(harvest_mistakes(CAL, s, per_kind=1) != bank for s in shuffles)  # the order matters to the bank...
    for s in shuffles:  # ...so the runner restores the serial order first
        assert harvest_mistakes(CAL, play_order(s, ["s"], cfg.rungs), per_kind=1) == bank


def test_a_quick_run_plays_the_first_steps_and_is_a_run_of_its_own(tmp_path: Path) -> None:
    import pytest

    from mendlab.dialogs.runner import parse_experiments
    from mendlab.errors import MendlabError
    from mendlab.store.results import RunMismatch

    quick = CalendarConfig.quick()
    with scripted_server(policy) as server:
        toml = tmp_path / "mendlab.toml"
        toml.write_text(models_toml(server.url, ["scripted"]))
        args: dict[str, Any] = {"run_id": "cal", "report_dir": None, "console": Console(width=200)}
        run, results = run_experiments(tmp_path / "m.db", toml, "reliability,dialog", ["scripted"], quick, **args)
        assert run.config["steps"] == 3 and {r.experiment for r in results} == {"reliability", "dialog"}
        dialogs = [r for r in results if r.experiment == "dialog"]
        assert len(dialogs) == 3 and all(max(g.step for g in r.grades) == 3 for r in dialogs)
        assert len([r for r in results if r.experiment == "reliability"]) == 2
        with pytest.raises(RunMismatch, match="steps 3 → "):
            run_experiments(tmp_path / "m.db", toml, "dialog", ["scripted"], CalendarConfig(), **args)
    with pytest.raises(MendlabError, match="unknown experiment 'chat'"):
        parse_experiments("dialog,chat")
    with pytest.raises(MendlabError, match="has 6 steps"):
        CalendarConfig(steps=9).scenario_of(CAL)


def test_the_cli_runs_several_scenarios_quickly_each_a_run_of_its_own(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import MENDLAB, cli_env

    with scripted_server(policy) as server:
        (tmp_path / "mendlab.toml").write_text(models_toml(server.url, ["scripted"]))
        cmd = [MENDLAB, "run", "reliability,dialog", "--quick", "--scenario", "calendar", "--scenario", "dentist"]
        r = subprocess.run([*cmd, "-m", "scripted"], cwd=tmp_path, capture_output=True, text=True, env=cli_env())
    assert r.returncode == 0, r.stderr
    with ResultsStore(tmp_path / "mendlab.db") as store:
        runs = {row["id"]: row["config"] for row in store.runs()}
        assert {runs["calendar"]["steps"], runs["dentist"]["steps"]} == {3}
        assert {(s.run_id, s.task) for s in store.samples("calendar") + store.samples("dentist")} == {
            ("calendar", "reliability"), ("calendar", "dialog"), ("dentist", "reliability"), ("dentist", "dialog")
        }  # fmt: skip


def test_a_dialog_that_outgrows_the_context_is_final_not_an_error(tmp_path: Path) -> None:
    """A server that says the prompt is too long from the third request on: the dialog ends there with
    its answers so far (not a sample error that every --retry-errors would replay and overflow again)."""
    import threading

    seen = {"n": 0}
    lock = threading.Lock()

    def small(messages: list[dict[str, str]]) -> str:
        with lock:
            seen["n"] += 1
        if sum(m["role"] == "assistant" for m in messages) >= 2:
            raise RuntimeError("This model's maximum context length is 64 tokens: the prompt exceeds it")
        return policy(messages)

    cfg = CalendarConfig(reps=2, rungs=("pointed",), params=SamplingParams(temperature=0.7, max_tokens=32))
    with scripted_server(small) as server:
        toml = tmp_path / "mendlab.toml"
        toml.write_text(models_toml(server.url, ["scripted"]))
        args: dict[str, Any] = {"run_id": "cal", "report_dir": None, "console": Console(width=200)}
        run, results = run_experiments(tmp_path / "m.db", toml, "dialog", ["scripted"], cfg, **args)
        n = seen["n"]
        run_experiments(tmp_path / "m.db", toml, "dialog", ["scripted"], cfg, retry_errors=True, **args)
        assert seen["n"] == n  # nothing to retry: the dialogs are done
    assert len(results) == 2 and all(len(r.grades) == 2 for r in results)
    assert all("context length" in r.extra["context_full"] for r in results)
    with ResultsStore(tmp_path / "m.db") as store:
        assert {s.status for s in store.samples(run.id)} == {"ok"}
