"""Reading a user's text file whole (a model file, a scenario, a game, feedback a person wrote).

Any failure is the user's to fix, so it is a MendlabError of the caller's kind naming the file, and
the line where the text stops being UTF-8, rather than a codec's traceback.
"""

from __future__ import annotations

from pathlib import Path

from mendlab.errors import ConfigError, MendlabError


def read_text(path: Path, error: type[MendlabError] = ConfigError) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:  # a folder, no permission, gone since it was checked
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x})") from None
