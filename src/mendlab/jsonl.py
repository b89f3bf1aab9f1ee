"""Reading users' JSONL files: one JSON object per line, blank lines skipped, errors naming file:line."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mendlab.errors import InputError


def read_objects(path: Path, what: str = "file") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (`file:line`, object) for each non-blank line; a .gz file is read through gzip."""
    if not path.is_file():
        raise InputError(f"{path}: no such {what}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        fh = opener(path, "rb")  # bytes, decoded line by line, so that an error names its line
    except OSError as exc:  # no permission, say
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with fh:
        lineno = 0
        while True:
            lineno += 1
            try:
                raw = fh.readline()
            except (OSError, EOFError) as exc:
                raise InputError(f"{path}:{lineno}: unreadable ({exc})") from None
            if not raw:
                return
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{path}:{lineno}: not UTF-8 text") from None
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            except (ValueError, RecursionError) as exc:  # 5000 digits (Python's limit), [[[[… past the stack
                why = "nested too deep" if isinstance(exc, RecursionError) else "a number with too many digits"
                raise InputError(f"{where}: invalid JSON: {why}") from None
            if not isinstance(row, dict):
                raise InputError(f"{where}: expected a JSON object")
            yield where, row
