"""First-party plugin: AlphaEdit's null-space constraint (Fang et al. 2025, AlphaEdit, arXiv 2410.02355, §3, ICLR 2025).

Composable with any editor. With an editor that exposes a solver (``solve`` mode, the
default for MEMIT-family editors) the solve is restricted to the null space of the
preserved keys, exactly AlphaEdit's closed form; otherwise (``project`` mode) the solved
update is projected, ``Δ ↦ Δ P``. After RECT (``--constraint rect --constraint nullspace``),
``joint`` mode projects each row onto range(P) ∩ the row's support instead, keeping both
invariants (:mod:`editkit_nullspace.joint`).
"""

from __future__ import annotations

from collections.abc import Callable

from editkit.api import ConstraintSpec, hookimpl
from editkit_nullspace.hparams import NullspaceHParams


def _create(hparams: NullspaceHParams) -> object:
    from editkit_nullspace.constraint import NullspaceStages

    return NullspaceStages(hparams)


CONSTRAINT = ConstraintSpec(
    name="nullspace",
    summary="AlphaEdit: restrict the update to the null space of preserved keys (eigenvalues of C0 "
    "below a threshold, or the smallest ones holding under a share of its energy); solve mode "
    "Δ = R K1ᵀP(CpP + K1K1ᵀP + L2·I)⁻¹, project mode Δ ↦ ΔP, joint mode "
    "(after rect) each row onto range(P) ∩ its support",
    factory=_create,
    hparams=NullspaceHParams,
    invariant="ΔP = Δ: rows of the update lie in the null space of the preserved keys K0",
    linear=True,
)


@hookimpl
def editkit_register_constraints(register: Callable[[ConstraintSpec], None]) -> None:
    register(CONSTRAINT)
