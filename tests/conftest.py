"""Shared test fixtures: tiny models and a simple in-memory key-statistics provider."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REAL_DATA = SHARED / "data" / "real"


def load_script(path: Path) -> ModuleType:
    """Import a script that is no package module (``benchmarks/*.py``, ``docs/*.py``) from its path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def script() -> Callable[[Path], ModuleType]:
    """``script(path)``: the module of a script by its path (see :func:`load_script`)."""
    return load_script


def require_real_data(name: str) -> Path:
    path = REAL_DATA / name
    if not path.exists():
        pytest.skip(f"real data {name} not available (expected at {path}; ../shared is absent)")
    return path


@pytest.fixture(scope="module", autouse=True)
def private_stats_store_for_module_fixtures(tmp_path_factory: pytest.TempPathFactory):
    """Module-scoped fixtures are set up before the per-test store below exists: each test module gets a store of
    its own for them (never the developer's cache, and nothing shared between modules)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDITKIT_STATS_DIR", str(tmp_path_factory.mktemp("module-stats-store")))
        yield


@pytest.fixture(autouse=True)
def private_stats_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """`editkit run` and `editkit stats` keep key statistics in the user's cache by default: each test gets its
    own store instead (not the developer's cache, and no reuse between tests that would make results depend on
    test order)."""
    monkeypatch.setenv("EDITKIT_STATS_DIR", str(tmp_path_factory.mktemp("stats-store")))
