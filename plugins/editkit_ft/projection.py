"""FT-L's per-step constraint: the L∞ box around a reference weight, a row subspace, or both.

Shapes, math layout: ``Δ`` ``[d_out, d_in]``; ``offset`` = ``W_now − W_ref`` ``[d_out, d_in]`` (0 when the
box is around the weights the batch starts from). The box is ``B = {Δ : |offset + Δ|_∞ ≤ ε}`` (its
projection: clamp ``offset + Δ`` to ``[−ε, ε]``), the subspace ``S_P = {Δ : Δ = ΔP}``.

Both together: Dykstra's alternating projections (Boyle & Dykstra 1986), which converge to the
orthogonal projection of ``Δ`` onto ``B ∩ S_P``; after a finite number of rounds the last projection
is onto ``S_P``, so ``ΔP = Δ`` holds exactly and the box approximately (one round = clamp, then
project).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Projection = Callable[[torch.Tensor], torch.Tensor]


def box_projection(offset: torch.Tensor | float, linf: float) -> Projection:
    """``Δ ↦ clamp(offset + Δ, −ε, ε) − offset``: the nearest point of the box (elementwise)."""
    return lambda delta: torch.clamp(offset + delta, -linf, linf) - offset


def dykstra(delta: torch.Tensor, box: Projection | None, subspace: Projection | None, rounds: int) -> torch.Tensor:
    """``Δ`` projected onto ``box ∩ subspace`` by ``rounds`` of Dykstra's algorithm, ending with the
    subspace; with one of them None, that one projection alone."""
    if box is None:
        return delta if subspace is None else subspace(delta)
    if subspace is None:
        return box(delta)
    x = delta
    p = torch.zeros_like(delta)
    q = torch.zeros_like(delta)
    for _ in range(rounds):
        y = box(x + p)
        p = x + p - y
        x = subspace(y + q)
        q = y + q - x
    return x


__all__ = ["box_projection", "dykstra"]
