"""PRUNE hyperparameters (Ma et al. 2025, PRUNE, arXiv 2405.16821)."""

from __future__ import annotations

import math
from typing import Any

import attrs


def _above_one(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value > 1:
        raise ValueError(f"{attribute.name}: expected > 1 (the logarithm's base), got {value!r}")


@attrs.frozen(kw_only=True)
class PruneHParams:
    """``mode``: ``final`` (default; once, on ``Δ_n = W_n − W0`` when the run finishes — the paper and
    both references) or ``every_batch`` (after every batch, ``W_t = W0 + F(W_{t−1} + Δ_t − W0)``; a
    different algorithm since F is nonlinear: ``F(a + b) ≠ F(a) + F(b)``). ``reduce``: ``log``
    (``F(σ) = log_α σ − log_α σ_max + σ_max``) or ``linear`` (``F(σ) = (σ + σ_max)/2``), for singular
    values ``σ ≥ σ_max(W0)``. ``alpha``: the logarithm's base α (e; the PRUNE code's ``log2``,
    ``log1_5``, ``log1_2`` are α = 2, 1.5, 1.2). Qualify ``mode`` as ``prune.mode`` when ``nullspace``
    also runs (it has a ``mode`` too)."""

    mode: str = attrs.field(default="final", validator=attrs.validators.in_(("final", "every_batch")))
    reduce: str = attrs.field(default="log", validator=attrs.validators.in_(("log", "linear")))
    alpha: float = attrs.field(default=math.e, converter=float, validator=_above_one)
