"""What a negotiation run shows, read from the store only: per setting and round, the deal rate and
the mean deal price with 95% intervals and their change from round 1, as a table, a figure, a page with
every transcript, and `summary.json`.

Prices are averaged over the games that made a deal (no deal is never a price). Changes from round 1
are paired: a stream's round-r game against the same stream's round-1 game (round 1 is shared by every
setting), over the streams where both have what is compared (a deal in both, for the price). Intervals:
deal rates a bootstrap widened to at least Wilson's; mean prices and paired price changes Student's t
(none from a single value); paired deal-rate changes Newcombe's hybrid score interval. A stream that
ended early (an error, a full context) is missing from its later rounds: `games` says how many count.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mendlab.negotiation.rounds import CONTEXT_FULL, SHARED, GameRecord
from mendlab.reports.figures import pyplot, to_png
from mendlab.stats import Estimate, MeanEstimate, mean_t_ci, paired_rate_diff_ci, ratio_ci

# Fu et al., seller's mean deal price before → with AI feedback (one round; SPEC §2 appendix).
PAPER = {
    "seller price, before → AI feedback": {"gpt-3.5": [16.26, 17.03], "claude-instant": [14.74, 15.98],
                                           "claude-v1.3": [15.40, 16.98]},
    "seller deal rate by round 5": "below 50%",
}  # fmt: skip


@dataclass(frozen=True)
class RoundStats:
    setting: str
    round: int
    games: int
    errors: int
    deal_rate: Estimate
    price: MeanEstimate
    price_change: MeanEstimate  # paired with round 1, streams with a deal in both
    deal_rate_change: MeanEstimate  # paired with round 1, streams with both games
    lines: MeanEstimate  # lines said per game, openings included
    below_cost: int = 0  # deals under the seller's cost
    unclear: int = 0  # moderator answers that were neither yes nor no
    context_full: int = 0  # games that did not fit the learner's context (their stream ends there)

    def to_json(self) -> dict[str, Any]:
        return {
            "round": self.round, "games": self.games, "errors": self.errors,
            "deal_rate": self.deal_rate.to_json(), "price": self.price.to_json(),
            "price_change_from_round_1": self.price_change.to_json(),
            "deal_rate_change_from_round_1": self.deal_rate_change.to_json(), "lines": self.lines.to_json(),
            "deals_below_cost": self.below_cost, "moderator_unclear": self.unclear, "context_full": self.context_full,
        }  # fmt: skip


def games_of(records: Sequence[GameRecord], setting: str) -> dict[int, dict[int, GameRecord]]:
    """round -> stream -> game, for one setting (round 1 from the shared games)."""
    out: dict[int, dict[int, GameRecord]] = {}
    for rec in records:
        if rec.setting == setting or (rec.round == 1 and rec.setting == SHARED):
            out.setdefault(rec.round, {})[rec.stream] = rec
    return out


def round_stats(records: Sequence[GameRecord], setting: str, cost: float = 0.0) -> list[RoundStats]:
    by_round = games_of(records, setting)
    first = {s: g for s, g in by_round.get(1, {}).items() if g.error is None}
    rows = []
    for r in sorted(by_round):
        games = by_round[r]
        ok = {s: g for s, g in games.items() if g.error is None}
        deals = [g for g in ok.values() if g.deal and g.price is not None]
        paired_price = [
            g.price - p1
            for s, g in ok.items()
            if s in first and g.deal and first[s].deal and g.price is not None and (p1 := first[s].price) is not None
        ]
        paired_deal = [(first[s].deal, g.deal) for s, g in ok.items() if s in first]
        rows.append(
            RoundStats(
                setting=setting,
                round=r,
                games=len(ok),
                errors=len(games) - len(ok),
                deal_rate=ratio_ci([(int(g.deal), 1) for g in ok.values()]),
                price=mean_t_ci([float(g.price) for g in deals if g.price is not None]),
                price_change=mean_t_ci(paired_price if r > 1 else []),  # round 1 against itself says nothing
                deal_rate_change=paired_rate_diff_ci(paired_deal if r > 1 else []),
                lines=mean_t_ci([float(len(g.lines)) for g in ok.values()]),
                below_cost=sum(1 for g in deals if g.price is not None and g.price < cost),
                unclear=sum(1 for g in ok.values() for c in g.checks if c.deal is None),
                context_full=sum(1 for g in games.values() if g.error and g.error.startswith(CONTEXT_FULL)),
            )
        )
    return rows


def settings_of(records: Sequence[GameRecord]) -> list[str]:
    return sorted({r.setting for r in records if r.setting != SHARED})


def fmt_mean(m: MeanEstimate, money: bool = True, signed: bool = False) -> str:
    if m.n == 0:
        return "n/a"
    sign = "+" if signed else ""
    unit = "$" if money else ""
    if m.low != m.low:  # one value: no interval
        return f"{unit}{m.value:{sign}.2f} (n={m.n})"
    return f"{unit}{m.value:{sign}.2f} [{m.low:{sign}.2f}, {m.high:{sign}.2f}] (n={m.n})"


def fmt_rate_change(m: MeanEstimate) -> str:
    if m.n == 0:
        return "n/a"
    return f"{m.value:+.0%} [{m.low:+.0%}, {m.high:+.0%}] (n={m.n})"


def _plot(stats: Mapping[str, Sequence[RoundStats]]) -> bytes | None:
    if not any(stats.values()):
        return None
    plt = pyplot()
    fig, (ax_p, ax_d) = plt.subplots(1, 2, figsize=(10, 4))
    for i, (setting, rows) in enumerate(stats.items()):
        dx = (i - (len(stats) - 1) / 2) * 0.06  # settings side by side, not on top of each other
        pr = [r for r in rows if r.price.n]
        if pr:
            ax_p.errorbar([r.round + dx for r in pr], [r.price.value for r in pr],
                          yerr=[[r.price.value - r.price.low for r in pr], [r.price.high - r.price.value for r in pr]],
                          marker="o", capsize=3, label=setting)  # fmt: skip
        dr = [r for r in rows if r.deal_rate.trials]
        if dr:
            ax_d.errorbar([r.round + dx for r in dr], [r.deal_rate.value for r in dr],
                          yerr=[[r.deal_rate.value - r.deal_rate.low for r in dr],
                                [r.deal_rate.high - r.deal_rate.value for r in dr]],
                          marker="o", capsize=3, label=setting)  # fmt: skip
    ax_p.set(xlabel="round", ylabel="mean deal price ($)", title="Deal price (games with a deal), 95% CI")
    ax_d.set(xlabel="round", ylabel="deal rate", title="Deal rate, 95% CI", ylim=(0, 1.05))
    for ax in (ax_p, ax_d):
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title="feedback")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return to_png(fig)


def _anchor(rec: GameRecord, listed_under: str) -> str:
    return f"g-{listed_under}-{rec.stream}-{rec.round}"


def write_negotiation_report(
    records: Sequence[GameRecord],
    run_id: str,
    config: Mapping[str, Any],
    out: Path,
    settings: Sequence[str] | None = None,
) -> list[Path]:
    """report.md, report.html (every game's transcript in it), price_deal.png and summary.json, for
    `settings` (default: every setting with a game of round 2 or later)."""
    out.mkdir(parents=True, exist_ok=True)
    cost = float(config.get("cost", 0.0))
    stats = {s: round_stats(records, s, cost) for s in (settings if settings is not None else settings_of(records))}
    paths: list[Path] = []
    png = _plot(stats)
    if png is not None:
        (out / "price_deal.png").write_bytes(png)
        paths.append(out / "price_deal.png")
    summary = {
        "run": run_id,
        "config": dict(config),
        "definitions": {
            "deal_rate": "games with a deal / games played (errors left out)",
            "price": "mean price over the games that made a deal",
            "price_change_from_round_1": "mean of (price in round r - price in round 1), streams with a deal in both",
            "deal_rate_change_from_round_1": "mean of (deal in round r - deal in round 1), streams with both games",
            "intervals": "95%: rates Wilson-widened bootstrap; means Student's t; paired deal-rate change "
            "Newcombe's hybrid score interval (method 10)",
        },
        "settings": {s: [r.to_json() for r in rows] for s, rows in stats.items()},
        "paper": PAPER,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    paths.append(out / "summary.json")
    header = (
        "| feedback | round | games | deal rate | mean price | price change vs round 1 | deal-rate change "
        "| deals below cost | errors |"
    )
    md = [f"# Negotiation: run `{run_id}`", "",
          f"{config.get('learner', '?')} learns; seller `{config.get('seller')}`, buyer `{config.get('buyer')}`, "
          f"critic `{config.get('critic')}`, moderator `{config.get('moderator')}`.", "",
          header, "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    rows_html = []
    for s, rows in stats.items():
        for r in rows:
            change, deal_change = fmt_mean(r.price_change, signed=True), fmt_rate_change(r.deal_rate_change)
            cells = [s, str(r.round), str(r.games), str(r.deal_rate), fmt_mean(r.price), change, deal_change,
                     str(r.below_cost), str(r.errors)]  # fmt: skip
            md.append("| " + " | ".join(cells) + " |")
            link = f'<a href="#round-{html.escape(s)}-{r.round}">{r.games}</a>'
            rows_html.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" if i != 2 else f"<td>{link}</td>"
                                              for i, c in enumerate(cells)) + "</tr>")  # fmt: skip
    md += ["", "Paper (Fu et al.), seller's mean deal price before → with AI feedback: GPT-3.5 16.26 → 17.03, "
           "Claude-instant 14.74 → 15.98, Claude-v1.3 15.40 → 16.98; seller deal rate below 50% by round 5.",
           "", "![price and deal rate by round](price_deal.png)", ""]  # fmt: skip
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    paths.append(out / "report.md")
    body = [
        f"<h1>Negotiation: run {html.escape(run_id)}</h1>",
        "<table><tr>" + "".join(f"<th>{h.strip()}</th>" for h in header.strip("|").split("|")) + "</tr>",
        *rows_html,
        "</table>",
    ]
    if png is not None:
        import base64

        data = base64.b64encode(png).decode()
        body.append(f'<p><img alt="price and deal rate by round" src="data:image/png;base64,{data}"></p>')
    for s in stats:
        by_round = games_of(records, s)
        for rnd in sorted(by_round):
            body.append(f'<h2 id="round-{html.escape(s)}-{rnd}">feedback {html.escape(s)}, round {rnd}</h2>')
            for stream in sorted(by_round[rnd]):
                body.append(_game_html(by_round[rnd][stream], s))
    page = ("<!doctype html><meta charset='utf-8'><title>mendlab negotiation</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{border:1px solid #ccc;padding:3px 6px}"
            "table{border-collapse:collapse}.seller{color:#1f5fa8}.buyer{color:#a8431f}.fb{background:#f4f4f4;"
            "white-space:pre-wrap}</style>" + "\n".join(body))  # fmt: skip
    (out / "report.html").write_text(page, encoding="utf-8")
    paths.append(out / "report.html")
    return paths


def _game_html(rec: GameRecord, listed_under: str) -> str:
    title = f"stream {rec.stream}: {rec.outcome}" + (f" — error: {rec.error}" if rec.error else "")
    parts = [f'<details id="{html.escape(_anchor(rec, listed_under))}"><summary>{html.escape(title)}</summary>']
    if rec.feedback:
        parts.append(f'<div class="fb">feedback played with:\n{html.escape(rec.feedback[-1])}</div>')
    if rec.feedback_note:
        parts.append(f"<p><i>{html.escape(rec.feedback_note)}</i></p>")
    parts.append("<ol>")
    checks = {c.after: c for c in rec.checks}
    for i, ln in enumerate(rec.lines):
        mod = checks.get(i)
        extra = f" <i>(moderator: {html.escape(mod.answer)!s} → {mod.deal})</i>" if mod else ""
        tag = " (scripted)" if ln.scripted else ""
        parts.append(f'<li class="{ln.speaker}"><b>{ln.speaker}{tag}:</b> {html.escape(ln.text)}{extra}</li>')
    parts.append("</ol></details>")
    return "".join(parts)
