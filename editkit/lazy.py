"""Lazy package attributes: names that load their module (and torch) on first use.

``__getattr__ = lazy_attributes(__name__, {"KeyStatistics": "editkit.keystats.statistics"})``
keeps ``import package`` cheap (``editkit --help`` imports no torch) while ``package.Name``
works as a normal attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving each of ``names`` (name → module path) on first use."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(module), name)

    return __getattr__
