"""ENCORE's stages: MEMIT's, with MPES in the v* optimisation and λ_n added to the solve's ridge."""

from __future__ import annotations

import attrs
import torch
from editkit_memit.editor import MemitStages
from editkit_memit.targets import VStarSettings

from editkit.api import EditBatch, RunContext, Site, SolveProblem, hookimpl
from editkit_encore.hparams import EncoreHParams


class EncoreStages(MemitStages):
    """Stage plugin created per run by the ``encore`` editor."""

    hparams: EncoreHParams

    def vstar_settings(self) -> VStarSettings:
        return attrs.evolve(super().vstar_settings(), stop_after_argmax=self.hparams.mpes_steps)

    @hookimpl
    def editkit_solve(self, run: RunContext, batch: EditBatch, site: Site, problem: SolveProblem) -> torch.Tensor:
        """``(λ_p C0 + λ_n I + Cp + K Kᵀ) Δᵀ = K Rᵀ`` (the authors' ``encore_main.py``, float64); under a
        restriction (``--constraint nullspace``) λ_n adds to its ridge."""
        penalised = attrs.evolve(problem, ridge=problem.ridge + self.hparams.increment_penalty)
        return super().editkit_solve(run, batch, site, penalised)
