"""YAML files that users write (scenarios, games): every key keeps its line, so that an error names the
file, the line and the field instead of a traceback."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mendlab.errors import ConfigError
from mendlab.textfile import read_text

MAX_NODES = 100_000  # more values than any scenario or game a person writes


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
        self._nodes = 0
        self._open: set[int] = set()
        self.data = self._convert(node, ())

    def _convert(self, node: yaml.Node, path: tuple[Any, ...]) -> Any:
        line = node.start_mark.line + 1
        self.lines[path] = line
        # Aliases make a graph: one that refers to itself never ends, and a few nested ones ("billion
        # laughs") expand past any memory. Neither is a file a person wrote.
        self._nodes += 1
        if self._nodes > MAX_NODES or id(node) in self._open:
            why = "refers to itself" if id(node) in self._open else f"expands to more than {MAX_NODES} values"
            raise ConfigError(f"{self.where}:{line}: invalid YAML: an alias {why}")
        if isinstance(node, yaml.MappingNode):
            self._open.add(id(node))
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    raise ConfigError(f"{self.where}:{knode.start_mark.line + 1}: a key must be plain text")
                key = knode.value
                self.lines[(*path, key)] = knode.start_mark.line + 1
                out[key] = self._convert(vnode, (*path, key))
                self.lines[(*path, key)] = knode.start_mark.line + 1
            self._open.discard(id(node))
            return out
        if isinstance(node, yaml.SequenceNode):
            self._open.add(id(node))
            items = [self._convert(item, (*path, i)) for i, item in enumerate(node.value)]
            self._open.discard(id(node))
            return items
        try:
            return yaml.SafeLoader("").construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:  # 0000-01-01, !!binary ?, …
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{self.where}:{line}: invalid value {node.value!r}: {problem}") from None

    def fail(self, path: tuple[Any, ...], msg: str) -> ConfigError:
        line = None
        p = path
        while line is None and p:
            line = self.lines.get(p)
            p = p[:-1]
        name = "".join(f"[{k}]" if isinstance(k, int) else (f".{k}" if i else str(k)) for i, k in enumerate(path))
        if not name.isprintable():  # a key with a newline in it: the error stays on one line
            name = repr(name)[1:-1]
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
    return read_text(path), str(path)
