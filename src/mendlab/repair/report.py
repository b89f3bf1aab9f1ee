"""Plots and tables for self-repair, as in the paper: pass rate against tokens spent, and the heatmap
of self-repair over the no-repair baseline at the same budget ("O.O.B." where the baseline cannot reach)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mendlab.repair.passk import Point, interpolate_baseline
from mendlab.reports.figures import pyplot, to_png


@dataclass(frozen=True)
class Config:
    """One self-repair configuration of a run: who writes code, who gives feedback, who repairs."""

    label: str
    repair: list[Point]
    baseline: list[Point]


def plot_pass_vs_tokens(cfg: Config) -> bytes:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=150)
    bx = [p.tokens for p in cfg.baseline]
    by = [p.pass_rate for p in cfg.baseline]
    bs = [p.pass_std for p in cfg.baseline]
    ax.plot(bx, by, color="black", lw=1.2, label="no repair (k, 0): exact pass@k")
    ax.fill_between(
        bx,
        [y - s for y, s in zip(by, bs, strict=True)],
        [y + s for y, s in zip(by, bs, strict=True)],
        color="black",
        alpha=0.12,
        lw=0,
    )
    nps = sorted({p.n_p for p in cfg.repair})
    nfrs = sorted({p.n_fr for p in cfg.repair})
    markers = "osD^vP*X"
    cmap = plt.get_cmap("viridis")
    for i, n_p in enumerate(nps):
        for j, n_fr in enumerate(nfrs):
            pt = next((p for p in cfg.repair if p.n_p == n_p and p.n_fr == n_fr), None)
            if pt is None:
                continue
            ax.errorbar(
                pt.tokens,
                pt.pass_rate,
                xerr=pt.tokens_std,
                yerr=pt.pass_std,
                fmt=markers[j % len(markers)],
                color=cmap(i / max(1, len(nps) - 1)),
                ms=5,
                capsize=2,
                lw=0.8,
                label=f"n_fr={n_fr}" if i == 0 else None,
            )
    for i, n_p in enumerate(nps):
        ax.plot([], [], color=cmap(i / max(1, len(nps) - 1)), lw=4, label=f"n_p={n_p}")
    ax.set_xlabel("mean tokens per task (programs + feedback + repairs)")
    ax.set_ylabel("pass rate")
    ax.set_ylim(0, 1)
    ax.set_title(cfg.label, fontsize=8)
    ax.legend(fontsize=7, frameon=False, ncol=2)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return to_png(fig)


def heatmap_cells(cfg: Config) -> list[list[str]]:
    nps = sorted({p.n_p for p in cfg.repair})
    nfrs = sorted({p.n_fr for p in cfg.repair})
    rows = []
    for n_p in nps:
        row = []
        for n_fr in nfrs:
            pt = next((p for p in cfg.repair if p.n_p == n_p and p.n_fr == n_fr), None)
            base = interpolate_baseline(cfg.baseline, pt.tokens) if pt else None
            row.append(
                "" if pt is None else "O.O.B." if base is None else ("∞" if base == 0 else f"{pt.pass_rate / base:.2f}")
            )
        rows.append(row)
    return rows


def plot_heatmap(cfg: Config) -> bytes:
    plt = pyplot()
    import numpy as np

    nps = sorted({p.n_p for p in cfg.repair})
    nfrs = sorted({p.n_fr for p in cfg.repair})
    cells = heatmap_cells(cfg)
    values = np.array([[float(c) if c not in ("", "O.O.B.", "∞") else np.nan for c in row] for row in cells])
    fig, ax = plt.subplots(figsize=(1.2 * len(nfrs) + 2, 0.6 * len(nps) + 1.6), dpi=150)
    im = ax.imshow(values, cmap="RdBu", vmin=0.5, vmax=1.5, aspect="auto")
    for i in range(len(nps)):
        for j in range(len(nfrs)):
            ax.text(
                j,
                i,
                cells[i][j],
                ha="center",
                va="center",
                fontsize=8,
                color="black" if cells[i][j] in ("O.O.B.", "∞") or 0.7 < values[i, j] < 1.3 else "white",
            )
    ax.set_xticks(range(len(nfrs)), [str(x) for x in nfrs])
    ax.set_yticks(range(len(nps)), [str(x) for x in nps])
    ax.set_xlabel("n_fr (repairs per failing program)")
    ax.set_ylabel("n_p (initial programs)")
    ax.set_title("self-repair / baseline at the same token budget", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    return to_png(fig)


METHOD = (
    "How to read this. The black line is the baseline without repair, (k, 0): the unbiased pass@k over the "
    "N_p programs sampled per task (exact, k = 1..N_p), at k programs' expected tokens; its band is ±1 std "
    "of one run's pass rate. Each marker is self-repair at (n_p, n_fr), estimated by bootstrap as in Olausson "
    "et al.: n_p programs per task drawn with replacement (n_p ≤ N_p/2, so a program drawn twice is rare), "
    "then for each failing one n_fr repairs: a feedback, its repairs, then another feedback; a feedback's "
    "tokens count once however many of its repairs are used. Tokens are those generated (programs, "
    "feedback, repairs; prompts not counted), per task. Bars are ±1 std over replicates. The heatmap divides "
    "self-repair's pass rate by the baseline's at the same tokens (interpolated); O.O.B. where the "
    "baseline never spends that much."
)


def write_repair_report(configs: Sequence[Config], summary: Sequence[list[str]], out: Path, title: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    md = [f"# {title}", ""]
    h = [f"<h1>{html.escape(title)}</h1>"]
    header = ["configuration", "programs passing", "repairs passing", "best self-repair vs baseline"]
    md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in summary]
    md += ["", METHOD, ""]
    h.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in header) + "</tr>")
    h += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in summary]
    h.append("</table>")
    h.append(f"<p>{html.escape(METHOD)}</p>")
    written: list[Path] = []
    for k, cfg in enumerate(configs):
        slug = f"repair_{k + 1}"
        curve, heat = plot_pass_vs_tokens(cfg), plot_heatmap(cfg)
        for name, data in ((f"{slug}_pass_vs_tokens.png", curve), (f"{slug}_heatmap.png", heat)):
            (out / name).write_bytes(data)
            written.append(out / name)
        md += [
            f"## {cfg.label}",
            "",
            f"![pass rate vs tokens]({slug}_pass_vs_tokens.png)",
            "",
            f"![heatmap]({slug}_heatmap.png)",
            "",
        ]
        cells = heatmap_cells(cfg)
        nfrs = sorted({p.n_fr for p in cfg.repair})
        nps = sorted({p.n_p for p in cfg.repair})
        md += ["| n_p \\ n_fr | " + " | ".join(map(str, nfrs)) + " |", "|" + "---|" * (len(nfrs) + 1)]
        md += [f"| {n_p} | " + " | ".join(row) + " |" for n_p, row in zip(nps, cells, strict=True)]
        md.append("")
        h.append(f"<h2>{html.escape(cfg.label)}</h2>")
        for data in (curve, heat):
            h.append(f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}" style="max-width:100%">')
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>mendlab self-repair</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px}</style></head><body>"
        + "\n".join(h)
        + "</body></html>"
    )
    for name, text in (("repair.md", "\n".join(md)), ("repair.html", page)):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)
        written.append(out / name)
    return written
