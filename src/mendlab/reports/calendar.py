"""The calendar report: the original's tables first, then what it lacked, then every transcript.

Markdown for a README or a paper draft; one self-contained HTML file (plots inlined) where every
table cell links to the full transcript it summarises.
"""

from __future__ import annotations

import base64
import html
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mendlab.dialogs.experiments import KIND_ORDER, DialogResult
from mendlab.dialogs.grading import BROCCOLI, CHECK, FIRE, FIRE2, MUSHROOM, RECURRING, TurnGrade
from mendlab.dialogs.scenario import Scenario
from mendlab.reports.figures import pyplot, to_png
from mendlab.stats import Estimate, ratio_ci


@dataclass(frozen=True)
class FixStats:
    model: str
    rung: str
    next_turn: Estimate  # P(the next answer fixes what was pointed out)
    within_k: Estimate  # P(fixed within the allowed attempts), per mistake
    turns_to_fix: float | None
    regressions: int
    fixed: int
    first_try: Estimate  # first answers to scripted steps that are fully correct


def _short(text: str, n: int = 38) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _marks(grades: Sequence[TurnGrade]) -> str:
    return " ".join(" ".join(g.marks) for g in grades)


def _anchor(res: DialogResult) -> str:
    key = f"{res.experiment}-{res.model}-{res.rung}-{res.rep}-{res.extra.get('mistake', {}).get('id', '')}"
    return "t-" + "".join(c if c.isalnum() else "-" for c in key)


def fix_stats(results: Sequence[DialogResult]) -> list[FixStats]:
    groups: dict[tuple[str, str], list[DialogResult]] = defaultdict(list)
    for r in results:
        if r.experiment == "dialog":
            groups[(r.model, r.rung)].append(r)
    out = []
    for (model, rung), rs in sorted(groups.items()):
        next_turn, within, first = [], [], []
        turns: list[int] = []
        regress = fixed = 0
        for r in rs:
            attempts = [g for g in r.grades if g.attempt > 0 and g.pointed]
            next_turn.append((sum(g.fixed for g in attempts), len(attempts)))
            episodes: dict[int, list[TurnGrade]] = defaultdict(list)
            for g in r.grades:
                episodes[g.step].append(g)
            ok = tried = 0
            for gs in episodes.values():
                if not gs[0].errors and len(gs) == 1:
                    continue
                if len(gs) == 1:
                    continue  # a wrong answer the script did not point out
                tried += 1
                hit = next((g for g in gs if g.fixed), None)
                if hit is not None:
                    ok += 1
                    turns.append(hit.attempt)
            within.append((ok, tried))
            firsts = [g for g in r.grades if g.attempt == 0]
            first.append((sum(g.correct for g in firsts), len(firsts)))
            regress += sum(g.regression for g in r.grades)
            fixed += sum(g.fixed for g in r.grades)
        out.append(
            FixStats(
                model,
                rung,
                ratio_ci(next_turn),
                ratio_ci(within),
                sum(turns) / len(turns) if turns else None,
                regress,
                fixed,
                ratio_ci(first),
            )
        )
    return out


def recap(results: Sequence[DialogResult]) -> list[tuple[str, Counter[str]]]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        for g in r.grades:
            for m in g.marks:
                counts[r.model][m] += 1
    return sorted(
        counts.items(),
        key=lambda kv: (-(kv[1][CHECK] + kv[1][BROCCOLI]), kv[1][FIRE] + kv[1][FIRE2], kv[1][MUSHROOM]),
    )


def _plot_fix_rates(stats: Sequence[FixStats]) -> bytes | None:
    if not stats:
        return None
    plt = pyplot()

    models = sorted({s.model for s in stats})
    rungs = [r for r in ("vague", "pointed", "explicit", "critic") if any(s.rung == r for s in stats)]
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=150)
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        xs, ys, lo, hi, labels = [], [], [], [], []
        for j, rung in enumerate(rungs):
            s = next((s for s in stats if s.model == model and s.rung == rung), None)
            if s is None or s.next_turn.trials == 0:
                continue
            xs.append(j + (i - (len(models) - 1) / 2) * width)
            ys.append(s.next_turn.value)
            lo.append(s.next_turn.value - s.next_turn.low)
            hi.append(s.next_turn.high - s.next_turn.value)
            labels.append(f"{s.next_turn.successes}/{s.next_turn.trials}")
        ax.bar(xs, ys, width=width * 0.9, yerr=[lo, hi], capsize=3, label=model)
        for x, y, h, label in zip(xs, ys, hi, labels, strict=True):
            ax.text(x, y + h + 0.02, label, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(rungs)), rungs)
    ax.set_ylim(0, 1)
    ax.set_ylabel("P(fixed on the next turn | pointed out)")
    ax.set_xlabel("feedback rung")
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("Fix rate by feedback rung (95% bootstrap CI)", fontsize=10)
    fig.tight_layout()
    return to_png(fig)


def _plot_errors(results: Sequence[DialogResult]) -> bytes | None:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        if r.experiment == "replay":
            continue
        for g in r.grades:
            counts[r.model].update(g.errors)
    if not counts:
        return None
    plt = pyplot()

    types = sorted({e for c in counts.values() for e in c}, key=lambda e: -sum(c[e] for c in counts.values()))
    models = sorted(counts)
    fig, ax = plt.subplots(figsize=(6.4, 0.35 * len(types) + 1.2), dpi=150)
    height = 0.8 / len(models)
    for i, model in enumerate(models):
        ys = [k + i * height for k in range(len(types))]
        ax.barh(ys, [counts[model][t] for t in types], height=height * 0.9, label=model)
    ax.set_yticks([k + height * (len(models) - 1) / 2 for k in range(len(types))], types)
    ax.invert_yaxis()
    ax.set_xlabel("answers with this error (reliability + dialogs)")
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("What goes wrong", fontsize=10)
    fig.tight_layout()
    return to_png(fig)


@dataclass(frozen=True)
class Report:
    markdown: str
    html: str
    plots: dict[str, bytes]


def build_report(results: Sequence[DialogResult], scenario: Scenario, run_id: str) -> Report:
    models = sorted({r.model for r in results})
    md: list[str] = [f"# mendlab — calendar experiment, run `{run_id}`", ""]
    h: list[str] = []

    def table(
        headers: Sequence[str], rows: Sequence[Sequence[str]], links: Sequence[Sequence[str]] | None = None
    ) -> None:
        md.append("| " + " | ".join(headers) + " |")
        md.append("|" + "---|" * len(headers))
        h.append("<table><thead><tr>" + "".join(f"<th>{html.escape(x)}</th>" for x in headers) + "</tr></thead><tbody>")
        for i, row in enumerate(rows):
            md.append("| " + " | ".join(row) + " |")
            cells = []
            for j, cell in enumerate(row):
                link = links[i][j] if links else ""
                text = html.escape(cell)
                cells.append(f'<td><a href="#{link}">{text}</a></td>' if link else f"<td>{text}</td>")
            h.append("<tr>" + "".join(cells) + "</tr>")
        h.append("</tbody></table>")
        md.append("")

    def heading(text: str, note: str = "") -> None:
        md.extend([f"## {text}", ""])
        h.append(f"<h2>{html.escape(text)}</h2>")
        if note:
            md.extend([note, ""])
            h.append(f"<p>{html.escape(note)}</p>")

    # 1. Reliability, as the original.
    rel = [r for r in results if r.experiment == "reliability"]
    if rel:
        heading(
            "Reliability",
            "System prompt + first request, independent samples. ✓ a valid API call, 🍄 a mistake "
            "(the year is not given, so 2023 is the expected one), 🔥 no recognizable call.",
        )
        rows, links = [], []
        for m in models:
            rs = sorted((r for r in rel if r.model == m), key=lambda r: r.rep)
            if not rs:
                continue
            valid = ratio_ci([(int(CHECK in r.grades[0].marks), 1) for r in rs])
            right = ratio_ci([(int(r.grades[0].correct), 1) for r in rs])
            rows.append([m, " · ".join(" ".join(r.grades[0].marks) for r in rs), str(valid), str(right)])
            links.append(["", _anchor(rs[0]), "", ""])
        table(["model", "tries", "valid call (✓)", "fully correct"], rows, links)

    # 2. Full dialogs, one column per model (first repetition), for each rung.
    dia = [r for r in results if r.experiment == "dialog"]
    for rung in sorted({r.rung for r in dia}, key=lambda x: ("vague", "pointed", "explicit", "critic").index(x)):
        heading(
            f"Complete chat — feedback: {rung}",
            "Each cell: the marks of the answer and of each fix attempt (🥦 = fixed when told). "
            "First repetition shown; every repetition is in the transcripts.",
        )
        cols = [m for m in models if any(r.model == m and r.rung == rung for r in dia)]
        first = {m: min((r for r in dia if r.model == m and r.rung == rung), key=lambda r: r.rep) for m in cols}
        rows, links = [], []
        steps = scenario.steps
        for idx, step in enumerate(steps):
            row, link = [_short(step.user)], [""]
            followed = idx + 1 < len(steps) and steps[idx + 1].feedback
            target = scenario.target_step(idx).turn
            for m in cols:
                gs = [
                    g
                    for g in first[m].grades
                    if g.step == target and (g.attempt > 0 if step.feedback else (g.attempt == 0 if followed else True))
                ]
                row.append(" → ".join(" ".join(g.marks) for g in gs))
                link.append(_anchor(first[m]))
            rows.append(row)
            links.append(link)
        table(["prompt", *cols], rows, links)

    # 3. Replay: fixing others' mistakes.
    rep = [r for r in results if r.experiment == "replay"]
    if rep:
        heading(
            "Fixing others' mistakes",
            "A wrong answer (made by another model, or a seed mistake of the scenario) is put in the model's "
            "mouth as its own; the user then asks for the fix. 3 attempts each: 🥦 fixed.",
        )
        ids: dict[str, dict[str, object]] = {}
        for r in rep:
            ids.setdefault(str(r.extra["mistake"]["id"]), r.extra["mistake"])
        cols = [m for m in models if any(r.model == m for r in rep)]
        ordered = sorted(ids.values(), key=lambda x: (KIND_ORDER.index(str(x["kind"])), str(x["id"])))
        rungs = sorted({r.rung for r in rep}, key=lambda x: ("vague", "pointed", "explicit", "critic").index(x))
        headers = ["kind", "made by", "wrong answer"] + [f"{m} · {g}" for m in cols for g in rungs]
        rows, links = [], []
        for mk in ordered:
            row = [str(mk["kind"]), str(mk["origin"]), _short(str(mk["reply"]), 60)]
            link = ["", "", ""]
            for m in cols:
                for g in rungs:
                    rs = sorted(
                        (r for r in rep if r.model == m and r.rung == g and r.extra["mistake"]["id"] == mk["id"]),
                        key=lambda r: r.rep,
                    )
                    row.append(" · ".join(" ".join(r.grades[0].marks) for r in rs))
                    link.append(_anchor(rs[0]) if rs else "")
            rows.append(row)
            links.append(link)
        table(headers, rows, links)
        fixes = [
            [m, g, str(ratio_ci([(int(r.grades[0].fixed), 1) for r in rep if r.model == m and r.rung == g]))]
            for m in cols
            for g in rungs
        ]
        table(["model", "feedback", "fixed (replayed mistakes)"], fixes)

    # 4. Recap ranking by emoji counts.
    heading("Recap", "All answers of all experiments, ranked by ✓ + 🥦, then fewest 🔥 and 🍄.")
    rows = []
    for rank, (m, c) in enumerate(recap(results), start=1):
        tally = "  ".join(f"{c[k]} {k}" for k in (CHECK, BROCCOLI, MUSHROOM, RECURRING, FIRE, FIRE2) if c[k])
        rows.append([f"#{rank}", m, tally])
    table(["rank", "model", "marks"], rows)

    # 5. What the original lacked.
    stats = fix_stats(results)
    if stats:
        heading(
            "Fix rates, with 95% intervals",
            "Next turn: P(the answer right after feedback fixes what was pointed out). Within K: P(a mistake "
            "pointed out is fixed within the allowed attempts). Intervals: bootstrap over whole dialogs, at least as "
            "wide as Wilson's.",
        )
        rows = [
            [
                s.model,
                s.rung,
                str(s.next_turn),
                str(s.within_k),
                "" if s.turns_to_fix is None else f"{s.turns_to_fix:.1f}",
                f"{s.regressions}/{s.fixed}",
                str(s.first_try),
            ]
            for s in stats
        ]
        table(
            [
                "model",
                "feedback",
                "fix rate (next turn)",
                "fixed within K",
                "turns to fix",
                "regressions",
                "first try right",
            ],
            rows,
        )
    recurring: dict[str, Counter[str]] = defaultdict(Counter)
    for r in results:
        if r.experiment == "dialog":
            for grade in r.grades:
                recurring[r.model].update(grade.recurring)
    if any(recurring.values()):
        heading("Recurring mistakes", "The same error type again on a later step of the same dialog: (🍄).")
        table(
            ["model", "recurring error types"],
            [[m, ", ".join(f"{e} ×{n}" for e, n in c.most_common())] for m, c in sorted(recurring.items()) if c],
        )

    plots = {k: v for k, v in (("fix_rates.png", _plot_fix_rates(stats)), ("errors.png", _plot_errors(results))) if v}
    if plots:
        heading("Plots")
        for name, data in plots.items():
            md.extend([f"![{name}]({name})", ""])
            h.append(f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(data).decode()}">')

    # 6. Every transcript.
    h.append("<h2>Transcripts</h2>")
    for r in sorted(results, key=lambda r: (r.experiment, r.model, r.rung, r.rep, _anchor(r))):
        marks = {g.turn: g for g in r.grades}
        title = f"{r.experiment} · {r.model}" + (f" · {r.rung}" if r.rung else "") + f" · #{r.rep + 1}"
        if "mistake" in r.extra:
            title += f" · mistake {r.extra['mistake']['id']}"
        h.append(f'<section id="{_anchor(r)}"><h3>{html.escape(title)}</h3>')
        k = 0
        for msg in r.messages:
            if msg.role == "system":
                continue
            badge = ""
            if msg.role == "assistant":
                k += 1
                graded = marks.get(k)
                if graded is not None:
                    marks_html = html.escape(" ".join(graded.marks))
                    errs_html = html.escape(", ".join(graded.errors))
                    badge = f'<span class="marks">{marks_html}</span> <span class="err">{errs_html}</span>'
            origin = f" (written by {html.escape(msg.origin)})" if msg.origin else ""
            body = html.escape(msg.content)
            h.append(f'<div class="msg {msg.role}"><b>{msg.role}{origin}</b> {badge}<pre>{body}</pre></div>')
        h.append("</section>")
    md.append("Full transcripts, linked from every cell: `report.html`.")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>mendlab calendar report</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ddd;padding:4px 8px;"
        "vertical-align:top}th{background:#f4f4f4}a{color:inherit;text-decoration:none}"
        "td a:hover{text-decoration:underline}"
        "pre{white-space:pre-wrap;margin:2px 0 8px;font-size:13px}.msg.user pre{color:#1a4d8f}.marks{font-size:16px}"
        ".err{color:#a33;font-size:12px}section{border-top:1px solid #eee;margin-top:1em}img{max-width:100%}"
        f"</style></head><body><h1>mendlab — calendar experiment, run <code>{html.escape(run_id)}</code></h1>"
        + "\n".join(h)
        + "</body></html>"
    )
    return Report("\n".join(md), page, plots)


def write_report(report: Report, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in (("report.md", report.markdown), ("report.html", report.html)):
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(out_dir / name)
        written.append(out_dir / name)
    for name, data in report.plots.items():
        (out_dir / name).write_bytes(data)
        written.append(out_dir / name)
    return written
