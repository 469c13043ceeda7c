"""The least-squares solve of the unified (subspace-restricted) form, in float64::

    min_Δ ‖Δ K − R‖² + tr(Δ B Δᵀ) + α‖Δ‖²,  rows of Δ in range(P)
    ⇒ Δ = R Kᵀ Q (Qᵀ A Q + α I)⁻¹ Qᵀ,   A = K Kᵀ + B,   P = Q Qᵀ

MEMIT: B = λC0 (+ Cp for MEMIT_seq), Q = I, α = 0. AlphaEdit: B = Cp, Q = null-space basis,
α = L2. When the subspace is stored as the complement (P = I − U Uᵀ, U smaller), the
equivalent SPD system ``(P A P + α I) Δᵀ = P K Rᵀ`` is solved instead; AlphaEdit's closed form
(Fang et al. 2025, AlphaEdit, arXiv 2410.02355, §3) is the case P = the null-space projector.

With a subspace, the products of ``Cp`` with the stored basis ``B`` (``Cp B`` and ``Bᵀ Cp B``)
cost ``d_in²·m`` each batch when recomputed. :class:`PastProducts` keeps them across batches
and adds each new batch's share ``K_b (K_bᵀ B)`` in ``d_in·m·u`` (``Cp = Σ_b K_b K_bᵀ``); it
starts over when the basis or the earlier batches change (undo).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from editkit.api import Subspace


def _spd_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a⁻¹ b`` for symmetric positive (semi)definite ``a``: Cholesky, LU as fallback."""
    factor, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0:
        return torch.cholesky_solve(b, factor)
    return torch.linalg.solve(a, b)


class PastProducts:
    """``Cp B`` ``[d_in, m]`` and ``Bᵀ Cp B`` ``[m, m]`` for a stored basis ``B``, kept up to date
    batch by batch from the keys ``K_b`` that make up ``Cp`` (one instance per edited module)."""

    def __init__(self) -> None:
        self.basis: torch.Tensor | None = None
        self.batches: tuple[torch.Tensor, ...] = ()
        self.cp_b: torch.Tensor = torch.zeros(0, 0, dtype=torch.float64)  # set by update()
        self.b_cp_b: torch.Tensor = torch.zeros(0, 0, dtype=torch.float64)

    def update(self, basis: torch.Tensor, batches: Sequence[torch.Tensor]) -> PastProducts:
        """Bring the products to ``Cp = Σ K_b K_bᵀ`` over ``batches``; returns self."""
        known = len(self.batches)
        reusable = (self.basis is basis and known <= len(batches)
                    and all(a is b for a, b in zip(self.batches, batches)))
        if not reusable:
            b = basis.double()
            self.basis, self.batches = basis, ()
            self.cp_b = torch.zeros(b.shape, dtype=torch.float64)
            self.b_cp_b = torch.zeros(b.shape[1], b.shape[1], dtype=torch.float64)
            known = 0
        b = basis.double()
        for k in batches[known:]:
            bk = b.T @ k.double()  # [m, u_b]
            self.cp_b.addmm_(k.double(), bk.T)  # += K_b (K_bᵀ B)
            self.b_cp_b.addmm_(bk, bk.T)  # += (Bᵀ K_b)(Bᵀ K_b)ᵀ
        self.batches = tuple(batches)
        return self


def solve_update(
    keys: torch.Tensor,
    residual: torch.Tensor,
    preservation: torch.Tensor | Sequence[tuple[float, torch.Tensor]] | None,
    ridge: float,
    subspace: Subspace | None,
    past: tuple[torch.Tensor, PastProducts] | None = None,
) -> torch.Tensor:
    """Δ ``[d_out, d_in]`` for keys ``K`` ``[d_in, u]``, residual ``R`` ``[d_out, u]`` and
    preservation ``B`` ``[d_in, d_in]`` — one matrix, or weighted terms ``[(λ, C0), (1, Cp)]``
    summed without temporaries; None: zero. Computed in float64, with at most one ``d_in²``
    working matrix besides the Cholesky factor (the inputs are never modified).

    ``past`` = ``(Cp, products)`` adds ``Cp`` (weight 1) to the preservation terms using the
    products with ``subspace``'s basis kept in ``products`` (:class:`PastProducts`, brought up to
    date by the caller) instead of recomputing them; it needs a subspace."""
    k = keys.double()
    r = residual.double()
    terms = _terms(preservation)
    if past is not None and subspace is None:
        raise ValueError("past products need a subspace")
    rhs = k @ r.T  # [d_in, d_out] = K Rᵀ
    if subspace is not None and subspace.kind == "range":
        # Qᵀ A Q = (QᵀK)(QᵀK)ᵀ + Σ λ QᵀBQ: never forms A
        q = subspace.basis.double()  # [d_in, r]
        qk = q.T @ k  # [r, u]
        small = qk @ qk.T  # [r, r]
        for weight, term in terms:
            small.add_(q.T @ (term.double() @ q), alpha=weight)
        if past is not None:
            small.add_(past[1].b_cp_b)
        small.diagonal().add_(ridge)
        return (q @ _spd_solve(small, q.T @ rhs)).T
    a = k @ k.T  # [d_in, d_in], the one working matrix
    for weight, term in terms:
        a.add_(term.double(), alpha=weight)
    if past is not None:
        a.add_(past[0].double())
    if subspace is None:
        a.diagonal().add_(ridge)
        return _spd_solve(a, rhs).T
    if ridge <= 0:
        raise ValueError("a complement-stored subspace needs ridge > 0 for a unique solution")
    # P = I − U Uᵀ: P A P = A − U(UᵀA) − (AU)Uᵀ + U(UᵀAU)Uᵀ, in place on a
    u = subspace.basis.double()  # [d_in, c]
    if past is not None:  # A U = K(KᵀU) + Σ λ B U + Cp U, with Cp U kept across batches
        au = k @ (k.T @ u) + past[1].cp_b
        for weight, term in terms:
            au.addmm_(term.double(), u, alpha=weight)
    else:
        au = a @ u  # [d_in, c]
    uau = u.T @ au  # [c, c]
    a.addmm_(u, au.T, alpha=-1.0)
    a.addmm_(au, u.T, alpha=-1.0)
    a.addmm_(u @ uau, u.T)
    a.diagonal().add_(ridge)
    x = _spd_solve(a, rhs - u @ (u.T @ rhs))  # [d_in, d_out], in range(P) up to rounding
    # projected once more: Cp is summed in float32 and Cp·U from the keys in float64, so P A P is P-invariant only
    # to float32 rounding, and x would leave range(P) by ~1e-6 (d_in · c · d_out flops, no d_in² matrix)
    x -= u @ (u.T @ x)
    return x.T


def _terms(
    preservation: torch.Tensor | Sequence[tuple[float, torch.Tensor]] | None,
) -> list[tuple[float, torch.Tensor]]:
    if preservation is None:
        return []
    if isinstance(preservation, torch.Tensor):
        return [(1.0, preservation)]
    return [(float(w), t) for w, t in preservation]
