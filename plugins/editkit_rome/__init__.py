"""First-party plugin: the ROME editor (Meng et al. 2022, "Locating and Editing Factual Associations in GPT").

One rank-one update of one layer's MLP output matrix per request (Meng et al. 2022, ROME, arXiv 2202.05262, §3):
``Δ = Λ (C⁻¹k*)ᵀ``, ``Λ = (v* − W k*) / ((C⁻¹k*)ᵀ k*)`` — the u = 1 case of EMMET's equality solve
(:mod:`editkit_emmet.equality`), with MEMIT's prefix-averaged keys and v* machinery at that layer.
A batch of N requests is N sequential rank-one edits (:mod:`editkit_rome.editor`).

Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable

from editkit.api import EditorSpec, hookimpl
from editkit_rome.hparams import PRESETS, RomeHParams


def _create(hparams: RomeHParams) -> object:
    from editkit_rome.editor import RomeStages

    return RomeStages(hparams)


EDITOR = EditorSpec(
    name="rome",
    summary="ROME: one rank-one update per request at one layer, Δ = Λ(C0⁻¹k*)ᵀ with Λ = (v* − Wk*)/((C0⁻¹k*)ᵀk*), "
    "prefix-averaged keys and v* as MEMIT's at that layer; a batch is that many sequential edits (Meng et al. 2022)",
    factory=_create,
    hparams=RomeHParams,
    presets=PRESETS,
)


@hookimpl
def editkit_register_editors(register: Callable[[EditorSpec], None]) -> None:
    register(EDITOR)
