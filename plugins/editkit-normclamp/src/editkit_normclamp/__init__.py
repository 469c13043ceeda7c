"""editkit-normclamp: the ``normclamp`` constraint, ``‖Δ‖_F ≤ ratio·‖W‖_F`` on every update.

Registered through the ``editkit`` entry-point group (see this package's ``pyproject.toml``).
Importing this module does not import torch: the stage code is loaded when a run creates it.
"""

from __future__ import annotations

from collections.abc import Callable

from editkit.api import ConstraintSpec, hookimpl
from editkit_normclamp.hparams import NormclampHParams

__version__ = "0.1.0"


def _create(hparams: NormclampHParams) -> object:
    """The per-run stage plugin (a fresh object for every run)."""
    from editkit_normclamp.constraint import NormclampStages

    return NormclampStages(hparams)


CONSTRAINT = ConstraintSpec(
    name="normclamp",
    summary="bound every update's size: Δ ↦ Δ·min(1, ratio·‖W‖_F/‖Δ‖_F) with W the site's weight",
    factory=_create,
    hparams=NormclampHParams,
    invariant="‖Δ‖_F ≤ ratio·‖W‖_F for the update written at each site and batch; Δ is only multiplied by a "
    "positive scalar, so it commutes with the null-space projection (ΔP = Δ is kept)",
    linear=False,
)


@hookimpl
def editkit_register_constraints(register: Callable[[ConstraintSpec], None]) -> None:
    """Catalog hook: register the ``normclamp`` constraint."""
    register(CONSTRAINT)
