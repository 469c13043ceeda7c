"""First-party plugin: PRUNE (Ma et al., ICLR 2025; methods.md §7), a constraint and an editor.

* constraint ``prune`` (``--constraint prune``): on the accumulated perturbation
  ``Δ_n = W_n − W0`` ``[d_out, d_in]`` (math layout), rescale the singular values
  ``σ̄ ≥ σ_max(W0)`` by ``F(σ̄) = log_α σ̄ − log_α σ_max + σ_max`` (α = e; ``--set prune.reduce=linear``:
  ``F = (σ̄ + σ_max)/2``), keep the singular vectors; the kernel writes ``W0 + F(Δ_n)``.
  ``mode``: ``final`` (default, once when the run finishes, as published) or ``every_batch``.
* editor ``prune`` (``--editor prune``) = MEMIT's stages + the ``prune`` constraint (run last).

Composition (methods.md §11.2c–e): with ``nullspace`` both invariants survive in either order
(PRUNE keeps the row space of Δ_n; P cannot raise singular values). After ``rect`` (every_batch)
PRUNE re-densifies the update and RECT's sparsity is reported broken. Note: the kernel measures
invariants after each batch; in ``final`` mode the end-of-run map is written after the last measure.

Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any

import attrs
from editkit_memit import EDITOR as MEMIT
from editkit_memit.hparams import MemitHParams

from editkit import ConstraintSpec, EditorSpec, hookimpl
from editkit.errors import EditkitError
from editkit_prune.hparams import PruneHParams


def _create(hparams: PruneHParams) -> object:
    from editkit_prune.constraint import PruneStages

    return PruneStages(hparams)


def _create_editor(hparams: Any) -> object:
    if not isinstance(hparams, MemitHParams):
        raise EditkitError(
            f"editor 'prune' received {type(hparams).__name__} instead of MemitHParams: this kernel keys "
            "hyperparameters by name, so the editor and its implied constraint 'prune' overwrite each other"
        )
    return MEMIT.factory(hparams)


CONSTRAINT = ConstraintSpec(
    name="prune",
    summary="PRUNE: on Δn = Wn − W0, rescale singular values ≥ σmax(W0) by F(σ) = logα σ − logα σmax + σmax "
    "(α = e; linear: (σ + σmax)/2) and write W0 + F(Δn); mode final (default) or every_batch",
    factory=_create,
    hparams=PruneHParams,
    invariant="σ1(W_n − W0) ≤ F(σ̄1) = σmax(W0) + logα(σ̄1/σmax(W0)) (spectral bound on the accumulated update)",
    linear=False,
)

# Published PRUNE baselines write all layers of a batch unconstrained (the map acts on Δ_n afterwards).
_POSTHOC = {"default_constrain_mode": "posthoc"} if "default_constrain_mode" in attrs.fields_dict(EditorSpec) else {}

EDITOR = attrs.evolve(
    MEMIT,
    name="prune",
    summary="MEMIT + PRUNE: MEMIT's stages, then the accumulated update's large singular values are restrained "
    "(methods.md §7; once at the end of the run by default)",
    factory=_create_editor,
    implied_constraints=("prune",),
    **_POSTHOC,
)


@hookimpl
def editkit_register_constraints(register):
    register(CONSTRAINT)


@hookimpl
def editkit_register_editors(register):
    register(EDITOR)
