"""Matplotlib without a screen, and figures as PNG bytes: one place for what every plot needs."""

from __future__ import annotations

import io
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (imported late: reports are optional work)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    pyplot().close(fig)
    return buf.getvalue()
