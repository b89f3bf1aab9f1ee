"""The arena's rules without a browser: the model pool (real GGUFs), the conversation moves, and the
Bradley–Terry leaderboard."""

from __future__ import annotations

import json
import random
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mendlab.arena.app import ArenaApp
from mendlab.arena.pool import MemoryBudgetError, ModelPool, estimate_bytes
from mendlab.arena.ratings import fit, leaderboard
from mendlab.arena.session import (
    ArenaState,
    add_user,
    asks_for_fix,
    drop_last_answer,
    fork_at,
    pending_vote,
    set_model,
    stream_turns,
    transplant,
)
from mendlab.conversation import Conversation
from mendlab.dialogs.scenario import load_scenario
from mendlab.models import memory_kind, model_path
from mendlab.models.base import Completion, Message, ModelInfo, SamplingParams
from mendlab.models.registry import ModelSpec, Registry
from tests.conftest import MENDLAB, cli_env

MB = 1024**2


def arena_registry(registry: Registry) -> Registry:
    extra = {
        "ghost": ModelSpec(name="ghost", backend="llama.cpp", path="/nonexistent/ghost.gguf", origin="test"),
        "dead-endpoint": ModelSpec(
            name="dead-endpoint",
            backend="openai",
            base_url="http://127.0.0.1:9/v1",
            model="x",
            max_retries=0,
            timeout_s=3,
            origin="test",
        ),
    }
    return Registry({**registry.models, **extra})


def answer(state: ArenaState, i: int, text: str) -> None:
    pane = state.panes[i]
    pane.conv = pane.conv.append(Message("assistant", text))


# ---- pool -------------------------------------------------------------------------------------


def test_pool_loads_lazily_and_evicts_the_least_recently_used(registry: Registry) -> None:
    pool = ModelPool(registry, 700 * MB)
    try:
        assert pool.status("smollm2-135m") == "not loaded"
        with pool.use("smollm2-135m") as small:
            assert pool.status("smollm2-135m") == "ready"
            assert small.info.name == "smollm2-135m"
        small_cost = dict(pool.resident())["smollm2-135m"]
        assert 150 * MB < small_cost < 300 * MB  # 98 MB of weights + the KV cache of a 4096 context
        with pool.use("qwen2.5-coder-0.5b"):
            pass
        # Both do not fit in 700 MB: the idle, least recently used one went.
        assert pool.status("smollm2-135m") == "evicted"
        assert [n for n, _ in pool.resident()] == ["qwen2.5-coder-0.5b"]
        assert pool.used() <= 700 * MB
        with pool.use("smollm2-135m"):
            assert pool.status("qwen2.5-coder-0.5b") == "evicted"
    finally:
        pool.close()


def test_pool_refuses_a_model_bigger_than_the_budget(registry: Registry) -> None:
    pool = ModelPool(registry, 10 * MB)
    with pytest.raises(MemoryBudgetError, match=r"budget is 0\.01 GiB"), pool.use("smollm2-135m"):
        pass
    assert pool.status("smollm2-135m").startswith("failed: model 'smollm2-135m' needs")


def test_endpoint_models_cost_no_memory(registry: Registry) -> None:
    pool = ModelPool(arena_registry(registry), 1)  # one byte: only a remote model fits
    with pool.use("dead-endpoint") as model:
        assert model.info.backend == "openai"
    assert dict(pool.resident()) == {"dead-endpoint": 0}


def test_a_failing_model_shows_its_error_in_its_own_pane_only(registry: Registry) -> None:
    pool = ModelPool(arena_registry(registry), 2048 * MB)
    state = ArenaState()
    names = ("smollm2-135m", "ghost", "dead-endpoint")
    state.shown = 3
    for pane, name in zip(state.panes, names, strict=False):
        set_model(pane, name)
        add_user(state, pane, "Say hello.")
    done: list[tuple[str, Completion]] = []
    params = SamplingParams(max_tokens=8)
    try:
        steps = list(stream_turns(pool, state.panes[:3], params, lambda p, c: done.append((p.name, c))))
    finally:
        pool.close()
    left, ghost, dead = state.panes[:3]
    assert len(steps) >= 2 and [name for name, _ in done] == ["Left"]
    assert left.conv.messages[-1].role == "assistant" and not left.error
    assert left.stats[len(left.conv.messages) - 1]["context_window"] == 4096
    assert "does not exist" in ghost.error and ghost.conv.messages[-1].role == "user"
    assert dead.error and dead.conv.messages[-1].role == "user"
    assert pool.status("ghost").startswith("failed")
    assert not any(p.busy for p in state.panes)


def test_endpoint_pane_streams_and_a_dead_server_or_full_context_fails_only_its_pane(registry: Registry) -> None:
    from tests.test_openai_backend import Server, _free_port

    smol = registry.get("smollm2-135m")
    server = Server(model_path(smol), _free_port())
    server.start()
    served = ModelSpec(name="served", backend="openai", base_url=server.url, model="smol", max_retries=0, timeout_s=30)
    tiny = replace(smol, name="tiny-context", n_ctx=64)
    pool = ModelPool(Registry({**registry.models, "served": served, "tiny-context": tiny}), 1024 * MB)
    state = ArenaState()
    state.shown = 3
    for pane, name in zip(state.panes, ("served", "smollm2-135m", "tiny-context"), strict=False):
        set_model(pane, name)
        add_user(state, pane, "Please say hello to everyone in the room. " * (12 if name == "tiny-context" else 1))
    params = SamplingParams(max_tokens=8)
    try:
        list(stream_turns(pool, state.panes[:3], params, lambda p, c: None))
        served_pane, local, tiny_pane = state.panes[:3]
        assert served_pane.conv.messages[-1].role == "assistant" and not served_pane.error
        assert served_pane.stats[len(served_pane.conv.messages) - 1]["completion_tokens"] > 0
        assert local.conv.messages[-1].role == "assistant" and not local.error
        assert "context window is 64" in tiny_pane.error
        assert dict(pool.resident())["served"] == 0  # an endpoint costs no local memory
        server.stop()
        for pane in (served_pane, local):
            add_user(state, pane, "Again.")
        list(stream_turns(pool, [served_pane, local], params, lambda p, c: None))
        assert served_pane.error and served_pane.conv.messages[-1].content == "Again."
        assert not local.error and local.conv.messages[-1].role == "assistant"
    finally:
        server.stop()
        pool.close()


# ---- conversation moves ---------------------------------------------------------------------


def test_send_to_one_pane_leaves_the_other_paused() -> None:
    state = ArenaState(system_prompt="Be brief.")
    add_user(state, state.panes[0], "hi")
    assert [m.role for m in state.panes[0].conv.messages] == ["system", "user"]
    assert state.panes[1].conv.messages == ()


def test_retry_branches_and_keeps_the_old_answer_in_its_parent() -> None:
    state = ArenaState()
    add_user(state, state.panes[0], "hi")
    answer(state, 0, "first try")
    before = state.panes[0].conv
    assert drop_last_answer(state.panes[0])
    after = state.panes[0].conv
    assert after.parent == before.id and after.id != before.id
    assert after.messages[-1] == Message("user", "hi") and before.messages[-1].content == "first try"


def test_fork_edits_a_past_user_turn() -> None:
    state = ArenaState()
    pane = state.panes[0]
    for text in ("one", "two"):
        add_user(state, pane, text)
        answer(state, 0, f"re {text}")
    fork_at(pane, 0, "uno")
    assert [m.content for m in pane.conv.messages] == ["uno"]
    assert pane.conv.fork_turn == 0


def test_transplant_replaces_the_answer_to_the_same_question() -> None:
    state = ArenaState()
    left, right = state.panes[0], state.panes[1]
    set_model(left, "a")
    set_model(right, "b")
    for i in (0, 1):
        add_user(state, state.panes[i], "Add a meeting")
    answer(state, 0, "wrong call")
    answer(state, 1, "right call")
    old = right.conv
    transplant(state, left, right)
    assert [m.content for m in right.conv.messages] == ["Add a meeting", "wrong call"]
    assert right.conv.messages[-1].origin == "a" and right.conv.parent == old.id
    # Into an empty pane: the question comes along with the answer.
    set_model(state.panes[2], "c")
    transplant(state, left, state.panes[2])
    assert [m.role for m in state.panes[2].conv.messages] == ["user", "assistant"]
    with pytest.raises(ValueError, match="no answer"):
        transplant(state, state.panes[3], left)


def test_a_vote_is_on_a_fix_only_after_a_marked_mistake() -> None:
    state = ArenaState()
    set_model(state.panes[0], "a")
    set_model(state.panes[1], "b")
    for i in (0, 1):
        add_user(state, state.panes[i], "q")
        answer(state, i, "a")
    vote = pending_vote(state)
    assert vote is not None and vote.kind == "first" and vote.message_index == 1
    state.panes[0].person[1] = "🍄"
    for i in (0, 1):
        add_user(state, state.panes[i], "That is wrong, fix it.")
    assert pending_vote(state) is None  # asked, not answered yet
    for i in (0, 1):
        answer(state, i, "b")
    vote = pending_vote(state)
    assert vote is not None and vote.kind == "fix" and vote.message_index == 3
    state.voted.add(vote.key)
    assert pending_vote(state) is None  # one vote per pair of answers


def test_with_a_scenario_the_graders_verdict_makes_the_next_message_a_fix_request() -> None:
    scenario = load_scenario("calendar")
    state = ArenaState(scenario=scenario, system_prompt=scenario.system_prompt)
    good = 'action.add_calendar_entry("Meeting with Fred", date="2024-11-11", time="17:00", duration=30)'
    for i, reply in ((0, good), (1, good.replace("2024", "2023"))):
        add_user(state, state.panes[i], scenario.steps[0].user)
        answer(state, i, reply)
    for i in (0, 1):
        add_user(state, state.panes[i], scenario.steps[1].user)
    assert [asks_for_fix(state, state.panes[i], 3) for i in (0, 1)] == [False, True]
    # A person overrules the grader: the right answer was fine after all.
    state.panes[1].person[2] = "✓"
    assert asks_for_fix(state, state.panes[1], 3) is False


# ---- leaderboard ------------------------------------------------------------------------------


def test_bradley_terry_recovers_the_order_of_known_strengths() -> None:
    rng = random.Random(0)
    strength = {"a": 2.0, "b": 1.0, "c": 0.5}
    votes = []
    for _ in range(600):
        x, y = rng.sample(sorted(strength), 2)
        p = strength[x] / (strength[x] + strength[y])
        votes.append((x, y, 1.0 if rng.random() < p else 0.0))
    board = leaderboard(votes, n_boot=100)
    assert [r.model for r in board] == ["a", "b", "c"]
    # log-strength gaps: a-b and b-c are both log10(2)*400 ≈ 120 Elo
    gap_ab, gap_bc = board[0].rating - board[1].rating, board[1].rating - board[2].rating
    assert 80 < gap_ab < 170 and 80 < gap_bc < 170
    for r in board:
        assert r.low < r.rating < r.high


def test_an_undefeated_model_stays_finite_and_ties_split_evenly() -> None:
    ratings = fit([("a", "b", 1.0)] * 5, ["a", "b"])
    assert np.isfinite(ratings).all() and ratings[0] > ratings[1]
    even = fit([("a", "b", 0.5)] * 4, ["a", "b"])
    assert abs(even[0] - even[1]) < 1e-6
    assert leaderboard([]) == []


def test_store_keeps_marks_and_votes(tmp_path: Path) -> None:
    from mendlab.store import ResultsStore, Vote

    with ResultsStore(tmp_path / "r.db") as store:
        store.add_mark("c1", 2, "grader", "🍄", ["wrong_time"], "m")
        store.add_mark("c1", 2, "person", "✓", [], "m")
        store.add_vote(Vote("s", "fix", "left", "a", "b", "c1", "c2", message_index=2, anonymous=True))
    with ResultsStore(tmp_path / "r.db") as store:
        assert [(m.source, m.mark, m.errors) for m in store.marks("c1")] == [
            ("grader", "🍄", ("wrong_time",)),
            ("person", "✓", ()),
        ]
        (vote,) = store.votes()
        assert vote.winner == "left" and vote.anonymous is True and vote.created > 0
        store.save_conversation(
            Conversation(
                (Message("user", "q"), Message("assistant", "a")), id="c1", model="m", meta={"source": "arena"}
            )
        )
    out = tmp_path / "arena.jsonl"
    proc = subprocess.run(
        [MENDLAB, "--db", str(tmp_path / "r.db"), "export", "--arena", "-o", str(out)],
        capture_output=True,
        text=True,
        env=cli_env(),
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert row["id"] == "c1" and len(row["marks"]) == 2 and row["votes"][0]["conversation_left"] == "c1"


def test_leaderboard_command_prints_ratings_and_plots(tmp_path: Path) -> None:
    from mendlab.store import ResultsStore, Vote

    db = tmp_path / "votes.db"
    with ResultsStore(db) as store:
        for i, (kind, winner) in enumerate([("fix", "left")] * 3 + [("fix", "right"), ("first", "tie")]):
            store.add_vote(Vote("s", kind, winner, "alpha", "beta", f"l{i}", f"r{i}", message_index=2, anonymous=False))
    plot = tmp_path / "ratings.png"
    proc = subprocess.run(
        [MENDLAB, "--db", str(db), "leaderboard", "--boot", "50", "-o", str(plot)],
        capture_output=True,
        text=True,
        env=cli_env(),
    )
    assert proc.returncode == 0, proc.stderr
    fixes, first = proc.stdout.split("First answers")
    assert fixes.index("alpha") < fixes.index("beta") and "4 votes" in fixes and "75%" in fixes
    assert "1 votes" in first and "50%" in first
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    missing = subprocess.run(
        [MENDLAB, "--db", str(tmp_path / "none.db"), "leaderboard"], capture_output=True, text=True, env=cli_env()
    )
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "none.db" in missing.stderr


def test_arena_command_rejects_bad_input_in_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = (
            (["-m", "nope"], "unknown model 'nope'"),
            (["--scenario", "bogus"], "bogus: no such scenario"),
            (["--port", str(port)], f"cannot serve the arena on 127.0.0.1:{port}"),
        )
        for args, message in cases:
            proc = subprocess.run(
                [MENDLAB, "--db", str(tmp_path / "a.db"), "arena", *args],
                capture_output=True,
                text=True,
                env=cli_env(),
                timeout=120,
            )
            assert proc.returncode == 2, proc.stderr
            assert message in proc.stderr and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


# ---- records that are true -------------------------------------------------------------------
# The page's handlers (ArenaApp) driven without a browser, over a real SQLite store; real models
# where an answer must be generated, scripted answers where only the rules are under test.

SMOL, QWEN = "smollm2-135m", "qwen2.5-coder-0.5b"


@pytest.fixture()
def arena_app(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ArenaApp]:
    from mendlab.arena.app import ArenaApp, ArenaConfig
    from mendlab.store import ResultsStore

    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # where the page's files go
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # and any other temporary file
    pool = ModelPool(registry, 2048 * MB)
    store = ResultsStore(tmp_path / "arena.db")
    try:
        yield ArenaApp(pool, store, ArenaConfig(models=(SMOL, QWEN), temperature=0.0, max_tokens=4))
    finally:
        pool.close()
        store.close()


def page_state(app: ArenaApp) -> ArenaState:
    """A page as it opens: Left on the first model, Right on the second, set through the pickers."""
    state = ArenaState()
    for i, model in enumerate(app.config.models):
        app.pick_model(i)(state, model)
    return state


def generate(app: ArenaApp, state: ArenaState, text: str, targets: tuple[str, ...] = ("Left", "Right")) -> None:
    for _ in app.send(state, text, list(targets), 0.0, 4):
        pass


def both_answer(app: ArenaApp, state: ArenaState, question: str, reply: str = "ok") -> None:
    """A scripted turn in Left and Right, stored as the page stores a real one."""
    for i in (0, 1):
        add_user(state, state.panes[i], question)
        answer(state, i, reply)
        app.save(state, state.panes[i])


def test_a_vote_credits_the_models_that_wrote_the_answers_not_the_pickers(arena_app: ArenaApp) -> None:
    app = arena_app
    state = page_state(app)
    generate(app, state, "Say hi.")
    smol_branch = state.panes[0].conv
    assert smol_branch.model == SMOL and smol_branch.messages[-1].role == "assistant"

    app.pick_model(0)(state, QWEN)  # the person changes the left picker after the answers came
    left = state.panes[0].conv
    assert left.model == QWEN and left.parent == smol_branch.id  # a new branch, with the right model on it
    assert left.messages[-1].origin == SMOL  # the answer in it still names its author
    app.vote("left")(state)
    (vote,) = app.store.votes()
    assert (vote.model_left, vote.model_right, vote.winner) == (SMOL, QWEN, "left")
    assert vote.conversation_left == smol_branch.id  # where that answer was written

    app.mark(0, "🍄")(state, 1)  # a mark on SmolLM's answer, made while the picker says Qwen
    assert app.store.marks()[-1].model == SMOL
    generate(app, state, "Again.", ("Left",))
    stored = {c.id: c for c in app.store.conversations()}
    assert stored[smol_branch.id].model == SMOL  # the branch SmolLM wrote is never relabelled
    new = stored[state.panes[0].conv.id]
    assert new.model == QWEN and [m.origin for m in new.messages if m.role == "assistant"] == [SMOL, None]


def test_the_picker_cannot_change_a_pane_while_it_answers(arena_app: ArenaApp) -> None:
    app = arena_app
    state = page_state(app)
    steps = app.send(state, "Say hi.", ["Left"], 0.0, 4)
    next(steps)  # the left pane is generating with SmolLM
    assert state.panes[0].busy
    app.pick_model(0)(state, QWEN)
    for _ in steps:
        pass
    (conv,) = app.store.conversations()
    assert conv.model == SMOL and state.panes[0].model == SMOL
    assert conv.meta["stats"]["1"]["model"] == SMOL


def test_a_vote_is_a_fix_vote_only_when_its_message_asked_for_a_fix(arena_app: ArenaApp) -> None:
    app = arena_app
    # A transplant makes the next message a fix request, not every message after it.
    state = page_state(app)
    both_answer(app, state, "Add a meeting")
    app.transplant(state, "Left", "Right")
    both_answer(app, state, "That is wrong, fix it.")
    vote = pending_vote(state)
    assert vote is not None and vote.kind == "fix"
    app.vote("left")(state)
    both_answer(app, state, "Now add lunch on Friday")
    vote = pending_vote(state)
    assert vote is not None and vote.kind == "first"

    # A fork back to the first message: its answers are first answers, whatever was asked later.
    state = page_state(app)
    both_answer(app, state, "Add a meeting")
    app.mark(0, "🍄")(state, 1)
    both_answer(app, state, "That is wrong, fix it.")
    vote = pending_vote(state)
    assert vote is not None and vote.kind == "fix"
    for i in (0, 1):
        fork_at(state.panes[i], 0, "Add a meeting with Fred")
        answer(state, i, "ok")
    vote = pending_vote(state)
    assert vote is not None and vote.kind == "first"


def test_votes_record_whether_the_names_were_hidden_when_cast(arena_app: ArenaApp) -> None:
    app = arena_app
    state = page_state(app)
    app.new_battle(state)
    battle = (state.panes[0].model, state.panes[1].model)
    both_answer(app, state, "q1")
    app.vote("tie")(state)  # names hidden: this vote reveals them
    both_answer(app, state, "q2")
    app.vote("left")(state)  # cast with the names on screen
    votes = app.store.votes()
    assert [v.anonymous for v in votes] == [True, False]
    assert all((v.model_left, v.model_right) == battle for v in votes)


def test_an_anonymous_battle_puts_no_model_name_in_the_page(arena_app: ArenaApp) -> None:
    app = arena_app
    state = page_state(app)
    both_answer(app, state, "Before the battle")
    app.vote("left")(state)  # names in the History and the Leaderboard
    assert all(m in repr([app.history(state)[:2], app.board(state)[:2]]) for m in (SMOL, QWEN))

    page = [app.new_battle(state)]
    models = [p.model for p in state.panes[:2]]
    assert sorted(models) == sorted((SMOL, QWEN))  # type: ignore[type-var]
    generate(app, state, "Please say hello to everyone in the room. " * 500)  # past both context windows
    assert all("context window" in p.error for p in state.panes[:2])
    page.append(app.render(state))  # the errors, as the panes show them
    for i in (0, 1):
        app.clear(i)(state)
    generate(app, state, "Say hi.")
    page += [app.render(state), app.tick(state), app.history(state)[:3], app.board(state)]
    assert pending_vote(state) is not None
    shown = repr([[x for x in out if not isinstance(x, ArenaState)] for out in page])  # the state stays on the server
    assert not [m for m in (SMOL, QWEN) if m in shown]
    exported = Path(app.history(state)[-1]).read_text(encoding="utf-8")
    battle_rows = [json.loads(line) for line in exported.splitlines() if json.loads(line).get("battle")]
    assert battle_rows and not [m for m in (SMOL, QWEN) if m in json.dumps(battle_rows)]

    app.vote("right")(state)
    headers = repr(app.tick(state))
    assert all(m in headers for m in models)  # revealed by the vote
    listed = {row[5]: row[1] for row in app.history(state)[1]}  # History shows them from now on
    assert [listed[p.conv.id] for p in state.panes[:2]] == models


def test_one_vote_per_pair_across_reloads_and_reopened_conversations(arena_app: ArenaApp) -> None:
    app = arena_app
    state = page_state(app)
    both_answer(app, state, "q")
    left, right = state.panes[0].conv.id, state.panes[1].conv.id
    app.vote("left")(state)
    assert pending_vote(state) is None

    for first, second in ((left, right), (right, left)):  # the page reloaded; the pair reopened either way round
        again = page_state(app)
        app.open_conversation(again, first, "Left")
        app.open_conversation(again, second, "Right")
        assert [p.conv.id for p in again.panes[:2]] == [first, second]
        assert pending_vote(again) is None
        app.vote("right")(again)
    assert len(app.store.votes()) == 1


def test_the_store_takes_one_vote_per_pair_of_answers(tmp_path: Path) -> None:
    from mendlab.store import ResultsStore, Vote

    with ResultsStore(tmp_path / "r.db") as store:
        vote = Vote("s1", "first", "left", "a", "b", "c1", "c2", message_index=2, anonymous=False)
        assert store.add_vote(vote) is True
        # Another page votes on the same two answers, with the sides swapped.
        swapped = replace(vote, session="s2", conversation_left="c2", conversation_right="c1", winner="right")
        assert store.add_vote(swapped) is False
        assert store.add_vote(replace(vote, message_index=4)) is True  # the next pair of answers
        assert [(v.session, v.message_index) for v in store.votes()] == [("s1", 2), ("s1", 4)]
        with pytest.raises(ValueError, match="winner"):
            store.add_vote(replace(vote, winner="right-ish", message_index=6))


def test_page_exports_never_collide_and_leave_no_files_behind(
    arena_app: ArenaApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    app = arena_app
    first = page_state(app)
    both_answer(app, first, "q")
    sessions = [page_state(app) for _ in range(6)]
    paths: dict[int, str] = {}

    def export(i: int) -> None:
        paths[i] = app.history(sessions[i])[-1]

    threads = [threading.Thread(target=export, args=(i,)) for i in range(6)]  # six pages at the same instant
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths.values())) == 6
    for path in paths.values():
        rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]
        assert sorted(r["id"] for r in rows) == sorted(p.conv.id for p in first.panes[:2])

    again = app.history(sessions[0])[-1]  # a refresh replaces that page's file
    assert not Path(paths[0]).exists() and Path(again).exists()

    def broken(out: Any, **_: Any) -> int:
        out.write('{"half": ')
        raise OSError("disk full")

    monkeypatch.setattr(app.store, "export_arena_jsonl", broken)
    with pytest.raises(OSError, match="disk full"):
        app.history(first)
    for state in sessions:
        app.forget(state)  # the page was closed
    left = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith("arena.db")]
    assert left == []


def test_export_command_leaves_nothing_behind_when_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from mendlab.cli import app as cli
    from mendlab.store import ResultsStore

    db = tmp_path / "r.db"
    with ResultsStore(db) as store:
        store.save_conversation(Conversation((Message("user", "q"),), id="c1", meta={"source": "arena"}))

    def broken(self: ResultsStore, out: Any, **_: Any) -> int:
        out.write('{"half": ')
        raise OSError("disk full")

    out = tmp_path / "out" / "arena.jsonl"
    out.parent.mkdir()
    monkeypatch.setattr(ResultsStore, "export_arena_jsonl", broken)
    result = CliRunner().invoke(cli, ["--db", str(db), "export", "--arena", "-o", str(out)])
    assert result.exit_code != 0
    assert list(out.parent.iterdir()) == []


class _DeviceMemory:
    """GPU memory as the driver reports it: what a model placed on the GPU holds is not free."""

    def __init__(self, total: int) -> None:
        self.total, self.free, self.reads = total, total, 0

    def __call__(self) -> tuple[int, int]:
        self.reads += 1
        return self.free, self.total


class _Resident:
    """Stands in for a loaded model in the pool's accounting: holds memory, answers nothing."""

    def __init__(self, spec: ModelSpec, device: _DeviceMemory) -> None:
        self.spec, self.device = spec, device
        self.size = estimate_bytes(spec)
        self.on_gpu = memory_kind(spec) == "gpu"
        if self.on_gpu:
            self.device.free -= self.size

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(name=self.spec.name, backend=self.spec.backend, source="test")

    def chat(self, messages: Any, params: SamplingParams) -> list[Completion]:
        raise NotImplementedError

    def stream(self, messages: Any, params: SamplingParams) -> Any:
        raise NotImplementedError

    def memory_bytes(self) -> int:
        return self.size

    def close(self) -> None:
        if self.on_gpu:
            self.device.free += self.size


def test_a_cuda_model_counts_against_gpu_memory_not_ram(tmp_path: Path) -> None:
    def weights(name: str, mb: int, **kw: Any) -> ModelSpec:
        folder = tmp_path / name
        folder.mkdir()
        with (folder / "model.safetensors").open("wb") as f:
            f.truncate(mb * MB)  # sparse: only its size matters
        return ModelSpec(name=name, path=str(folder), origin="test", **kw)

    cuda = {"backend": "transformers", "device": "cuda"}
    specs = [
        weights("gpu-a", 400, **cuda),
        weights("gpu-b", 400, **cuda),
        weights("gpu-c", 400, **cuda),
        weights("gpu-huge", 950, **cuda),
        weights("cpu", 150, backend="transformers", device="cpu"),
    ]
    assert [memory_kind(s) for s in specs] == ["gpu"] * 4 + ["ram"]
    device = _DeviceMemory(1000 * MB)
    registry = Registry({s.name: s for s in specs})
    pool = ModelPool(
        registry, 200 * MB, local_parallel=3, loader=lambda s: _Resident(s, device), device_memory=device, wait_s=0.2
    )
    with pool.use("cpu"):
        pass
    assert device.reads == 0  # a pool without GPU models never asks the GPU
    for name in ("gpu-a", "gpu-b"):  # 800 MB: far over the RAM budget, within 90% of the GPU's
        with pool.use(name):
            pass
    assert device.reads == 1 and pool.used("gpu") == 800 * MB and pool.used("ram") == 150 * MB
    with pool.use("gpu-c"):
        # The GPU is full: the least recently used GPU model went, the RAM one stayed.
        assert pool.status("gpu-a") == "evicted" and pool.status("cpu") == "ready"
        assert device.free == 200 * MB and pool.used("gpu") == 800 * MB
        with pytest.raises(MemoryBudgetError, match=r"no room for 'gpu-huge'"), pool.use("gpu-huge"):
            pass  # gpu-c is in use: gpu-b went, and still 950 MB do not fit
    assert pool.status("gpu-b") == "evicted" and pool.status("cpu") == "ready"
    alone = r"needs 0\.93 GiB of GPU memory but the arena's GPU budget is 0\.88 GiB \(90% of the 0\.98 GiB that were"
    with pytest.raises(MemoryBudgetError, match=alone), pool.use("gpu-huge"):
        pass
    pool.close()
    assert device.free == device.total
