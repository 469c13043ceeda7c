"""The null-space constraint's stages for one run (state: one projector per site, fixed from W0).

Modes (:class:`~editkit_nullspace.hparams.NullspaceHParams`): ``solve`` restricts the solve to S_P;
``project`` writes ``ΔP``; ``joint`` writes the projection of each row onto range(P) ∩ the row's
support (:mod:`editkit_nullspace.joint`), which keeps the entries an earlier RECT zeroed at zero.
The measure names the way out when a later constraint broke ``ΔP = Δ`` (``way_out``: see
:meth:`editkit.run.EditRun._measure`).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from editkit.api import DeltaProposal, Proposal, RunContext, Site, SolveProblem, Subspace, hookimpl, spectrum_profile
from editkit_nullspace.hparams import NullspaceHParams
from editkit_nullspace.joint import joint_projection
from editkit_nullspace.projector import null_mask, null_space, written_invariant


class NullspaceWarning(UserWarning):
    """The null space at a layer is empty (every update there is projected to zero), or the whole space (the
    constraint protects nothing there)."""


class NullspaceStages:
    """Stage plugin created per run by the ``nullspace`` constraint."""

    def __init__(self, hparams: NullspaceHParams) -> None:
        self.hparams = hparams
        self.spectrum_noted: set[str] = set()  # site modules whose C0 spectrum is in the notes (editkit report)
        self.subspaces: dict[str, Subspace] = {}
        self.range_bases: dict[str, torch.Tensor] = {}  # site module -> orthonormal basis of range(P) [d_in, r]
        self.empty: dict[str, dict[str, float]] = {}  # site module -> threshold figures, where P = 0
        self.whole: dict[str, dict[str, float]] = {}  # site module -> threshold figures, where P = I
        self.energy_shares: dict[str, float] = {}  # site module -> share of trace(C0) in the null space

    def subspace(self, run: RunContext, site: Site) -> Subspace:
        """P for ``site``, derived once per run from C0 of the unedited model.

        Where no eigenvalue of C0 is below the threshold, P = 0 and every update of the layer
        becomes 0: that is warned once per layer (:class:`NullspaceWarning`, naming the layer and the
        threshold) and noted in each batch's layer notes (``nullspace.empty``). Where every eigenvalue is
        below it (e.g. ``--set nullspace.threshold=1e9``), P = I: the constraint leaves every update as it is
        and protects none of the preserved keys; that is warned and noted the same way (``nullspace.whole``).
        """
        if site.module not in self.subspaces:
            evals, evecs = run.require_key_statistics().eigendecomposition(site)
            hp = self.hparams
            sub = null_space(evals, evecs, hp.threshold, hp.relative, hp.energy)
            self.subspaces[site.module] = sub
            positive = evals.double().clamp_min(0)
            trace = float(positive.sum())
            mask = null_mask(evals, hp.threshold, hp.relative, hp.energy)
            self.energy_shares[site.module] = float(positive[mask].sum()) / trace if trace > 0 else 0.0
            if sub.dim == 0:
                self._warn_empty(site, evals)
            elif bool(mask.all()):
                self._warn_whole(site, evals)
        if site.module in self.empty:
            run.note(site, "nullspace.empty", self.empty[site.module])
        if site.module in self.whole:
            run.note(site, "nullspace.whole", self.whole[site.module])
        return self.subspaces[site.module]

    def _warn_whole(self, site: Site, evals: torch.Tensor) -> None:
        hp = self.hparams
        largest = float(evals.max())
        if hp.energy is not None:
            self.whole[site.module] = {"energy": hp.energy, "largest_eigenvalue": largest}
            reason = f"the share {hp.energy:g} of C0's energy covers every direction"
            fix = "lower --set nullspace.energy (e.g. 0.01)"
        else:
            tau = hp.threshold * largest if hp.relative else hp.threshold
            self.whole[site.module] = {"threshold": tau, "largest_eigenvalue": largest}
            given = (f"{hp.threshold:g} × the largest eigenvalue {largest:.3g} = {tau:.3g}" if hp.relative
                     else f"{tau:g}")
            reason = f"every eigenvalue of C0 is below the threshold {given} (the largest is {largest:.3g})"
            fix = ("lower --set nullspace.threshold (AlphaEdit's default is 2e-2), or give a share of C0's energy "
                   "with --set nullspace.energy")
        warnings.warn(
            f"nullspace: the null space at layer {site.layer} is the whole space: {reason}, so the constraint "
            f"leaves updates at layer {site.layer} unrestricted and protects none of the preserved keys; {fix}",
            NullspaceWarning,
            stacklevel=2,
        )

    def _warn_empty(self, site: Site, evals: torch.Tensor) -> None:
        hp = self.hparams
        smallest, largest = float(evals.min()), float(evals.max())
        if hp.energy is not None:
            trace = float(evals.double().clamp_min(0).sum())
            share = max(smallest, 0.0) / trace if trace > 0 else float("nan")
            self.empty[site.module] = {"energy": hp.energy, "smallest_eigenvalue": smallest,
                                       "smallest_share": share}
            reason = (f"the smallest eigenvalue of C0 ({smallest:.3g}) alone holds {share:.3g} of its energy "
                      f"(trace {trace:.3g}), not below the share {hp.energy:g}")
            fix = "raise --set nullspace.energy"
        else:
            tau = hp.threshold * largest if hp.relative else hp.threshold
            self.empty[site.module] = {"threshold": tau, "smallest_eigenvalue": smallest}
            given = (f"{hp.threshold:g} × the largest eigenvalue {largest:.3g} = {tau:.3g}" if hp.relative
                     else f"{tau:g}")
            reason = f"no eigenvalue of C0 is below the threshold {given} (the smallest is {smallest:.3g})"
            fix = ("raise --set nullspace.threshold (AlphaEdit's default is 2e-2), or give a share of C0's energy "
                   "with --set nullspace.energy")
        warnings.warn(
            f"nullspace: the null space at layer {site.layer} is empty: {reason}, so every update at layer "
            f"{site.layer} is projected to 0 and the layer is not edited; {fix}",
            NullspaceWarning,
            stacklevel=2,
        )

    def range_basis(self, run: RunContext, site: Site) -> torch.Tensor:
        """Orthonormal basis ``[d_in, r]`` (float64) of range(P) for ``site``, for ``joint`` mode."""
        if site.module not in self.range_bases:
            self.range_bases[site.module] = self.subspace(run, site).range_basis(torch.float64)
        return self.range_bases[site.module]

    def _mode(self, run: RunContext) -> str:
        if self.hparams.mode != "auto":
            return self.hparams.mode
        return "solve" if run.editor_spec.has_solver else "project"

    def note_spectrum(self, run: RunContext, site: Site) -> None:
        """C0's spectrum at ``site`` (128 ranks), the threshold and the null-space size, in the layer notes of
        the first batch this stage plugin sees (``nullspace.spectrum``, for ``editkit report``)."""
        evals, _ = run.require_key_statistics().eigendecomposition(site)  # cached by the key statistics
        tau = self.hparams.threshold * float(evals.max()) if self.hparams.relative else self.hparams.threshold
        run.note(site, "nullspace.spectrum", spectrum_profile(evals, threshold=tau))
        self.spectrum_noted.add(site.module)

    @hookimpl
    def editkit_constrain_update(self, run: RunContext, site: Site, proposal: Proposal) -> Proposal | None:
        sub = self.subspace(run, site)
        if isinstance(proposal, SolveProblem):
            keys = proposal.keys
            kept = float(sub.project_rows(keys.T).norm() / keys.norm().clamp_min(1e-30))  # ‖P K1‖ / ‖K1‖
            run.note(site, "nullspace.dim", sub.dim)
            if site.module not in self.spectrum_noted:
                self.note_spectrum(run, site)
            run.note(site, "nullspace.energy_share", round(self.energy_shares[site.module], 9))  # of trace(C0)
            run.note(site, "nullspace.kept_key_energy", round(kept, 6))
            if self._mode(run) != "solve":
                return None
            return proposal.restricted(sub, use_background=False, use_past=True, ridge=self.hparams.l2)
        if isinstance(proposal, DeltaProposal):
            if self._mode(run) == "joint":
                joint = joint_projection(proposal.delta, self.range_basis(run, site))
                run.note(site, "nullspace.joint_kept_norm", round(joint.kept_norm, 6))  # ‖Δ_out‖ / ‖Δ_in‖
                run.note(site, "nullspace.joint_zero_rows", joint.zero_rows)
                return proposal.with_delta(joint.delta, note="nullspace: joint (range(P) ∩ support)")
            projected = sub.project_rows(proposal.delta)
            if self._mode(run) == "project":
                return proposal.with_delta(projected)
            # solve mode: the solved Δ is in S_P already, unless an earlier constraint (RECT) or a solver
            # that ignored the subspace moved it out; then project, and say so
            norm = float(proposal.delta.norm())
            leak = float((proposal.delta - projected).norm()) / norm if norm > 0 else 0.0
            if leak > 1e-6:
                run.note(site, "nullspace.reprojected", leak)
                return proposal.with_delta(projected, note=f"nullspace: re-projected (left S_P by {leak:.2e})")
        return None

    @hookimpl
    def editkit_measure_update(self, run: RunContext, site: Site, delta: torch.Tensor) -> dict[str, Any]:
        """‖Δ − ΔP‖ / ‖Δ‖ on the update actually written (:func:`~editkit_nullspace.projector.written_invariant`)."""
        figures = written_invariant(self.subspace(run, site), delta, run.weight(site))
        if not figures["holds"] and "rect" in run.constraints_after("nullspace"):
            figures["way_out"] = JOINT_WAY_OUT
        return figures


JOINT_WAY_OUT = ("use --constraint rect --constraint nullspace --set nullspace.mode=joint to hold both "
                 "(each row projected onto range(P) ∩ RECT's support)")
"""The exact way to keep ``ΔP = Δ`` and RECT's sparsity together, named when either breaks."""


__all__ = ["JOINT_WAY_OUT", "NullspaceStages", "NullspaceWarning"]
