"""First-party plugin: the MEMIT editor (Meng et al. 2023), registered like any third-party one.

Importing this module does not import torch; the stages are loaded when a run creates them.
"""

from __future__ import annotations

from editkit import EditorSpec, hookimpl
from editkit_memit.hparams import PRESETS, MemitHParams


def _create(hparams: MemitHParams) -> object:
    from editkit_memit.editor import MemitStages

    return MemitStages(hparams)


EDITOR = EditorSpec(
    name="memit",
    summary="MEMIT: prefix-averaged keys, batched v* optimisation, residual spread over layers, "
    "least-squares solve Δ = R K1ᵀ(λC0 + K1K1ᵀ)⁻¹ (methods.md §2, §4)",
    factory=_create,
    hparams=MemitHParams,
    presets=PRESETS,
)


@hookimpl
def editkit_register_editors(register):
    register(EDITOR)
