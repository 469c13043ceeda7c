"""First-party plugin: NAS, Norm-Anchor Scaling of the target values (arXiv 2602.02543; the authors' code,
github.com/SasyaTitech/NAS, ``NAS/compute_z.py`` and ``util/vstar_stats.py``).

Sequential editing collapses through a feedback between the norms of the solved value vectors and of the edited
weights. NAS anchors every solved ``v* = v0 + δ`` (``v0``: the edited MLP's output at the subject's last token of
the last edited layer, ``δ``: the optimised shift) to one reference norm ``n̄`` of the *unedited* model: an edit
whose ``‖v*‖ > factor·n̄`` is withdrawn (``v* = v0``), every other ``v*`` is rescaled to ``‖v*‖ = n̄``. The target
passed on is ``z = h − v0 + v*``. A constraint on the target values: it composes with any editor that computes
them (MEMIT and its family) and with ``--constraint nullspace`` (the authors' NAS is AlphaEdit + this).

Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable

from editkit.api import ConstraintSpec, hookimpl
from editkit_nas.hparams import NasHParams


def _create(hparams: NasHParams) -> object:
    from editkit_nas.constraint import NasStages

    return NasStages(hparams)


CONSTRAINT = ConstraintSpec(
    name="nas",
    summary="NAS: rescale each target value v* = v0 + δ to the unedited model's reference norm n̄ (the trimmed "
    "mean of ‖v*‖ over sampled rewrites), withdraw an edit whose ‖v*‖ > 2·n̄ (arXiv 2602.02543)",
    factory=_create,
    hparams=NasHParams,
    invariant="‖v*‖ = n̄ for every edit kept; withdrawn edits aim at the unedited output (z = h)",
    linear=False,
    needs_targets=True,
)


@hookimpl
def editkit_register_constraints(register: Callable[[ConstraintSpec], None]) -> None:
    register(CONSTRAINT)
