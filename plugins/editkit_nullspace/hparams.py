"""Null-space constraint hyperparameters."""

from __future__ import annotations

from typing import Any

import attrs


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name}: expected > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class NullspaceHParams:
    """``threshold``: eigenvalues of C0 below it span the null space — absolute (the paper's
    2e-2) or, with ``relative``, a fraction of C0's largest eigenvalue. ``l2``: AlphaEdit's
    ridge (10 in the reference; EasyEdit uses 1). ``mode``: ``auto`` (solve with editors that
    have a solver, else project), ``solve`` or ``project``."""

    threshold: float = attrs.field(default=2e-2, validator=_positive)
    relative: bool = False
    l2: float = attrs.field(default=10.0, validator=_positive)
    mode: str = attrs.field(default="auto", validator=attrs.validators.in_(("auto", "solve", "project")))
