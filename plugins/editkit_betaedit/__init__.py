"""First-party plugin: BetaEdit (arXiv 2605.09285; the authors' code, github.com/lbq8942/BetaEdit,
``algs/betaedit/betaedit_main.py``), as a constraint and as the ``betaedit`` editor (MEMIT's stages + it).

AlphaEdit's projector ``P`` only approximately annihilates ``C0``, so BetaEdit keeps ``λ1·C0`` inside the projected
solve and refreshes ``P`` from what the run has edited::

    Δᵀ = (P (K Kᵀ + Cp + λ1 C0) + λ2 I)⁻¹ P K Rᵀ        (λ1 3000, λ2 10)
    every τ edits (1,000):  P ← null space of M = (Cp / edits + λ1 C0) / (λ1 + 1)   (eigenvalues < 0.02)

and stops the stream when an update is too large (``‖Δ‖_F / √u > 20``). It is a null-space method of its own:
with ``--constraint nullspace`` the solve would be restricted twice, so that combination is refused.

Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from editkit_memit import memit_with

from editkit.api import ConstraintSpec, EditorSpec, hookimpl
from editkit_betaedit.hparams import BetaEditHParams

TWICE = ("BetaEdit restricts the solve to its own null space (refreshed from Cp); with AlphaEdit's as well the "
         "solve would be restricted twice: use one of them")


def _create(hparams: BetaEditHParams) -> object:
    from editkit_betaedit.constraint import BetaEditStages

    return BetaEditStages(hparams)


CONSTRAINT = ConstraintSpec(
    name="betaedit",
    summary="BetaEdit: AlphaEdit's projected solve with λ1·C0 kept inside it, Δᵀ = (P(KKᵀ + Cp + λ1C0) + λ2I)⁻¹PKRᵀ, "
    "P refreshed every τ edits from (Cp/edits + λ1C0)/(λ1 + 1) (arXiv 2605.09285)",
    factory=_create,
    hparams=BetaEditHParams,
    invariant="ΔP = Δ with P the null space of the current refresh matrix M; ‖Δ‖_F/√u ≤ abort_norm",
    linear=True,
    conflicts={"nullspace": TWICE},
)

EDITOR = attrs.evolve(
    memit_with("betaedit", "BetaEdit: MEMIT's keys, v* and layer spreading with BetaEdit's projected solve "
               "(--constraint betaedit's λ1, λ2, τ apply: --set betaedit.lambda1=...)"),
    default_constrain_mode="inline", computes_targets=True,
)


@hookimpl
def editkit_register_constraints(register: Callable[[ConstraintSpec], None]) -> None:
    register(CONSTRAINT)


@hookimpl
def editkit_register_editors(register: Callable[[EditorSpec], None]) -> None:
    register(EDITOR)
