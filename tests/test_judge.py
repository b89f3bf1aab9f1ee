"""The LLM judge: reading verdicts (never guessing), both orders and flips, the win rate's interval against
statsmodels and a hand-computed case, Cohen's kappa against statsmodels, position and length bias, the
engine (concurrency against an endpoint, resume, retry of failed samples), every input (pairs file,
prompts answered by two models, stored runs), agreement with the rule grader on calendar turns, the CLI
with its one-line errors, and one real judge (the bundled SmolLM2, a few tokens)."""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from mendlab.dialogs.runner import CalendarConfig, run_experiments
from mendlab.dialogs.scenario import load_scenario
from mendlab.errors import IncompleteRun, InputError, MendlabError
from mendlab.judge.metrics import win_rate
from mendlab.judge.pairwise import Judgment, combine, read_judgment
from mendlab.judge.prompts import parse_ab, parse_grade, parse_scores
from mendlab.judge.runner import AgreementConfig, CompareConfig, run_agreement, run_compare
from mendlab.models import ChatModel, Message, ModelSpec, SamplingParams
from mendlab.models.endpoint import OpenAIModel
from mendlab.stats import cohen_kappa, cohen_kappa_ci, wilson
from mendlab.store import ResultsStore
from tests.conftest import MENDLAB, cli_env
from tests.scripted import ScriptedModel, right, step_index
from tests.scripted_server import models_toml, scripted_server

CAL = load_scenario("calendar")
GOOD, BAD = "qwen2.5-coder-0.5b", "smollm2-135m"  # names of the registry, played by scripted policies


# ---------------------------------------------------------------- reading a judgment


def test_ab_verdicts_are_read_and_never_guessed() -> None:
    assert parse_ab("B is more accurate.\n[[B]]") == ("B", "")
    assert parse_ab("Both fine. [[c]]")[0] == "C" and parse_ab("[[Tie]]")[0] == "C" and parse_ab("[[ A ]]")[0] == "A"
    # FastChat reads the first token it finds in the order A, B, C: this judgment would count for A
    assert parse_ab('Unlike "[[A]]" would suggest, A is wrong.\nVerdict:\n[[B]]') == ("B", "")
    assert parse_ab("<think>maybe [[A]]</think>\n[[B]]") == ("B", "")  # the thinking is not the verdict
    verdict, why = parse_ab("[[A]] or [[B]], hard to say")
    assert verdict is None and why == "ambiguous: [[A]], [[B]] all given"
    assert parse_ab("Assistant A is better.") == (None, "no [[A]], [[B]] or [[C]] in the judgment")
    assert parse_ab("") == (None, "no [[A]], [[B]] or [[C]] in the judgment")
    assert parse_grade("The year is wrong.\n[[WRONG]]") == (False, "") and parse_grade("[[correct]]") == (True, "")
    assert parse_grade("[[RIGHT]] [[WRONG]]")[0] is None


def test_scores_are_read_from_the_first_line_or_double_brackets_within_one_to_eight() -> None:
    assert parse_scores("7 5\nAssistant 1 explains more.") == ((7.0, 5.0), "")
    assert parse_scores("Scores: [[8, 3]]") == ((8.0, 3.0), "") and parse_scores("**6, 6**\nsame")[0] == (6.0, 6.0)
    assert parse_scores("Assistant 1 gets [2, 7].")[0] == (2.0, 7.0)
    assert parse_scores("9 2\n")[0] is None and "out of 1–8" in parse_scores("9 2")[1]
    assert parse_scores("[[7, 5]] then [[3, 8]]") == (None, "ambiguous: 2 different pairs of scores")
    assert parse_scores("Assistant 1 has 3 bugs, Assistant 2 has 1.") == (None, "no two scores in the judgment")
    # what qwen2.5-coder-0.5b writes: a line per assistant, nothing else on either
    assert parse_scores("Assistant 1: 8\nAssistant 2: 7\n\nBoth are accurate.")[0] == (8.0, 7.0)
    assert parse_scores("**Assistant 1:** 6/8\n**Assistant 2:** 2")[0] == (6.0, 2.0)
    assert parse_scores("Assistant 1: 8 because\nAssistant 2: 3")[0] is None  # not the line alone
    assert parse_scores("Assistant 2: 8\nAssistant 1: 3")[0] is None  # not in the order asked


def test_both_orders_a_flip_is_a_tie_and_an_unread_order_leaves_no_verdict() -> None:
    ab, ba = read_judgment("ab", "ab", "[[A]]"), read_judgment("ab", "ba", "[[B]]")  # a shown first, then second
    assert (ab.winner, ab.position, ba.winner, ba.position) == ("a", "first", "a", "second")
    assert combine([ab, ba]) == ("a", True)
    biased = [read_judgment("ab", "ab", "[[A]]"), read_judgment("ab", "ba", "[[A]]")]  # always the first shown
    assert combine(biased) == ("tie", False)
    assert combine([ab, read_judgment("ab", "ba", "[[C]]")]) == ("tie", False)
    assert combine([ab, read_judgment("ab", "ba", "no idea")]) == (None, False)
    s1, s2 = read_judgment("score", "ab", "3 7"), read_judgment("score", "ba", "7 3")  # b scored 7 both times
    assert (s1.winner, s2.winner) == ("b", "b") and combine([s1, s2]) == ("b", True)
    assert Judgment.from_json(s2.to_json()) == s2


# ---------------------------------------------------------------- the statistics


def test_win_rate_counts_ties_half_and_its_interval_is_at_least_wilsons() -> None:
    from statsmodels.stats.proportion import proportion_confint

    est = win_rate(wins=10, ties=0, losses=0)  # a bootstrap alone says [100%, 100%]
    assert est.value == 1.0 and est.high == 1.0 and round(est.low, 4) == 0.7225  # Wilson 10/10, by hand
    for wins, ties, losses in ((3, 2, 1), (12, 5, 9), (0, 4, 4), (30, 10, 20)):
        est = win_rate(wins, ties, losses)
        n = wins + ties + losses
        assert est.value == (wins + ties / 2) / n and est.n == n
        ref_low, ref_high = proportion_confint(wins + ties / 2, n, alpha=0.05, method="wilson")
        assert np.allclose(wilson(wins + ties / 2, n), (ref_low, ref_high))
        assert est.low <= ref_low + 1e-12 and est.high >= ref_high - 1e-12
    # by hand: 3 wins, 2 ties, 1 loss is 4 of 6; Wilson at 4/6 (z = 1.96) is [0.300, 0.903]
    est = win_rate(3, 2, 1)
    assert round(est.value, 4) == 0.6667 and est.low <= 0.3000 and est.high >= 0.9032
    assert str(win_rate(0, 0, 0)) == "n/a"


def test_cohen_kappa_matches_statsmodels_and_its_interval_resamples_conversations() -> None:
    from statsmodels.stats.inter_rater import cohens_kappa

    rng = np.random.default_rng(3)
    rule = rng.random(300) < 0.4
    judge = np.where(rng.random(300) < 0.8, rule, ~rule)  # agrees 80% of the time
    pairs = list(zip(rule.tolist(), judge.tolist(), strict=True))
    table = [[sum(1 for a, b in pairs if a == x and b == y) for y in (True, False)] for x in (True, False)]
    ref = cohens_kappa(np.array(table))
    assert abs(cohen_kappa(pairs) - ref.kappa) < 1e-12
    est = cohen_kappa_ci([[p] for p in pairs])  # one item per cluster: close to the asymptotic interval
    assert (
        est.low < ref.kappa < est.high and abs(est.low - ref.kappa_low) < 0.03 and abs(est.high - ref.kappa_upp) < 0.03
    )
    assert cohen_kappa([(True, True), (False, False)]) == 1.0
    assert cohen_kappa([(True, True), (False, True)]) == 0.0  # a judge that always says yes agrees by chance only
    assert np.isnan(cohen_kappa([(True, True)] * 3)) and np.isnan(cohen_kappa([]))


# ---------------------------------------------------------------- end to end, with a scripted judge


def shown(messages: list[dict[str, str]]) -> tuple[str, str]:
    """The two answers as a judge request shows them: (first, second)."""
    blocks = re.findall(
        r"\[The Start of Assistant (?:A|B|1|2)'s Answer\]\n(.*?)\n\[The End", messages[-1]["content"], re.S
    )
    return blocks[0], blocks[1]


def fair(messages: list[dict[str, str]]) -> str:
    first, second = shown(messages)
    return "A is better.\n[[A]]" if "GOOD" in first else "[[B]]" if "GOOD" in second else "[[C]]"


def first_always(messages: list[dict[str, str]]) -> str:
    return "The first one.\n[[A]]"


def scorer(messages: list[dict[str, str]]) -> str:
    first, second = shown(messages)
    return f"{7 if 'GOOD' in first else 3} {7 if 'GOOD' in second else 3}\nbecause."


def write_pairs(path: Path, n: int, **extra: Any) -> Path:
    rows = [
        {"prompt": f"question {i}?", "answer_a": f"GOOD answer {i}, long enough", "answer_b": f"meh {i}",
         "model_a": "alpha", "model_b": "beta", **extra}
        for i in range(n)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def toml(tmp_path: Path, url: str, names: Sequence[str] = ("judge",), concurrency: int = 1) -> Path:
    path = tmp_path / "mendlab.toml"
    path.write_text(
        models_toml(url, list(names)).replace("timeout_s = 10", f"timeout_s = 10\nconcurrency = {concurrency}")
    )
    return path


def compare(tmp_path: Path, cfg: CompareConfig, conf: Path | None, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"run_id": None, "new_run": False, "retry_errors": False, "out_dir": tmp_path / "out"}
    args.update(kw)
    return run_compare(tmp_path / "m.db", conf, cfg, console=Console(file=io.StringIO(), width=200), **args)


def test_a_fair_judge_a_position_biased_one_and_an_unreadable_one(tmp_path: Path) -> None:
    pairs = write_pairs(tmp_path / "pairs.jsonl", 12)

    def slow(messages: list[dict[str, str]]) -> str:
        time.sleep(0.05)  # long enough for requests to overlap
        return fair(messages)

    with scripted_server(slow) as server:
        s = compare(tmp_path, CompareConfig("judge", pairs_file=pairs), toml(tmp_path, server.url, concurrency=8))
        assert server.peak_in_flight > 1  # the engine sends samples concurrently within the endpoint's budget
        assert all(b["temperature"] == 0 for b in server.bodies) and len(server.requests) == 24  # both orders
    assert (s["model_a"], s["model_b"], s["pairs"]) == ("alpha", "beta", 12)
    assert (
        s["win_rate_a"]["wins"] == 12 and s["win_rate_a"]["value"] == 1.0 and s["win_rate_a"]["ties_counted"] == "half"
    )
    assert s["position"]["first_shown_wins"]["k"] == 12 and s["position"]["first_shown_wins"]["n"] == 24
    assert s["position"]["consistency"]["value"] == 1.0 and s["length"]["longer_wins"]["value"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {r["winner_model"] for r in rows} == {"alpha"}
    assert [j["order"] for j in rows[0]["judgments"]] == ["ab", "ba"] and rows[0]["judgments"][0][
        "raw"
    ] == "A is better.\n[[A]]"
    assert "win rate of a, ties half" in (tmp_path / "out" / "report.md").read_text()

    with scripted_server(first_always) as server:
        s = compare(tmp_path, CompareConfig("judge", pairs_file=pairs), toml(tmp_path, server.url), run_id="biased")
    assert s["win_rate_a"]["ties"] == 12 and s["win_rate_a"]["value"] == 0.5 and s["flipped_to_tie"] == 12
    assert s["position"]["first_shown_wins"]["value"] == 1.0 and s["position"]["both_orders_chose_first"] == 12
    assert s["position"]["consistency"]["value"] == 0.0

    def unreadable(messages: list[dict[str, str]]) -> str:
        return "[[A]]" if "question 0?" in messages[-1]["content"] else "I prefer A."

    with scripted_server(unreadable) as server:
        s = compare(tmp_path, CompareConfig("judge", pairs_file=pairs), toml(tmp_path, server.url), run_id="unread")
    assert s["unparsed"] == {"pairs": 11, "judgments": 22, "reasons": {"no [[A]], [[B]] or [[C]] in the judgment": 22}}
    assert s["win_rate_a"]["n"] == 1 and s["win_rate_a"]["ties"] == 1  # pair 0: [[A]] in both orders is a flip
    assert json.loads((tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()[1])["verdict"] is None


def test_score_mode_gives_mean_scores_and_the_histogram(tmp_path: Path) -> None:
    pairs = write_pairs(tmp_path / "pairs.jsonl", 5)
    with scripted_server(scorer) as server:
        s = compare(tmp_path, CompareConfig("judge", mode="score", pairs_file=pairs), toml(tmp_path, server.url))
        assert "score from 1 to 8" in server.requests[0][-1]["content"]
    assert s["mode"] == "score" and s["win_rate_a"]["wins"] == 5
    assert s["scores"]["mean_a"]["mean"] == 7.0 and s["scores"]["mean_b"]["mean"] == 3.0
    assert s["scores"]["histogram"] == {"1": 0, "2": 0, "3": 10, "4": 0, "5": 0, "6": 0, "7": 10, "8": 0}
    assert s["scores"]["extreme_1_or_8"]["k"] == 0

    def spread(messages: list[dict[str, str]]) -> str:  # a: 8, 8, 8, 8 and 1; Student's t would pass 8
        def score(text: str) -> int:
            return 1 if "answer 4," in text else 8 if "GOOD" in text else 2

        return " ".join(str(score(t)) for t in shown(messages))

    with scripted_server(spread) as server:
        cfg = CompareConfig("judge", mode="score", pairs_file=pairs)
        s = compare(tmp_path, cfg, toml(tmp_path, server.url), run_id="spread")
    mean_a = s["scores"]["mean_a"]
    assert mean_a["mean"] == 6.6 and mean_a["high"] == 8.0 and 1 <= mean_a["low"] < 6.6


def test_a_judge_run_resumes_and_retries_only_what_failed(tmp_path: Path) -> None:
    pairs = write_pairs(tmp_path / "pairs.jsonl", 6)
    with scripted_server(fair) as server:
        conf = toml(tmp_path, server.url)
        server.fail_after = 5  # the server dies after 5 judgments
        with pytest.raises(IncompleteRun, match="--retry-errors"):
            compare(tmp_path, CompareConfig("judge", pairs_file=pairs), conf, run_id="j")
        asked = len(server.requests)
        server.fail_after = None
        s = compare(tmp_path, CompareConfig("judge", pairs_file=pairs), conf, run_id="j", retry_errors=True)
        assert s["win_rate_a"]["wins"] == 6 and not s["failed"]
        assert asked < 12 and len(server.requests) == 12  # every judgment answered once: the stored ones reused
        again = len(server.requests)
        compare(tmp_path, CompareConfig("judge", pairs_file=pairs), conf, run_id="j")
        assert len(server.requests) == again  # all stored: nothing asked
        with pytest.raises(MendlabError, match="max_tokens 512 → 64"):  # another configuration is another run
            compare(tmp_path, CompareConfig("judge", max_tokens=64, pairs_file=pairs), conf, run_id="j")


def answering(name: str, good: bool) -> ScriptedModel:
    return ScriptedModel(
        name, lambda messages, params, i: ("GOOD " if good else "") + f"reply to {messages[-1].content}"
    )


def test_two_models_answer_the_prompts_then_the_judge_compares_them(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"prompt": "Name a prime."})
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "Hi?"}]})
        + "\n"
    )
    with scripted_server(fair) as server:
        conf = toml(tmp_path, server.url, ["judge", "alpha", "beta"])
        made: list[ChatModel] = []

        def load(spec: ModelSpec) -> ChatModel:
            model: ChatModel = (
                answering(spec.name, spec.name == "beta")
                if spec.name != "judge"
                else OpenAIModel("judge", server.url, "scripted", max_retries=0)
            )
            made.append(model)
            return model

        cfg = CompareConfig("judge", prompts_file=prompts, models=("alpha", "beta"))
        s = compare(tmp_path, cfg, conf, load=load)
        assert s["pairs"] == 2 and s["win_rate_a"]["losses"] == 2 and s["model_b"] == "beta"
        with ResultsStore(tmp_path / "m.db") as store:
            answers = {(r.model, r.sample_id): r.data["answer"] for r in store.samples(s["run"], "answer")}
        assert len(answers) == 4 and all(a.startswith("GOOD") == (m == "beta") for (m, _), a in answers.items())
        made.clear()
        compare(tmp_path, cfg, conf, load=load)  # resumed: the answers and judgments come from the store
        assert sum(getattr(m, "calls", 0) for m in made) == 0
    with pytest.raises(MendlabError, match="two models answer them"):
        CompareConfig("judge", prompts_file=prompts, models=("alpha",))


def test_stored_answers_to_the_same_prompts_are_paired(tmp_path: Path) -> None:
    """Two models' reliability tries of one calendar run: the same prompt, job and sample index (the
    models are the bundled names, played by scripted policies)."""

    def model(name: str) -> ScriptedModel:
        def policy(messages: Sequence[Message], params: SamplingParams, i: int) -> str:
            return right(CAL, step_index(CAL, messages), "2024" if name == GOOD else "2023")

        return ScriptedModel(name, policy)

    cfg = CalendarConfig(tries=3, params=SamplingParams(temperature=0.7, max_tokens=32))
    run_experiments(tmp_path / "m.db", None, "reliability", [GOOD, BAD], cfg, run_id="cal", report_dir=None,
                    console=Console(file=io.StringIO()), load=lambda spec: model(spec.name),
                    )  # fmt: skip

    def by_year(messages: list[dict[str, str]]) -> str:
        first, _ = shown(messages)
        return "[[A]]" if "2024" in first else "[[B]]"

    with scripted_server(by_year) as server:
        conf = toml(tmp_path, server.url)
        s = compare(tmp_path, CompareConfig("judge", from_runs=("cal",), models=(GOOD, BAD)), conf)
        assert s["pairs"] == 3 and s["win_rate_a"]["wins"] == 3  # three tries, each its own pair
        assert s["config"]["source"]["runs"] == ["cal"]
        s = compare(tmp_path, CompareConfig("judge", from_runs=("cal",)), conf)  # the run's two models
        assert {s["model_a"], s["model_b"]} == {GOOD, BAD}
        with pytest.raises(MendlabError, match="no run named 'nope'"):
            compare(tmp_path, CompareConfig("judge", from_runs=("nope",)), conf)
        with pytest.raises(MendlabError, match="twice in one run"):
            compare(tmp_path, CompareConfig("judge", from_runs=("cal",), models=(GOOD, GOOD)), conf)


# ---------------------------------------------------------------- agreement with the rule grader


def calendar_run(db: Path) -> None:
    """A dialog run whose first answer is wrong (2023) and fixed when told; reliability tries alternate."""

    def policy(messages: Sequence[Message], params: SamplingParams, i: int) -> str:
        idx = step_index(CAL, messages)
        fixing = messages[-1].role == "user" and CAL.step_for_user_text(messages[-1].content) is None
        wrong = idx == 0 and not fixing and (params.n == 1 or i % 2 == 1)
        return right(CAL, idx, "2023" if wrong else "2024")

    cfg = CalendarConfig(tries=4, reps=1, rungs=("pointed",), params=SamplingParams(temperature=0.7, max_tokens=32))
    run_experiments(db, None, "reliability,dialog", [BAD], cfg, run_id="cal", report_dir=None,
                    console=Console(file=io.StringIO()), load=lambda spec: ScriptedModel(BAD, policy))  # fmt: skip


def grader(says: Callable[[str], str]) -> Callable[[list[dict[str, str]]], str]:
    def policy(messages: list[dict[str, str]]) -> str:
        m = re.search(r"\[The Start of the Assistant's Last Answer\]\n(.*?)\n\[The End", messages[-1]["content"], re.S)
        if m is not None:
            return says(m.group(1))
        return by_year_pair(messages)

    return policy


def by_year_pair(messages: list[dict[str, str]]) -> str:
    first, second = shown(messages)
    return "[[A]]" if "2023" not in first else "[[B]]" if "2023" not in second else "[[C]]"


def agree(tmp_path: Path, conf: Path, run_id: str | None = None, **kw: Any) -> dict[str, Any]:
    cfg = AgreementConfig("judge", **kw)
    return run_agreement(tmp_path / "m.db", conf, cfg, run_id=run_id, new_run=False, retry_errors=False,
                         out_dir=tmp_path / "agree", console=Console(file=io.StringIO(), width=200))  # fmt: skip


def test_the_judges_agreement_with_the_rule_grader(tmp_path: Path) -> None:
    calendar_run(tmp_path / "m.db")
    with scripted_server(
        grader(lambda reply: "[[WRONG]]" if "2023" in reply else "The call is right.\n[[RIGHT]]")
    ) as server:
        s = agree(tmp_path, toml(tmp_path, server.url), pairs=True)
        assert "[[RIGHT]]" in server.requests[0][0]["content"] and server.requests[0][0]["role"] == "system"
    g = s["grade"]
    # distinct (history, answer) turns: the reliability tries' right and wrong answer to step 1 (the
    # dialog's first answer is that same wrong one), the dialog's fix of step 1 and its steps 2..6
    assert s["calendar_run"] == "cal" and g["turns"] == 8 and s["available"] == {"right": 7, "wrong": 1}
    assert g["agreement"]["value"] == 1.0 and g["kappa"]["mean"] == 1.0 and g["unparsed"] == 0
    assert g["confusion"] == {"rule_right_judge_right": 7, "rule_right_judge_wrong": 0, "rule_wrong_judge_right": 0,
                              "rule_wrong_judge_wrong": 1}  # fmt: skip
    # one right and one wrong answer to the same prompt (step 1): the judge prefers the right one
    assert s["pairs"]["available"] == 1 and s["pairs"]["prefers_right"]["value"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "agree" / "grades.jsonl").read_text().splitlines()]
    assert {r["judge_correct"] == r["rule_correct"] for r in rows} == {True} and rows[0]["raw"]

    with scripted_server(grader(lambda reply: "[[RIGHT]]")) as server:  # a judge that passes everything
        s = agree(tmp_path, toml(tmp_path, server.url), run_id="lenient")
    g = s["grade"]
    assert g["agreement"]["k"] == 7 and g["kappa"]["mean"] == 0.0 and g["judge_calls_wrong_when_rules_do"]["k"] == 0
    assert g["missed_errors"] == {"wrong_year": 1}
    with scripted_server(grader(lambda reply: "[[RIGHT]]")) as server:  # balanced: as many right as wrong
        s = agree(tmp_path, toml(tmp_path, server.url), run_id="few", limit=4)
    assert s["grade"]["confusion"]["rule_wrong_judge_right"] == 1 and s["grade"]["turns"] == 4


# ---------------------------------------------------------------- the command


def test_the_cli_judges_a_file_and_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    pairs = write_pairs(tmp_path / "pairs.jsonl", 3)
    with scripted_server(fair) as server:
        (tmp_path / "mendlab.toml").write_text(models_toml(server.url, ["judge"]))
        r = subprocess.run([MENDLAB, "judge", "compare", str(pairs), "--judge", "judge", "--json"], cwd=tmp_path,
                           capture_output=True, text=True, env=cli_env())  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["win_rate_a"]["wins"] == 3 and "win rate of a" in r.stderr
        assert (tmp_path / "report-judge" / "summary.json").is_file()
        bad = tmp_path / "bad.jsonl"
        for line, message in (
            ('{"prompt": "q", "answer_a": "x"}', "bad.jsonl:1: field 'answer_b' is missing"),
            ('{"messages": [{"role": "assistant", "content": "x"}], "answer_a": "x", "answer_b": "y"}',
             "bad.jsonl:1: field 'messages': the last message must be the user's"),
            ('{"prompt": "q", "answer_a": "x", "answer_b": "y"}\n{"prompt": "q", "answer_a": "x", "answer_b": "y"}',
             "bad.jsonl:2: the same pair as"),
            ('{"prompt": "q", "answer_a": 3, "answer_b": "y"}', "bad.jsonl:1: field 'answer_a' must be a string"),
        ):  # fmt: skip
            bad.write_text(line + "\n")
            r = subprocess.run([MENDLAB, "judge", "compare", str(bad), "-j", "judge"], cwd=tmp_path,
                               capture_output=True, text=True, env=cli_env())  # fmt: skip
            assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1
        r = subprocess.run([MENDLAB, "judge", "compare", str(pairs), "-j", "judge", "--mode", "stars"], cwd=tmp_path,
                           capture_output=True, text=True, env=cli_env())  # fmt: skip
        assert r.returncode == 2 and "--mode 'stars'" in r.stderr


def test_read_pairs_names_the_line() -> None:
    from mendlab.judge.pairs import read_pairs

    with pytest.raises(InputError, match="no such pairs file"):
        read_pairs(Path("/nonexistent/pairs.jsonl"))


# ---------------------------------------------------------------- a real judge


def test_the_bundled_smollm_judges_with_a_few_tokens(smollm: ChatModel, tmp_path: Path) -> None:
    pairs = write_pairs(tmp_path / "pairs.jsonl", 1)

    class Lent:
        def __init__(self) -> None:
            self.info = smollm.info

        def chat(self, messages: Any, params: Any) -> Any:
            return smollm.chat(messages, params)

        def stream(self, messages: Any, params: Any) -> Any:
            return smollm.stream(messages, params)

        def close(self) -> None:
            pass

    s = compare(tmp_path, CompareConfig("smollm2-135m", max_tokens=12, pairs_file=pairs), None,
                load=lambda spec: Lent())  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and all(j["raw"] for r in rows for j in r["judgments"])  # what it wrote is kept
    read = sum(1 for r in rows for j in r["judgments"] if j["winner"] is not None)
    assert read + s["unparsed"]["judgments"] == 2  # every judgment is either read or counted as unreadable
    assert s["win_rate_a"]["n"] + s["unparsed"]["pairs"] == 1
