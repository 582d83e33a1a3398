"""Shared fixtures: one compiled engine per test session (compilation cached on disk)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

# Apps and servers started by tests keep their rooms database in a temporary directory.
os.environ.setdefault("NNPLAY_DATA_DIR", tempfile.mkdtemp(prefix="nnplay-test-data-"))


@pytest.fixture(scope="session")
def engine():
    from core.engine import Engine, enable_compilation_cache

    enable_compilation_cache(os.environ.get("NNPLAY_JAX_CACHE") or str(Path.home() / ".cache" / "nnplay-jax"))
    return Engine()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
