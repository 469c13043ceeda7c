"""LyapLock's per-layer state and formulas (float64; ``W`` ``[d_out, d_in]``, ``K`` ``[d_in, u]``,
``R`` ``[d_out, u]``).

The preservation loss of the authors' ``compute_fro_by_trace`` with ``V0 = W0 K0`` (the unedited module's outputs,
no bias), per token of the background corpus: ``PL(W) = tr(C0 WᵀW) − 2 tr(V0K0ᵀ Wᵀ) + tr(V0V0ᵀ) =
tr((W − W0) C0 (W − W0)ᵀ)``, and ``V0K0ᵀ − W K0K0ᵀ = (W0 − W) C0``.
"""

from __future__ import annotations

import math

import attrs
import torch


def preservation_loss(weight: torch.Tensor, initial: torch.Tensor, c0: torch.Tensor) -> float:
    """``PL(W) = tr((W − W0) C0 (W − W0)ᵀ)``."""
    drift = weight.double() - initial.double()  # [d_out, d_in]
    return float(((drift @ c0.double()) * drift).sum())


def lyaplock_update(*, weight: torch.Tensor, initial: torch.Tensor, c0: torch.Tensor, keys: torch.Tensor,
                    residual: torch.Tensor, lam: float, queue_weight: float | None, value_weight: float,
                    s_vk: torch.Tensor | None, s_kk: torch.Tensor | None) -> torch.Tensor:
    """``Δ`` ``[d_out, d_in]``: the first batch (``queue_weight`` None) ``[R Kᵀ + λ(W0 − W)C0](K Kᵀ + λC0)⁻¹``,
    later ``[V R Kᵀ + aZλ(W0 − W)C0 + V(S_vk − W S_kk)](V K Kᵀ + aZλ C0 + V S_kk)⁻¹`` with ``queue_weight = aZ``."""
    w, w0, k, r, c = weight.double(), initial.double(), keys.double(), residual.double(), c0.double()
    if queue_weight is None:
        left = r @ k.T + lam * (w0 - w) @ c
        a = k @ k.T + lam * c
    else:
        v = value_weight
        left = v * (r @ k.T) + queue_weight * lam * ((w0 - w) @ c)
        a = v * (k @ k.T) + queue_weight * lam * c
        if s_kk is not None and s_vk is not None:
            left = left + v * (s_vk - w @ s_kk)
            a = a + v * s_kk
    # Δ = left A⁻¹ with A symmetric: Δᵀ = A⁻¹ leftᵀ
    return torch.linalg.solve(a, left.T).T


@attrs.define(kw_only=True)
class Queue:
    """The virtual queue of one layer: ``D`` (the loss after the first batch), ``a = 1/√(αD)``, ``Z`` and its floor
    ``√(αD)`` (the authors' ``Z="1sqrtD"``, ``a="1_sqrtD"``, ``zmax="1sqrtD"``)."""

    budget: float  # D
    scale: float  # a
    value: float  # Z
    floor: float

    @classmethod
    def start(cls, loss: float, alpha: float) -> Queue:
        root = math.sqrt(alpha * loss) if loss > 0 else 1.0
        return cls(budget=loss, scale=1.0 / root, value=root, floor=root)

    def step(self, loss: float, alpha: float, drift: float) -> None:
        """``Z ← max(Z + a (PL − αD) + b, floor)``."""
        self.value = max(self.value + self.scale * (loss - alpha * self.budget) + drift, self.floor)

    @property
    def weight(self) -> float:
        """``aZ``, the preservation weight in the solve (≥ 1)."""
        return self.scale * self.value
