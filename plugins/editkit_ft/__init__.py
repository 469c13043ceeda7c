"""First-party plugin: constrained fine-tuning of MLP output matrices (``--editor ft``; FT-L of
Zhu et al. 2020, arXiv 2012.00363, ROME's baseline).

An editor without a closed-form solve: its ``editkit_solve`` runs Adam on the update ``Δ`` of one
site, the model computing as if ``W + Δ`` through :func:`editkit.helpers.tracing.added_update` (no weight is
written before ``editkit_apply``), clamping to FT-L's L∞ box after every step and, when a constraint
restricts the solve to a row subspace (``--constraint nullspace``), projecting every step onto it.
Constraints that transform the solved Δ (``rect``, ``prune``) apply to it like to any editor's.

Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable

from editkit.api import EditorSpec, hookimpl
from editkit_ft.hparams import PRESETS, FtHParams


def _create(hparams: FtHParams) -> object:
    from editkit_ft.editor import FtStages

    return FtStages(hparams)


EDITOR = EditorSpec(
    name="ft",
    summary="FT-L: Adam on the MLP output matrices' update on the rewrite prompts, clamped to an L∞ box "
    "(linf, 5e-4 as ROME's baseline; 0 = plain FT) after every step; a constraint's row subspace is projected "
    "onto every step (ΔP = Δ kept exactly) (Zhu et al. 2020, FT-L, arXiv 2012.00363)",
    factory=_create,
    hparams=FtHParams,
    presets=PRESETS,
)


@hookimpl
def editkit_register_editors(register: Callable[[EditorSpec], None]) -> None:
    register(EDITOR)
