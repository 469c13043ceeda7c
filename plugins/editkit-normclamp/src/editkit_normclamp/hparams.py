"""Hyperparameters of the ``normclamp`` constraint."""

from __future__ import annotations

import math
from typing import Any

import attrs


def _positive_finite(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{attribute.name}: expected a finite number > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class NormclampHParams:
    """``ratio``: the largest allowed ``‖Δ‖_F / ‖W‖_F`` per site and batch (``--set normclamp.ratio=0.05``)."""

    ratio: float = attrs.field(default=0.1, validator=_positive_finite)
