"""Null-space constraint hyperparameters."""

from __future__ import annotations

from typing import Any

import attrs


def _positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name}: expected > 0, got {value!r}")


def _share(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not 0 < value <= 1:
        raise ValueError(f"{attribute.name}: expected a share of C0's energy in (0, 1], e.g. 0.01, got {value!r}")
    if value is not None and instance.relative:
        raise ValueError("energy and relative are two different rules for the null space: give one")


MODES = ("auto", "solve", "project", "joint")


@attrs.frozen(kw_only=True)
class NullspaceHParams:
    """``threshold``: eigenvalues of C0 below it span the null space — absolute (the paper's
    2e-2) or, with ``relative``, a fraction of C0's largest eigenvalue. ``l2``: AlphaEdit's
    ridge (10 in the reference; EasyEdit uses 1). ``mode``: ``auto`` (solve with editors that
    have a solver, else project), ``solve``, ``project`` or ``joint``.

    ``joint`` (for ``--constraint rect --constraint nullspace``): the solve is not restricted (as in
    ``project``); each row ``Δ_i`` of the update is projected orthogonally onto ``range(P) ∩ {x : x_j = 0
    where Δ_ij = 0}``, so ``ΔP = Δ`` holds *and* every entry an earlier constraint (RECT) zeroed stays
    zero (:mod:`editkit_nullspace.joint`). That subspace has dimension ``|support_i| + r − d_in``
    generically (``r`` = dim range(P)); rows where that is ≤ 0 become 0. Cost: one SVD of a
    ``[d_in, r]`` matrix per distinct zero pattern of Δ's rows. Without zeros in Δ it is ``project``.
    """

    threshold: float = attrs.field(default=2e-2, validator=_positive)
    relative: bool = False
    energy: float | None = attrs.field(default=None, validator=_share)
    l2: float = attrs.field(default=10.0, validator=_positive)
    mode: str = attrs.field(default="auto", validator=attrs.validators.in_(MODES))
