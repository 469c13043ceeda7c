"""First-party plugin: the MEMIT editor (Meng et al. 2023), registered like any third-party one.

Importing this module does not import torch; the stages are loaded when a run creates them.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from editkit.api import EditkitError, EditorSpec, hookimpl
from editkit_memit.hparams import PRESETS, MemitHParams


def _create(hparams: MemitHParams) -> object:
    from editkit_memit.editor import MemitStages

    return MemitStages(hparams)


EDITOR = EditorSpec(
    name="memit",
    summary="MEMIT: prefix-averaged keys, batched v* optimisation, residual spread over layers, "
    "least-squares solve Δ = R K1ᵀ(λC0 + K1K1ᵀ)⁻¹ (Meng et al. 2023, MEMIT §4)",
    factory=_create,
    hparams=MemitHParams,
    presets=PRESETS,
    computes_targets=True,
)


def memit_with(constraint: str, summary: str) -> EditorSpec:
    """An editor = MEMIT's stages + ``constraint`` (run last), constrained post hoc as the published
    baselines (``--editor rect``, ``--editor prune``)."""

    def create(hparams: MemitHParams) -> object:
        if not isinstance(hparams, MemitHParams):
            raise EditkitError(
                f"editor {constraint!r} received {type(hparams).__name__} instead of MemitHParams: the editor and "
                f"its implied constraint {constraint!r} would overwrite each other's hyperparameters"
            )
        return _create(hparams)

    return attrs.evolve(EDITOR, name=constraint, summary=summary, factory=create, implied_constraints=(constraint,),
                        default_constrain_mode="posthoc")


@hookimpl
def editkit_register_editors(register: Callable[[EditorSpec], None]) -> None:
    register(EDITOR)
