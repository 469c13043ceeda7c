"""BetaEdit's stages for one run (state: per site the projector ``P`` and the edit count of its last refresh).

The refresh happens before the solve of the first batch that starts at least ``τ`` edits after the last one (the
authors' ``ProjectionUpdater``: a step counter of completed edits), for every site alike, from ``Cp`` as that
batch's solve sees it (``problem.past``). A resumed run rebuilds ``Cp`` at the refresh from the earlier batches'
keys in the ledger's own order of sums, so its ``P`` is bit-identical.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from editkit_nullspace.projector import null_space, written_invariant

from editkit.api import (
    DeltaProposal,
    NumericalError,
    Proposal,
    RunContext,
    Site,
    SolveProblem,
    Subspace,
    hookimpl,
)
from editkit_betaedit.hparams import BetaEditHParams


def refresh_matrix(past: torch.Tensor, edits: int, c0: torch.Tensor, lambda1: float) -> torch.Tensor:
    """``M = (Cp / edits + λ1 C0) / (λ1 + 1)`` (float64 ``[d_in, d_in]``; the authors' ``ProjectionUpdater``)."""
    return (past.double() / edits + lambda1 * c0.double()) / (lambda1 + 1)


def past_at(batches: list[torch.Tensor], edits: int) -> torch.Tensor:
    """``Cp`` over the first batches holding ``edits`` requests, summed as the kernel's ledger sums it (float32,
    ``Cp ← addmm(Cp, K, Kᵀ)`` from zero, batch by batch)."""
    past: torch.Tensor | None = None
    count = 0
    for keys in batches:
        if count >= edits:
            break
        k = keys.to(torch.float32)  # [d_in, u]
        if past is None:
            past = torch.zeros(k.shape[0], k.shape[0], dtype=torch.float32, device=k.device)
        past = torch.addmm(past, k, k.T, alpha=1.0)
        count += int(keys.shape[1])
    if past is None or count != edits:
        raise NumericalError(f"betaedit: cannot rebuild Cp at {edits} edits from the run's batches ({count})")
    return past


class BetaEditStages:
    """Stage plugin created per run by the ``betaedit`` constraint."""

    def __init__(self, hparams: BetaEditHParams) -> None:
        self.hparams = hparams
        self.refreshed_at = 0  # completed edits when P was last computed (0: from C0 alone)
        self.subspaces: dict[str, tuple[int, Subspace]] = {}  # site module -> (refreshed_at, P)
        self.batch_size: dict[str, int] = {}

    def projector(self, run: RunContext, site: Site, problem: SolveProblem) -> Subspace:
        hp = self.hparams
        edits = run.edits_done
        if hp.refresh_every and edits - self.refreshed_at >= hp.refresh_every:
            self.refreshed_at = edits
        cached = self.subspaces.get(site.module)
        if cached is None or cached[0] != self.refreshed_at:
            stats = run.require_key_statistics()
            if self.refreshed_at == 0:
                evals, evecs = stats.eigendecomposition(site)
            else:
                past = (problem.past if edits == self.refreshed_at and problem.past is not None
                        else past_at(list(problem.past_batches), self.refreshed_at))
                # on the run's device (minutes on a CPU at d_mlp 14336); the same device on resume: the same P
                m = refresh_matrix(past, self.refreshed_at, stats.second_moment(site), hp.lambda1).to(run.device)
                evals, evecs = (t.cpu() for t in torch.linalg.eigh(m))
            self.subspaces[site.module] = (self.refreshed_at, null_space(evals, evecs, hp.threshold, relative=False))
        run.note(site, "betaedit.refreshed_at", self.refreshed_at)
        return self.subspaces[site.module][1]

    @hookimpl
    def editkit_constrain_update(self, run: RunContext, site: Site, proposal: Proposal) -> Proposal | None:
        hp = self.hparams
        if isinstance(proposal, SolveProblem):
            sub = self.projector(run, site, proposal)
            run.note(site, "betaedit.dim", sub.dim)
            self.batch_size[site.module] = int(proposal.keys.shape[1])
            return proposal.restricted(sub, use_background=hp.lambda1 > 0, background_weight=hp.lambda1,
                                       use_past=True, ridge=proposal.ridge + hp.lambda2)
        if isinstance(proposal, DeltaProposal) and hp.abort_norm:
            u = self.batch_size.get(site.module, 1)
            size = float(proposal.delta.norm()) / math.sqrt(u)
            run.note(site, "betaedit.update_size", round(size, 6))
            if size > hp.abort_norm:
                raise NumericalError(
                    f"betaedit: the update at layer {site.layer} has ‖Δ‖_F/√u = {size:.4g} > {hp.abort_norm:g}: "
                    f"BetaEdit's stop rule ends the stream here, after {run.edits_done} edits (this batch is undone; "
                    "--set betaedit.abort_norm=0 goes on)")
        return None

    @hookimpl
    def editkit_measure_update(self, run: RunContext, site: Site, delta: torch.Tensor) -> dict[str, Any] | None:
        """‖Δ − ΔP‖/‖Δ‖ on the update written, with the P this batch solved in (the null space's own measure)."""
        if site.module not in self.subspaces:
            return None
        return written_invariant(self.subspaces[site.module][1], delta, run.weight(site))

    @hookimpl
    def editkit_save_state(self, run: RunContext) -> dict[str, torch.Tensor]:
        return {"refreshed_at": torch.tensor(self.refreshed_at, dtype=torch.int64)}

    @hookimpl
    def editkit_load_state(self, run: RunContext, states: list[dict[str, torch.Tensor]]) -> None:
        known = [int(s["refreshed_at"]) for s in states if "refreshed_at" in s]
        self.refreshed_at = known[-1] if known else 0
        self.subspaces = {m: v for m, v in self.subspaces.items() if v[0] == self.refreshed_at and v[0] == 0}
