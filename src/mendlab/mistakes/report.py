"""The table, the plots and summary.json of a mistakes run, beside the paper's numbers.

Accuracy pools the seeds: k correct of n = problems × seeds. Its unit of evidence is the solution
structure, not the problem: the split keeps ~1 structure in 23 for test, and at small op a few structures
carry many problems that pass or fail together, so intervals cluster by structure (CR2 variance, t on the
effective number of structures, widened to Wilson's on the effective number of problems;
`stats.ratio_t_ci`) and the table says how many structures each op has. Every row is also paired with the
error-free model's greedy grades on exactly the problems (and seeds) it was graded on: beam search and
retry upon regret decode only the first N problems of each op, so their accuracy is comparable with that
baseline on the same subset, never with the error-free row's whole-set figure; the paired difference is
clustered the same way and widened to Newcombe's paired interval on the effective number of pairs.
Intervals hold the trained models fixed: with two seeds, each seed's own difference is shown, and a row
is called better or worse only when they agree.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from mendlab.mistakes.experiment import BASELINE, Graded, Run, all_graded, losses, methods, preset_id, write_atomic
from mendlab.mistakes.igsm import canonical, problem_from_id
from mendlab.reports.figures import pyplot, to_png
from mendlab.stats import Estimate, MeanEstimate, clustered_mean_t_ci, paired_diff_t_ci, ratio_t_ci

# Below this in-distribution accuracy the error-free model has not learned the task at all: comparing
# training data out of distribution then says nothing (every row is ~0 for want of a working model).
GATE = 0.5
# The error-free model's pooled OOD accuracy must lie in here for a difference to be able to show.
HEADROOM = (0.1, 0.9)

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


@cache
def structure(pid: str) -> str:
    """The test problem's solution structure (the split's unit): problems sharing one pass or fail
    together far more than independent problems would, so it is what intervals resample."""
    return canonical(problem_from_id(pid))


def accuracy(by_seed: Mapping[int, Sequence[Graded]], ops: Sequence[int] | None = None) -> Estimate:
    """Pooled over seeds, clustered by solution structure (every seed's grades of one structure are one
    cluster); the interval is conditional on the trained models (see `seed_diffs` for their spread)."""
    per: dict[str, list[int]] = {}
    for items in by_seed.values():
        for g in items:
            if ops is None or g.op in ops:
                c = per.setdefault(structure(g.id), [0, 0])
                c[0] += int(g.correct)
                c[1] += 1
    return ratio_t_ci([(k, n) for k, n in per.values()])


def progress(by_seed: Mapping[int, Sequence[Graded]], ops: Sequence[int]) -> MeanEstimate:
    """Mean partial credit, clustered by solution structure as `accuracy` is."""
    per: dict[str, list[float]] = {}
    for items in by_seed.values():
        for g in items:
            if g.op in ops:
                c = per.setdefault(structure(g.id), [0.0, 0])
                c[0] += g.progress
                c[1] += 1
    return clustered_mean_t_ci([(s, int(n)) for s, n in per.values()])


def _pairs(
    base: Mapping[int, Sequence[Graded]],
    other: Mapping[int, Sequence[Graded]],
    ops: Sequence[int],
    seeds: Sequence[int],
) -> dict[str, list[tuple[bool, bool]]]:
    """(baseline right, other right) on the same problem and seed, by solution structure."""
    clusters: dict[str, list[tuple[bool, bool]]] = {}
    for seed in seeds:
        mine = {g.id: g for g in base.get(seed, ())}
        for g in other.get(seed, ()):
            if g.op in ops and g.id in mine:
                clusters.setdefault(structure(g.id), []).append((mine[g.id].correct, g.correct))
    return clusters


def paired(
    base: Mapping[int, Sequence[Graded]], other: Mapping[int, Sequence[Graded]], ops: Sequence[int]
) -> tuple[Estimate, MeanEstimate]:
    """The baseline's accuracy on exactly the (problem, seed) pairs `other` was graded on, and
    other − baseline over those pairs, clustered by solution structure."""
    clusters = _pairs(base, other, ops, sorted(other))
    same = ratio_t_ci([(sum(b for b, _ in c), len(c)) for c in clusters.values()])
    return same, paired_diff_t_ci(list(clusters.values()))


def seed_diffs(
    base: Mapping[int, Sequence[Graded]], other: Mapping[int, Sequence[Graded]], ops: Sequence[int]
) -> dict[int, MeanEstimate]:
    """other − baseline for each training seed alone: the pooled interval holds the trained models
    fixed, so whether the seeds agree is the only word on training-seed variance with two of them."""
    out: dict[int, MeanEstimate] = {}
    for seed in sorted(other):
        clusters = _pairs(base, other, ops, [seed])
        if clusters:
            out[seed] = paired_diff_t_ci(list(clusters.values()))
    return out


def gate(
    base: Mapping[int, Sequence[Graded]], ind: Sequence[int], ood: Sequence[int], seeds: Sequence[int]
) -> dict[str, Any]:
    """Is the comparison worth reading? Every seed's error-free model must solve at least `GATE` of the
    held-out in-distribution problems (one seed that learned must not carry one that did not), and its
    pooled out-of-distribution accuracy must leave room both ways (`HEADROOM`): at ~0% or ~100% every
    row is stuck at the same floor or ceiling whatever its data taught."""
    per_seed = {s: accuracy({s: base[s]}, ind) for s in seeds if s in base}
    missing = [s for s in seeds if s not in per_seed or per_seed[s].trials == 0]
    learned = not missing and all(e.value >= GATE for e in per_seed.values())
    o = accuracy(base, ood)
    room = bool(o.trials) and HEADROOM[0] <= o.value <= HEADROOM[1]
    pooled = accuracy(base, ind)
    return {
        **pooled.to_json(),
        "per_seed": {str(s): e.to_json() for s, e in per_seed.items()},
        "missing_seeds": missing,
        "threshold": GATE,
        "passed": learned,
        "ood": o.to_json(),
        "headroom": list(HEADROOM),
        "has_headroom": room,
    }


def verdict(
    gate_: Mapping[str, Any], same: Estimate, diff: MeanEstimate, per_seed: Mapping[int, MeanEstimate], seeds: int
) -> str:
    """One word on a row against the error-free model out of distribution: `better`/`worse` only when
    the pooled interval excludes 0 and every seed's own difference points the same way. The headroom
    is asked of the whole OOD set and of `same`, the baseline on this row's own problems (beam search
    and regret decode only the first few of each op, which may all sit at the floor)."""
    if not gate_["passed"]:
        return "uninformative: the error-free model has not learned the task"
    if not gate_["has_headroom"]:
        return "uninformative: no headroom out of distribution"
    if same.trials and not HEADROOM[0] <= same.value <= HEADROOM[1]:
        return "uninformative: no headroom out of distribution on this row's problems"
    if not diff.n or len(per_seed) < seeds:
        return "incomplete"
    if diff.low > 0 and all(e.value > 0 for e in per_seed.values()):
        return "better"
    if diff.high < 0 and all(e.value < 0 for e in per_seed.values()):
        return "worse"
    return "no difference shown"


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
    gate_ = gate(base, ind, ood, p.seeds)
    for m in methods(p):
        by_seed = graded.get(m.name, {})
        every = [g for items in by_seed.values() for g in items]
        same_ind, diff_ind = paired(base, by_seed, ind)
        same_ood, diff_ood = paired(base, by_seed, ood)
        per_seed = seed_diffs(base, by_seed, ood)
        read = [t for t in (run.tokens(m, s) for s in sorted(by_seed)) if t is not None]
        trained = [t for t in (run.tokens(m, s, trained=True) for s in sorted(by_seed)) if t is not None]
        rows.append(
            {
                "method": m.name,
                "seeds": sorted(by_seed),
                # tokens read (prompts and solutions: the budget pretraining holds equal) and, of them,
                # the tokens the loss is on (solutions, less masked wrong steps), mean over seeds
                "train_tokens": round(sum(read) / len(read)) if read else None,
                "trained_tokens": round(sum(trained) / len(trained)) if trained and len(trained) == len(read) else None,
                "in_distribution": accuracy(by_seed, ind).to_json(),
                "out_of_distribution": accuracy(by_seed, ood).to_json(),
                # the error-free model, greedy, on this row's own problems and seeds; and this row minus it
                "baseline_same_in": same_ind.to_json(),
                "baseline_same_ood": same_ood.to_json(),
                "diff_in": diff_ind.to_json(),
                "diff_ood": diff_ood.to_json(),
                "diff_ood_per_seed": {str(s): e.to_json() for s, e in per_seed.items()},
                "verdict": "baseline" if m == BASELINE else verdict(gate_, same_ood, diff_ood, per_seed, len(p.seeds)),
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
    structures = {
        str(op): len({structure(g.id) for items in base.values() for g in items if g.op == op}) for op in p.test_ops
    }
    return {
        "preset": p.name,
        "preset_id": preset_id(p),
        # the error-free model on held-out (test-split) problems: in distribution per seed, and OOD headroom
        "gate": gate_,
        "train_ops": [p.train_gen.op_min, p.train_gen.op_max],
        "in_distribution_ops": ind,
        "out_of_distribution_ops": ood,
        "test_problems_per_op": p.n_test,
        "test_structures_per_op": structures,
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
    paper = [f"{row['method']}: {row['paper_ood']}" for row in summary["methods"] if row["paper_ood"] != "n/a"]
    if paper:  # the paper's figures beside ours: another scale (GPT2-12-12, iGSM-med), so as text, not points
        ax.text(
            0.99, 0.98, "paper, iGSM-med OOD (op 20–23):\n" + "\n".join(paper), transform=ax.transAxes,
            fontsize=6, va="top", ha="right", bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
        )  # fmt: skip
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
    """The validation gate, said plainly: is the error-free model good enough, and its OOD accuracy far
    enough from 0 and 1, for the comparison to mean anything?"""
    g = summary["gate"]
    ind = ", ".join(map(str, summary["in_distribution_ops"])) or "none"
    if not g["n"]:
        return f"Validation gate: no in-distribution grades of the error-free model yet (op {ind})."
    acc = _pct(_from_json(g))
    seeds = ", ".join(f"seed {s}: {_pct(_from_json(e))}" for s, e in g["per_seed"].items())
    if g["missing_seeds"]:
        return f"Validation gate: seeds {g['missing_seeds']} of the error-free model are not graded yet ({seeds})."
    if not g["passed"]:
        return (
            f"**Validation gate failed**: the error-free model solves only {acc} of held-out in-distribution"
            f" problems (op {ind}; {seeds}), under {g['threshold']:.0%} for some seed: it has not learned the task,"
            " so the comparison below is uninformative (every row is near 0 for want of a working model, not"
            " because of its data)."
        )
    ood = _pct(_from_json(g["ood"]))
    lo, hi = g["headroom"]
    if not g["has_headroom"]:
        return (
            f"Validation gate passed in distribution ({acc}; {seeds}), but out of distribution the error-free"
            f" model solves {ood}, outside {lo:.0%}–{hi:.0%}: no room for a difference to show there."
        )
    return (
        f"Validation gate passed: every seed's error-free model solves at least {g['threshold']:.0%} of held-out"
        f" in-distribution problems (op {ind}; {acc}; {seeds}) and {ood} out of distribution, so the rows below"
        " compare what their data taught."
    )


def _tokens(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 1e6:.2f}M" if n >= 100_000 else f"{n:,}"


def _diff(d: Mapping[str, Any]) -> str:
    if not d["n"] or d["mean"] is None:
        return "n/a"
    return f"{100 * d['mean']:+.1f} pts [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]"


def _trained(row: Mapping[str, Any]) -> str:
    read, trained = row["train_tokens"], row.get("trained_tokens")
    if read is None:
        return "n/a"
    return _tokens(read) if trained is None else f"{_tokens(read)} ({_tokens(trained)})"


def _seed_diffs(row: Mapping[str, Any]) -> str:
    return " / ".join(_diff(d) for d in row["diff_ood_per_seed"].values()) or "n/a"


def markdown(summary: Mapping[str, Any]) -> str:
    ood = ", ".join(map(str, summary["out_of_distribution_ops"]))
    ind = ", ".join(map(str, summary["in_distribution_ops"]))
    per_op = summary.get("test_structures_per_op", {})
    shapes = ", ".join(f"op {op}: {n}" for op, n in per_op.items())
    lines = [
        f"# Learning from mistakes (iGSM), preset `{summary['preset']}`",
        "",
        f"Trained on op {summary['train_ops'][0]}–{summary['train_ops'][1]};"
        f" graded on {summary['test_problems_per_op']} unseen test problems per op (structurally unseen:"
        f" the split hashes each solution's canonical structure), seeds {', '.join(map(str, summary['seeds']))}."
        f" In distribution: op {ind}; out of distribution: op {ood}. Accuracy pooled over seeds, n = problems ×"
        f" seeds; the 95% intervals cluster by solution structure, the unit that is unseen ({shapes} distinct"
        " structures), and hold the trained models fixed. Each row is paired with the error-free model's greedy"
        " grades on exactly its own problems (beam and retry upon regret decode only the first few per op): Δ is"
        " the row minus that baseline, paired by problem and seed, pooled and per seed; a row is `better` or"
        " `worse` only when the pooled interval excludes 0 and both seeds agree. Tokens: read (prompts and"
        " solutions, held equal across pretraining rows) and, in brackets, those the loss is on. The paper's"
        " column is iGSM-med out of distribution (op 20–23, GPT2-12-12 on far more data), not this preset's op.",
        "",
        gate_sentence(summary),
        "",
        "| method | tokens read (trained) | in distribution | out of distribution | error-free greedy, same OOD"
        " problems | Δ OOD (paired) | Δ OOD per seed | verdict | OOD per seed | OOD necessary steps right before"
        " the first error | [BACK]/problem | regrets/problem | paper (iGSM-med OOD) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["methods"]:
        ind_e, ood_e = (_from_json(row["in_distribution"]), _from_json(row["out_of_distribution"]))
        same = _from_json(row["baseline_same_ood"])
        per_seed = " / ".join(row["ood_per_seed"].values()) or "n/a"
        backs = "n/a" if row["backs_per_problem"] is None else f"{row['backs_per_problem']:.2f}"
        regrets = "n/a" if row["regrets_per_problem"] is None else f"{row['regrets_per_problem']:.2f}"
        n = f" (n={ood_e.trials})" if ood_e.trials else ""
        lines.append(
            f"| {row['method']} | {_trained(row)} | {_pct(ind_e)} | {_pct(ood_e)}{n} | {_pct(same)}"
            f" | {_diff(row['diff_ood'])} | {_seed_diffs(row)} | {row['verdict']} | {per_seed}"
            f" | {_mean(row['ood_progress'])} | {backs} | {regrets} | {row['paper_ood']} |"
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
    write_atomic(out / "summary.json", json.dumps(summary, indent=1))
    md = markdown(summary)
    write_atomic(out / "report.md", md)
    body = "".join(f"<p>{html.escape(line)}</p>" for line in md.splitlines() if not line.startswith(("|", "!")))
    table = _html_table(summary)
    write_atomic(
        out / "report.html",
        f"<!doctype html><meta charset=utf-8><title>mendlab mistakes {summary['preset']}</title>"
        f"<body style='font-family:sans-serif;max-width:1100px;margin:auto'>{body}{table}"
        "<img src=accuracy_vs_op.png style='max-width:100%'><img src=losses.png style='max-width:100%'></body>",
    )
    for name, png in (
        ("accuracy_vs_op.png", _plot_accuracy(summary, run.preset.test_ops)),
        ("losses.png", _plot_losses(losses(run))),
    ):
        if png is not None:
            write_atomic(out / name, png)
            written.append(out / name)
    return written


def _html_table(summary: Mapping[str, Any]) -> str:
    cols = ("method", "tokens read (trained)", "in distribution", "out of distribution",
            "error-free, same OOD problems", "Δ OOD (paired)", "Δ OOD per seed", "verdict", "paper (OOD)")  # fmt: skip
    head = "".join(f"<th>{html.escape(h)}</th>" for h in cols)
    rows = "".join(
        f"<tr><td>{html.escape(r['method'])}</td><td>{_trained(r)}</td>"
        f"<td>{_pct(_from_json(r['in_distribution']))}</td><td>{_pct(_from_json(r['out_of_distribution']))}"
        f" (n={r['out_of_distribution']['n']})</td><td>{_pct(_from_json(r['baseline_same_ood']))}</td>"
        f"<td>{_diff(r['diff_ood'])}</td><td>{_seed_diffs(r)}</td><td>{html.escape(r['verdict'])}</td>"
        f"<td>{html.escape(r['paper_ood'])}</td></tr>"
        for r in summary["methods"]
    )
    return f"<table border=1 cellpadding=4 style='border-collapse:collapse'><tr>{head}</tr>{rows}</table>"
