"""The least-squares solve of methods.md §11.1, in float64::

    min_Δ ‖Δ K − R‖² + tr(Δ B Δᵀ) + α‖Δ‖²,  rows of Δ in range(P)
    ⇒ Δ = R Kᵀ Q (Qᵀ A Q + α I)⁻¹ Qᵀ,   A = K Kᵀ + B,   P = Q Qᵀ

MEMIT: B = λC0 (+ Cp for MEMIT_seq), Q = I, α = 0. AlphaEdit: B = Cp, Q = null-space basis,
α = L2. When the subspace is stored as the complement (P = I − U Uᵀ, U smaller), the
equivalent SPD system ``(P A P + α I) Δᵀ = P K Rᵀ`` is solved instead (methods.md §6).
"""

from __future__ import annotations

import torch

from editkit.updates import Subspace


def _spd_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a⁻¹ b`` for symmetric positive (semi)definite ``a``: Cholesky, LU as fallback."""
    factor, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0:
        return torch.cholesky_solve(b, factor)
    return torch.linalg.solve(a, b)


def solve_update(
    keys: torch.Tensor,
    residual: torch.Tensor,
    preservation: torch.Tensor | None,
    ridge: float,
    subspace: Subspace | None,
) -> torch.Tensor:
    """Δ ``[d_out, d_in]`` for keys ``K`` ``[d_in, u]``, residual ``R`` ``[d_out, u]`` and
    preservation ``B`` ``[d_in, d_in]`` (None: zero); all computed in float64."""
    k = keys.double()
    r = residual.double()
    a = k @ k.T  # [d_in, d_in]
    if preservation is not None:
        a = a + preservation.double()
    rhs = k @ r.T  # [d_in, d_out] = K Rᵀ
    if subspace is None:
        a.diagonal().add_(ridge)
        return _spd_solve(a, rhs).T
    q = subspace.basis.double()  # [d_in, r]
    if subspace.kind == "range":
        small = q.T @ a @ q  # [r, r]
        small.diagonal().add_(ridge)
        return (q @ _spd_solve(small, q.T @ rhs)).T
    if ridge <= 0:
        raise ValueError("a complement-stored subspace needs ridge > 0 for a unique solution")
    # P = I − U Uᵀ: P A P = A − U(UᵀA) − (A U)Uᵀ + U(UᵀAU)Uᵀ, one d_in² temporary at a time
    au = a @ q  # [d_in, c]
    uau = q.T @ au  # [c, c]
    pap = a - q @ au.T - au @ q.T + q @ uau @ q.T
    pap.diagonal().add_(ridge)
    prhs = rhs - q @ (q.T @ rhs)
    return _spd_solve(pap, prhs).T
