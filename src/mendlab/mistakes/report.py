"""The table, the plots and summary.json of a mistakes run, beside the paper's numbers.

Accuracy pools the seeds: k correct of n = problems × seeds, with a bootstrap interval that resamples
whole test problems (a problem's seeds move together, since they share it) widened to at least Wilson's.
The per-seed figures are printed too, so a reader sees the spread that training seeds alone cause.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mendlab.mistakes.experiment import Graded, Run, all_graded, losses, methods, preset_id
from mendlab.reports.figures import pyplot, to_png
from mendlab.stats import Estimate, MeanEstimate, mean_ci, ratio_ci

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
    for m in methods(p):
        by_seed = graded.get(m.name, {})
        every = [g for items in by_seed.values() for g in items]
        rows.append(
            {
                "method": m.name,
                "seeds": sorted(by_seed),
                "in_distribution": accuracy(by_seed, ind).to_json(),
                "out_of_distribution": accuracy(by_seed, ood).to_json(),
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
    return {
        "preset": p.name,
        "preset_id": preset_id(p),
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


def markdown(summary: Mapping[str, Any]) -> str:
    ood = ", ".join(map(str, summary["out_of_distribution_ops"]))
    ind = ", ".join(map(str, summary["in_distribution_ops"]))
    lines = [
        f"# Learning from mistakes (iGSM), preset `{summary['preset']}`",
        "",
        f"Trained on op {summary['train_ops'][0]}–{summary['train_ops'][1]};"
        f" graded on {summary['test_problems_per_op']} unseen test problems per op,"
        f" seeds {', '.join(map(str, summary['seeds']))}. In distribution: op {ind};"
        f" out of distribution: op {ood}. Accuracy pooled over seeds, 95% interval over test problems.",
        "",
        "| method | in distribution | out of distribution | OOD per seed | OOD steps right before the first error"
        " | [BACK]/problem | regrets/problem | paper (iGSM-med OOD) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["methods"]:
        ind_e, ood_e = (_from_json(row["in_distribution"]), _from_json(row["out_of_distribution"]))
        per_seed = " / ".join(row["ood_per_seed"].values()) or "n/a"
        backs = "n/a" if row["backs_per_problem"] is None else f"{row['backs_per_problem']:.2f}"
        regrets = "n/a" if row["regrets_per_problem"] is None else f"{row['regrets_per_problem']:.2f}"
        lines.append(
            f"| {row['method']} | {_pct(ind_e)} | {_pct(ood_e)} | {per_seed} | {_mean(row['ood_progress'])}"
            f" | {backs} | {regrets}"
            f" | {row['paper_ood']} |"
        )
    if summary["probe"]:
        accs = ", ".join(f"seed {s}: {v['accuracy']:.1%} of {v['n']}" for s, v in summary["probe"].items())
        lines += ["", f"can_next probe on held-out steps (paper: ~99%): {accs}."]
    lines += ["", "![accuracy vs op](accuracy_vs_op.png)", "", "![loss curves](losses.png)", ""]
    return "\n".join(lines)


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
    head = "".join(f"<th>{h}</th>" for h in ("method", "in distribution", "out of distribution", "paper (OOD)"))
    rows = "".join(
        f"<tr><td>{html.escape(r['method'])}</td><td>{_pct(_from_json(r['in_distribution']))}</td>"
        f"<td>{_pct(_from_json(r['out_of_distribution']))}</td><td>{html.escape(r['paper_ood'])}</td></tr>"
        for r in summary["methods"]
    )
    return f"<table border=1 cellpadding=4 style='border-collapse:collapse'><tr>{head}</tr>{rows}</table>"
