"""First-party plugin: the EMMET editor (Gupta et al. 2024, "A Unified Framework for Model Editing").

MEMIT's keys, v* and residual spread over layers, with memorisation as an *equality* constraint:
``min tr(Δ C Δᵀ) s.t. Δ K = R`` ⇒ ``Δ = R (Kᵀ C⁻¹ K + λ_E I)⁻¹ Kᵀ C⁻¹`` (Gupta et al. 2024, EMMET, arXiv 2403.14236;
:mod:`editkit_emmet.equality`, which ROME reuses as the u = 1 case). With ``--constraint nullspace``
the solve is the same equality problem with the rows of Δ restricted to range(P) and AlphaEdit's
preservation (Cp + L2·I) in place of λC0.

Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable

from editkit.api import EditorSpec, hookimpl
from editkit_emmet.hparams import PRESETS, EmmetHParams


def _create(hparams: EmmetHParams) -> object:
    from editkit_emmet.editor import EmmetStages

    return EmmetStages(hparams)


EDITOR = EditorSpec(
    name="emmet",
    summary="EMMET: MEMIT's keys, v* and layer spreading with equality constraints on the edited keys, "
    "Δ = R(KᵀC⁻¹K + λ_E·I)⁻¹KᵀC⁻¹, C = λC0 (Gupta et al. 2024, EMMET); dependent keys are warned and solved as said",
    factory=_create,
    hparams=EmmetHParams,
    presets=PRESETS,
    computes_targets=True,
)


@hookimpl
def editkit_register_editors(register: Callable[[EditorSpec], None]) -> None:
    register(EDITOR)
