"""The null-space projector ``P`` from the preserved-key moment ``C0`` (methods.md §6).

``C0 = U Λ Uᵀ``; ``P = Σ_{λ_i < τ} u_i u_iᵀ``, stored as whichever basis is smaller:
the null space itself (``P = QQᵀ``) or its complement (``P = I − QQᵀ``).
"""

from __future__ import annotations

import torch

from editkit.updates import Subspace


def null_space(eigenvalues: torch.Tensor, eigenvectors: torch.Tensor, threshold: float, relative: bool) -> Subspace:
    """Subspace of eigenvectors ``[d_in, d_in]`` whose eigenvalue ``[d_in]`` is below the threshold."""
    tau = threshold * float(eigenvalues.max()) if relative else threshold
    null = eigenvalues < tau  # [d_in] bool
    n_null = int(null.sum())
    if n_null <= eigenvalues.numel() - n_null:
        return Subspace(basis=eigenvectors[:, null].double().contiguous(), kind="range")
    return Subspace(basis=eigenvectors[:, ~null].double().contiguous(), kind="complement")
