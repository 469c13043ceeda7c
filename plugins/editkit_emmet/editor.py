"""EMMET's stage implementations: MEMIT's stages (keys, v*, residual spread over layers) with the
equality-constrained solve of :mod:`editkit_emmet.equality` in place of MEMIT's least squares."""

from __future__ import annotations

import warnings

import torch
from editkit_memit.editor import MemitStages

from editkit.api import EditBatch, RunContext, Site, SolveProblem, hookimpl
from editkit_emmet.equality import EqualityUpdate, equality_update, preservation
from editkit_emmet.hparams import EmmetHParams


class DependentKeysWarning(UserWarning):
    """A batch's keys are (nearly) linearly dependent: its equality constraints cannot all hold."""


def describe_dependence(result: EqualityUpdate, where: str, rcond: float, ridge: float) -> str:
    """What was found and what was done, in words (the warning's text)."""
    found = (f"{where}: the batch's keys are linearly dependent in the solve's coordinates (smallest/largest "
             f"singular value {result.key_condition:.2e} < rcond {rcond:g}; e.g. two requests with the same subject "
             "and prompt, or a key with no component in the null space), so its equality constraints cannot all hold")
    if result.solved_with == "ridge":
        return (f"{found}; solved with the λ_E ridge (emmet_lambda={ridge:g}) as the reference does, so the "
                "constraints hold only approximately and conflicting targets are averaged")
    return (f"{found}; solved exactly for the {result.kept} independent combination(s) of the {result.requests} "
            "constraints and in the least-squares sense for the rest (conflicting targets are averaged, a key with "
            "no component in the subspace gets no update)")


class EmmetStages(MemitStages):
    """Stage plugin created per run by the ``emmet`` editor."""

    hparams: EmmetHParams

    def __init__(self, hparams: EmmetHParams) -> None:
        super().__init__(hparams)
        self._warned = False

    @hookimpl
    def editkit_solve(self, run: RunContext, batch: EditBatch, site: Site, problem: SolveProblem) -> torch.Tensor:
        hp = self.hparams
        terms = []
        weight = hp.mom2_weight if problem.background_weight is None else problem.background_weight
        if problem.use_background and weight > 0:
            terms.append((weight, run.require_key_statistics().second_moment(site)))
        if (problem.use_past or hp.sequential) and problem.past is not None:
            terms.append((1.0, problem.past))
        pres = preservation(terms, problem.ridge, problem.subspace, site.d_in)
        result = equality_update(pres, problem.keys, problem.residual, batch_ridge=hp.emmet_lambda, rcond=hp.rcond)
        run.note(site, "emmet.key_condition", float(f"{result.key_condition:.4g}"))
        run.note(site, "emmet.solved_with", result.solved_with)
        if pres.singular:
            run.note(site, "emmet.preservation", "singular: pseudo-inverse")
        if result.dependent:
            message = describe_dependence(result, f"emmet, batch {batch.index}, layer {site.layer}", hp.rcond,
                                          hp.emmet_lambda)
            run.note(site, "emmet.dependent_keys", message)
            if not self._warned:  # once per run; every batch's notes say it
                self._warned = True
                warnings.warn(message, DependentKeysWarning, stacklevel=2)
        return result.delta


__all__ = ["DependentKeysWarning", "EmmetStages"]
