"""The table, the plots and summary.json of a mistakes run, beside the paper's numbers.

Accuracy pools the seeds: k correct of n = problems × seeds, with a bootstrap interval that resamples
whole test problems (a problem's seeds move together, since they share it) widened to at least Wilson's.
The per-seed figures are printed too, so a reader sees the spread that training seeds alone cause.
Every row is also paired with the error-free model's greedy grades on exactly the problems (and seeds)
it was graded on: beam search and retry upon regret decode only the first N problems of each op, so
their accuracy is comparable with that baseline on the same subset, never with the error-free row's
whole-set figure. The paired difference is Newcombe's interval for paired rates
(`stats.paired_rate_diff_ci`), widened to a bootstrap over test problems where seeds share a problem.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mendlab.mistakes.experiment import BASELINE, Graded, Run, all_graded, losses, methods, preset_id
from mendlab.reports.figures import pyplot, to_png
from mendlab.stats import Estimate, MeanEstimate, clustered_paired_diff_ci, mean_ci, ratio_ci

# Below this in-distribution accuracy the error-free model has not learned the task at all: comparing
# training data out of distribution then says nothing (every row is ~0 for want of a working model).
GATE = 0.05

# iGSM-med, out of distribution (op 20-23), from the paper (SPEC.md §3 appendix). None: not reported.
PAPER: dict[str, str] = {
    "error-free": "78%",
    "retry-strong p=0.05": "84%",
    "retry-strong p=0.1": "91%",
    "retry-strong p=0.2": "92%",
    "retry-strong p=0.5": "94%",
    "retry-strong p=0.1 masked": "≈ unmasked",
    "retry-strong p=0.2 masked": "≈ unmasked",
    "retry-strong p=0.5 masked": "≈ unmasked",
    "retry-weak p=0.1": "90%",
    "retry-weak p=0.2": "91%",
    "retry-weak p=0.5": "61%",
    "retry-miss p=0.2": "≈ error-free",
    "retry-miss p=0.5": "≈ error-free",
}


def paper_number(name: str) -> str:
    if name in PAPER:
        return PAPER[name]
    if "beam" in name:
        return "79% (beam 32)"
    if "(probe)" in name:
        return "79–80%"
    if "perfect" in name:
        return "84–85%"
    if "LoRA" in name:
        return "≈ 83% at best"
    if "continued pretraining" in name:
        return "n/a"
    return "n/a"


def accuracy(by_seed: Mapping[int, Sequence[Graded]], ops: Sequence[int] | None = None) -> Estimate:
    """Pooled over seeds, clustered by test problem."""
    per_problem: dict[str, list[int]] = {}
    for items in by_seed.values():
        for g in items:
            if ops is None or g.op in ops:
                c = per_problem.setdefault(g.id, [0, 0])
                c[0] += int(g.correct)
                c[1] += 1
    return ratio_ci([(k, n) for k, n in per_problem.values()])


def progress(by_seed: Mapping[int, Sequence[Graded]], ops: Sequence[int]) -> MeanEstimate:
    """Mean partial credit, clustered by test problem as `accuracy` is."""
    per_problem: dict[str, list[float]] = {}
    for items in by_seed.values():
        for g in items:
            if g.op in ops:
                c = per_problem.setdefault(g.id, [0.0, 0])
                c[0] += g.progress
                c[1] += 1
    return mean_ci([(s, int(n)) for s, n in per_problem.values()])


def paired(
    base: Mapping[int, Sequence[Graded]], other: Mapping[int, Sequence[Graded]], ops: Sequence[int]
) -> tuple[Estimate, MeanEstimate]:
    """The baseline's accuracy on exactly the (problem, seed) pairs `other` was graded on, and
    other − baseline over those pairs, clustered by problem."""
    clusters: dict[str, list[tuple[bool, bool]]] = {}
    for seed, items in other.items():
        mine = {g.id: g for g in base.get(seed, ())}
        for g in items:
            if g.op in ops and g.id in mine:
                clusters.setdefault(g.id, []).append((mine[g.id].correct, g.correct))
    same = ratio_ci([(sum(b for b, _ in c), len(c)) for c in clusters.values()])
    return same, clustered_paired_diff_ci(list(clusters.values()))


def _seed_acc(items: Sequence[Graded], ops: Sequence[int]) -> str:
    chosen = [g for g in items if g.op in ops]
    return f"{sum(g.correct for g in chosen) / len(chosen):.0%}" if chosen else "n/a"


def _pct(e: Estimate) -> str:
    return "n/a" if e.trials == 0 else f"{e.value:.1%} [{e.low:.1%}, {e.high:.1%}]"


def summarize(run: Run) -> dict[str, Any]:
    p = run.preset
    graded = all_graded(run)
    ind = [op for op in p.test_ops if op <= p.train_gen.op_max]
    ood = list(p.ood_ops)
    rows: list[dict[str, Any]] = []
    base = graded.get(BASELINE.name, {})
    for m in methods(p):
        by_seed = graded.get(m.name, {})
        every = [g for items in by_seed.values() for g in items]
        same_ind, diff_ind = paired(base, by_seed, ind)
        same_ood, diff_ood = paired(base, by_seed, ood)
        tokens = [t for t in (run.tokens(m, s) for s in sorted(by_seed)) if t is not None]
        rows.append(
            {
                "method": m.name,
                "seeds": sorted(by_seed),
                "train_tokens": round(sum(tokens) / len(tokens)) if tokens else None,
                "in_distribution": accuracy(by_seed, ind).to_json(),
                "out_of_distribution": accuracy(by_seed, ood).to_json(),
                # the error-free model, greedy, on this row's own problems and seeds; and this row minus it
                "baseline_same_in": same_ind.to_json(),
                "baseline_same_ood": same_ood.to_json(),
                "diff_in": diff_ind.to_json(),
                "diff_ood": diff_ood.to_json(),
                "per_op": {str(op): accuracy(by_seed, [op]).to_json() for op in p.test_ops},
                "ood_progress": progress(by_seed, ood).to_json(),
                "ood_per_seed": {str(s): _seed_acc(items, ood) for s, items in sorted(by_seed.items())},
                "backs_per_problem": sum(g.backs for g in every) / len(every) if every else None,
                "regrets_per_problem": sum(g.regrets for g in every) / len(every) if every else None,
                "paper_ood": paper_number(m.name),
            }
        )
    probes = {}
    for seed in p.seeds:
        path = run.out / "probes" / f"probe-s{seed}.json"
        if path.exists():
            probes[str(seed)] = json.loads(path.read_text())
    gate = accuracy(base, ind)
    return {
        "preset": p.name,
        "preset_id": preset_id(p),
        # in-distribution accuracy of the error-free model on held-out (test-split) problems
        "gate": {**gate.to_json(), "passed": bool(gate.trials and gate.value >= GATE), "threshold": GATE},
        "train_ops": [p.train_gen.op_min, p.train_gen.op_max],
        "in_distribution_ops": ind,
        "out_of_distribution_ops": ood,
        "test_problems_per_op": p.n_test,
        "seeds": list(p.seeds),
        "methods": rows,
        "probe": probes,
    }


def _plot_accuracy(summary: Mapping[str, Any], ops: Sequence[int]) -> bytes | None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for row in summary["methods"]:
        pts = [(op, row["per_op"][str(op)]) for op in ops if row["per_op"][str(op)]["n"]]
        if not pts:
            continue
        xs = [op for op, _ in pts]
        ys = [e["value"] for _, e in pts]
        err = [[e["value"] - e["low"] for _, e in pts], [e["high"] - e["value"] for _, e in pts]]
        style = "-" if "+" not in row["method"] else "--"
        ax.errorbar(xs, ys, yerr=err, label=row["method"], linestyle=style, marker="o", capsize=3, alpha=0.85)
    first_ood = min(summary["out_of_distribution_ops"], default=None)
    if first_ood is not None:
        ax.axvline(first_ood - 0.5, color="grey", linestyle=":", label="trained up to here")
    ax.set_xlabel("operations in the solution (op)")
    ax.set_ylabel("accuracy (whole solution right)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"iGSM accuracy vs op, preset {summary['preset']} ({len(summary['seeds'])} seeds, 95% CI)")
    ax.legend(fontsize=7, loc="lower left")
    return to_png(fig)


def _plot_losses(curves: Mapping[str, Sequence[float]]) -> bytes | None:
    if not curves:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), ys, label=name, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (solution tokens)")
    ax.set_yscale("log")
    ax.legend(fontsize=6, ncol=2)
    return to_png(fig)


def gate_sentence(summary: Mapping[str, Any]) -> str:
    """The validation gate, said plainly: is the error-free model good enough for the comparison to mean
    anything?"""
    g = summary["gate"]
    ind = ", ".join(map(str, summary["in_distribution_ops"])) or "none"
    if not g["n"]:
        return f"Validation gate: no in-distribution grades of the error-free model yet (op {ind})."
    acc = _pct(_from_json(g))
    if g["passed"]:
        return (
            f"Validation gate passed: the error-free model solves {acc} of held-out in-distribution problems"
            f" (op {ind}), so it has learned the task and the rows below compare what their data taught."
        )
    return (
        f"**Validation gate failed**: the error-free model solves only {acc} of held-out in-distribution"
        f" problems (op {ind}), under {g['threshold']:.0%}: it has not learned the task, so the comparison"
        " below is uninformative (every row is near 0 for want of a working model, not because of its data)."
    )


def _tokens(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 1e6:.2f}M" if n >= 100_000 else f"{n:,}"


def _diff(d: Mapping[str, Any]) -> str:
    if not d["n"] or d["mean"] is None:
        return "n/a"
    return f"{100 * d['mean']:+.1f} pts [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"


def markdown(summary: Mapping[str, Any]) -> str:
    ood = ", ".join(map(str, summary["out_of_distribution_ops"]))
    ind = ", ".join(map(str, summary["in_distribution_ops"]))
    lines = [
        f"# Learning from mistakes (iGSM), preset `{summary['preset']}`",
        "",
        f"Trained on op {summary['train_ops'][0]}–{summary['train_ops'][1]};"
        f" graded on {summary['test_problems_per_op']} unseen test problems per op (structurally unseen:"
        f" the split hashes each solution's canonical structure), seeds {', '.join(map(str, summary['seeds']))}."
        f" In distribution: op {ind}; out of distribution: op {ood}. Accuracy pooled over seeds, 95% interval"
        " over test problems; n = problems × seeds. Each row is paired with the error-free model's greedy grades"
        " on exactly its own problems (beam and retry upon regret decode only the first few per op): Δ is the"
        " row minus that baseline, paired by problem and seed.",
        "",
        gate_sentence(summary),
        "",
        "| method | training tokens | in distribution | out of distribution | error-free greedy, same OOD problems"
        " | Δ OOD (paired) | OOD per seed | OOD necessary steps right before the first error"
        " | [BACK]/problem | regrets/problem | paper (iGSM-med OOD) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["methods"]:
        ind_e, ood_e = (_from_json(row["in_distribution"]), _from_json(row["out_of_distribution"]))
        same = _from_json(row["baseline_same_ood"])
        per_seed = " / ".join(row["ood_per_seed"].values()) or "n/a"
        backs = "n/a" if row["backs_per_problem"] is None else f"{row['backs_per_problem']:.2f}"
        regrets = "n/a" if row["regrets_per_problem"] is None else f"{row['regrets_per_problem']:.2f}"
        n = f" (n={ood_e.trials})" if ood_e.trials else ""
        lines.append(
            f"| {row['method']} | {_tokens(row['train_tokens'])} | {_pct(ind_e)} | {_pct(ood_e)}{n} | {_pct(same)}"
            f" | {_diff(row['diff_ood'])} | {per_seed} | {_mean(row['ood_progress'])} | {backs} | {regrets}"
            f" | {row['paper_ood']} |"
        )
    if summary["probe"]:
        lines += ["", probe_sentence(summary["probe"])]
    lines += ["", "![accuracy vs op](accuracy_vs_op.png)", "", "![loss curves](losses.png)", ""]
    return "\n".join(lines)


def probe_sentence(probes: Mapping[str, Any]) -> str:
    accs = ", ".join(f"seed {s}: {v['accuracy']:.1%} of {v['n']}" for s, v in probes.items())
    own = []
    for s, v in probes.items():
        r = v.get("own_recall")
        flagged = "n/a" if r is None else f"{r:.0%}"
        own.append(
            f"seed {s}: {flagged} of {v.get('own_can_next', 0)} (of {v.get('own_wrong', 0)} wrong solutions,"
            f" {v.get('own_named', 0)} with a first wrong step naming a parameter)"
        )
    return (
        f"can_next probe, fitted on clean contexts, on held-out steps (paper: ~99%): {accs}. At the error-free"
        f" model's own first mistakes whose parameter was not computable yet, it flags (paper: ~60%): {'; '.join(own)}."
    )


def _mean(d: Mapping[str, Any]) -> str:
    if not d["n"]:
        return "n/a"
    return f"{d['mean']:.0%} [{d['low']:.0%}, {d['high']:.0%}]"


def _from_json(d: Mapping[str, Any]) -> Estimate:
    if not d["n"]:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, 0)
    return Estimate(d["value"], d["low"], d["high"], d["k"], d["n"])


def write_report(run: Run) -> list[Path]:
    summary = summarize(run)
    out = run.out
    written = [out / "summary.json", out / "report.md", out / "report.html"]
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    md = markdown(summary)
    (out / "report.md").write_text(md, encoding="utf-8")
    body = "".join(f"<p>{html.escape(line)}</p>" for line in md.splitlines() if not line.startswith(("|", "!")))
    table = _html_table(summary)
    (out / "report.html").write_text(
        f"<!doctype html><meta charset=utf-8><title>mendlab mistakes {summary['preset']}</title>"
        f"<body style='font-family:sans-serif;max-width:1100px;margin:auto'>{body}{table}"
        "<img src=accuracy_vs_op.png style='max-width:100%'><img src=losses.png style='max-width:100%'></body>",
        encoding="utf-8",
    )
    for name, png in (
        ("accuracy_vs_op.png", _plot_accuracy(summary, run.preset.test_ops)),
        ("losses.png", _plot_losses(losses(run))),
    ):
        if png is not None:
            (out / name).write_bytes(png)
            written.append(out / name)
    return written


def _html_table(summary: Mapping[str, Any]) -> str:
    cols = ("method", "training tokens", "in distribution", "out of distribution", "error-free, same OOD problems",
            "Δ OOD (paired)", "paper (OOD)")  # fmt: skip
    head = "".join(f"<th>{html.escape(h)}</th>" for h in cols)
    rows = "".join(
        f"<tr><td>{html.escape(r['method'])}</td><td>{_tokens(r['train_tokens'])}</td>"
        f"<td>{_pct(_from_json(r['in_distribution']))}</td><td>{_pct(_from_json(r['out_of_distribution']))}"
        f" (n={r['out_of_distribution']['n']})</td><td>{_pct(_from_json(r['baseline_same_ood']))}</td>"
        f"<td>{_diff(r['diff_ood'])}</td><td>{html.escape(r['paper_ood'])}</td></tr>"
        for r in summary["methods"]
    )
    return f"<table border=1 cellpadding=4 style='border-collapse:collapse'><tr>{head}</tr>{rows}</table>"
