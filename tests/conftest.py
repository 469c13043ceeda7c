"""Shared test fixtures: tiny models and a simple in-memory key-statistics provider."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REAL_DATA = SHARED / "data" / "real"


def require_real_data(name: str) -> Path:
    path = REAL_DATA / name
    if not path.exists():
        pytest.skip(f"real data {name} not available (expected at {path}; ../shared is absent)")
    return path


@pytest.fixture(autouse=True)
def private_stats_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """`editkit run` and `editkit stats` keep key statistics in the user's cache by default: each test gets its
    own store instead (not the developer's cache, and no reuse between tests that would make results depend on
    test order)."""
    monkeypatch.setenv("EDITKIT_STATS_DIR", str(tmp_path_factory.mktemp("stats-store")))
