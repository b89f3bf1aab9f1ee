"""The closing-the-loop report: each measure before and after tuning, and the difference with its interval.

A difference's interval treats the two models' samples as separate (`rate_diff_ci`: cluster-robust,
with t on the clusters' degrees of freedom, never narrower than Newcombe's); the design shares seeds,
the replayed mistakes and the probes' histories between them, so that is conservative. HumanEval is
one greedy program per task for both, so there the tasks pair up (`paired_rate_diff_ci`). Each row
says which way is good; an interval that holds 0 reads "no measured change", whatever its sign.

Rates over each model's own mistakes (a dialog's fixes) or its own right answers (held under false
feedback) compare different populations: a tuned model that errs less is left with other mistakes.
The rows over the same population for both (first tries, the replayed bank, the probes' Acc@t1,
Acc@t2, i→c and c→i over all probes) are the ones that measure the tuning.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mendlab.dialogs.experiments import DialogResult
from mendlab.dialogs.metrics import (
    dialog_stats,
    probe_stats,
    reliability_stats,
    replay_stats,
    self_correction_stats,
)
from mendlab.stats import Estimate, MeanEstimate, paired_rate_diff_ci, rate_diff_ci, ratio_ci

if TYPE_CHECKING:
    from mendlab.training.loop import LoopConfig

BEFORE, AFTER = "before", "after"


def _row(
    section: str,
    measure: str,
    rung: str,
    before: Estimate | None,
    after: Estimate | None,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    empty = Estimate(float("nan"), float("nan"), float("nan"), 0, 0)
    b, a = before or empty, after or empty
    diff = rate_diff_ci(b, a)
    return {"section": section, "measure": measure, "rung": rung, "before": b, "after": a, "diff": diff,
            "higher_is_better": higher_is_better}  # fmt: skip


def _by(stats: Sequence[Any], model: str) -> dict[str, Any]:
    return {s.rung: s for s in stats if s.model == model}


def build_summary(
    cfg: LoopConfig,
    results: Sequence[DialogResult],
    humaneval: Mapping[str, Mapping[str, bool]],
    training: Mapping[str, Any],
    data_counts: Mapping[str, int],
) -> dict[str, Any]:
    """Every figure of the report; Estimates stay objects here (`to_json` when written)."""
    rows: list[dict[str, Any]] = []
    rel = {s.model: s for s in reliability_stats(results)}
    rows.append(_row("first try", "reliability: fully correct", "—",
                     getattr(rel.get(BEFORE), "correct", None), getattr(rel.get(AFTER), "correct", None)))  # fmt: skip
    dia_b, dia_a = _by(dialog_stats(results), BEFORE), _by(dialog_stats(results), AFTER)
    rungs = [r for r in ("vague", "pointed", "explicit") if r in dia_b or r in dia_a]
    for rung in rungs:
        b, a = dia_b.get(rung), dia_a.get(rung)
        rows.append(_row("first try", "dialog: first answer fully correct", rung,
                         b and b.first_try, a and a.first_try))  # fmt: skip
    for rung in rungs:
        b, a = dia_b.get(rung), dia_a.get(rung)
        own = " (its own mistakes)"
        rows.append(
            _row("fix", "dialog: errors pointed out gone" + own, rung, b and b.pointed_gone, a and a.pointed_gone)
        )
        rows.append(_row("fix", "dialog: next answer fully correct" + own, rung,
                         b and b.correct_next, a and a.correct_next))  # fmt: skip
        rows.append(_row("fix", "dialog: fixed within the allowed tries" + own, rung,
                         b and b.fixed_within_k, a and a.fixed_within_k))  # fmt: skip
        rows.append(_row("fix", "dialog: regressions (a new error in)" + own, rung,
                         b and b.regressions, a and a.regressions, higher_is_better=False))  # fmt: skip
    rep_b, rep_a = _by(replay_stats(results), BEFORE), _by(replay_stats(results), AFTER)
    for rung in [r for r in ("vague", "pointed", "explicit") if r in rep_b or r in rep_a]:
        b, a = rep_b.get(rung), rep_a.get(rung)
        rows.append(_row("replay", "replay (one bank): errors gone", rung, b and b.pointed_gone, a and a.pointed_gone))
        rows.append(
            _row("replay", "replay (one bank): fully correct", rung, b and b.correct_next, a and a.correct_next)
        )
    pr_b, pr_a = _by(probe_stats(results), BEFORE), _by(probe_stats(results), AFTER)
    for rung in [r for r in ("vague", "pointed", "explicit") if r in pr_b or r in pr_a]:
        b, a = pr_b.get(rung), pr_a.get(rung)
        rows.append(_row("false feedback", "false feedback: right answer held (its own right answers)", rung,
                         b and b.held, a and a.held))  # fmt: skip
    score: dict[str, dict[str, dict[str, Any]]] = {}
    for s in self_correction_stats(results):
        score.setdefault(s.experiment, {}).setdefault(s.rung, {})[s.model] = s
    for probe_rung, by_model in score.get("false_feedback", {}).items():
        b, a = by_model.get(BEFORE), by_model.get(AFTER)
        for label, attr, good in (("Acc@t1", "acc_t1", True), ("Acc@t2", "acc_t2", True),
                                  ("Δ i→c", "i_to_c", True), ("Δ c→i (caved)", "c_to_i", False)):  # fmt: skip
            rows.append(_row("false feedback", f"probe, every step (SCoRe): {label}", probe_rung,
                             b and getattr(b, attr), a and getattr(a, attr), higher_is_better=good))  # fmt: skip
    code: dict[str, Any] = {}
    if humaneval:
        ids = sorted(set(humaneval.get(BEFORE, {})) & set(humaneval.get(AFTER, {})))
        pairs = [(humaneval[BEFORE][i], humaneval[AFTER][i]) for i in ids]
        code = {
            "tasks": len(ids),
            "before": ratio_ci([(int(b), 1) for b, _ in pairs]),
            "after": ratio_ci([(int(a), 1) for _, a in pairs]),
            "diff": paired_rate_diff_ci(pairs),
            "changed": {"fixed": sum(a and not b for b, a in pairs), "broken": sum(b and not a for b, a in pairs)},
        }
    return {
        "model": cfg.model,
        "config": cfg.identity(),
        "data": dict(data_counts),
        "training": {k: training.get(k) for k in ("method", "steps", "conversations", "epochs", "tokens",
                                                   "trained_tokens", "first_loss", "final_loss", "losses", "this_run",
                                                   "config") if k in training},
        "rows": rows,
        "score": score,
        "humaneval": code,
    }  # fmt: skip


def _verdict(diff: MeanEstimate, higher_is_better: bool = True) -> str:
    if diff.n == 0 or math.isnan(diff.value):
        return "n/a"
    if diff.low > 0:
        return "better" if higher_is_better else "worse"
    if diff.high < 0:
        return "worse" if higher_is_better else "better"
    return "no measured change"


def _pp(d: MeanEstimate) -> str:
    if d.n == 0 or math.isnan(d.value):
        return "n/a"
    return f"{d.value * 100:+.0f} pp [{d.low * 100:+.0f}, {d.high * 100:+.0f}]"


def to_json(summary: Mapping[str, Any]) -> dict[str, Any]:
    def conv(x: Any) -> Any:
        if isinstance(x, (Estimate, MeanEstimate)):
            return x.to_json()
        if isinstance(x, Mapping):
            return {str(k): conv(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [conv(v) for v in x]
        if hasattr(x, "__dataclass_fields__"):
            return {k: conv(getattr(x, k)) for k in x.__dataclass_fields__}
        return x

    out: dict[str, Any] = conv(summary)
    for row, src in zip(out["rows"], summary["rows"], strict=True):
        row["verdict"] = _verdict(src["diff"], src["higher_is_better"])
    if summary["humaneval"]:
        out["humaneval"]["verdict"] = _verdict(summary["humaneval"]["diff"])
    return out


def markdown(summary: Mapping[str, Any]) -> str:
    t = summary["training"]
    lines = [
        f"# Closing the loop: {summary['model']}, before and after tuning on its own mistakes",
        "",
        "Before: the base model; after: the same weights tuned on dialogues built from the base model's own "
        "runs on generated training scenarios (never the evaluation ones). Both are run the same way. "
        "Differences are after − before in percentage points with 95% intervals; \"no measured change\" "
        "when the interval holds 0.",
        "",
        "Training data: " + ", ".join(f"{v} {k}" for k, v in sorted(summary["data"].items()))
        + f". Training: {t.get('method')}, {t.get('steps')} steps, loss {_num(t.get('first_loss'))} → "
        f"{_num(t.get('final_loss'))} (loss.png).",
        "",
        "| measure | feedback | before | after | after − before | |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in summary["rows"]:
        lines.append(f"| {r['measure']} | {r['rung']} | {r['before']} | {r['after']} | {_pp(r['diff'])} "
                     f"| {_verdict(r['diff'], r['higher_is_better'])} |")  # fmt: skip
    code = summary["humaneval"]
    if code:
        lines.append(f"| HumanEval pass@1 (greedy, first {code['tasks']} tasks) | — | {code['before']} | "
                     f"{code['after']} | {_pp(code['diff'])} | {_verdict(code['diff'])} |")  # fmt: skip
    if summary["score"]:
        lines += [
            "",
            "SCoRe's figures (t1: the first answer to a step, t2: the next one; in the dialogs a right t1 is "
            "never objected to, so c→i is 0 there by construction; the probe objects to every answer):",
            "",
            "| experiment | feedback | model | Acc@t1 | Acc@t2 | Δ(t1,t2) | Δ i→c | Δ c→i |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for experiment, by_rung in summary["score"].items():
            for rung, by_model in by_rung.items():
                for model in (BEFORE, AFTER):
                    s = by_model.get(model)
                    if s is not None:
                        lines.append(f"| {experiment} | {rung} | {model} | {s.acc_t1} | {s.acc_t2} | {_pp(s.delta)} "
                                     f"| {s.i_to_c} | {s.c_to_i} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _num(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) else "n/a"


def plot(summary: Mapping[str, Any], path: Path) -> None:
    """One bar pair per measure with its interval: before grey, after blue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary["rows"] if r["before"].trials or r["after"].trials]
    labels = [f"{r['measure']} ({r['rung']})" if r["rung"] != "—" else r["measure"] for r in rows]
    pairs = [(r["before"], r["after"]) for r in rows]
    if summary["humaneval"]:
        labels.append("HumanEval pass@1 (greedy)")
        pairs.append((summary["humaneval"]["before"], summary["humaneval"]["after"]))
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(labels) + 1.2))
    for j, (color, name) in enumerate((("#9e9e9e", BEFORE), ("#1f77b4", AFTER))):
        ys = [i + (0.2 if j == 0 else -0.2) for i in range(len(labels))]
        vals = [p[j].value if p[j].trials else 0.0 for p in pairs]
        err = [[max(0.0, v - p[j].low) if p[j].trials else 0 for v, p in zip(vals, pairs, strict=True)],
               [max(0.0, p[j].high - v) if p[j].trials else 0 for v, p in zip(vals, pairs, strict=True)]]  # fmt: skip
        ax.barh(ys, vals, height=0.38, color=color, xerr=err, capsize=2, label=name)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("rate (95% interval)")
    ax.set_title(f"{summary['model']}: before and after tuning", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def _write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_loop_report(summary: Mapping[str, Any], out: Path, loss_png: Path) -> list[Path]:
    """report.md, summary.json, before_after.png, loss.png; each written whole."""
    md, js, png = out / "report.md", out / "summary.json", out / "before_after.png"
    _write(md, lambda p: p.write_text(markdown(summary), encoding="utf-8"))
    _write(js, lambda p: p.write_text(json.dumps(to_json(summary), indent=2) + "\n", encoding="utf-8"))
    _write(png, lambda p: plot(summary, p))
    written = [md, js, png]
    if loss_png.is_file():
        shutil.copyfile(loss_png, out / "loss.png")
        written.append(out / "loss.png")
    return written
