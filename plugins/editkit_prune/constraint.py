"""PRUNE's stages for one run (state per site: ``σ_max(W0)`` and the spectral bound last imposed).

Acts on :class:`~editkit.updates.AccumulatedProposal` only (``Δ_n = W_n − W0`` and ``W0``,
``[d_out, d_in]`` math layout): returns ``prune(Δ_n)`` and the kernel writes ``W0 + prune(Δ_n)``
— not ``W_n + prune(Δ_n)``, the double application of the reference code. ``mode="final"`` acts on
the ``stage="final"`` proposal (``run.finish()``), ``mode="every_batch"`` on every ``stage="batch"``
one (and then not again at the end: F∘F ≠ F).

Invariant (PRUNE's spectral bound): ``σ_1(W_n − W0) ≤ F(σ̄_1)``, σ̄_1 the top singular value of
the ``Δ_n`` PRUNE last saw — equivalently ``≤ σ_max + log_α(σ̄_1/σ_max)`` once PRUNE rescaled.
Measured on the weights actually written, against ``run.initial_weights`` (``W0``).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from editkit.api import AccumulatedProposal, EditkitError, Proposal, RunContext, Site, hookimpl
from editkit_prune.hparams import PruneHParams
from editkit_prune.spectral import prune, spectral_norm


class PruneWarning(UserWarning):
    """PRUNE's log map enlarged singular values (σ_max(W0) < 1/ln α): it does not restrain here."""


class PruneStages:
    """Stage plugin created per run by the ``prune`` constraint."""

    def __init__(self, hparams: PruneHParams) -> None:
        self.hparams = hparams
        self.sigma_max: dict[str, float] = {}  # site module -> σ_1(W0)
        self.bound: dict[str, float] = {}  # site module -> F(σ̄_1) of the last Δ_n pruned
        self.finished = False
        self._warned = False

    def _acts_on(self, stage: str) -> bool:
        return (stage == "final") if self.hparams.mode == "final" else (stage == "batch")

    @hookimpl
    def editkit_constrain_update(self, run: RunContext, site: Site, proposal: Proposal) -> Proposal | None:
        if not isinstance(proposal, AccumulatedProposal):
            return None
        if proposal.stage == "final":
            self.finished = True
        if not self._acts_on(proposal.stage):
            return None
        if site.module not in self.sigma_max:
            sigma_max = spectral_norm(proposal.initial)
            if not sigma_max > 0:
                raise EditkitError(f"layer {site.layer}: PRUNE needs σ_max(W0) > 0, got {sigma_max}")
            self.sigma_max[site.module] = sigma_max
        result = prune(proposal.delta, self.sigma_max[site.module], self.hparams.reduce, self.hparams.alpha)
        self.bound[site.module] = result.sigma1_after
        run.note(site, "prune.sigma_max_w0", self.sigma_max[site.module])
        run.note(site, "prune.sigma1_before", result.sigma1_before)
        run.note(site, "prune.rescaled", result.rescaled)
        run.note(site, "prune.sigma1_after", result.sigma1_after)
        if result.enlarged and not self._warned:
            self._warned = True
            warnings.warn(
                f"prune: at layer {site.layer} F enlarged {result.enlarged} singular value(s) of the accumulated "
                f"update (σ̄1 {result.sigma1_before:.3g} -> {result.sigma1_after:.3g}): σ_max(W0) = "
                f"{self.sigma_max[site.module]:.3g} is below 1/ln α, where the log map stops restraining",
                PruneWarning,
                stacklevel=2,
            )
        if result.rescaled == 0:
            return None
        return proposal.with_delta(result.delta.to(proposal.delta.dtype))

    @hookimpl
    def editkit_measure_update(self, run: RunContext, site: Site, delta: torch.Tensor) -> dict[str, Any] | None:
        """``σ_1(W_n − W0)`` against the bound PRUNE imposed; None while PRUNE has not acted yet
        (``mode="final"`` before ``run.finish()``). ``delta`` (this batch's write) is not used:
        the invariant is on the accumulated perturbation."""
        if site.module not in self.bound or (self.hparams.mode == "final" and not self.finished):
            return None
        w0 = site.to_math(run.initial_weights[site.module])  # [d_out, d_in]
        current = run.weight(site).detach()
        value = spectral_norm(current.double() - w0.double())
        bound = self.bound[site.module]
        # Δ_n is a difference of stored weights: rounding to their dtype moves σ_1 by ≤ ‖E‖_F ≲ eps·‖W_n‖_F
        tolerance = 1e-9 * max(bound, 1.0) + 2 * torch.finfo(current.dtype).eps * float(current.double().norm())
        return {
            "invariant": "sigma1(W_n - W0) <= F(sigma1 of the pruned D_n)",
            "value": value,
            "bound": bound,
            "tolerance": tolerance,
            "sigma_max_w0": self.sigma_max[site.module],
            "holds": value <= bound + tolerance,
        }


__all__ = ["PruneStages", "PruneWarning"]
