"""Negotiation with an AI critic (issue 11): the readers of prices and of the moderator's answer, games
against a scripted OpenAI-compatible server whose prices make the right figures known in advance, and
a real game between the bundled models."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from mendlab.errors import ConfigError, IncompleteRun, MendlabError
from mendlab.models import SamplingParams
from mendlab.negotiation.game import load_game, parse_game
from mendlab.negotiation.parsing import first_line, last_price, prices, redact_prices, suggestions, yes_no
from mendlab.negotiation.report import round_stats
from mendlab.negotiation.rounds import NegotiationConfig, stored_games
from mendlab.negotiation.runner import run_negotiation
from mendlab.store import ResultsStore
from tests.conftest import MENDLAB, cli_env
from tests.scripted_server import ScriptedServer, models_toml, scripted_server

PRICE_CASES = [
    ("$15.50", [15.5]),
    ("15 dollars", [15.0]),
    ("I could do $12, or maybe $14 if you insist.", [12.0, 14.0]),
    ("no deal at $12", [12.0]),
    ("Fifteen bucks and it's yours.", [15.0]),
    ("twenty-five dollars", [25.0]),
    ("Meet me at 5 pm, I have 3 balloons.", []),
    ("$1,200 is too much", [1200.0]),
    ("It's $20.", [20.0]),
    ("USD 7 then", [7.0]),
    ("$ 9", [9.0]),
    ("$15-$18 depending on colour", [15.0, 18.0]),
    ("$12-15", [12.0, 15.0]),
    ("$20 is too high, I offer 15", [20.0, 15.0]),
    ("Fine, $15, that's $5 off", [15.0]),
    ("$18, that's 2 dollars less", [18.0]),
    ("15$ and it's yours", [15.0]),
    ("How about 12?", [12.0]),
    ("I offer 15 balloons at 5 pm", []),
    ("I'd pay $14, not $20.", [14.0]),
    ("$14 instead of $20", [14.0]),
    ("I can drop to $14 from $16.", [14.0]),
    ("Ok, $15. That is $5 less than $20.", [15.0]),
    ("Sold at $15 (cost $8).", [15.0]),
    ("Deal at $15 - 3 balloons", [15.0]),
    ("So we get $8 - $40 = -$22.", []),
    ("Let's say 13 dollars and 50 cents", [13.5]),
    ("I'll pay 50 cents more", []),
    ("Deal at 12.", [12.0]),
    ("12 it is", [12.0]),
    ("$12? No way, $15.", [12.0, 15.0]),
]


@pytest.mark.parametrize(("text", "expected"), PRICE_CASES)
def test_prices_in_tricky_lines(text: str, expected: list[float]) -> None:
    assert prices(text) == expected
    assert last_price(text) == (expected[-1] if expected else None)


YES_NO_CASES = [
    ("Yes", True),
    ("No.", False),
    ("**Yes**, they agreed on $15.", True),
    ("Answer: No", False),
    ("The answer is yes.", True),
    ("They reached a deal at $15.", True),
    ("They have not reached a deal.", False),
    ("no deal yet", False),
    ("Yes and no", None),
    ("Maybe", None),
    ("", None),
    ("No, the buyer still wants $10, so no. Yes would be wrong.", False),
    ("They haven't reached a deal.", False),
    ("They haven\u2019t reached a deal.", False),
    ("The buyer hasn't made a deal", False),
    ("They have not agreed on a price yet.", False),
    ("They almost reached a deal but the buyer left.", False),
    ("They didn't reach a deal", False),
    ("They agreed on the price.", True),
    ("They agreed on $14.", True),
    ("A deal was made at $14.", True),
    ("The buyer didn't budge, but they agreed on $14.", True),
]


@pytest.mark.parametrize(("text", "expected"), YES_NO_CASES)
def test_moderator_answers(text: str, expected: bool | None) -> None:
    assert yes_no(text) is expected


def test_critic_text_loses_its_prices_and_keeps_three_items() -> None:
    text, n = redact_prices("1. Ask for $18 first.\n2. Never go under 12 dollars.\n3. Smile.\n4. Extra.")
    assert n == 2 and "$" not in text and "12" not in text
    assert suggestions(text) == ["Ask for [a price] first.", "Never go under [a price].", "Smile."]
    assert suggestions("Be firm and polite.") == ["Be firm and polite."]
    bare, n = redact_prices("1. Open at 25 and never go below eighteen.\n2. Ask for 15$.")
    assert n == 3 and not re.search(r"\d|eighteen", bare.split("\n", 1)[0][3:]) and bare.startswith("1. ")
    assert redact_prices("1. Make one offer at a time.") == ("1. Make one offer at a time.", 0)
    assert first_line('\n  Seller: "I can do $16."\nMore chatter', ("seller",)) == "I can do $16."


# ----------------------------------------------------------------------------- the scripted server

OPENING_S = "This is a good balloon and its price is $20."
COACHED = "Feedback from your coach"


def _dollars(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\$(\d+)", text)]


def policy(messages: list[dict[str, str]]) -> str:
    """Seller: $16 then $15, or $18 then $17 once it has been coached. Buyer: $14, then accepts the
    seller's last price (a stubborn buyer always says $9). Moderator: yes when the last two lines name
    the same price. Critic: three suggestions, one with a price it must not pass on."""
    system = messages[0]["content"]
    if "coach for bargaining" in system:
        return "1. Hold your price at $17.\n2. Be firm.\n3. Explain the value."
    if "made a deal" in system:
        lines = [ln for ln in messages[-1]["content"].splitlines() if ln.startswith(("Seller:", "Buyer:"))]
        a, b = (_dollars(ln) for ln in lines[-2:])
        return "Yes" if a and b and a[-1] == b[-1] else "No"
    if "play a seller" in system:
        coached = any(COACHED in m["content"] for m in messages if m["role"] == "user")
        start = max(i for i, m in enumerate(messages) if m["role"] == "assistant" and m["content"] == OPENING_S)
        turn = sum(1 for m in messages[start + 1 :] if m["role"] == "assistant") + 1
        hi, lo = (18, 17) if coached else (16, 15)
        return f"I can do ${hi}." if turn == 1 else f"${lo} is my final offer."
    if "play a buyer" in system:
        if "stubborn" in system:
            return "I will only pay $9."
        turn = sum(1 for m in messages if m["role"] == "assistant")  # the opening is the first
        return "How about $14?" if turn == 1 else f"OK, ${_dollars(messages[-1]['content'])[-1]} it is."
    raise AssertionError(f"unknown role: {system[:60]}")


ROLES = ["sell", "buy", "coach", "judge"]


def _config(**kw: object) -> NegotiationConfig:
    base: dict[str, object] = dict(
        seller="sell", buyer="buy", critic="coach", moderator="judge", feedback=("ai", "none", "constant"),
        rounds=3, games=2, params=SamplingParams(temperature=1.0, max_tokens=48),
    )  # fmt: skip
    base.update(kw)
    return NegotiationConfig(**base)  # type: ignore[arg-type]


def _run(
    tmp: Path, server: ScriptedServer, cfg: NegotiationConfig, run_id: str = "neg", retry_errors: bool = False
) -> list[Path]:
    toml = tmp / "mendlab.toml"
    toml.write_text(models_toml(server.url, ROLES))
    report, console = tmp / "report", Console(width=200)
    return run_negotiation(tmp / "m.db", toml, cfg, run_id, False, report, console, retry_errors=retry_errors)


def _role(req: list[dict[str, str]]) -> str:
    s = req[0]["content"]
    return "seller" if "play a seller" in s else "buyer" if "play a buyer" in s else "critic" if "coach" in s else "mod"


def test_scripted_game_prices_deals_and_feedback_in_the_learners_context_only(tmp_path: Path) -> None:
    with scripted_server(policy) as server:
        _run(tmp_path, server, _config())
        requests = list(server.requests)
        with ResultsStore(tmp_path / "m.db") as store:
            records = stored_games(store, "neg")
    got = {(r.setting, r.stream, r.round): (r.deal, r.price, len(r.lines)) for r in records}
    for stream in (0, 1):
        assert got[("shared", stream, 1)] == (True, 15.0, 6)  # $20 $10 | $16 $14 | $15 "OK, $15"
        for setting, price in (("ai", 17.0), ("constant", 17.0), ("none", 15.0)):
            for rnd in (2, 3):
                assert got[(setting, stream, rnd)] == (True, price, 6), (setting, stream, rnd)
    assert len(records) == 2 * (1 + 3 * 2)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    ai = summary["settings"]["ai"]
    assert [r["price"]["mean"] for r in ai] == [15.0, 17.0, 17.0]
    assert ai[1]["price_change_from_round_1"] == {"mean": 2.0, "n": 2, "low": 2.0, "high": 2.0}
    assert ai[2]["deal_rate"]["k"] == ai[2]["deal_rate"]["n"] == 2
    assert summary["settings"]["none"][2]["price_change_from_round_1"]["mean"] == 0.0

    sellers = [r for r in requests if _role(r) == "seller"]
    buyers = [r for r in requests if _role(r) == "buyer"]
    critics = [r for r in requests if _role(r) == "critic"]
    seller_text = ["\n".join(m["content"] for m in r) for r in sellers]
    assert max(t.count(COACHED) for t in seller_text) == 2  # round 3: both rounds' feedback, kept
    assert not any("$17." in t.split(COACHED, 1)[-1].split("\n\n")[0] for t in seller_text)
    assert any("Hold your price at [a price]." in t for t in seller_text)  # the critic's price was removed
    for req in buyers:  # the opponent starts fresh every game: one game in its context, no feedback
        text = "\n".join(m["content"] for m in req)
        assert text.count("Would you consider selling it for $10?") == 1 and "coach" not in text.lower()
        assert "game is over" not in text
    assert len(critics) == 2 * 2  # ai only: after rounds 1 and 2 of each stream
    assert sum("Your earlier advice to this player: none yet" in c[-1]["content"] for c in critics) == 2
    assert sum("Your earlier advice to this player: 1. Hold your price at [a price]." in c[-1]["content"]
               for c in critics) == 2  # fmt: skip
    html = (tmp_path / "report" / "report.html").read_text()
    assert html.count("<details") == len(records) + 2 * 2  # round 1 is listed under each setting
    assert "feedback played with" in html and "[a price]" in html


def test_a_stubborn_buyer_never_deals_and_the_moderator_is_not_asked(tmp_path: Path) -> None:
    buyer = "you play a buyer in a bargaining\n    game."
    text = load_game("balloon").text.replace(buyer, buyer + " You are stubborn.")
    assert "stubborn" in text
    game_file = tmp_path / "stubborn.yaml"
    game_file.write_text(text.replace("max_exchanges: 10", "max_exchanges: 3"))
    with scripted_server(policy) as server:
        _run(tmp_path, server, _config(game=str(game_file), feedback=("none",), rounds=1, games=3))
        assert not [r for r in server.requests if _role(r) == "mod"]
    with ResultsStore(tmp_path / "m.db") as store:
        records = stored_games(store, "neg")
    assert len(records) == 3 and all(not r.deal and r.price is None and len(r.lines) == 8 for r in records)
    (row,) = round_stats(records, "none")
    assert row.deal_rate.successes == 0 and row.deal_rate.trials == 3 and row.price.n == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["settings"]["none"][0]["price"] == {"mean": None, "n": 0, "low": None, "high": None}


def test_a_dead_server_loses_nothing_and_a_rerun_finishes_as_if_uninterrupted(tmp_path: Path) -> None:
    whole_dir = tmp_path / "whole"
    whole_dir.mkdir()
    with scripted_server(policy) as server:
        _run(whole_dir, server, _config())
        total = len(server.requests)
    with scripted_server(policy) as server:
        server.fail_after = 20
        with pytest.raises(IncompleteRun, match="--retry-errors"):
            _run(tmp_path, server, _config())
        with ResultsStore(tmp_path / "m.db") as store:
            first = stored_games(store, "neg")
        assert any(r.error for r in first) and any(not r.error for r in first)
        done = {(r.setting, r.stream, r.round) for r in first if not r.error}
        server.fail_after = None
        n = len(server.requests)
        with pytest.raises(IncompleteRun):
            _run(tmp_path, server, _config())  # a plain rerun keeps the failed streams as they are
        assert len(server.requests) == n
        _run(tmp_path, server, _config(), retry_errors=True)
        assert len(server.requests) == total  # nothing answered before the failure was asked again
    with ResultsStore(tmp_path / "m.db") as store:
        after = {(r.setting, r.stream, r.round): (r.deal, r.price, r.error) for r in stored_games(store, "neg")}
    with ResultsStore(whole_dir / "m.db") as store:
        whole = {(r.setting, r.stream, r.round): (r.deal, r.price, r.error) for r in stored_games(store, "neg")}
    assert after == whole and done <= set(after)


def test_another_configuration_is_another_run(tmp_path: Path) -> None:
    with scripted_server(policy) as server:
        _run(tmp_path, server, _config(rounds=1, games=1))
        with pytest.raises(MendlabError, match=r"params\.temperature"):
            _run(tmp_path, server, _config(rounds=1, games=1, params=SamplingParams(temperature=0.5, max_tokens=48)))
        n = len(server.requests)
        _run(tmp_path, server, _config(rounds=1, games=2))  # more games extend the same run
        assert len(server.requests) > n
        with ResultsStore(tmp_path / "m.db") as store:
            assert len(stored_games(store, "neg")) == 2


def test_cli_runs_resumes_and_rejects_bad_files_in_one_line(tmp_path: Path) -> None:
    with scripted_server(policy) as server:
        (tmp_path / "mendlab.toml").write_text(models_toml(server.url, ROLES))
        cmd = [MENDLAB, "negotiate", "--seller", "sell", "--buyer", "buy", "--critic", "coach", "--moderator", "judge",
               "--games", "1", "--rounds", "2"]  # fmt: skip
        done = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "wrote report-negotiation/summary.json" in done.stdout and "ai" in done.stdout
        n = len(server.requests)
        again = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and len(server.requests) == n  # all from the store
    bad = tmp_path / "bad.yaml"
    bad.write_text(load_game("balloon").text.replace("{transcript}", "{transcrpt}", 1))
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: field 'moderator\.question': unknown placeholder"):
        load_game(str(bad))
    with pytest.raises(ConfigError, match=r"x\.yaml:3: field 'cost': must be float"):
        parse_game("name: x\nitem: y\ncost: cheap\n", "x.yaml")
    out = subprocess.run([MENDLAB, "negotiate", "--game", str(bad)], cwd=tmp_path, env=cli_env(),
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "bad.yaml" in out.stderr
    out = subprocess.run([MENDLAB, "negotiate", "--feedback", "praise"], cwd=tmp_path, env=cli_env(),
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and "--feedback 'praise'" in out.stderr


# ------------------------------------------------------------------------------- the real models


def test_a_real_game_between_the_bundled_models(tmp_path: Path) -> None:
    cfg = NegotiationConfig(feedback=("ai",), rounds=2, games=1, max_exchanges=2,
                            params=SamplingParams(temperature=1.0, max_tokens=32))  # fmt: skip
    run_negotiation(tmp_path / "m.db", None, cfg, "real", False, tmp_path / "report", Console(width=200))
    with ResultsStore(tmp_path / "m.db") as store:
        records = sorted(stored_games(store, "real"), key=lambda r: r.round)
        gens = store.generations("real:gen")
    assert [r.round for r in records] == [1, 2] and not any(r.error for r in records)
    for rec in records:
        said = [ln.price for ln in rec.lines if ln.price is not None]
        assert rec.lines[0].scripted and rec.lines[1].scripted and not rec.lines[2].scripted
        assert (rec.price in said) if rec.deal else rec.price is None
        assert 2 < len(rec.lines) <= 6
    feedback = records[1].feedback
    assert len(feedback) == 1 and not re.search(r"\$\s?\d", feedback[0])
    assert feedback[0] in "\n".join(m.content for m in records[1].messages)  # the learner saw it
    buyer_lines = sum(1 for r in records for ln in r.lines if ln.speaker == "buyer" and not ln.scripted)
    assert sum(g.model == "smollm2-135m" for g in gens) == buyer_lines  # the buyer's lines are smollm's
    assert {g.model for g in gens} <= {"qwen2.5-coder-0.5b", "smollm2-135m"}


def test_the_buyer_can_be_the_learner_and_the_seller_then_starts_fresh(tmp_path: Path) -> None:
    with scripted_server(policy) as server:
        _run(tmp_path, server, _config(learner="buyer", feedback=("ai",), rounds=2, games=1))
        requests = list(server.requests)
    texts = {
        role: ["\n".join(m["content"] for m in r) for r in requests if _role(r) == role] for role in ("seller", "buyer")
    }
    assert any(COACHED in t for t in texts["buyer"]) and not any(COACHED in t for t in texts["seller"])
    assert max(t.count(OPENING_S) for t in texts["buyer"]) == 2  # it remembers the first game
    assert max(t.count(OPENING_S) for t in texts["seller"]) == 1
    (critic,) = [r for r in requests if _role(r) == "critic"]
    assert "the buyer is the player you coach" in critic[-1]["content"]


def test_a_critic_that_fails_ends_the_stream_until_the_next_run(tmp_path: Path) -> None:
    broken = {"critic": True}

    def flaky(messages: list[dict[str, str]]) -> str:
        if broken["critic"] and "coach for bargaining" in messages[0]["content"]:
            raise RuntimeError("critic down")
        return policy(messages)

    with scripted_server(flaky) as server:
        with pytest.raises(IncompleteRun, match="the critic failed"):
            _run(tmp_path, server, _config(feedback=("ai",), rounds=3, games=1))
        with ResultsStore(tmp_path / "m.db") as store:
            first = {(r.setting, r.round): r.error for r in stored_games(store, "neg")}
        assert first[("shared", 1)] is None and "the critic failed" in str(first[("ai", 2)])
        assert ("ai", 3) not in first
        broken["critic"] = False
        _run(tmp_path, server, _config(feedback=("ai",), rounds=3, games=1), retry_errors=True)
    with ResultsStore(tmp_path / "m.db") as store:
        after = {(r.setting, r.round): (r.error, r.price) for r in stored_games(store, "neg")}
    assert after == {("shared", 1): (None, 15.0), ("ai", 2): (None, 17.0), ("ai", 3): (None, 17.0)}


def test_human_feedback_is_a_setting_of_its_own_words(tmp_path: Path) -> None:
    with scripted_server(policy) as server:
        _run(tmp_path, server, _config(feedback=("none",), rounds=2, games=1))
        cfg = _config(feedback=("none", "human"), rounds=2, games=1, human_feedback="Hold firm.")
        _run(tmp_path, server, cfg)  # adding a person's feedback extends the run
        seller = ["\n".join(m["content"] for m in r) for r in server.requests if _role(r) == "seller"]
    assert any("Hold firm." in t for t in seller)
    (name,) = [s for s in cfg.settings() if s.startswith("human")]
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert set(summary["settings"]) == {"none", name} and summary["settings"][name][1]["price"]["mean"] == 17.0


def test_a_game_that_cannot_fit_the_context_is_final_not_retried(tmp_path: Path) -> None:
    """A server that says the prompt is too long for the learner's second game: that game is recorded as
    context full, its stream ends, and a rerun does not ask again (it would fail again)."""

    def small_context(messages: list[dict[str, str]]) -> str:
        if "game is over" in "\n".join(m["content"] for m in messages) and "play a seller" in messages[0]["content"]:
            raise RuntimeError("This model's maximum context length is 64 tokens: the prompt exceeds it")
        return policy(messages)

    with scripted_server(small_context) as server:
        _run(tmp_path, server, _config(feedback=("none",), rounds=3, games=1))
        n = len(server.requests)
        _run(tmp_path, server, _config(feedback=("none",), rounds=3, games=1))
        assert len(server.requests) == n
    with ResultsStore(tmp_path / "m.db") as store:
        got = {(r.setting, r.round): r.error for r in stored_games(store, "neg")}
    assert got[("shared", 1)] is None and str(got[("none", 2)]).startswith("context full: ")
    assert ("none", 3) not in got
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["settings"]["none"][1]["context_full"] == 1 and summary["settings"]["none"][1]["games"] == 0


def test_deals_below_cost_are_counted() -> None:
    from mendlab.negotiation.play import Line
    from mendlab.negotiation.rounds import GameRecord

    def game(stream: int, price: float | None) -> GameRecord:
        lines = (Line("seller", "x", price), Line("buyer", "y", price))
        return GameRecord("shared", stream, 1, price is not None, price, lines, (), (), ())

    (row,) = round_stats([game(0, 7.0), game(1, 12.0), game(2, None), game(3, 8.0)], "none", cost=8.0)
    assert row.below_cost == 1 and row.deal_rate.successes == 3 and row.price.n == 3
