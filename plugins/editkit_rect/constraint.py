"""RECT's stages for one run (state: this batch's mask per site, ``[d_out, d_in]`` bool).

Acts on :class:`~editkit.updates.DeltaProposal` only: ``Δ ↦ M ⊙ Δ`` with ``M`` from
:func:`editkit_rect.mask.rect_mask` on the site's *current* weight ``W`` (``run.weight(site)``,
math layout) — the weight before this batch's update at this site, in both constrain modes
(inline: the site is not written yet; posthoc: the kernel restores the batch's writes first).

Invariant ("untouched entries stay untouched"): the update written at a site this batch is zero
outside the mask RECT chose for it, so at most ``k`` % of the entries (plus ties) change. A later
constraint that mixes entries (null-space projection, PRUNE's spectral map) breaks it, and the
measure says so (tests/unit/test_composition.py). When that constraint is the null-space projection, the
measure names the exact way out (``way_out``): ``--set nullspace.mode=joint`` projects onto range(P) ∩
the mask's support instead, which keeps both invariants.
"""

from __future__ import annotations

from typing import Any

import torch
from editkit_nullspace.constraint import JOINT_WAY_OUT

from editkit.api import DeltaProposal, EditBatch, Proposal, RunContext, Site, hookimpl
from editkit_rect.hparams import RectHParams
from editkit_rect.mask import apply_mask, rect_mask


class RectStages:
    """Stage plugin created per run by the ``rect`` constraint."""

    def __init__(self, hparams: RectHParams) -> None:
        self.hparams = hparams
        self.masks: dict[str, torch.Tensor] = {}  # site module -> mask of the current batch

    @hookimpl
    def editkit_constrain_update(self, run: RunContext, site: Site, proposal: Proposal) -> Proposal | None:
        if not isinstance(proposal, DeltaProposal):
            return None
        mask = rect_mask(proposal.delta, run.weight(site), self.hparams.k, self.hparams.eps)
        self.masks[site.module] = mask
        run.note(site, "rect.kept_share", round(float(mask.double().mean()), 6))
        return proposal.with_delta(apply_mask(proposal.delta, mask), note="rect")

    @hookimpl
    def editkit_measure_update(self, run: RunContext, site: Site, delta: torch.Tensor) -> dict[str, Any] | None:
        """Share of entries the written update changed, and whether all lie inside this batch's mask."""
        mask = self.masks.get(site.module)
        if mask is None:
            return None
        changed = delta != 0
        outside = int((changed & ~mask.to(changed.device)).sum())
        n = delta.numel()
        figures: dict[str, Any] = {
            "invariant": "share of entries changed (all inside the RECT mask)",
            "value": float(changed.sum()) / n,
            "bound": float(mask.sum()) / n,
            "outside_mask": outside,
            "holds": outside == 0,
        }
        if outside and _projected_later(run):
            figures["way_out"] = JOINT_WAY_OUT
        return figures

    @hookimpl
    def editkit_batch_end(self, run: RunContext, batch: EditBatch) -> None:
        self.masks.clear()  # measured already; do not hold d_out×d_in masks between batches


def _projected_later(run: RunContext) -> bool:
    """Whether the null-space constraint runs after ``rect`` in a mode that refills masked entries."""
    return "nullspace" in run.constraints_after("rect") and run.constraint_hparams["nullspace"].mode != "joint"


__all__ = ["RectStages"]
