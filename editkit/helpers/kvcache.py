"""The key/value cache argument of a transformers model, across major versions.

transformers 5.x names the cache ``cache`` (argument and output field); 4.x named it
``past_key_values``. Code that feeds a cache back into a model asks here which name to use.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["cache_argument", "cache_of"]


def cache_argument(module: Any) -> str:
    """The keyword ``module.forward`` takes the cache under: ``cache`` or ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def cache_of(output: Any) -> Any:
    """The cache a forward returned (``output.cache`` or ``output.past_key_values``), or None."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)
