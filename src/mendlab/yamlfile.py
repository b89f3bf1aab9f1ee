"""YAML files that users write (scenarios, games): every key keeps its line, so that an error names the
file, the line and the field instead of a traceback."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mendlab.errors import ConfigError


class LocatedYaml:
    """YAML data plus the line of every key, so errors can point at the file's line."""

    def __init__(self, where: str, text: str, what: str = "file") -> None:
        self.where = where
        self.lines: dict[tuple[Any, ...], int] = {}
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{where}{line}: invalid YAML: {problem}") from None
        if node is None:
            raise ConfigError(f"{where}: empty {what}")
        self.data = self._convert(node, ())

    def _convert(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                key = knode.value
                self.lines[(*path, key)] = knode.start_mark.line + 1
                out[key] = self._convert(vnode, (*path, key))
                self.lines[(*path, key)] = knode.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._convert(item, (*path, i)) for i, item in enumerate(node.value)]
        return yaml.SafeLoader("").construct_object(node, deep=True)

    def fail(self, path: tuple[Any, ...], msg: str) -> ConfigError:
        line = None
        p = path
        while line is None and p:
            line = self.lines.get(p)
            p = p[:-1]
        name = "".join(f"[{k}]" if isinstance(k, int) else (f".{k}" if i else str(k)) for i, k in enumerate(path))
        return ConfigError(f"{self.where}:{line or 1}: " + (f"field '{name}': {msg}" if name else msg))

    def get(self, obj: dict[str, Any], path: tuple[Any, ...], key: str, kind: type, required: bool = True) -> Any:
        """`obj[key]` checked to be a `kind` (numbers read as text where text is wanted)."""
        if key not in obj:
            if required:
                raise self.fail(path, f"missing field '{key}'")
            return None
        value = obj[key]
        if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            raise self.fail((*path, key), f"must be {kind.__name__}, got {type(value).__name__}")
        return value

    def known(self, obj: dict[str, Any], path: tuple[Any, ...], allowed: set[str]) -> None:
        for key in obj:
            if key not in allowed:
                raise self.fail((*path, key), f"unknown field (expected one of: {', '.join(sorted(allowed))})")


def builtin_or_file(
    name_or_path: str, package: str, folder: str, builtin: tuple[str, ...], what: str
) -> tuple[str, str]:
    """(text, where) of a built-in file by name, or of a user's YAML file by path."""
    if name_or_path in builtin:
        ref = resources.files(package) / folder / f"{name_or_path}.yaml"
        return ref.read_text(encoding="utf-8"), f"{name_or_path}.yaml"
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"{name_or_path}: no such {what} (built in: {', '.join(builtin)}; or a YAML file)")
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
