"""RECT's mask: keep the top-k% entries of an update by relative change (Gu et al. 2024, RECT, arXiv 2401.04700).

Shapes, math layout: ``Δ`` and ``W`` ``[d_out, d_in]`` (GPT-2's ``Conv1D`` stores ``Wᵀ``: pass
``run.weight(site)``, already in math layout). The mask is global over the matrix, not per row.

``δ_ij = |Δ_ij| / (|W_ij| + ε)`` in float64, ``keep = ⌈k/100 · N⌉`` (N = d_out·d_in, at least 1),
``τ`` = the ``keep``-th largest ``δ``; ``M = [δ ≥ τ]`` (ties with ``τ`` are kept, so ``M`` may hold
more than ``keep`` entries). Differences from AlphaEdit's ``MEMIT_rect`` reference, both negligible at
model scale and documented for exactness: it divides by ``W + 1e-8`` (sign-unaware: differs where
``|W_ij| ≲ 1e-8`` and can divide by ~0 for ``W_ij ≈ −1e-8``), and its threshold is the
``⌊(1 − k)N⌋``-th smallest δ, which keeps ``N − ⌊(1 − k)N⌋ + 1`` entries — one more than ``⌈kN⌉``.
"""

from __future__ import annotations

import math

import torch


def relative_change(delta: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``|Δ| / (|W| + eps)`` ``[d_out, d_in]`` in float64."""
    if delta.shape != weight.shape:
        raise ValueError(f"Δ {tuple(delta.shape)} and W {tuple(weight.shape)} must have the same (math) shape")
    w = weight.detach().to(device=delta.device, dtype=torch.float64)
    return delta.detach().double().abs() / (w.abs() + eps)


def kept_count(numel: int, k: float) -> int:
    """``⌈k/100 · numel⌉`` clamped to ``[1, numel]`` (rounded first, so 40% of 10 is 4, not 5)."""
    return min(numel, max(1, math.ceil(round(k * numel / 100.0, 6))))


def top_share_mask(scores: torch.Tensor, k: float) -> torch.Tensor:
    """Bool mask ``[same shape]`` of the entries whose score is ≥ the ``⌈k% · N⌉``-th largest."""
    flat = scores.reshape(-1)
    keep = kept_count(flat.numel(), k)
    threshold = torch.kthvalue(flat, flat.numel() - keep + 1).values
    return scores >= threshold


def rect_mask(delta: torch.Tensor, weight: torch.Tensor, k: float, eps: float) -> torch.Tensor:
    """RECT's mask ``M`` ``[d_out, d_in]`` (bool) for update ``Δ`` on current weight ``W`` (math layout)."""
    return top_share_mask(relative_change(delta, weight, eps), k)


def apply_mask(delta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``M ⊙ Δ`` with exact zeros outside the mask (same dtype as ``Δ``)."""
    return torch.where(mask, delta, torch.zeros((), dtype=delta.dtype, device=delta.device))
