"""The equality-constrained solve of the unified preservation–memorisation view (EMMET), float64.

Gupta et al. 2024, EMMET, arXiv 2403.14236.

Shapes, math layout: keys ``K`` ``[d_in, u]``, residual ``R`` ``[d_out, u]``, ``Δ`` ``[d_out, d_in]``,
preservation terms ``[d_in, d_in]``. With ``A`` = the preservation terms (``λ·C0``, ``Cp``) and ``α`` the
problem's ridge::

    min_Δ tr(Δ (A + αI) Δᵀ)   s.t.   Δ K = R,   rows of Δ in range(P)

    ⇒  Δ = R (K̃ᵀ M⁻¹ K̃ + λ_E I)⁻¹ K̃ᵀ M⁻¹ (lifted back to the key space)

where ``K̃`` and ``M`` are ``K`` and ``A + αI`` in the coordinates of range(P) (:class:`Preservation`).
``λ_E = 0``: the constraints hold exactly (EMMET's Lagrangian solution; u = 1 is ROME's
``Λ (C⁻¹k)ᵀ`` with ``Λ = (v − Wk) / ((C⁻¹k)ᵀ k)``). ``λ_E > 0`` (EMMET's ``emmet_lambda``, applied
for u > 1 as the reference code): a ridge on the u×u system, the constraints then hold approximately.

``direction_keys`` ``K_d`` replaces ``K`` in the direction only: ``Δ = R (Kᵀ M⁻¹ K_d)⁻¹ K_dᵀ M⁻¹`` still
meets ``Δ K = R``. ROME's original code is this with ``K_d`` = the prefix-averaged key and ``K`` = the
bare prompt's key (Meng et al. 2022, ROME, arXiv 2202.05262, §3; kmeng01/rome compute_u.py).

**Dependent keys.** When the keys in those coordinates are (nearly) linearly dependent — the smallest
singular value of ``K̃`` below ``rcond`` times the largest of ``K`` (two requests with the same subject
and prompt; a key with no energy in range(P)) — the constraints cannot all hold. Without a ridge the
solve then keeps the ``t`` independent combinations ``K̃ V_t`` (``V_t`` the right singular vectors
above the cut-off) and their residuals ``R V_t``: exact on those, the least-squares compromise on the
rest (two identical keys with targets ``r1``, ``r2`` get ``(r1 + r2)/2``; a key outside the subspace
gets no update). With ``λ_E > 0`` the ridge already makes the solve well-posed and is kept, as in the
reference. :class:`EqualityUpdate` says which was done.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs
import torch

from editkit.api import Subspace


@attrs.frozen(kw_only=True)
class Preservation:
    """The preservation matrix ``M`` in the coordinates the update is solved in, factored once.

    * no subspace: ``M = A + αI`` ``[d_in, d_in]``; coordinates are keys themselves;
    * ``range`` subspace ``P = QQᵀ``: ``M = Qᵀ(A + αI)Q`` ``[r, r]``; coordinates ``Qᵀk``;
    * ``complement`` subspace ``P = I − UUᵀ``: ``M = P(A + αI)P + (I − P)`` ``[d_in, d_in]`` (invertible
      when ``P(A + αI)P`` is on range(P), and it maps range(P) to itself); coordinates ``Pk``.

    ``factor`` is ``M``'s Cholesky factor, or None when ``M`` is not positive definite (then solves use
    the pseudo-inverse and :attr:`singular` is true).
    """

    matrix: torch.Tensor = attrs.field(eq=False, repr=False)
    basis: torch.Tensor | None = attrs.field(default=None, eq=False, repr=False)  # Q [d_in, r] (range kind)
    complement: torch.Tensor | None = attrs.field(default=None, eq=False, repr=False)  # U [d_in, c]
    factor: torch.Tensor | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def singular(self) -> bool:
        return self.factor is None

    def coords(self, keys: torch.Tensor) -> torch.Tensor:
        """Keys ``[d_in, u]`` → their coordinates ``[m, u]`` (float64)."""
        k = keys.double()
        if self.basis is not None:
            return self.basis.T @ k
        if self.complement is not None:
            return k - self.complement @ (self.complement.T @ k)
        return k

    def lift(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows ``[d_out, m]`` in coordinates → ``Δ`` ``[d_out, d_in]`` with ``Δ = ΔP``."""
        if self.basis is not None:
            return rows @ self.basis.T
        if self.complement is not None:
            return rows - (rows @ self.complement) @ self.complement.T
        return rows

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """``M⁻¹ rhs`` for ``rhs`` ``[m, u]`` (pseudo-inverse when ``M`` is singular)."""
        if self.factor is not None:
            return torch.cholesky_solve(rhs, self.factor)
        return torch.linalg.pinv(self.matrix, hermitian=True) @ rhs

    def with_keys(self, keys: torch.Tensor) -> Preservation:
        """``M`` with ``K Kᵀ`` added to ``A`` (keys ``[d_in, u]``): ROME's earlier requests of a batch
        joining ``Cp`` before the next one is solved."""
        k = self.coords(keys)
        return _factored(self.matrix + k @ k.T, self.basis, self.complement)


def _factored(matrix: torch.Tensor, basis: torch.Tensor | None, complement: torch.Tensor | None) -> Preservation:
    factor, info = torch.linalg.cholesky_ex(matrix)
    return Preservation(matrix=matrix, basis=basis, complement=complement, factor=factor if int(info) == 0 else None)


def preservation(terms: Sequence[tuple[float, torch.Tensor]], ridge: float, subspace: Subspace | None,
                 d_in: int) -> Preservation:
    """:class:`Preservation` for ``A = Σ w·B`` over ``terms`` (``[d_in, d_in]`` each), ridge ``α`` and an
    optional row subspace."""
    if subspace is None:
        a = torch.zeros(d_in, d_in, dtype=torch.float64)
        for weight, term in terms:
            a.add_(term.double(), alpha=weight)
        a.diagonal().add_(ridge)
        return _factored(a, None, None)
    if subspace.kind == "range":
        q = subspace.basis.double()  # [d_in, r]
        m = torch.zeros(q.shape[1], q.shape[1], dtype=torch.float64)
        for weight, term in terms:
            m.add_(q.T @ (term.double() @ q), alpha=weight)
        m.diagonal().add_(ridge)
        return _factored(m, q, None)
    u = subspace.basis.double()  # [d_in, c]: P = I − UUᵀ
    a = torch.zeros(d_in, d_in, dtype=torch.float64)
    for weight, term in terms:
        a.add_(term.double(), alpha=weight)
    a.diagonal().add_(ridge)
    au = a @ u  # P A P = A − U(UᵀA) − (AU)Uᵀ + U(UᵀAU)Uᵀ
    a.addmm_(u, au.T, alpha=-1.0)
    a.addmm_(au, u.T, alpha=-1.0)
    a.addmm_(u @ (u.T @ au), u.T)
    a.addmm_(u, u.T)  # + (I − P) = UUᵀ
    return _factored(a, None, u)


SolvedWith = Literal["exact", "ridge", "reduced"]


@attrs.frozen(kw_only=True)
class EqualityUpdate:
    """``delta`` ``[d_out, d_in]`` float64; ``key_condition`` = σ_min(K̃)/σ_max(K) (1 for independent
    orthonormal keys fully inside the subspace, 0 for dependent ones); ``solved_with``: ``exact`` (the
    constraints hold), ``ridge`` (``λ_E`` on the u×u system), ``reduced`` (dependent keys: ``kept`` of
    ``u`` independent combinations held exactly, the rest in the least-squares sense)."""

    delta: torch.Tensor = attrs.field(eq=False, repr=False)
    key_condition: float
    solved_with: SolvedWith
    kept: int
    requests: int

    @property
    def dependent(self) -> bool:
        return self.solved_with == "reduced" or (self.solved_with == "ridge" and self.kept < self.requests)


def equality_update(
    pres: Preservation,
    keys: torch.Tensor,
    residual: torch.Tensor,
    *,
    direction_keys: torch.Tensor | None = None,
    batch_ridge: float = 0.0,
    rcond: float = 1e-6,
) -> EqualityUpdate:
    """Solve ``Δ K = R`` (keys ``[d_in, u]``, residual ``[d_out, u]``) with the least preservation cost
    (module docstring). ``batch_ridge`` (λ_E) applies when u > 1."""
    if keys.ndim != 2 or residual.ndim != 2 or keys.shape[1] != residual.shape[1]:
        raise ValueError(f"keys [d_in, u] and residual [d_out, u] must share u; got {tuple(keys.shape)} "
                         f"and {tuple(residual.shape)}")
    u = int(keys.shape[1])
    k = pres.coords(keys)  # [m, u]
    kd = k if direction_keys is None else pres.coords(direction_keys)
    r = residual.double()
    scale = float(torch.linalg.matrix_norm(keys.double(), ord=2))
    _, sigma, vh = torch.linalg.svd(k, full_matrices=False)  # sigma [min(m, u)]
    smallest = float(sigma[-1]) if len(sigma) == u else 0.0  # fewer coordinates than keys: dependent
    condition = smallest / scale if scale > 0 else 0.0
    ridge = batch_ridge if u > 1 else 0.0
    independent = int((sigma > rcond * scale).sum()) if scale > 0 else 0
    if condition >= rcond or ridge > 0:
        solved_with: SolvedWith = "ridge" if ridge > 0 else "exact"
    else:
        solved_with = "reduced"
        combos = vh[:independent].T  # [u, t]: the independent combinations of the constraints
        k, kd, r = k @ combos, kd @ combos, r @ combos
    if k.shape[1] == 0:
        return EqualityUpdate(delta=torch.zeros(r.shape[0], keys.shape[0], dtype=torch.float64),
                              key_condition=condition, solved_with=solved_with, kept=0, requests=u)
    y = pres.solve(kd)  # M⁻¹ K_d [m, t]
    d = k.T @ y  # [t, t]
    if ridge > 0:
        d = d + ridge * torch.eye(d.shape[0], dtype=torch.float64)
    lam = torch.linalg.solve(d.T, r.T).T  # Λ = R D⁻¹  [d_out, t]
    return EqualityUpdate(delta=pres.lift(lam @ y.T), key_condition=condition, solved_with=solved_with,
                          kept=independent if solved_with != "exact" else u, requests=u)


__all__ = ["EqualityUpdate", "Preservation", "equality_update", "preservation"]
