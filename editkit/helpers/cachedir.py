"""The user's editkit cache directory: ``$EDITKIT_CACHE``, else ``~/.cache/editkit``.

Everything editkit caches for a user lives under it, one folder per kind (``world/``,
``stats/``, ``datasets/``); entries are keyed by exactly what they hold, so sharing the folder
between runs and projects is safe.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_root"]

CACHE_ENV = "EDITKIT_CACHE"


def cache_root() -> Path:
    """``$EDITKIT_CACHE`` (when set and non-empty), else ``~/.cache/editkit``; not created here."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/editkit").expanduser()
