"""The ``normclamp`` stage plugin for one run: scale Δ down so that ``‖Δ‖_F ≤ ratio·‖W‖_F``."""

from __future__ import annotations

from typing import Any

import torch

from editkit.api import DeltaProposal, Proposal, RunContext, Site, hookimpl
from editkit_normclamp.hparams import NormclampHParams


def clamp_factor(delta: torch.Tensor, weight: torch.Tensor, ratio: float) -> float:
    """``min(1, ratio·‖W‖_F / ‖Δ‖_F)`` (1 for a zero Δ), computed in float64.

    :param delta: ``Δ`` ``[d_out, d_in]``.
    :param weight: ``W`` ``[d_out, d_in]`` (math layout; any storage dtype).
    """
    norm = float(delta.double().norm())
    limit = ratio * float(weight.detach().double().norm())
    return 1.0 if norm <= limit else limit / norm


class NormclampStages:
    """Stage plugin created per run by the ``normclamp`` constraint (stateless apart from its settings)."""

    def __init__(self, hparams: NormclampHParams) -> None:
        self.hparams = hparams

    @hookimpl
    def editkit_constrain_update(self, run: RunContext, site: Site, proposal: Proposal) -> DeltaProposal | None:
        """On a solved update: ``Δ ↦ Δ·min(1, ratio·‖W‖_F/‖Δ‖_F)``; other proposals pass unchanged.

        ``W`` is ``run.weight(site)``, the site's weight as it is before this update is written (math
        layout ``[d_out, d_in]``). A positive scalar keeps every row subspace, so the null-space
        constraint's ``ΔP = Δ`` survives in either order.
        """
        if not isinstance(proposal, DeltaProposal):
            return None
        factor = clamp_factor(proposal.delta, run.weight(site), self.hparams.ratio)
        run.note(site, "normclamp.factor", round(factor, 6))
        if factor >= 1.0:
            return None
        return proposal.with_delta(proposal.delta * factor, note=f"normclamp ×{factor:.4g}")

    @hookimpl
    def editkit_measure_update(self, run: RunContext, site: Site, delta: torch.Tensor) -> dict[str, Any]:
        """``‖Δ‖_F / ‖W_before‖_F`` on the update actually written (``W_before = W − Δ``).

        Holds when at most ``ratio`` plus what storing the weight in its dtype can add (``2·eps``).
        """
        weight = run.weight(site).detach()
        before = float((weight.double() - delta.double()).norm())
        value = float(delta.double().norm()) / before if before > 0 else 0.0
        tolerance = self.hparams.ratio * (1 + 1e-9) + 2 * torch.finfo(weight.dtype).eps * (1 + self.hparams.ratio)
        return {"invariant": "|D|/|W|", "value": value, "bound": self.hparams.ratio, "holds": value <= tolerance}


__all__ = ["NormclampStages", "clamp_factor"]
