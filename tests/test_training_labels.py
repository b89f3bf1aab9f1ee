"""Assistant-only labels from each bundled model's own chat template: exactly the assistant turns and
their end-of-turn token are trained; templates and texts that would be mislabelled are refused."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mendlab.errors import InputError
from mendlab.models.registry import CATALOGUE, readiness
from mendlab.training.labels import (
    IGNORE,
    LabelError,
    TrainMessage,
    label_conversation,
    load_chat_tokenizer,
    pad_batch,
    parse_messages,
    trained_text,
)
from tests.conftest import MENDLAB, cli_env

M = TrainMessage
# The end-of-turn token each bundled chat model's template closes an assistant turn with.
END_OF_TURN = {"smollm2-135m": "<|im_end|>", "qwen2.5-coder-0.5b": "<|im_end|>", "qwen2.5-coder-1.5b": "<|im_end|>"}
INSTALLED = [s.name for s in CATALOGUE if s.chat and readiness(s)[0]]
GEMMA_TEMPLATE = Path(__file__).parent / "data" / "gemma3_chat.jinja"  # the bundled base model has none
GEMMA_READY = readiness(next(s for s in CATALOGUE if s.name == "gemma-3-270m-base"))[0]

CONVERSATIONS = {
    "system, two turns": (
        M("system", "Translate requests into calls of action.add_calendar_entry."),
        M("user", "Add a meeting with Ana on Mar 3 at 5PM"),
        M("assistant", 'action.add_calendar_entry("Meeting with Ana", date="2026-03-03", time="17:00", duration=30)'),
        M("user", "It's 2026."),
        M("assistant", "Sure, here it is:\n```python\nprint('fixed')\n```"),
    ),
    "no system (the template's default one)": (
        M("user", "Say hi."),
        M("assistant", "Hi!"),
        M("user", "Again, louder."),
        M("assistant", "HI!"),
    ),
    "unicode": (
        M("system", "Réponds brièvement. 日本語でも。"),
        M("user", "Ünïcödé? 🎉 مرحبا"),
        M("assistant", "Ça marche ✓ — 日本 🎉"),
        M("user", "Ещё раз"),
        M("assistant", "Да: ½ · π ≈ 3.14 · 👍🏽"),
        M("user", "ok"),
        M("assistant", "Fin."),
    ),
}


@pytest.fixture(scope="module", params=INSTALLED)
def chat_tokenizer(request: pytest.FixtureRequest) -> tuple[str, Any]:
    return request.param, load_chat_tokenizer(request.param)


@pytest.fixture(scope="module")
def smol() -> Any:
    return load_chat_tokenizer("smollm2-135m")


def test_every_bundled_chat_model_has_its_end_of_turn_here() -> None:
    assert {s.name for s in CATALOGUE if s.chat} <= set(END_OF_TURN)
    assert {"smollm2-135m", "qwen2.5-coder-0.5b"} <= set(INSTALLED)


def _check(tok: Any, conv: tuple[TrainMessage, ...], eot: str, content: Any = lambda m: m.content) -> None:
    lab = label_conversation(tok, conv)
    trained = [m for m in conv if m.role == "assistant" and m.weight]
    assert trained_text(tok, lab) == "".join(content(m) + eot for m in trained)
    assert all(y in (IGNORE, x) for x, y in zip(lab.input_ids, lab.labels, strict=True))
    eot_id = tok.convert_tokens_to_ids(eot)
    for t in lab.turns:
        assert lab.labels[t.end - 1] == eot_id  # the end-of-turn is a target: the model learns to stop
        assert t.end == len(lab.labels) or lab.labels[t.end] == IGNORE  # the template's newline after it is not
    ignored = tok.decode([x for x, y in zip(lab.input_ids, lab.labels, strict=True) if y == IGNORE])
    for m in conv:
        if m.role != "assistant":
            assert m.content in ignored  # system and user turns are context only


@pytest.mark.parametrize("case", list(CONVERSATIONS))
def test_trained_text_is_the_assistant_contents_each_with_its_end_of_turn(
    chat_tokenizer: tuple[str, Any], case: str
) -> None:
    name, tok = chat_tokenizer
    _check(tok, CONVERSATIONS[case], END_OF_TURN[name])


def test_the_default_system_prompt_is_context(smol: Any) -> None:
    lab = label_conversation(smol, CONVERSATIONS["no system (the template's default one)"])
    everything = smol.decode(list(lab.input_ids))
    assert "named SmolLM" in everything and "SmolLM" not in trained_text(smol, lab)


@pytest.mark.skipif(not GEMMA_READY, reason="gemma-3-270m-base is not installed")
def test_gemma_template_end_of_turn_and_system_in_the_first_user_turn() -> None:
    tok = load_chat_tokenizer("gemma-3-270m-base", chat_template=str(GEMMA_TEMPLATE))
    for conv in CONVERSATIONS.values():
        _check(tok, conv, "<end_of_turn>")
    padded = (M("user", "hi"), M("assistant", "  spaced out \n"))  # Gemma's template trims the content
    _check(tok, padded, "<end_of_turn>", content=lambda m: m.content.strip())


def test_weight_zero_turns_stay_in_the_context_untrained(smol: Any) -> None:
    conv = (M("user", "2+2?"), M("assistant", "5", weight=0), M("user", "Wrong."), M("assistant", "4"))
    lab = label_conversation(smol, conv)
    assert trained_text(smol, lab) == "4<|im_end|>"
    assert [t.trained for t in lab.turns] == [False, True]
    with pytest.raises(LabelError, match="weight 0: nothing to train"):
        label_conversation(smol, conv[:2])


def test_pad_equal_to_end_of_turn_keeps_the_end_of_turn_trained(smol: Any) -> None:
    """SmolLM2's pad token is its <|im_end|>: padding by position keeps every end-of-turn a target,
    where masking labels by the pad id (the classic bug) would drop them all."""
    eot = smol.convert_tokens_to_ids("<|im_end|>")
    assert smol.pad_token_id == eot
    short = label_conversation(smol, (M("user", "a"), M("assistant", "b")))
    long = label_conversation(smol, CONVERSATIONS["system, two turns"])
    batch = pad_batch([short, long], smol.pad_token_id)
    for row, mask, labels, lab in zip(
        batch["input_ids"], batch["attention_mask"], batch["labels"], [short, long], strict=True
    ):
        assert len(row) == len(labels) == len(long.input_ids) and sum(mask) == len(lab.input_ids)
        assert labels.count(eot) == len(lab.turns)  # each turn's <|im_end|> is still trained
        naive = [IGNORE if x == smol.pad_token_id else y for x, y in zip(row, labels, strict=True)]
        assert eot not in naive  # what masking by id would have done


def test_unsafe_conversations_and_templates_are_refused(smol: Any) -> None:
    with pytest.raises(LabelError, match="not prefix-stable at the start"):  # "\n" + "\n\n" merge into one token
        label_conversation(smol, (M("user", "hi"), M("assistant", "\n\nfoo")))
    with pytest.raises(LabelError, match="holds the special token '<\\|im_end\\|>'"):
        label_conversation(smol, (M("user", "hi"), M("assistant", "a<|im_end|>b")))
    with pytest.raises(LabelError, match="no assistant turn"):
        label_conversation(smol, (M("user", "hi"),))
    plain = copy.copy(smol)
    plain.chat_template = (
        "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(LabelError, match="no special end-of-turn token"):
        label_conversation(plain, (M("user", "hi"), M("assistant", "x")))
    hiding = copy.copy(smol)  # rewrites earlier answers once later turns follow (as reasoning templates do)
    hiding.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role == 'assistant' and not loop.last %}[earlier]{% else %}{{ m.content }}{% endif %}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(LabelError, match="not prefix-stable: it rewrites earlier turns"):
        label_conversation(hiding, (M("user", "a"), M("assistant", "x"), M("user", "b"), M("assistant", "y")))


def test_parse_messages_names_the_field() -> None:
    with pytest.raises(InputError, match=r"f:3: messages\[1\]\.weight must be 0 or 1"):
        parse_messages(
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 2}]}, "f:3"
        )
    with pytest.raises(InputError, match=r"only assistant turns"):
        parse_messages({"messages": [{"role": "user", "content": "a", "weight": 0}]}, "f:1")


def test_train_labels_command(tmp_path: Path) -> None:
    convs = tmp_path / "convs.jsonl"
    rows = [
        {"messages": [m.to_openai() for m in CONVERSATIONS["unicode"]]},
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5", "weight": 0},
                      {"role": "user", "content": "Wrong."}, {"role": "assistant", "content": "4"}],
         "source": {"kind": "fix"}},
    ]  # fmt: skip
    convs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "trained.jsonl"
    r = subprocess.run(
        [MENDLAB, "train", "labels", str(convs), "-m", "smollm2-135m", "-o", str(out)],
        capture_output=True, text=True, env=cli_env(), timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert got[0]["trained_text"] == "Ça marche ✓ — 日本 🎉<|im_end|>Да: ½ · π ≈ 3.14 · 👍🏽<|im_end|>Fin.<|im_end|>"
    assert got[1]["trained_text"] == "4<|im_end|>" and got[1]["source"] == {"kind": "fix"}
    assert got[1]["trained_tokens"] == 2 and got[1]["turns"] == ["4<|im_end|>"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[1]) + "\n\n{not json\n", encoding="utf-8")
    r = subprocess.run(
        [MENDLAB, "train", "labels", str(bad), "-m", "smollm2-135m"], capture_output=True, text=True, env=cli_env()
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"error: {bad}:3: invalid JSON: Expecting property name enclosed in double quotes (column 2)"
    ]
    bad.write_text(
        json.dumps(rows[1])
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a<|im_end|>b"}]})
        + "\n",
        encoding="utf-8",
    )
    r = subprocess.run(
        [MENDLAB, "train", "labels", str(bad), "-m", "smollm2-135m"], capture_output=True, text=True, env=cli_env()
    )
    assert r.returncode == 2 and r.stdout == ""
    assert (
        len(r.stderr.strip().splitlines()) == 1
        and f"{bad}:2: messages[1]: the assistant message holds the special token" in r.stderr
    )
