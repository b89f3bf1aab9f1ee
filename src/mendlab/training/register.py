"""Declaring a tuned model in mendlab.toml, so every command can use it by name at once.

The entry is an ordinary `[models.NAME]` table (`backend = "transformers"`, `path = ` the saved HF
folder), marked by a comment line, so that training again under the same name replaces our own
entry and never one the user wrote. The file is edited line by line (the user's comments and order
stay), written whole through a temporary file, and read back through the registry: a file the
registry would refuse is never left behind.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from mendlab.errors import ConfigError, MendlabError
from mendlab.models.registry import CATALOGUE, DEFAULT_CONFIG, load_registry

MARK = "# written by `mendlab train sft`"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise MendlabError(f"--name {name!r}: letters, digits, '.', '_' and '-' only (no '@'), starting with one")
    if any(m.name == name for m in CATALOGUE):
        raise MendlabError(f"--name {name!r} is a bundled model's name: choose another")


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _block(name: str, folder: Path, config: Path, description: str, backend: str) -> list[str]:
    try:
        shown = os.path.relpath(folder.resolve(), config.resolve().parent)
    except ValueError:  # another drive
        shown = str(folder.resolve())
    if shown.startswith(".."):
        shown = str(folder.resolve())
    return [
        f"[models.{name}]",
        MARK,
        f"backend = {_toml_string(backend)}",
        f"path = {_toml_string(shown)}",
        f"description = {_toml_string(description)}",
    ]


def _table_span(lines: list[str], name: str) -> tuple[int, int] | None:
    """[start, end) of the `[models.NAME]` table's lines (blank lines before the next table left out)."""
    header = re.compile(r"^\s*\[\s*models\s*\.\s*(?:\"" + re.escape(name) + r"\"|" + re.escape(name) + r")\s*\]")
    for i, line in enumerate(lines):
        if header.match(line):
            end = i + 1
            while end < len(lines) and not re.match(r"^\s*\[", lines[end]):
                end += 1
            while end > i + 1 and not lines[end - 1].strip():
                end -= 1
            return i, end
    return None


def register(
    name: str, folder: Path, config: Path | None, description: str, backend: str = "transformers"
) -> Path:
    """Add or replace our `[models.NAME]` entry (an HF folder through transformers, or an exported GGUF
    through llama.cpp); the config file written."""
    check_name(name)
    path = config if config is not None else Path(DEFAULT_CONFIG)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    lines = old.splitlines()
    block = _block(name, folder, path, description, backend)
    span = _table_span(lines, name)
    if span is not None:
        start, end = span
        if not any(line.strip() == MARK for line in lines[start:end]):
            raise ConfigError(
                f"{path}:{start + 1}: [models.{name}] is your own entry, not one written by training: "
                "choose another --name, or remove that entry"
            )
        lines[start:end] = block
    else:
        if lines and lines[-1].strip():
            lines.append("")
        lines.extend(block)
    text = "\n".join(lines) + "\n"
    parent = path.resolve().parent
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        load_registry(tmp).get(name)  # the registry reads it back, or nothing changes
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
