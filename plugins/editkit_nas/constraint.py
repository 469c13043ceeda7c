"""NAS's stages for one run: the reference norm ``n̄`` (measured or restored once) and the rescaling of each
batch's target values (the authors' ``NAS/compute_z.py``, after the δ optimisation)::

    v* = v0 + δ;   if ‖v*‖ > factor·n̄:  v* ← v0   (withdrawn)
                   else:                v* ← v* · n̄ / (‖v*‖ + 1e-10)
    z = h − v0 + v*

``h`` ``[u, d_model]`` is the last edited block's output, ``v0`` ``[u, d_model]`` its MLP's output, at the
subject's last token (the ``TargetProposal``); computed in float64.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from editkit.api import Proposal, RunContext, Site, TargetProposal, hookimpl
from editkit_nas.anchor import reference_norm
from editkit_nas.hparams import NasHParams

EPS = 1e-10  # the authors' scale_vector_to_norm


def anchored(initial: torch.Tensor, target: torch.Tensor, values: torch.Tensor, norm: float,
             factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z', withdrawn)``: the targets with ``v*`` anchored to ``norm`` (float64 ``[u, d]``) and the requests
    whose ``‖v*‖ > factor·norm`` (bool ``[u]``)."""
    h, z, v0 = initial.double(), target.double(), values.double()
    vstar = v0 + (z - h)  # [u, d]
    length = vstar.norm(dim=-1, keepdim=True)  # [u, 1]
    withdrawn = length[:, 0] > factor * norm
    scaled = vstar * (norm / (length + EPS))
    scaled = torch.where(length > EPS, scaled, vstar)  # the authors leave a (near) zero vector unchanged
    anchored_z = h - v0 + scaled
    return torch.where(withdrawn[:, None], h, anchored_z), withdrawn


class NasStages:
    """Stage plugin created per run by the ``nas`` constraint (state: ``n̄``)."""

    def __init__(self, hparams: NasHParams) -> None:
        self.hparams = hparams
        self.norm: float | None = None

    def reference(self, run: RunContext, site: Site) -> float:
        if self.norm is None:
            started = time.perf_counter()
            if self.hparams.norm is not None:
                self.norm, source = float(self.hparams.norm), "given (nas.norm)"
            else:
                self.norm, source = reference_norm(run, site, self.hparams)
            run.note(site, "nas.reference_norm", round(self.norm, 6))
            run.note(site, "nas.reference_source", source)
            # measured within the first batch's compute_targets stage: its seconds count in that batch's time
            run.note(site, "nas.reference_seconds", round(time.perf_counter() - started, 3))
        return self.norm

    @hookimpl
    def editkit_constrain_update(self, run: RunContext, site: Site, proposal: Proposal) -> Proposal | None:
        if not isinstance(proposal, TargetProposal):
            return None
        norm = self.reference(run, proposal.site)
        z, withdrawn = anchored(proposal.initial, proposal.target, proposal.values, norm, self.hparams.factor)
        vstar = (proposal.values.double() + proposal.shift.double()).norm(dim=-1)
        run.note(proposal.site, "nas.vstar_norm_median", round(float(vstar.median()), 4))
        run.note(proposal.site, "nas.vstar_norm_max", round(float(vstar.max()), 4))
        run.note(proposal.site, "nas.withdrawn", int(withdrawn.sum()))
        return proposal.with_target(z.to(proposal.target.dtype), skipped=withdrawn.tolist(),
                                    note=f"nas: v* anchored to n̄ = {norm:.4g}")

    @hookimpl
    def editkit_save_state(self, run: RunContext) -> dict[str, Any] | None:
        if self.norm is None:
            return None
        return {"reference_norm": torch.tensor(self.norm, dtype=torch.float64)}

    @hookimpl
    def editkit_load_state(self, run: RunContext, states: list[dict[str, torch.Tensor]]) -> None:
        known = [s["reference_norm"] for s in states if "reference_norm" in s]
        self.norm = float(known[-1]) if known else None
