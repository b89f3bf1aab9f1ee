"""What the commands print, for people and for scripts.

A model name split over two table lines cannot be found with grep, and a table cannot be read by a
script at all. So every table printed through these consoles keeps its name columns on one line, a
pipe gets a wide console (rich would otherwise assume 80 columns), and a `--json` run records every
table and message it would have shown, prints them on stderr for the person watching, and leaves
stdout to one JSON document at the end. The experiment runners build their own tables; intercepting
`print` here covers them without each runner knowing about JSON.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.console import Console
from rich.errors import MarkupError
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

# Columns that hold names (models, runs, setups of models): they never wrap.
NAME_COLUMNS = frozenset({"name", "model", "run", "configuration", "feedback"})
PIPE_WIDTH = 200  # the width of a console that writes to a pipe or file and was given no $COLUMNS


def plain(obj: object) -> str:
    """The text a person sees, without rich markup."""
    if isinstance(obj, Text):
        return obj.plain
    if isinstance(obj, str):
        try:
            return Text.from_markup(obj).plain
        except MarkupError:
            return obj
    return str(obj)


def table_json(table: Table) -> dict[str, Any]:
    """A table as {title, columns, rows}: each row maps its column's header to the cell's text."""
    headers = [plain(c.header) for c in table.columns]
    cells = [[plain(cell) for cell in c.cells] for c in table.columns]
    rows = [dict(zip(headers, row, strict=True)) for row in zip(*cells, strict=True)] if cells else []
    out: dict[str, Any] = {"title": plain(table.title) if table.title is not None else None, "columns": headers}
    if table.caption is not None:
        out["caption"] = plain(table.caption)
    out["rows"] = rows
    return out


def _keep_names_whole(table: Table) -> None:
    for column in table.columns:
        if plain(column.header).lower() in NAME_COLUMNS:
            column.no_wrap = True
            column.min_width = max([cell_len(plain(c)) for c in (column.header, *column.cells)])


class OutConsole(Console):
    """The console of a command's output: name columns of its tables never wrap, and are never cut.

    A table whose names cannot fit beside its other columns' narrowest is printed wider than the
    console (rich would cut every column, names too, to make it fit): a line the terminal wraps is
    ugly, a name cut short is wrong."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        width = self.width
        needed = width
        for obj in objects:
            if isinstance(obj, Table):
                _keep_names_whole(obj)
                fits = Measurement.get(self, self.options.update_width(10_000), obj)
                if fits.minimum > width:  # some room over the minimum: squeezed to that, rich folds oddly
                    needed = max(needed, min(fits.maximum, fits.minimum + width // 2))
        if needed <= width:
            super().print(*objects, **kwargs)
            return
        self.width = needed
        try:
            super().print(*objects, **kwargs)
        finally:
            self.width = width


def stdout_console() -> OutConsole:
    """Standard output's console; wide when it is not a terminal, unless $COLUMNS says otherwise."""
    piped = not sys.stdout.isatty() and not os.environ.get("COLUMNS", "").isdigit()
    return OutConsole(width=PIPE_WIDTH if piped else None)


class Recorder(OutConsole):
    """For `--json`: shows everything on stderr, as it comes, and keeps the tables and messages."""

    unsent: ClassVar[list[Recorder]] = []  # documents not printed yet: a run that ends incomplete prints its own

    def __init__(self, **extra: Any) -> None:
        super().__init__(stderr=True)
        self.extra = extra
        self.tables: list[dict[str, Any]] = []
        self.messages: list[str] = []
        Recorder.unsent.append(self)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        for obj in objects:
            if isinstance(obj, Table):
                self.tables.append(table_json(obj))
            elif isinstance(obj, (str, Text)) and plain(obj).strip():
                self.messages.append(plain(obj))
        super().print(*objects, **kwargs)

    def document(self, **extra: Any) -> dict[str, Any]:
        """What was shown: the fields given, the tables, the files written, the other messages."""
        wrote = [m.removeprefix("wrote ") for m in self.messages if m.startswith("wrote ")]
        other = [m for m in self.messages if not m.startswith("wrote ")]
        return {**self.extra, **extra, "tables": self.tables, "wrote": wrote, "messages": other}

    def emit(self, **extra: Any) -> None:
        """The document on stdout, once."""
        if self in Recorder.unsent:
            Recorder.unsent.remove(self)
            emit_json(self.document(**extra))

    @classmethod
    def emit_unsent(cls, **extra: Any) -> None:
        """For a command that ended in an error after it showed results (a run with failed samples
        exits 3): a script still gets what did work, beside the exit code that says some did not."""
        for rec in list(cls.unsent):
            rec.emit(**extra)


def emit_json(doc: object) -> None:
    """One JSON document on stdout, alone."""
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()
