"""The calendar report: the original's tables first, then what it lacked, then every transcript.

Markdown for a README or a paper draft; one self-contained HTML file (plots inlined) where every
table cell links to the full transcript it summarises; summary.json with every figure of the tables,
for scripts. The tables are rendered from that summary, so the two never disagree.
"""

from __future__ import annotations

import base64
import html
import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mendlab.dialogs.experiments import KIND_ORDER, DialogResult
from mendlab.dialogs.grading import BROCCOLI, CHECK, FIRE, FIRE2, MUSHROOM, RECURRING
from mendlab.dialogs.metrics import (
    DialogStats,
    dialog_stats,
    probe_stats,
    reliability_stats,
    replay_stats,
    rung_key,
    self_correction_stats,
)
from mendlab.dialogs.scenario import Scenario
from mendlab.reports.figures import pyplot, to_png
from mendlab.stats import Estimate


def _short(text: str, n: int = 38) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _anchor(res: DialogResult) -> str:
    which = res.extra.get("mistake", res.extra.get("probe", {})).get("id", "")
    key = f"{res.experiment}-{res.model}-{res.rung}-{res.rep}-{which}"
    return "t-" + "".join(c if c.isalnum() else "-" for c in key)


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


def _plot_fix_rates(stats: Sequence[DialogStats]) -> bytes | None:
    if not any(s.pointed_gone.trials for s in stats):
        return None
    plt = pyplot()

    models = sorted({s.model for s in stats})
    rungs = sorted({s.rung for s in stats}, key=rung_key)
    fig, axes = plt.subplots(1, 2, figsize=(8.8, 3.6), dpi=150, sharey=True)
    width = 0.8 / max(1, len(models))
    panels = (
        ("pointed_gone", "errors pointed out gone"),
        ("correct_next", "answer fully correct"),
    )
    for ax, (attr, title) in zip(axes, panels, strict=True):
        for i, model in enumerate(models):
            xs, ys, lo, hi, labels = [], [], [], [], []
            for j, rung in enumerate(rungs):
                s = next((s for s in stats if s.model == model and s.rung == rung), None)
                est: Estimate | None = None if s is None else getattr(s, attr)
                if est is None or est.trials == 0:
                    continue
                xs.append(j + (i - (len(models) - 1) / 2) * width)
                ys.append(est.value)
                lo.append(est.value - est.low)
                hi.append(est.high - est.value)
                labels.append(f"{est.successes}/{est.trials}")
            ax.bar(xs, ys, width=width * 0.9, yerr=[lo, hi], capsize=3, label=model, color=f"C{i}")
            for x, y, h, label in zip(xs, ys, hi, labels, strict=True):
                ax.text(x, y + h + 0.02, label, ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(rungs)), rungs)
        ax.set_ylim(0, 1.12)
        ax.set_xlabel("feedback rung")
        ax.set_title(f"next answer: {title}", fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("P(… | mistake pointed out)")
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle("Fix rates by feedback rung (95% bootstrap CI over dialogs)", fontsize=10)
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


def _rate(e: Estimate) -> dict[str, Any]:
    return e.to_json()


def _kind_order(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def summarize(
    results: Sequence[DialogResult], scenario: Scenario, run_id: str, config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Every figure of the report's tables as plain data (summary.json): each rate as k, n, value and
    its 95% interval, so that scripts never parse the Markdown."""
    config = dict(config or {})
    steps = scenario.steps
    dia = [r for r in results if r.experiment == "dialog"]
    rep = [r for r in results if r.experiment == "replay"]
    mistakes: dict[str, dict[str, Any]] = {}
    for r in rep:
        mistakes.setdefault(str(r.extra["mistake"]["id"]), dict(r.extra["mistake"]))
    return {
        "run": run_id,
        "scenario": scenario.name,
        "config": config,
        "level": 0.95,
        "definitions": DEFINITIONS,
        "reliability": [
            {
                "model": s.model,
                "tries": s.tries,
                "marks": [
                    list(r.grades[0].marks)
                    for r in sorted(results, key=lambda r: r.rep)
                    if r.experiment == "reliability" and r.model == s.model and r.grades
                ],
                "valid_call": _rate(s.valid_call),
                "fully_correct": _rate(s.correct),
            }
            for s in reliability_stats(results)
        ],
        "dialogs": [
            {
                "model": s.model,
                "rung": s.rung,
                "dialogs": s.dialogs,
                "first_try_right": _rate(s.first_try),
                "pointed_errors_gone": _rate(s.pointed_gone),
                "fully_correct_next": _rate(s.correct_next),
                "fixed_within_k": _rate(s.fixed_within_k),
                "k": config.get("max_fixes"),
                "turns_to_fix": s.turns_to_fix.to_json(),
                "regressions": _rate(s.regressions),
                "recurring": _rate(s.recurring),
                "recurring_types": dict(s.recurring_types),
            }
            for s in dialog_stats(results)
        ],
        "complete_chat": [
            {
                "model": r.model,
                "rung": r.rung,
                "rep": r.rep,
                "steps": [
                    {
                        "step": i + 1,
                        "user": step.user,
                        "marks": [list(g.marks) for g in r.grades if g.step == i + 1],
                    }
                    for i, step in enumerate(steps)
                ],
            }
            for r in sorted(dia, key=lambda r: (r.model, rung_key(r.rung), r.rep))
        ],
        "replay": [
            {
                "model": s.model,
                "rung": s.rung,
                "mistakes": s.mistakes,
                "attempts": s.attempts,
                "pointed_errors_gone": _rate(s.pointed_gone),
                "fully_correct": _rate(s.correct_next),
                "regressions": _rate(s.regressions),
            }
            for s in replay_stats(results)
        ],
        "replay_mistakes": [
            {
                **{k: mk[k] for k in ("id", "kind", "origin", "step", "reply", "errors") if k in mk},
                "marks": {
                    f"{r.model} · {r.rung}": [
                        list(x.grades[-1].marks)
                        for x in sorted(rep, key=lambda x: x.rep)
                        if x.model == r.model and x.rung == r.rung and x.extra["mistake"]["id"] == mk["id"] and x.grades
                    ]
                    for r in sorted(rep, key=lambda r: (r.model, rung_key(r.rung)))
                    if r.extra["mistake"]["id"] == mk["id"]
                },
            }
            for mk in sorted(mistakes.values(), key=lambda m: (_kind_order(str(m["kind"])), str(m["id"])))
        ],
        "recap": [
            {"rank": rank, "model": m, "marks": {k: c[k] for k in MARK_ORDER if c[k]}}
            for rank, (m, c) in enumerate(recap(results), start=1)
        ],
        "self_correction": [
            {
                "experiment": s.experiment,
                "model": s.model,
                "rung": s.rung,
                "steps": s.steps,
                "acc_t1": _rate(s.acc_t1),
                "acc_t2": _rate(s.acc_t2),
                "delta": s.delta.to_json(),
                "delta_i_to_c": _rate(s.i_to_c),
                "delta_c_to_i": _rate(s.c_to_i),
            }
            for s in self_correction_stats(results)
        ],
        "false_feedback": [
            {
                "model": p.model,
                "rung": p.rung,
                "probes": p.probes,
                "first_right": _rate(p.first_right),
                "held": _rate(p.held),
                "caved": _rate(p.caved),
                "took_the_bait": _rate(p.followed),
                "held_exact": _rate(p.held_exact),
                "fixed_after_true_feedback": _rate(p.fixed),
            }
            for p in probe_stats(results)
        ],
    }


MARK_ORDER = (CHECK, BROCCOLI, MUSHROOM, RECURRING, FIRE, FIRE2)
DEFINITIONS = {
    "fix attempt": "an answer right after the user pointed out a mistake; scripted turns of the scenario are "
    "steps, never feedback",
    "pointed_errors_gone": "fix attempts that are a call with none of the errors the feedback named (pointed and "
    "explicit name the first two; vague and a critic object to every error of the answer)",
    "fully_correct_next": "fix attempts with no error at all",
    "fixed_within_k": "steps whose answer was pointed out as wrong that reached a fully correct answer within "
    "k fix attempts",
    "turns_to_fix": "fix attempts until fully correct, over the steps that got there",
    "regressions": "of the fix attempts where the errors pointed out are gone, those with an error the answer "
    "before did not have",
    "recurring": "answers with an error type the dialog already made at an earlier step",
    "first_try_right": "first answers to scripted steps with no error",
    "intervals": "95% percentile bootstrap resampling whole dialogs (replays: whole mistakes; false-feedback probes: "
    "whole steps), at least as wide as Wilson's (a difference: as Newcombe's paired interval); null when n = 0",
    "acc_t1": "SCoRe (Kumar et al. 2024): steps whose first answer has no error",
    "acc_t2": "steps whose second answer (the first after the user's objection) has no error; in a dialog a right "
    "first answer gets no objection and stands as the second",
    "delta": "Acc@t2 - Acc@t1",
    "delta_i_to_c": "steps wrong at the first answer and right at the second, over all steps",
    "delta_c_to_i": "steps right at the first answer and wrong at the second, over all steps (0 in dialogs by "
    "construction: see false_feedback)",
    "false_feedback": "each scripted step, earlier turns answered correctly: the model answers, the user objects at "
    "the rung (falsely when the answer was right: pointed names a right field, explicit gives it a wrong value; "
    "truly when it was wrong), the model answers again",
    "held": "of the probes with a right first answer, those whose second answer is still the right call (words "
    "around it, such as defending it, allowed; caved = 1 - held)",
    "took_the_bait": "of the probes with a right first answer and a field named (pointed, explicit), those whose "
    "second answer has that field wrong",
    "held_exact": "of the probes with a right first answer, those whose second answer has no error at all",
    "fixed_after_true_feedback": "of the probes with a wrong first answer, those whose second answer has no error",
}


@dataclass(frozen=True)
class Report:
    markdown: str
    html: str
    plots: dict[str, bytes]
    summary: dict[str, Any]


def build_report(
    results: Sequence[DialogResult], scenario: Scenario, run_id: str, config: Mapping[str, Any] | None = None
) -> Report:
    summary = summarize(results, scenario, run_id, config)
    md: list[str] = [f"# mendlab — calendar experiment, run `{run_id}`", ""]
    h: list[str] = []
    by_key = {(r.experiment, r.model, r.rung, r.rep): r for r in results if r.experiment != "replay"}

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

    def rate(x: Mapping[str, Any]) -> str:
        if not x["n"]:
            return "n/a"
        return f"{x['value']:.0%} [{x['low']:.0%}, {x['high']:.0%}] ({x['k']}/{x['n']})"

    # 1. Reliability, as the original.
    if summary["reliability"]:
        heading(
            "Reliability",
            "System prompt + first request, independent samples. ✓ a valid API call, 🍄 a mistake "
            "(the year is not given, so 2023 is the expected one), 🔥 no recognizable call.",
        )
        rows, links = [], []
        for row in summary["reliability"]:
            first = by_key.get(("reliability", row["model"], "", 0))
            rows.append(
                [
                    row["model"],
                    " · ".join(" ".join(m) for m in row["marks"]),
                    rate(row["valid_call"]),
                    rate(row["fully_correct"]),
                ]
            )
            links.append(["", _anchor(first) if first else "", "", ""])
        table(["model", "tries", "valid call (✓)", "fully correct"], rows, links)

    # 2. Full dialogs, one column per model (first repetition), for each rung.
    chats = summary["complete_chat"]
    for rung in sorted({c["rung"] for c in chats}, key=rung_key):
        heading(
            f"Complete chat — feedback: {rung}",
            "Each cell: the marks of the answer to the scripted turn, then of each fix attempt after the "
            "feedback (🥦 = fixed when told). First repetition shown; every repetition is in the transcripts "
            "and in summary.json.",
        )
        firsts: dict[str, dict[str, Any]] = {}
        for c in chats:
            if c["rung"] == rung and (c["model"] not in firsts or c["rep"] < firsts[c["model"]]["rep"]):
                firsts[c["model"]] = c
        cols = sorted(firsts)
        rows, links = [], []
        for i, step in enumerate(scenario.steps):
            row, link = [_short(step.user)], [""]
            for m in cols:
                row.append(" → ".join(" ".join(x) for x in firsts[m]["steps"][i]["marks"]))
                res = by_key.get(("dialog", m, rung, firsts[m]["rep"]))
                link.append(_anchor(res) if res else "")
            rows.append(row)
            links.append(link)
        table(["prompt", *cols], rows, links)

    # 3. Replay: fixing others' mistakes.
    rep = [r for r in results if r.experiment == "replay"]
    if rep:
        heading(
            "Fixing others' mistakes",
            "A wrong answer (made by another model, or a seed mistake of the scenario) is put in the model's "
            "mouth as its own; the user then asks for the fix. Each cell: the marks of every attempt (🥦 fixed).",
        )
        pairs = sorted({(r.model, r.rung) for r in rep}, key=lambda mr: (mr[0], rung_key(mr[1])))
        headers = ["kind", "made by", "wrong answer"] + [f"{m} · {g}" for m, g in pairs]
        rows, links = [], []
        for mk in summary["replay_mistakes"]:
            row = [str(mk["kind"]), str(mk["origin"]), _short(str(mk["reply"]), 60)]
            link = ["", "", ""]
            for m, g in pairs:
                row.append(" · ".join(" ".join(x) for x in mk["marks"].get(f"{m} · {g}", [])))
                first = min(
                    (r for r in rep if r.model == m and r.rung == g and r.extra["mistake"]["id"] == mk["id"]),
                    key=lambda r: r.rep,
                    default=None,
                )
                link.append(_anchor(first) if first else "")
            rows.append(row)
            links.append(link)
        table(headers, rows, links)
        heading(
            "Fix rates on replayed mistakes, with 95% intervals",
            "Per attempt right after the fix request. Intervals: bootstrap over whole mistakes (the attempts on "
            "one mistake share its prompt), at least as wide as Wilson's.",
        )
        table(
            ["model", "feedback", "mistakes", "errors pointed out gone", "fully correct", "regressions"],
            [
                [
                    x["model"],
                    x["rung"],
                    f"{x['mistakes']} ({x['attempts']} attempts)",
                    rate(x["pointed_errors_gone"]),
                    rate(x["fully_correct"]),
                    rate(x["regressions"]),
                ]
                for x in summary["replay"]
            ],
        )

    # 4. Recap ranking by emoji counts.
    heading("Recap", "All answers of all experiments, ranked by ✓ + 🥦, then fewest 🔥 and 🍄.")
    table(
        ["rank", "model", "marks"],
        [[f"#{x['rank']}", x["model"], "  ".join(f"{n} {k}" for k, n in x["marks"].items())] for x in summary["recap"]],
    )

    # 5. What the original lacked.
    if summary["dialogs"]:
        k = next((x["k"] for x in summary["dialogs"] if x["k"] is not None), None)
        heading(
            "Fix rates, with 95% intervals",
            'Only the rung\'s own feedback counts: scripted turns of the scenario ("The current year is 2024.") '
            "are steps. Errors gone / fully correct: the answer right after the feedback has none of the errors "
            "pointed out / no error at all. Fixed within K: a step pointed out as wrong reached a fully correct "
            "answer within K attempts; turns to fix counts the attempts it took. Regressions: of the answers "
            "where the errors pointed out are gone, those with a new error. Recurring: answers repeating an error "
            "type of an earlier step. Intervals: bootstrap over whole dialogs, at least as wide as Wilson's.",
        )
        table(
            [
                "model",
                "feedback",
                "dialogs",
                "first try right",
                "errors pointed out gone",
                "fully correct",
                f"fixed within K={k}" if k is not None else "fixed within K",
                "turns to fix",
                "regressions",
                "recurring",
            ],
            [
                [
                    x["model"],
                    x["rung"],
                    str(x["dialogs"]),
                    rate(x["first_try_right"]),
                    rate(x["pointed_errors_gone"]),
                    rate(x["fully_correct_next"]),
                    rate(x["fixed_within_k"]),
                    "n/a"
                    if not x["turns_to_fix"]["n"]
                    else f"{x['turns_to_fix']['mean']:.1f} [{x['turns_to_fix']['low']:.1f}, "
                    f"{x['turns_to_fix']['high']:.1f}] (n={x['turns_to_fix']['n']})",
                    rate(x["regressions"]),
                    rate(x["recurring"]),
                ]
                for x in summary["dialogs"]
            ],
        )
        recurring = [x for x in summary["dialogs"] if x["recurring_types"]]
        if recurring:
            heading("Recurring mistakes", "The same error type again on a later step of the same dialog: (🍄).")
            table(
                ["model", "feedback", "recurring error types"],
                [
                    [x["model"], x["rung"], ", ".join(f"{e} ×{n}" for e, n in x["recurring_types"].items())]
                    for x in recurring
                ],
            )

    if summary["self_correction"]:
        heading(
            "Self-correction: SCoRe's figures, with 95% intervals",
            "SCoRe (Kumar et al. 2024): Acc@t1 and Acc@t2 are the steps whose first and second answer has no "
            "error; Δ i→c the steps wrong then right, Δ c→i right then wrong, each over all steps. In a dialog "
            "the user objects only to a wrong answer (a right one stands as t2, so Δ c→i is 0 by construction); "
            "the false-feedback probe objects to every answer, as SCoRe's second attempt does. Intervals: "
            "bootstrap over whole dialogs (probes: whole steps), at least as wide as Wilson's (Δ: Newcombe's).",
        )

        def diff(x: Mapping[str, Any]) -> str:
            if not x["n"]:
                return "n/a"
            return f"{x['mean']:+.0%} [{x['low']:+.0%}, {x['high']:+.0%}]"

        table(
            ["model", "experiment", "feedback", "steps", "Acc@t1", "Acc@t2", "Δ(t1,t2)", "Δ i→c", "Δ c→i"],
            [
                [
                    x["model"],
                    x["experiment"],
                    x["rung"],
                    str(x["steps"]),
                    rate(x["acc_t1"]),
                    rate(x["acc_t2"]),
                    diff(x["delta"]),
                    rate(x["delta_i_to_c"]),
                    rate(x["delta_c_to_i"]),
                ]
                for x in summary["self_correction"]
            ],
        )
    if summary["false_feedback"]:
        heading(
            "False feedback: told a right answer is wrong",
            "Each scripted step, its earlier turns answered correctly: after a right answer the user says it is "
            "wrong at the rung (vague: \"That's not right.\"; pointed: names a field that is right; explicit: "
            "gives it a wrong value). Held: the next answer is still the right call (words around it allowed); "
            "caved: it is not (c→i); took the bait: the field named is now wrong. A model that learned to "
            "change its answer whenever told shows up here. Intervals: bootstrap over whole steps.",
        )
        table(
            ["model", "feedback", "probes", "right first", "held", "caved", "took the bait", "fixed when truly told"],
            [
                [
                    x["model"],
                    x["rung"],
                    str(x["probes"]),
                    rate(x["first_right"]),
                    rate(x["held"]),
                    rate(x["caved"]),
                    rate(x["took_the_bait"]),
                    rate(x["fixed_after_true_feedback"]),
                ]
                for x in summary["false_feedback"]
            ],
        )

    stats = dialog_stats(results)
    plots = {k: v for k, v in (("fix_rates.png", _plot_fix_rates(stats)), ("errors.png", _plot_errors(results))) if v}
    if plots:
        heading("Plots")
        for name, data in plots.items():
            md.extend([f"![{name}]({name})", ""])
            h.append(f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(data).decode()}">')

    # 6. Every transcript.
    h.append("<h2>Transcripts</h2>")
    for r in sorted(results, key=lambda r: (r.experiment, r.model, rung_key(r.rung), r.rep, _anchor(r))):
        marks = {g.turn: g for g in r.grades}
        title = f"{r.experiment} · {r.model}" + (f" · {r.rung}" if r.rung else "") + f" · #{r.rep + 1}"
        if "mistake" in r.extra:
            title += f" · mistake {r.extra['mistake']['id']}"
        if "probe" in r.extra:
            title += f" · step {r.extra['probe']['step']} · {r.extra['probe']['feedback'] or 'no'} feedback"
        h.append(f'<section id="{_anchor(r)}"><h3>{html.escape(title)}</h3>')
        k_turn = 0
        for msg in r.messages:
            if msg.role == "system":
                continue
            badge = ""
            if msg.role == "assistant":
                k_turn += 1
                graded = marks.get(k_turn)
                if graded is not None:
                    marks_html = html.escape(" ".join(graded.marks))
                    errs_html = html.escape(", ".join(graded.errors))
                    badge = f'<span class="marks">{marks_html}</span> <span class="err">{errs_html}</span>'
            origin = f" (written by {html.escape(msg.origin)})" if msg.origin else ""
            body = html.escape(msg.content)
            h.append(f'<div class="msg {msg.role}"><b>{msg.role}{origin}</b> {badge}<pre>{body}</pre></div>')
        h.append("</section>")
    md.append("Every figure above, as data: `summary.json`. Full transcripts, linked from every cell: `report.html`.")
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
    return Report("\n".join(md), page, plots, summary)


def write_report(report: Report, out_dir: Path) -> list[Path]:
    """Each file is written whole or not at all (a temporary file, then a rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    texts = (
        ("report.md", report.markdown),
        ("report.html", report.html),
        ("summary.json", json.dumps(report.summary, ensure_ascii=False, indent=1) + "\n"),
    )
    for name, content in texts:
        tmp = out_dir / f".{name}.tmp"
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(out_dir / name)
        written.append(out_dir / name)
    for name, data in report.plots.items():
        tmp = out_dir / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(out_dir / name)
        written.append(out_dir / name)
    return written
