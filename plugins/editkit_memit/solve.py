"""The least-squares solve of methods.md §11.1, in float64::

    min_Δ ‖Δ K − R‖² + tr(Δ B Δᵀ) + α‖Δ‖²,  rows of Δ in range(P)
    ⇒ Δ = R Kᵀ Q (Qᵀ A Q + α I)⁻¹ Qᵀ,   A = K Kᵀ + B,   P = Q Qᵀ

MEMIT: B = λC0 (+ Cp for MEMIT_seq), Q = I, α = 0. AlphaEdit: B = Cp, Q = null-space basis,
α = L2. When the subspace is stored as the complement (P = I − U Uᵀ, U smaller), the
equivalent SPD system ``(P A P + α I) Δᵀ = P K Rᵀ`` is solved instead (methods.md §6).
"""

from __future__ import annotations

from collections.abc import Sequence

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
    preservation: torch.Tensor | Sequence[tuple[float, torch.Tensor]] | None,
    ridge: float,
    subspace: Subspace | None,
) -> torch.Tensor:
    """Δ ``[d_out, d_in]`` for keys ``K`` ``[d_in, u]``, residual ``R`` ``[d_out, u]`` and
    preservation ``B`` ``[d_in, d_in]`` — one matrix, or weighted terms ``[(λ, C0), (1, Cp)]``
    summed without temporaries; None: zero. Computed in float64, with at most one ``d_in²``
    working matrix besides the Cholesky factor (the inputs are never modified)."""
    k = keys.double()
    r = residual.double()
    terms = _terms(preservation)
    rhs = k @ r.T  # [d_in, d_out] = K Rᵀ
    if subspace is not None and subspace.kind == "range":
        # Qᵀ A Q = (QᵀK)(QᵀK)ᵀ + Σ λ QᵀBQ: never forms A
        q = subspace.basis.double()  # [d_in, r]
        qk = q.T @ k  # [r, u]
        small = qk @ qk.T  # [r, r]
        for weight, term in terms:
            small.add_(q.T @ (term.double() @ q), alpha=weight)
        small.diagonal().add_(ridge)
        return (q @ _spd_solve(small, q.T @ rhs)).T
    a = k @ k.T  # [d_in, d_in], the one working matrix
    for weight, term in terms:
        a.add_(term.double(), alpha=weight)
    if subspace is None:
        a.diagonal().add_(ridge)
        return _spd_solve(a, rhs).T
    if ridge <= 0:
        raise ValueError("a complement-stored subspace needs ridge > 0 for a unique solution")
    # P = I − U Uᵀ: P A P = A − U(UᵀA) − (AU)Uᵀ + U(UᵀAU)Uᵀ, in place on a
    u = subspace.basis.double()  # [d_in, c]
    au = a @ u  # [d_in, c]
    uau = u.T @ au  # [c, c]
    a.addmm_(u, au.T, alpha=-1.0)
    a.addmm_(au, u.T, alpha=-1.0)
    a.addmm_(u @ uau, u.T)
    a.diagonal().add_(ridge)
    return _spd_solve(a, rhs - u @ (u.T @ rhs)).T


def _terms(
    preservation: torch.Tensor | Sequence[tuple[float, torch.Tensor]] | None,
) -> list[tuple[float, torch.Tensor]]:
    if preservation is None:
        return []
    if isinstance(preservation, torch.Tensor):
        return [(1.0, preservation)]
    return [(float(w), t) for w, t in preservation]
