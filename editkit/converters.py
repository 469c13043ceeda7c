"""attrs converters with the types a checker needs.

``attrs.field(converter=tuple)`` makes mypy's attrs plugin type the ``__init__`` argument as
``Iterable[_T_co]`` with an unbound type variable, which no argument satisfies; :func:`to_tuple` is the same
conversion with a concrete signature.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["to_settings", "to_tuple"]


def to_tuple(values: Iterable[Any]) -> tuple[Any, ...]:
    """``tuple(values)``."""
    return tuple(values)


def to_settings(values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> tuple[tuple[str, str], ...]:
    """Hyperparameters in ``--set`` form (a mapping or pairs) as sorted ``(key, value)`` pairs of strings."""
    return tuple(sorted((str(k), str(x)) for k, x in dict(values).items()))
