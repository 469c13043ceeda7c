"""BetaEdit hyperparameters: the authors' ``configs/algs/betaedit.yaml``."""

from __future__ import annotations

from typing import Any

import attrs


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name}: expected > 0, got {value!r}")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name}: expected >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class BetaEditHParams:
    """``lambda1``: weight of ``C0`` inside the projected solve and in the refresh matrix; ``lambda2``: the ridge
    ``λ2·I``; ``threshold``: eigenvalues of ``C0`` (then of ``M``) below it span the null space (absolute, as
    AlphaEdit); ``refresh_every``: ``τ``, edits between refreshes of ``P`` (0: never); ``abort_norm``: the stream
    stops (the batch is undone, the run ends with an error) when an update has ``‖Δ‖_F/√u`` above it (0: never).
    """

    lambda1: float = attrs.field(default=3000.0, validator=_non_negative)
    lambda2: float = attrs.field(default=10.0, validator=_positive)
    threshold: float = attrs.field(default=2e-2, validator=_positive)
    refresh_every: int = attrs.field(default=1000, validator=_non_negative)
    abort_norm: float = attrs.field(default=20.0, validator=_non_negative)
