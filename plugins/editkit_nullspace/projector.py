"""The null-space projector ``P`` from the preserved-key moment ``C0`` (AlphaEdit,
Fang et al. 2025, arXiv 2410.02355, §3).

``C0 = U Λ Uᵀ``; ``P = Σ_{i ∈ N} u_i u_iᵀ`` over the chosen null set ``N`` of eigen-directions,
stored as whichever basis is smaller: the null space itself (``P = QQᵀ``) or its complement
(``P = I − QQᵀ``). ``N`` is chosen by one of two rules (:func:`null_mask`):

* a threshold ``τ`` (absolute, AlphaEdit's ``2e-2``, or relative: ``τ = threshold · λ_max``):
  ``N = {i : λ_i < τ}``;
* an energy share ``e`` (the AlphaEdit author's recommendation, on the reference repository's issue tracker, for
  models where no eigenvalue is below the published threshold): with the eigenvalues sorted ascending,
  ``λ_(1) ≤ … ≤ λ_(d)``, and the trace ``T = Σ_j max(λ_j, 0)`` (C0's energy, ``E‖k‖²``), ``N`` holds
  the ``k`` smallest, ``k`` the largest count with ``Σ_{i≤k} max(λ_(i), 0) < e · T``. The directions
  the update may use then carry less than the share ``e`` of the preserved keys' energy.
"""

from __future__ import annotations

from typing import Any

import torch

from editkit.api import Subspace


def energy_count(eigenvalues: torch.Tensor, energy: float) -> int:
    """``k``: how many of the smallest eigenvalues have a cumulative share of the trace below ``energy``.

    Negative eigenvalues (rounding in a PSD matrix) count as 0. ``0 < energy <= 1``; with a zero trace
    nothing is below any positive share of it, so ``k`` is 0.
    """
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy!r}")
    values = torch.sort(eigenvalues.detach().double().clamp_min(0).flatten()).values
    total = float(values.sum())
    if total <= 0:
        return 0
    cumulative = torch.cumsum(values, dim=0)  # cumulative[k-1] = energy of the k smallest
    return int((cumulative < energy * total).sum())  # cumulative is non-decreasing: a prefix


def null_mask(eigenvalues: torch.Tensor, threshold: float, relative: bool, energy: float | None = None) -> torch.Tensor:
    """``[d_in]`` bool: which eigen-directions span the null space (see the module docstring).

    With ``energy`` the threshold rule is not used; ties at the cut are broken by position in
    ``eigenvalues`` (a stable sort).
    """
    if energy is None:
        tau = threshold * float(eigenvalues.max()) if relative else threshold
        return eigenvalues < tau
    k = energy_count(eigenvalues, energy)
    order = torch.sort(eigenvalues.detach().double().flatten(), stable=True).indices
    mask = torch.zeros(eigenvalues.numel(), dtype=torch.bool, device=eigenvalues.device)
    mask[order[:k]] = True
    return mask


def null_space(eigenvalues: torch.Tensor, eigenvectors: torch.Tensor, threshold: float, relative: bool,
               energy: float | None = None) -> Subspace:
    """Subspace of eigenvectors ``[d_in, d_in]`` (columns) in the null set of :func:`null_mask`."""
    null = null_mask(eigenvalues, threshold, relative, energy)  # [d_in] bool
    n_null = int(null.sum())
    if n_null <= eigenvalues.numel() - n_null:
        return Subspace(basis=eigenvectors[:, null].double().contiguous(), kind="range")
    return Subspace(basis=eigenvectors[:, ~null].double().contiguous(), kind="complement")


def written_invariant(sub: Subspace, delta: torch.Tensor, weight: torch.Tensor) -> dict[str, Any]:
    """``‖Δ − ΔP‖ / ‖Δ‖`` on an update actually written (``delta`` ``[d_out, d_in]``, ``weight`` the site's weight
    after it). It holds when below what rounding the weights to their storage dtype can cause:
    ``2·eps·‖W‖/‖Δ‖`` (plus 1e-9), since Δ there is a difference of two stored weights."""
    norm = float(delta.norm())
    value = float((delta - sub.project_rows(delta)).norm()) / norm if norm > 0 else 0.0
    tolerance = 1e-9 + (2 * torch.finfo(weight.dtype).eps * float(weight.norm()) / norm if norm > 0 else 0.0)
    return {"invariant": "|D - DP|/|D|", "value": value, "tolerance": tolerance, "holds": value <= tolerance}
