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
