"""`mendlab train sft` on the bundled SmolLM2, a few steps on eight tiny dialogues: the loss falls, the
tuned model is registered and loads through the transformers backend, a run killed with kill -9
resumes where its last checkpoint left it (and gives the losses an uninterrupted run gives), another
config's checkpoint is refused, a bad data file is a one-line error, and the StarChat recipe adds
its tokens, trains `<|end|>` and stops there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mendlab.errors import MendlabError
from mendlab.models import SamplingParams, load_model, load_registry
from mendlab.models.base import Message
from mendlab.models.registry import CATALOGUE, readiness
from mendlab.training.labels import IGNORE, label_conversation, pad_batch, parse_messages, trained_pieces
from mendlab.training.sft import SFTOptions, train_sft
from tests.conftest import MENDLAB, cli_env

pytest.importorskip("trl")
pytest.importorskip("peft")
SMOL = next(s for s in CATALOGUE if s.name == "smollm2-135m")
pytestmark = pytest.mark.skipif(not readiness(SMOL)[0], reason="smollm2-135m is not installed")

SYSTEM = "Write calls of action.add_calendar_entry."
PEOPLE = [("Ana", 3, 9), ("Bo", 4, 10), ("Cy", 5, 11), ("Dee", 6, 12), ("Eve", 7, 13), ("Finn", 8, 14)]
PEOPLE += [("Gus", 9, 15), ("Hal", 10, 16)]


def _call(who: str, day: int, hour: int) -> str:
    return f'action.add_calendar_entry("Meeting with {who}", date="2026-03-{day:02d}", time="{hour}:00")'


def dialogues() -> list[dict[str, Any]]:
    rows = []
    for who, day, hour in PEOPLE:
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Meet {who} on March {day} at {hour}:00."},
                    {"role": "assistant", "content": _call(who, day, hour)},
                ]
            }
        )
    return rows


def write_data(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in dialogues()), encoding="utf-8")
    return path


# Six steps of two dialogues, a checkpoint every two; a constant, high learning rate so that a few
# steps show the loss falling. Dropout stays on: the resumed run must restore the RNG too.
STEPS, EVERY = 6, 2
FLAGS = ["--max-steps", str(STEPS), "--batch-size", "2", "--save-steps", str(EVERY), "--save-total-limit", "3"]
FLAGS += ["--lr", "1e-3", "--scheduler", "constant", "--lora-r", "4", "--lora-alpha", "8", "--seed", "3"]


def options(data: Path, out: Path, config: Path | None, **kw: Any) -> SFTOptions:
    base: dict[str, Any] = dict(
        model="smollm2-135m",
        data=data,
        out=out,
        name="smol-tuned",
        max_steps=STEPS,
        batch_size=2,
        save_steps=EVERY,
        save_total_limit=3,
        learning_rate=1e-3,
        scheduler="constant",
        lora_r=4,
        lora_alpha=8,
        seed=3,
        config=config,
    )
    base.update(kw)
    return SFTOptions(**base)


def cli(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MENDLAB, *args], cwd=cwd, capture_output=True, text=True, env=cli_env(), timeout=timeout)


def losses(out: Path) -> list[float]:
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [h["step"] for h in summary["losses"]] == list(range(1, STEPS + 1))
    return [h["loss"] for h in summary["losses"]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One uninterrupted run, in this process, registered in its folder's mendlab.toml."""
    from rich.console import Console

    root = tmp_path_factory.mktemp("sft")
    data = write_data(root / "dialogues.jsonl")
    config = root / "mendlab.toml"
    config.write_text('# my models\n[models.mine]\nbackend = "llama.cpp"\npath = "x.gguf"\n', encoding="utf-8")
    result = train_sft(options(data, root / "ref", config), Console(stderr=True))
    return {"root": root, "data": data, "config": config, "result": result}


def test_the_collator_trains_exactly_our_labels() -> None:
    """TRL's collator takes our labels as they are: SmolLM2's pad *is* its `<|im_end|>`, and a collator
    that masked `labels[input_ids == pad]` would hide every end-of-turn from the loss."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from mendlab.training.sft import training_tokenizer

    tok = training_tokenizer("smollm2-135m", None)
    assert tok.pad_token == "<|im_end|>"
    labeled = [label_conversation(tok, parse_messages(r, f"row {i}")) for i, r in enumerate(dialogues()[:3])]
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id)(
        [{"input_ids": list(x.input_ids), "labels": list(x.labels)} for x in labeled]
    )
    ours = pad_batch(labeled, tok.pad_token_id)
    assert batch["labels"].tolist() == ours["labels"]
    assert batch["input_ids"].tolist() == ours["input_ids"]
    end = tok.convert_tokens_to_ids("<|im_end|>")
    for row, x in zip(batch["labels"].tolist(), labeled, strict=True):
        kept = [t for t in row if t != IGNORE]
        assert kept[-1] == end and tok.decode(kept) == trained_pieces(tok, x)[0]


def test_training_makes_the_loss_fall_and_the_model_loads_by_its_name(reference: dict[str, Any]) -> None:
    result = reference["result"]
    out: Path = result.out
    s = result.summary
    assert s["steps"] == STEPS and s["resumed_from_step"] is None
    got = losses(out)
    assert got[-1] < 0.7 * got[0], got
    assert s["tokens"] > s["trained_tokens"] > 0 and s["this_run"]["tokens_per_s"] > 0
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert not list((out / "model").glob("adapter_*")), "the saved model is a plain one, LoRA merged in"

    # Registered beside the user's own entry, which stays as it was.
    text = reference["config"].read_text(encoding="utf-8")
    assert text.startswith('# my models\n[models.mine]\nbackend = "llama.cpp"\npath = "x.gguf"\n')
    registry = load_registry(reference["config"])
    spec = registry.get("smol-tuned")
    assert spec.backend == "transformers" and Path(spec.path or "") == (out / "model").resolve()
    assert registry.get("smol-tuned@transformers").backend == "transformers"

    model = load_model(spec)
    try:
        who, day, hour = PEOPLE[0]
        prompt = [Message("system", SYSTEM), Message("user", f"Meet {who} on March {day} at {hour}:00.")]
        (done,) = model.chat(prompt, SamplingParams(temperature=0.0, max_tokens=40))
    finally:
        model.close()
    assert done.text.strip() and done.completion_tokens > 0
    assert done.text.startswith("action.add_calendar_entry("), done.text  # six steps taught it the form


def test_a_run_killed_with_sigkill_resumes_from_its_checkpoint(reference: dict[str, Any]) -> None:
    root: Path = reference["root"]
    out = root / "killed"
    args = ["--config", str(reference["config"]), "train", "sft", str(reference["data"]), "-m", "smollm2-135m"]
    args += ["-o", str(out), "--name", "smol-resumed", *FLAGS]
    proc = subprocess.Popen([MENDLAB, *args], cwd=root, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = out / "checkpoints" / f"checkpoint-{EVERY}" / "trainer_state.json"
    deadline = time.monotonic() + 300
    try:
        while not state.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model").exists() and not (out / "summary.json").exists()

    other = cli(root, *[a if a != "1e-3" else "5e-4" for a in args])
    assert other.returncode == 2
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {out}: its checkpoint checkpoint-"), other.stderr
    assert "was trained with another config (lr: 0.001 there, 0.0005 here)" in lines[0]

    again = cli(root, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from checkpoint-" in again.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["resumed_from_step"] in range(EVERY, STEPS, EVERY)
    assert summary["this_run"]["steps"] == STEPS - summary["resumed_from_step"]
    assert losses(out) == pytest.approx(losses(reference["result"].out), rel=1e-3, abs=1e-4)
    assert "smol-resumed" in reference["config"].read_text(encoding="utf-8")

    # Run again once done: nothing trains, the model stays.
    done = cli(root, *args)
    assert done.returncode == 0 and "already trained with this config" in done.stderr


def test_bad_data_is_a_one_line_error(tmp_path: Path) -> None:
    good = json.dumps(dialogues()[0])
    cases = {
        "broken.jsonl": (good + "\n{not json\n", "broken.jsonl:2:"),
        "roles.jsonl": ('{"messages": [{"role": "robot", "content": "hi"}]}\n', "roles.jsonl:1: messages[0].role"),
        "empty.jsonl": ("\n\n", "empty.jsonl: no conversations in file"),
        "mute.jsonl": ('{"messages": [{"role": "user", "content": "hi"}]}\n', "mute.jsonl:1: no assistant turn"),
        "long.jsonl": (good + "\n", "long.jsonl:1: "),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        extra = ["--max-length", "8"] if name == "long.jsonl" else []
        r = cli(tmp_path, "train", "sft", name, "-m", "smollm2-135m", "-o", "out", *extra, timeout=300)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, (name, r.stderr[-2000:])
        assert lines[0].startswith("error: ") and expected in lines[0], (name, lines[0])
        assert "Traceback" not in r.stderr
    assert "more than --max-length 8" in lines[0]
    missing = cli(tmp_path, "train", "sft", "nothere.jsonl", "-m", "smollm2-135m", "-o", "out")
    assert missing.returncode == 2 and "nothere.jsonl: no such training data file" in missing.stderr
    assert not (tmp_path / "mendlab.toml").exists()


def embeddings(folder: Path) -> Any:
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return f.get_tensor("model.embed_tokens.weight")


def test_the_starchat_recipe_adds_its_tokens_and_stops_at_end(in_tmp: Path) -> None:
    """On SmolLM2 (a test-sized run; the README shows it on the Gemma 3 base model): four new special
    tokens, embeddings resized and trained, the template saved, `<|end|>` trained and the stop token;
    after training, greedy decoding answers a training prompt in one turn and stops at `<|end|>`."""
    from rich.console import Console
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from mendlab.training import starchat
    from mendlab.training.sft import hf_folder, resolve_base, training_tokenizer

    tok = training_tokenizer("smollm2-135m", None, "starchat")
    ids = [tok.convert_tokens_to_ids(t) for t in starchat.TOKENS]
    assert ids == list(range(49152, 49156)) and tok.eos_token == "<|end|>"
    row = dialogues()[0]
    text = tok.apply_chat_template(row["messages"], tokenize=False)
    assert text == f"<|system|>\n{SYSTEM}<|end|>\n<|user|>\nMeet Ana on March 3 at 9:00.<|end|>\n<|assistant|>\n" + (
        _call("Ana", 3, 9) + "<|end|>\n"
    )
    labeled = label_conversation(tok, parse_messages(row, "row"))
    assert trained_pieces(tok, labeled) == [_call("Ana", 3, 9) + "<|end|>"]
    with pytest.raises(Exception, match="StarChat turns are system, user or assistant, not tool"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)

    data = write_data(in_tmp / "dialogues.jsonl")
    config = in_tmp / "mendlab.toml"  # none yet: the default one, written when the model is registered
    opts = options(data, in_tmp / "star", None, name=None, chat_format="starchat", max_steps=14, batch_size=4)
    result = train_sft(replace(opts, save_steps=100), Console(stderr=True))
    assert result.name == "smollm2-135m-starchat" and result.summary["final_loss"] < 0.25 * result.summary["first_loss"]
    saved = result.model_dir
    end = ids[3]
    assert AutoConfig.from_pretrained(saved).eos_token_id == end
    assert GenerationConfig.from_pretrained(saved).eos_token_id == end
    again = AutoTokenizer.from_pretrained(saved)
    assert again.eos_token == "<|end|>" and again.apply_chat_template(row["messages"], tokenize=False) == text

    tuned, old = embeddings(saved), embeddings(hf_folder(resolve_base("smollm2-135m", None).path))
    assert tuned.shape == (49156, old.shape[1])
    assert ((tuned[49152:] - old.mean(dim=0)).norm(dim=1) > 1e-3).all()  # they started at the mean of the old

    model = load_model(load_registry(config).get("smollm2-135m-starchat"))
    try:
        for who, day, hour in PEOPLE[:2]:
            prompt = [Message("system", SYSTEM), Message("user", f"Meet {who} on March {day} at {hour}:00.")]
            (done,) = model.chat(prompt, SamplingParams(temperature=0.0, max_tokens=60))
            assert done.finish_reason == "stop", done.text  # it ended its turn at <|end|>
            assert done.text == _call(who, day, hour) and "<|" not in done.text
    finally:
        model.close()


def test_starchat_can_train_only_the_new_rows(tmp_path: Path) -> None:
    """`--train-embeddings new`: PEFT's trainable tokens, the four new rows (of the tied matrix) trained
    and merged into the saved model, every old row exactly as it was."""
    from rich.console import Console

    from mendlab.training.sft import hf_folder, resolve_base

    data = write_data(tmp_path / "dialogues.jsonl")
    opts = options(data, tmp_path / "rows", None, chat_format="starchat", train_embeddings="new", register=False)
    result = train_sft(replace(opts, max_steps=2, save_steps=100), Console(stderr=True))
    tuned, old = embeddings(result.model_dir), embeddings(hf_folder(resolve_base("smollm2-135m", None).path))
    assert (tuned[:49152] == old).all()
    assert ((tuned[49152:] - old.mean(dim=0)).norm(dim=1) > 1e-4).all()
    adapter = json.loads((result.out / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter["trainable_token_indices"] == {"embed_tokens": list(range(49152, 49156))}


def test_full_fine_tuning_saves_a_plain_model(in_tmp: Path) -> None:
    from rich.console import Console

    data = write_data(in_tmp / "dialogues.jsonl")
    config = in_tmp / "mendlab.toml"  # the default one, in the folder the command runs in
    opts = options(data, in_tmp / "full", None, name="smol-full", lora=False, learning_rate=None, max_steps=2)
    result = train_sft(replace(opts, save_steps=100, gguf="q8_0"), Console(stderr=True))
    assert result.summary["method"] == "full" and result.summary["config"]["lr"] == 2e-5
    assert not (result.out / "adapter").exists() and (result.model_dir / "model.safetensors").is_file()
    assert result.config_file is not None and result.config_file.resolve() == config.resolve()
    registry = load_registry(config)
    answers = []
    for name in ("smol-full", "smol-full-gguf"):  # the HF folder through transformers, the GGUF through llama.cpp
        model = load_model(registry.get(name))
        try:
            (done,) = model.chat([Message("user", "Meet Ana on March 3 at 9:00.")], SamplingParams(max_tokens=8))
        finally:
            model.close()
        assert done.completion_tokens > 0
        answers.append(model.info.backend)
    assert answers == ["transformers", "llama.cpp"]
    assert Path(str(registry.get("smol-full-gguf").path)).resolve() == (result.out / "model-q8_0.gguf").resolve()
    with pytest.raises(MendlabError, match="--gguf and --chat-format starchat"):
        replace(opts, gguf="q8_0", chat_format="starchat").check()
