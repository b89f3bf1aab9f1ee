"""The arena in a real browser: Debian's chromium driven by Playwright against the page served here,
with the bundled models. Screenshots of the main states land in tests/artifacts/ for a person to look at."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mendlab.arena import build_arena, launch
from mendlab.models.registry import Registry
from tests.test_openai_backend import _free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).parent / "artifacts"
MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it as root)")


@pytest.fixture(scope="module")
def arena(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    db = tmp_path_factory.mktemp("arena") / "arena.db"
    demo, pool, store = build_arena(registry, db, MODELS, memory_gb=4, max_tokens=16, temperature=0)
    url = launch(demo, port=_free_port(), block=False)
    yield url, db
    demo.close()
    pool.close()
    store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"]
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield b
        b.close()


def open_page(browser: Any, url: str, width: int = 1280, height: int = 800) -> Any:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.goto(url)
    page.locator("#scripted-0").wait_for(state="visible")  # the session's state has loaded
    return page


def chat(page: Any, pane: int) -> str:
    return str(page.locator(f"#pane-{pane}-chat").inner_text())


def wait_answers(page: Any, pane: int, n: int) -> None:
    """Until pane `pane` shows `n` finished answers (each carries its tok/s badge)."""
    page.wait_for_function(
        "([sel, n]) => (document.querySelector(sel).innerText.match(/tok\\/s/g) || []).length >= n",
        arg=[f"#pane-{pane}-chat", n],
    )


def send(page: Any, text: str) -> None:
    box = page.locator("#message textarea")
    box.fill(text)
    box.press("Enter")


def tick(page: Any, name: str, on: bool) -> None:
    box = page.locator("#targets").get_by_label(name)
    box.check() if on else box.uncheck()


def db_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


def test_send_to_the_left_only_leaves_the_right_pane_unchanged(arena: tuple[str, Path], browser: Any) -> None:
    url, _ = arena
    page = open_page(browser, url)
    right_before = chat(page, 1)
    tick(page, "Right", False)
    send(page, "Add a meeting with Ann on Dec 1 at 9am")
    wait_answers(page, 0, 1)
    assert "Add a meeting with Ann" in chat(page, 0)
    assert chat(page, 1) == right_before
    assert "Ann" not in chat(page, 1)
    page.wait_for_function("document.querySelector('#pane-1-header').innerText.includes('paused')")
    stats = page.locator("#pane-0-stats").inner_text()
    assert "tok/s" in stats and "/ 4096 tokens" in stats  # speed and context used out of the window
    page.context.close()


def test_transplant_an_answer_and_get_it_fixed(arena: tuple[str, Path], browser: Any) -> None:
    url, db = arena
    page = open_page(browser, url)
    page.locator("#scripted-0").click()
    wait_answers(page, 0, 1)
    wait_answers(page, 1, 1)
    page.get_by_text("Transplant an answer").click()
    page.locator("#transplant").click()
    page.wait_for_function(
        "document.querySelector('#pane-1-chat').innerText.includes('transplanted from smollm2-135m')"
    )
    assert "tok/s" not in chat(page, 1)  # the right model's own answer is gone (kept on its branch)
    tick(page, "Left", False)
    send(page, "That is wrong. Fix it.")
    wait_answers(page, 1, 1)
    text = chat(page, 1)
    assert text.index("transplanted from smollm2-135m") < text.index("That is wrong. Fix it.")
    page.screenshot(path=ARTIFACTS / "arena-transplant-1280x800.png")
    rows = db_rows(db, "SELECT messages FROM conversations WHERE model = 'qwen2.5-coder-0.5b'")
    assert any('"origin": "smollm2-135m"' in r[0] and "Fix it." in r[0] for r in rows)
    page.context.close()


def test_mark_and_vote_are_in_the_store_after_a_reload(arena: tuple[str, Path], browser: Any) -> None:
    url, db = arena
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_page(browser, url)
    page.locator("#scripted-0").click()
    wait_answers(page, 0, 1)
    wait_answers(page, 1, 1)
    page.locator("#vote-left").wait_for(state="visible")
    assert "Which answer is better?" in page.locator("#vote-title").inner_text()
    page.locator("#pane-0-mark-1").click()  # 🍄 on the left's answer
    page.wait_for_function("document.querySelector('#pane-0-chat').innerText.includes('you 🍄')")
    page.locator("#scripted-1").click()  # "The current year is 2024." asks both to fix
    wait_answers(page, 0, 2)
    wait_answers(page, 1, 2)
    page.wait_for_function("document.querySelector('#vote-title').innerText.includes('fixed it better')")
    page.screenshot(path=ARTIFACTS / "arena-vote-1280x800.png")
    page.locator("#vote-right").click()
    page.locator("#vote-right").wait_for(state="hidden")

    page.reload()
    page.locator("#scripted-0").wait_for(state="visible")
    assert "you 🍄" not in chat(page, 0)  # a fresh session...
    marks = db_rows(db, "SELECT source, mark, model FROM marks WHERE source = 'person'")
    assert ("person", "🍄", "smollm2-135m") in marks
    assert db_rows(db, "SELECT count(*) FROM marks WHERE source = 'grader'")[0][0] >= 4  # every answer graded
    votes = db_rows(db, "SELECT kind, winner, model_left, model_right, anonymous FROM votes")
    assert ("fix", "right", "smollm2-135m", "qwen2.5-coder-0.5b", 0) in votes
    # ...and the history tab brings the marked conversation back.
    page.get_by_role("tab", name="History").click()
    page.wait_for_function("document.querySelector('#history-pick').innerText.includes('Conversation')")
    page.locator("#history-pick input").click()
    page.get_by_role("option").filter(has_text="smollm2-135m · Add a meeting with Fred").first.click()
    page.locator("#history-open").click()
    page.get_by_role("tab", name="Arena").click()
    page.wait_for_function("document.querySelector('#pane-0-chat').innerText.includes('you 🍄')")
    # The pair voted on, reopened side by side after the reload: no second vote on it.
    ((left, right),) = db_rows(db, "SELECT conversation_left, conversation_right FROM votes WHERE kind = 'fix'")
    for conv, pane in ((left, "Left"), (right, "Right")):
        page.get_by_role("tab", name="History").click()
        page.locator("#history-pick input").click()
        page.get_by_role("option").filter(has_text=conv).click()
        page.locator("#history-pane").get_by_label(pane).check()
        page.locator("#history-open").click()
    page.get_by_role("tab", name="Arena").click()
    page.wait_for_function(
        "document.querySelector('#pane-1-chat').innerText.includes('The current year is 2024')"
        " && document.querySelector('#pane-0-chat').innerText.includes('you 🍄')"
    )
    assert not page.locator("#vote-left").is_visible()
    page.get_by_role("tab", name="History").click()
    with page.expect_download() as download:
        page.locator("#export").click()
    lines = [json.loads(x) for x in Path(download.value.path()).read_text(encoding="utf-8").splitlines()]
    marked = [c for c in lines if any(m["source"] == "person" and m["mark"] == "🍄" for m in c["marks"])]
    assert marked and marked[0]["model"] == "smollm2-135m" and marked[0]["messages"][0]["role"] == "system"
    assert any(v["kind"] == "fix" and v["winner"] == "right" for c in lines for v in c["votes"])
    page.get_by_role("tab", name="Leaderboard").click()
    page.wait_for_function(
        "['qwen2.5-coder-0.5b', 'smollm2-135m'].every(m => document.querySelector('#board-fix').innerText.includes(m))"
    )
    assert "1000" not in page.locator("#board-first").inner_text()  # first-answer votes are rated apart: none yet
    page.locator("#board-plot img").wait_for(state="visible")
    page.screenshot(path=ARTIFACTS / "arena-leaderboard-1280x800.png", full_page=True)
    page.context.close()


def test_two_browser_sessions_keep_their_own_state(arena: tuple[str, Path], browser: Any) -> None:
    url, _ = arena
    a, b = open_page(browser, url), open_page(browser, url)
    for page in (a, b):
        tick(page, "Right", False)
    send(a, "Add lunch with Alice on May 3 at noon")
    send(b, "Add a call with Bob on June 4 at 10am")  # while a's answer is still coming
    wait_answers(a, 0, 1)
    wait_answers(b, 0, 1)
    assert "Alice" in chat(a, 0) and "Bob" not in chat(a, 0)
    assert "Bob" in chat(b, 0) and "Alice" not in chat(b, 0)
    a.context.close()
    b.context.close()


def names_in_page(page: Any, url: str) -> list[str]:
    """The model names found anywhere the browser holds the page: the source as served, the live
    document (hidden elements and attributes included) and its text."""
    everything = page.request.get(url).text() + page.content() + page.locator("body").inner_text()
    return [m for m in MODELS if m in everything]


def open_tab(page: Any, name: str, ready_js: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_function(ready_js)


def test_battle_hides_the_names_everywhere_until_the_vote(arena: tuple[str, Path], browser: Any) -> None:
    url, db = arena
    page = open_page(browser, url)
    page.locator("#scripted-0").click()  # names on screen before the battle, in the History too
    wait_answers(page, 0, 1)
    wait_answers(page, 1, 1)
    open_tab(page, "History", "document.querySelector('#history-table').innerText.includes('smollm2-135m')")
    open_tab(page, "Arena", "true")
    page.locator("#new-battle").click()
    page.wait_for_function("document.querySelector('#pane-0-header').innerText.includes('Model A')")
    assert not page.locator("#pane-0-model").is_visible()
    assert names_in_page(page, url) == []
    send(page, "Please say hello to everyone in the room. " * 500)  # too long for either model's window
    page.wait_for_function(
        "['#pane-0-stats', '#pane-1-stats'].every(s => document.querySelector(s).innerText.includes('context window'))"
    )
    assert names_in_page(page, url) == []  # the errors name the models: not in a battle
    for i in (0, 1):
        page.locator(f"#pane-{i}-clear").click()
    page.locator("#scripted-0").click()
    wait_answers(page, 0, 1)
    wait_answers(page, 1, 1)
    page.locator("#vote-tie").wait_for(state="visible")
    open_tab(page, "History", "document.querySelector('#history-table').innerText.includes('(hidden)')")
    open_tab(page, "Leaderboard", "true")
    page.locator("#board-refresh").click()
    open_tab(page, "Arena", "true")
    assert names_in_page(page, url) == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "arena-battle-1280x800.png")
    page.locator("#vote-tie").click()
    page.wait_for_function(
        "['smollm2-135m', 'qwen2.5-coder-0.5b'].every(m => (document.querySelector('#pane-0-header').innerText"
        " + document.querySelector('#pane-1-header').innerText).includes(m))"
    )
    assert db_rows(db, "SELECT count(*) FROM votes WHERE anonymous = 1 AND winner = 'tie'")[0][0] == 1
    page.context.close()


def test_a_vote_after_changing_the_picker_credits_the_models_that_answered(
    arena: tuple[str, Path], browser: Any
) -> None:
    url, db = arena
    page = open_page(browser, url)
    page.locator("#scripted-0").click()
    wait_answers(page, 0, 1)
    wait_answers(page, 1, 1)
    page.locator("#vote-left").wait_for(state="visible")
    page.locator("#pane-0-model input").click()  # Left answered with SmolLM; now the picker says Qwen
    page.get_by_role("option", name="qwen2.5-coder-0.5b").click()
    page.wait_for_function("document.querySelector('#pane-0-header').innerText.includes('qwen2.5-coder-0.5b')")
    page.locator("#vote-left").click()
    page.locator("#vote-left").wait_for(state="hidden")
    ((left, right, conv),) = db_rows(
        db, "SELECT model_left, model_right, conversation_left FROM votes ORDER BY id DESC LIMIT 1"
    )
    assert (left, right) == ("smollm2-135m", "qwen2.5-coder-0.5b")
    assert db_rows(db, f"SELECT model FROM conversations WHERE id = '{conv}'") == [("smollm2-135m",)]
    tick(page, "Right", False)
    send(page, "Add a meeting with Bob on Friday at 3pm")  # the new branch is Qwen's
    wait_answers(page, 0, 2)
    rows = db_rows(db, "SELECT model, messages FROM conversations WHERE messages LIKE '%Bob on Friday%'")
    assert [model for model, _ in rows] == ["qwen2.5-coder-0.5b"]
    assert '"origin": "smollm2-135m"' in rows[0][1]  # the first answer still names SmolLM
    page.context.close()


def test_exports_are_one_file_per_page_and_gone_when_the_server_stops(
    registry: Registry, browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mendlab.conversation import Conversation
    from mendlab.models.base import Message
    from mendlab.store import ResultsStore

    served = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(served))
    db = tmp_path / "a.db"
    with ResultsStore(db) as seed:
        hello = (Message("user", "hi"), Message("assistant", "hello"))
        seed.save_conversation(Conversation(hello, id="seeded1", model=MODELS[0], meta={"source": "arena"}))
    demo, pool, store = build_arena(registry, db, MODELS, memory_gb=1, max_tokens=8, temperature=0)
    url = launch(demo, port=_free_port(), block=False)
    try:
        pages = [open_page(browser, url) for _ in range(2)]
        for page in pages:  # both pages list the History at once, then download
            page.get_by_role("tab", name="History").click()
        names = []
        for page in pages:
            page.wait_for_function("document.querySelector('#history-table').innerText.includes('seeded1')")
            with page.expect_download() as download:
                page.locator("#export").click()
            names.append(download.value.suggested_filename)
            assert '"content": "hello"' in Path(download.value.path()).read_text(encoding="utf-8")
        assert len(set(names)) == 2
        for page in pages:
            page.context.close()
    finally:
        demo.close()
        pool.close()
        store.close()
    assert [p for p in served.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (420, 900)])
def test_screenshots_and_no_sideways_scrolling(arena: tuple[str, Path], browser: Any, width: int, height: int) -> None:
    url, _ = arena
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_page(browser, url, width, height)
    page.locator("#scripted-0").click()
    wait_answers(page, 0, 1)
    wait_answers(page, 1, 1)
    page.locator("#pane-1-mark-0").click()
    page.wait_for_function("document.querySelector('#pane-1-chat').innerText.includes('you ✓')")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=ARTIFACTS / f"arena-{width}x{height}.png")
    page.screenshot(path=ARTIFACTS / f"arena-{width}x{height}-full.png", full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"page scrolls sideways by {overflow}px at {width}px"
    if width >= 1280:  # side by side on a laptop screen, stacked on a phone
        box0, box1 = page.locator("#pane-0").bounding_box(), page.locator("#pane-1").bounding_box()
        assert abs(box0["y"] - box1["y"]) < 2 and box0["x"] < box1["x"]
        assert page.locator("#send").bounding_box()["y"] < height  # the message box is on the first screen
    page.context.close()


def test_a_small_memory_budget_evicts_and_the_panes_say_so(registry: Registry, browser: Any, tmp_path: Path) -> None:
    # 0.6 GiB holds either bundled model (with its KV cache) but not both.
    demo, pool, store = build_arena(registry, tmp_path / "a.db", MODELS, memory_gb=0.6, max_tokens=8, temperature=0)
    url = launch(demo, port=_free_port(), block=False)
    try:
        page = open_page(browser, url)
        page.locator("#add-pane").click()
        page.locator("#pane-2").wait_for(state="visible")
        assert page.locator("#targets").get_by_label("Pane 3").is_visible()
        tick(page, "Pane 3", False)
        page.locator("#scripted-0").click()
        wait_answers(page, 0, 1)
        wait_answers(page, 1, 1)
        # The headers refresh after the answers land: wait for the settled state (one evicted, the other ready)
        # rather than reading them the moment the first says evicted, while the other may still say generating.
        settled = (
            "(() => { const h = ['#pane-0-header', '#pane-1-header'].map(s => document.querySelector(s).innerText);"
            " const n = w => h.filter(t => t.includes(w)).length;"
            " return n('evicted') === 1 && n('ready') === 1; })()"
        )
        try:
            page.wait_for_function(settled, timeout=30_000)
        except Exception:
            pass  # the assertion below shows what the headers said
        headers = [page.locator(f"#pane-{i}-header").inner_text() for i in (0, 1)]
        assert sum("evicted" in h for h in headers) == 1 and sum("ready" in h for h in headers) == 1, headers
        assert "paused" in page.locator("#pane-2-header").inner_text()
        assert len(pool.resident()) == 1
        page.context.close()
    finally:
        demo.close()
        pool.close()
        store.close()
