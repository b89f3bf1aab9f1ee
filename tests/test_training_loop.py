"""`mendlab train loop` end to end on the bundled SmolLM2, at toy size: every stage runs for real
(dialogs on llama.cpp, TRL training, the GGUF export, the sandbox), then the loop is run again and
must resume without asking the models anything."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from mendlab.errors import MendlabError

pytest.importorskip("trl")
gguf = pytest.importorskip("gguf")


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as con:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@pytest.fixture(scope="module")
def quick_loop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mendlab.training.loop import LoopConfig, run_loop

    out = tmp_path_factory.mktemp("loop") / "smol"
    run_loop(LoopConfig.quick("smollm2-135m"), out, None, Console(stderr=True))
    return out


def test_every_stage_leaves_its_part(quick_loop: Path) -> None:
    out = quick_loop
    for name in (
        "loop.json",
        "data.jsonl",
        "mendlab.toml",
        "report.md",
        "summary.json",
        "before_after.png",
        "loss.png",
    ):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    rows = {(r["measure"], r["rung"]): r for r in summary["rows"]}
    first = rows[("dialog: first answer fully correct", "explicit")]
    # quick: 2 steps, 1 dialog per model at the explicit rung: both models answered both steps
    assert first["before"]["n"] == 2 and first["after"]["n"] == 2
    # one dialog a side: no interval can be given, whatever the rates
    assert first["diff"]["n"] == 4 and (first["diff"]["low"], first["diff"]["high"]) == (-1.0, 1.0)
    assert first["verdict"] == "no measured change"
    assert summary["humaneval"]["tasks"] == 2 and summary["humaneval"]["before"]["n"] == 2
    assert summary["training"]["steps"] == 2 and summary["training"]["method"] == "lora"
    # the report shows what summary.json says, k/n included
    report = (out / "report.md").read_text(encoding="utf-8")
    assert f"({first['before']['k']}/2)" in report and "HumanEval pass@1 (greedy, first 2 tasks)" in report


def test_the_data_is_the_models_own_on_training_scenarios_only(quick_loop: Path) -> None:
    from mendlab.training.overlap import build_eval_set, dialogue_overlap

    ev = build_eval_set(["calendar"])
    lines = [json.loads(line) for line in (quick_loop / "data.jsonl").read_text(encoding="utf-8").splitlines()]
    assert lines
    for d in lines:
        assert d["source"]["model"] == "smollm2-135m" and d["source"]["scenario"].startswith("loop-s0-")
        assert dialogue_overlap(d["messages"], ev) is None
    scenarios = sorted(p.stem for p in (quick_loop / "scenarios").glob("*.yaml"))
    assert scenarios == ["loop-s0-0001", "loop-s0-0002"]


def test_before_and_after_are_the_base_and_the_tuned_weights_through_one_path(quick_loop: Path, tmp_path: Path) -> None:
    from mendlab.models import load_registry, model_path
    from mendlab.training.gguf_export import export_gguf

    def weights(path: Path) -> dict[str, np.ndarray]:
        reader = gguf.GGUFReader(str(path))
        return {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in reader.tensors}

    def q8(x: np.ndarray) -> np.ndarray:
        """What Q8_0 makes of weights: gguf's own quantizer, then back."""
        kind = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.dequantize(gguf.quants.quantize(x, kind), kind)

    registry = load_registry(quick_loop / "mendlab.toml")
    base_file = Path(model_path(registry.get("smollm2-135m")))
    before, after = (Path(model_path(registry.get(n))) for n in ("before", "after"))
    assert before == quick_loop / "gguf" / "before.gguf" and after == quick_loop / "gguf" / "after.gguf"
    wb, wa, base = weights(before), weights(after), weights(base_file)
    tuned = weights(export_gguf(quick_loop / "sft" / "model", base_file, tmp_path / "tuned-f32.gguf", "f32"))
    assert list(wb) == list(wa) == list(base) == list(tuned)
    q = "blk.0.attn_q.weight"
    # before is the base requantized to Q8_0, after the tuned weights requantized the same way: not swapped
    assert np.array_equal(wb[q], q8(base[q])) and np.array_equal(wa[q], q8(tuned[q]))
    assert not np.array_equal(wa[q], wb[q])
    # LoRA on all linear layers: the attention and MLP matrices moved, the embeddings did not
    moved = [k for k in wb if not np.array_equal(wb[k], wa[k])]
    assert any("attn_q" in k for k in moved) and any("ffn_down" in k for k in moved)
    assert "token_embd.weight" not in moved
    names = [gguf.GGUFReader(str(f)).fields["general.name"].contents() for f in (before, after)]
    assert names == ["smollm2-135m before", "smollm2-135m after"]


def test_the_report_compares_what_it_says(quick_loop: Path) -> None:
    """Each difference is after - before; the verdict knows which way is good; both models replayed
    the same bank of mistakes."""
    import math

    from mendlab.dialogs.experiments import load_results
    from mendlab.store import ResultsStore

    summary = json.loads((quick_loop / "summary.json").read_text(encoding="utf-8"))
    for r in summary["rows"]:
        if r["before"]["n"] and r["after"]["n"]:
            assert math.isclose(r["diff"]["mean"], r["after"]["value"] - r["before"]["value"], abs_tol=1e-6)
    assert any(not r["higher_is_better"] for r in summary["rows"])  # c→i, regressions
    with ResultsStore(quick_loop / "results.db") as store:
        results = load_results(store, "eval-calendar")
    banks = {m: {r.extra["mistake"]["id"] for r in results if r.experiment == "replay" and r.model == m}
             for m in ("before", "after")}  # fmt: skip
    assert banks["before"] == banks["after"]  # the same bank (quick mode's two steps may leave it empty)


def test_the_report_and_summary_say_worse_when_a_bad_thing_grows() -> None:
    from mendlab.reports.loop import _row, markdown, to_json
    from mendlab.stats import ratio_ci

    more = ratio_ci([(1, 1)] * 30 + [(0, 1)] * 10)
    caved = _row("false feedback", "caved", "explicit", ratio_ci([(0, 1)] * 40), more, higher_is_better=False)
    held = _row("false feedback", "held", "explicit", ratio_ci([(1, 1)] * 40), ratio_ci([(1, 1)] * 10 + [(0, 1)] * 30))
    summary = {
        "model": "m",
        "config": {},
        "data": {},
        "training": {},
        "rows": [caved, held],
        "score": {},
        "humaneval": {},
    }
    rows = to_json(summary)["rows"]
    assert [r["verdict"] for r in rows] == ["worse", "worse"]
    table = markdown(summary)
    assert "| caved | explicit |" in table and table.count("| worse |") == 2 and "better" not in table


def test_a_verdict_reads_the_direction_of_the_measure() -> None:
    from mendlab.reports.loop import _verdict
    from mendlab.stats import MeanEstimate

    up, down, flat = (
        MeanEstimate(0.3, 0.1, 0.5, 20),
        MeanEstimate(-0.3, -0.5, -0.1, 20),
        MeanEstimate(0.1, -0.1, 0.3, 20),
    )
    assert (_verdict(up), _verdict(down), _verdict(flat)) == ("better", "worse", "no measured change")
    assert (_verdict(up, higher_is_better=False), _verdict(down, higher_is_better=False)) == ("worse", "better")


def test_run_again_resumes_without_asking_the_models(quick_loop: Path) -> None:
    from mendlab.training.loop import LoopConfig, run_loop

    db = quick_loop / "results.db"
    generations, samples = _count(db, "generations"), _count(db, "samples")
    trained = json.loads((quick_loop / "sft" / "summary.json").read_text(encoding="utf-8"))
    mtime = (quick_loop / "gguf" / "after.gguf").stat().st_mtime_ns
    result = run_loop(LoopConfig.quick("smollm2-135m"), quick_loop, None, Console(stderr=True))
    assert (_count(db, "generations"), _count(db, "samples")) == (generations, samples)
    assert json.loads((quick_loop / "sft" / "summary.json").read_text(encoding="utf-8")) == trained
    assert (quick_loop / "gguf" / "after.gguf").stat().st_mtime_ns == mtime
    assert result.summary["humaneval"]["tasks"] == 2
    # an export whose stamp a kill took with it is written again, from the same weights
    stamp = quick_loop / "gguf" / "after.gguf.json"
    stamp.unlink()
    run_loop(LoopConfig.quick("smollm2-135m"), quick_loop, None, Console(stderr=True))
    assert stamp.is_file() and (quick_loop / "gguf" / "after.gguf").stat().st_mtime_ns != mtime
    assert (_count(db, "generations"), _count(db, "samples")) == (generations, samples)
    # the tuned weights' stamp no longer matching (sft/ retrained, the export changed): refused, not mixed
    kept = stamp.read_text(encoding="utf-8")
    data = json.loads(kept)
    stamp.write_text(json.dumps({**data, "weights_sha256": "0" * 64}), encoding="utf-8")
    try:
        with pytest.raises(MendlabError, match=r"after\.gguf was written from other weights than"):
            run_loop(LoopConfig.quick("smollm2-135m"), quick_loop, None, Console(stderr=True))
    finally:
        stamp.write_text(kept, encoding="utf-8")


def test_another_configuration_in_the_same_folder_is_refused_in_one_line(quick_loop: Path, tmp_path: Path) -> None:
    from mendlab.training.loop import LoopConfig, run_loop

    other = replace(LoopConfig.quick("smollm2-135m"), seed=1)
    with pytest.raises(MendlabError, match=r"a loop made with another configuration \(seed: 0 there, 1 here\)"):
        run_loop(other, quick_loop, None, Console(stderr=True))
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(MendlabError, match="not empty, and not a loop's folder"):
        run_loop(other, tmp_path, None, Console(stderr=True))
    proc = subprocess.run(
        [sys.executable, "-m", "mendlab", "train", "loop", "-m", "smollm2-135m", "-o", str(tmp_path / "x"),
         "--gguf-type", "q3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: --gguf-type 'q3'")
    assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "mendlab", "train", "loop", "-m", "smollm2-135m", "-o", str(tmp_path / "x"),
         "--quick", "--reps", "5"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "--quick sets every option itself: drop --reps" in proc.stderr
