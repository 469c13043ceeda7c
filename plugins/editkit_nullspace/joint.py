"""The orthogonal projection onto ``range(P)`` ∩ a row's support (null-space mode ``joint``).

After RECT has masked an update (``--constraint rect --constraint nullspace``), the plain
projection ``Δ ↦ ΔP`` refills the entries RECT zeroed. ``joint`` instead projects each row
``Δ_i`` ``[d_in]`` onto the largest subspace where both invariants hold::

    V_i = range(P) ∩ {x : x_j = 0 for j in Z_i},   Z_i = {j : Δ_ij = 0 on input}

With ``B`` ``[d_in, r]`` an orthonormal basis of range(P), ``x = B y`` has ``x_Z = B_Z y`` where
``B_Z = B[Z_i, :]`` ``[|Z_i|, r]``, so ``V_i = B · null(B_Z)``. With ``N_i`` ``[r, k_i]`` an
orthonormal basis of ``null(B_Z)`` (right singular vectors of ``B_Z`` whose singular value is at
most ``tol``), ``B N_i`` is an orthonormal basis of ``V_i`` and::

    Δ'_i = Δ_i (B N_i)(B N_i)ᵀ,   then  Δ'_ij := 0 exactly for j in Z_i

``tol = max(d_in, r) · ε_float64`` (≈ 1e-13 at d_in 512) is absolute: ``‖B_Z‖ ≤ 1`` since ``B`` has
orthonormal columns. A direction kept as null has ``‖B_Z n‖ ≤ tol``, so before the final zeroing
``|Δ'_ij| ≤ tol · ‖Δ_i‖`` on ``Z_i``, and zeroing them moves ``Δ'`` out of range(P) by at most that:
the masked entries are exactly 0 and ``‖Δ' − Δ'P‖ ≤ tol · ‖Δ‖``.

``k_i = dim V_i`` is generically ``|S_i| + r − d_in`` (``S_i`` the row's support), and when that is
≤ 0 the row becomes 0: with a null space of half the key dimensions and RECT keeping 40% of the
entries, a typical row keeps 0.4·d_in entries and becomes 0 (e.g. d_in 512, r ≈ 283: 205 + 283 − 512 < 0).
Rows without zeros are projected as in ``project`` mode; rows that are all zero stay zero.

Cost: one SVD of a ``[d_in, r]`` matrix per distinct zero pattern (RECT's global mask gives about
one per row), i.e. ``O(d_out · d_in · r²)`` flops in float64 (d_out 128, d_in 512, r 283: ~2.5 s on
one CPU core).
"""

from __future__ import annotations

import attrs
import torch

_CHUNK_ELEMENTS = 2**23  # at most this many float64 entries (64 MiB) per batched SVD input


@attrs.frozen(kw_only=True)
class JointProjection:
    """The projected update ``delta`` ``[d_out, d_in]`` (the input's dtype), the dimension of each
    row's subspace ``V_i`` ``dims`` ``[d_out]`` (int64; 0 where the input row is 0), and the input's
    and output's Frobenius norms."""

    delta: torch.Tensor = attrs.field(eq=False, repr=False)
    dims: torch.Tensor = attrs.field(eq=False, repr=False)
    input_norm: float
    output_norm: float

    @property
    def kept_norm(self) -> float:
        """``‖Δ_out‖ / ‖Δ_in‖`` (1.0 for Δ = 0)."""
        return self.output_norm / self.input_norm if self.input_norm > 0 else 1.0

    @property
    def zero_rows(self) -> int:
        """Rows of the output that are all zero."""
        return int((self.delta == 0).all(dim=1).sum())


def rank_tolerance(d_in: int, r: int) -> float:
    """Singular values of ``B_Z`` at most this count as zero: ``max(d_in, r) · ε_float64``."""
    return max(d_in, r, 1) * torch.finfo(torch.float64).eps


def joint_projection(delta: torch.Tensor, basis: torch.Tensor, tol: float | None = None) -> JointProjection:
    """Project each row of ``Δ`` ``[d_out, d_in]`` (math layout) onto ``range(P) ∩`` its support.

    :param basis: ``B`` ``[d_in, r]``, an orthonormal basis of range(P)
        (:meth:`editkit.updates.Subspace.range_basis`).
    :param tol: rank tolerance on the singular values of ``B_Z`` (default :func:`rank_tolerance`).
    """
    d_out, d_in = delta.shape
    if basis.ndim != 2 or basis.shape[0] != d_in:
        raise ValueError(f"basis must be [d_in={d_in}, r], got {tuple(basis.shape)}")
    r = int(basis.shape[1])
    tol = rank_tolerance(d_in, r) if tol is None else tol
    d = delta.detach().double()
    b = basis.to(device=d.device, dtype=torch.float64)
    zero = d == 0  # [d_out, d_in]: Z_i per row
    out = torch.zeros_like(d)
    dims = torch.zeros(d_out, dtype=torch.int64, device=d.device)
    if r > 0:
        coeff = d @ b  # [d_out, r]: coordinates of Δ_i P in B
        dense = ~zero.any(dim=1)  # Z_i empty: V_i = range(P)
        out[dense] = coeff[dense] @ b.T
        dims[dense] = r
        partial = torch.nonzero(zero.any(dim=1) & ~zero.all(dim=1)).squeeze(1)  # [n] row indices
        if partial.numel():
            patterns, inverse = torch.unique(zero[partial], dim=0, return_inverse=True)  # [G, d_in], [n]
            order = torch.argsort(inverse, stable=True)
            groups = torch.split(partial[order], torch.bincount(inverse, minlength=len(patterns)).tolist())
            step = max(1, _CHUNK_ELEMENTS // (d_in * r))
            for start in range(0, len(patterns), step):
                chunk = patterns[start : start + step]  # [g, d_in] bool
                b_z = chunk.unsqueeze(2).double() * b  # [g, d_in, r]: B_Z, the support's rows zeroed
                _, sigma, vh = torch.linalg.svd(b_z, full_matrices=False)  # sigma [g, r], vh [g, r, r]
                for offset in range(len(chunk)):
                    rows = groups[start + offset]
                    null = vh[offset][sigma[offset] <= tol].T  # N_i [r, k]
                    dims[rows] = null.shape[1]
                    if null.shape[1]:
                        x = ((coeff[rows] @ null) @ null.T) @ b.T  # [n_g, d_in]
                        out[rows] = x.masked_fill(chunk[offset], 0.0)
    result = out.to(delta.dtype)
    return JointProjection(delta=result, dims=dims, input_norm=float(d.norm()), output_norm=float(result.norm()))


__all__ = ["JointProjection", "joint_projection", "rank_tolerance"]
