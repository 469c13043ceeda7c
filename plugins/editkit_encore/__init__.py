"""First-party plugin: the ENCORE editor (Gupta et al. 2025, "Lifelong Sequential Knowledge Editing without Model
Degradation", arXiv 2502.01636; the authors' code, github.com/scalable-model-editing/encore, ``encore/compute_z.py``
and ``encore/encore_main.py``).

MEMIT's stages with two changes: most-probable early stopping of v* (a request stops on the n-th step at which the
new object is the argmax at every target position of every rewrite prompt), and a Frobenius penalty on each
batch's increment in the sequential solve::

    Δ = R Kᵀ (λ_p C0 + λ_n I + Σ_prev K Kᵀ + K Kᵀ)⁻¹

With ``--constraint nullspace`` the solve is AlphaEdit's, restricted to the null space, with λ_n added to its L2.

Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable

from editkit.api import EditorSpec, hookimpl
from editkit_encore.hparams import PRESETS, EncoreHParams


def _create(hparams: EncoreHParams) -> object:
    from editkit_encore.editor import EncoreStages

    return EncoreStages(hparams)


EDITOR = EditorSpec(
    name="encore",
    summary="ENCORE: MEMIT with most-probable early stopping of v* and a Frobenius penalty on each increment, "
    "Δ = R Kᵀ(λ_p C0 + λ_n I + Cp + K Kᵀ)⁻¹ (Gupta et al. 2025, arXiv 2502.01636)",
    factory=_create,
    hparams=EncoreHParams,
    presets=PRESETS,
    computes_targets=True,
)


@hookimpl
def editkit_register_editors(register: Callable[[EditorSpec], None]) -> None:
    register(EDITOR)
