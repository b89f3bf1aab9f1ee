"""The arena's leaderboard as a figure: ratings with their 95% intervals, fix votes beside first answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mendlab.arena.ratings import Rating
from mendlab.reports.figures import pyplot, to_png

TITLES = {"fix": "Fixes (votes on the answers to a fix request)", "first": "First answers"}


def ratings_figure(boards: Mapping[str, Sequence[Rating]]) -> bytes | None:
    """One panel per vote kind, models sorted by rating, horizontal 95% bars; None without votes."""
    kinds = [k for k, board in boards.items() if board]
    if not kinds:
        return None
    plt = pyplot()
    rows = max(len(boards[k]) for k in kinds)
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.4 * len(kinds), 0.55 * rows + 1.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        board = list(reversed(boards[kind]))  # best at the top
        y = range(len(board))
        ratings = [r.rating for r in board]
        err = [[r.rating - r.low for r in board], [r.high - r.rating for r in board]]
        ax.errorbar(ratings, list(y), xerr=err, fmt="o", color="#1f77b4", ecolor="#9ecae1", elinewidth=3, capsize=0)
        ax.set_yticks(list(y), [f"{r.model} ({r.votes})" for r in board])
        ax.axvline(1000, color="#bbbbbb", lw=0.8, zorder=0)
        ax.set_xlabel("Bradley–Terry rating (Elo scale) with 95% interval")
        ax.set_title(TITLES.get(kind, kind), fontsize=10)
        ax.margins(y=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return to_png(fig)
