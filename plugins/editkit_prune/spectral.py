"""PRUNE's spectral map on the accumulated perturbation (Ma et al. 2025, PRUNE, arXiv 2405.16821).

Shapes, math layout: ``Δ_n = W_n − W0`` ``[d_out, d_in]``; singular values ``σ̄`` ``[r]``,
``r = min(d_out, d_in)``. With ``Δ_n = U diag(σ̄) Vᵀ`` and ``σ_max = σ_1(W0)``::

    F(σ̄) = σ̄                                          σ̄ < σ_max
    F(σ̄) = log_α σ̄ − log_α σ_max + σ_max   (log)        σ̄ ≥ σ_max
    F(σ̄) = (σ̄ + σ_max) / 2                  (linear)

    prune(Δ_n) = U diag(F(σ̄)) Vᵀ = Δ_n − U_k diag(σ̄_k − F(σ̄_k)) V_kᵀ     (k = #{σ̄ ≥ σ_max})

F is continuous at σ_max (F(σ_max) = σ_max), so the references' ``≥`` (PRUNE) vs ``>`` (AlphaEdit's
``MEMIT_prune``) does not matter. Only the rescaled components are touched, so the rest of
``Δ_n`` (and its row space, hence ``ΔP = Δ``) is kept exactly; the references'
truncation to rank(Δ_n) is implied (F(0) = 0). Bound: ``σ_1(prune(Δ_n)) = F(σ̄_1)``,
i.e. ``≤ σ_max + log_α(σ̄_1/σ_max)`` (log) when ``σ̄_1 ≥ σ_max``.

Caveat: the log map restrains (``F(σ̄) ≤ σ̄``) only when ``σ_max ≥ 1/ln α`` (F's slope at σ_max is
``1/(σ_max ln α)``); for smaller matrices — tiny test models, σ_max ≈ 0.2 — it *enlarges* singular
values between σ_max and the fixed point of F. Published models are far above (GPT-2 XL's edited
``c_proj`` has σ_max in the tens); the stages warn when it happens.
"""

from __future__ import annotations

import math

import attrs
import torch


def restrain(sigma: torch.Tensor, sigma_max: float, reduce: str = "log", alpha: float = math.e) -> torch.Tensor:
    """``F`` applied elementwise to singular values ``[r]`` (any float dtype)."""
    if reduce == "log":
        scale = math.log(alpha)
        mapped = (torch.log(sigma.clamp_min(sigma_max)) - math.log(sigma_max)) / scale + sigma_max
    elif reduce == "linear":
        mapped = (sigma + sigma_max) / 2
    else:
        raise ValueError(f"reduce must be 'log' or 'linear', got {reduce!r}")
    return torch.where(sigma >= sigma_max, mapped, sigma)


def restrain_scalar(sigma: float, sigma_max: float, reduce: str = "log", alpha: float = math.e) -> float:
    """``F(σ)`` for one value (the spectral bound of a pruned update)."""
    return float(restrain(torch.tensor([sigma], dtype=torch.float64), sigma_max, reduce, alpha)[0])


@attrs.frozen(kw_only=True)
class Pruned:
    """The result of :func:`prune`: ``delta`` ``[d_out, d_in]`` float64, ``sigma1_before`` = σ̄_1,
    ``sigma1_after`` = F(σ̄_1), ``rescaled`` = number of singular values that were ≥ σ_max,
    ``enlarged`` = how many of those F made *larger* (log map with ``σ_max < 1/ln α``, see below)."""

    delta: torch.Tensor = attrs.field(eq=False, repr=False)
    sigma1_before: float
    sigma1_after: float
    rescaled: int
    enlarged: int = 0


def spectral_norm(matrix: torch.Tensor) -> float:
    """``σ_1`` of a ``[m, n]`` matrix, in float64."""
    return float(torch.linalg.matrix_norm(matrix.detach().double(), ord=2))


def prune(delta: torch.Tensor, sigma_max: float, reduce: str = "log", alpha: float = math.e) -> Pruned:
    """PRUNE's map on ``Δ_n`` ``[d_out, d_in]`` (float64 SVD), given ``σ_max = σ_1(W0)``."""
    d = delta.detach().double()
    u, s, vh = torch.linalg.svd(d, full_matrices=False)  # s descending
    above = s >= sigma_max
    k = int(above.sum())
    top = float(s[0]) if s.numel() else 0.0
    if k == 0:
        return Pruned(delta=d, sigma1_before=top, sigma1_after=top, rescaled=0)
    shrink = s[:k] - restrain(s[:k], sigma_max, reduce, alpha)  # [k]; < 0 where F enlarges
    pruned = d - (u[:, :k] * shrink) @ vh[:k]
    return Pruned(delta=pruned, sigma1_before=top, sigma1_after=restrain_scalar(top, sigma_max, reduce, alpha),
                  rescaled=k, enlarged=int((shrink < 0).sum()))
