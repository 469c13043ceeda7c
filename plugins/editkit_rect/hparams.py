"""RECT hyperparameters (Gu et al. 2024, RECT, arXiv 2401.04700)."""

from __future__ import annotations

from typing import Any

import attrs


def _percent(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not 0 < value <= 100:
        raise ValueError(f"{attribute.name}: expected a percentage in (0, 100], got {value!r}")


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name}: expected > 0, got {value!r}")


@attrs.frozen(kw_only=True)
class RectHParams:
    """``k``: percentage of the update's entries that keep their value, the top ones by relative
    change ``|Δ_ij| / (|W_ij| + eps)`` over the whole matrix (entries tied with the k-th largest are
    kept too). Default 40 — AlphaEdit's ``MEMIT_rect`` baseline, whose results editkit reproduces;
    the official RECT code (Gu et al. 2024) zeroes the 80% smallest, i.e. ``k = 20``.
    ``eps``: guards the division where ``W_ij ≈ 0`` (1e-8 as the reference; see :mod:`editkit_rect.mask`).
    """

    k: float = attrs.field(default=40.0, converter=float, validator=_percent)
    eps: float = attrs.field(default=1e-8, converter=float, validator=_positive)
