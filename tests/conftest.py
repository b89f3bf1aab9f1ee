"""Shared fixtures: the bundled models, loaded once per test session (they are real, and not free)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mendlab.models import ChatModel, load_model, load_registry
from mendlab.models.registry import Registry

MENDLAB = str(Path(sys.executable).with_name("mendlab"))


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry()


@pytest.fixture(scope="session")
def smollm(registry: Registry) -> Iterator[ChatModel]:
    model = load_model(registry.get("smollm2-135m"))
    yield model
    model.close()


@pytest.fixture(scope="session")
def qwen(registry: Registry) -> Iterator[ChatModel]:
    model = load_model(registry.get("qwen2.5-coder-0.5b"))
    yield model
    model.close()


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder, as a user would in a fresh project directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"COLUMNS": "200", "NO_COLOR": "1", **extra})
    return env
