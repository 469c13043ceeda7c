"""First-party plugin: PRUNE (Ma et al. 2025, PRUNE, arXiv 2405.16821, ICLR 2025), a constraint and an editor.

* constraint ``prune`` (``--constraint prune``): on the accumulated perturbation
  ``Δ_n = W_n − W0`` ``[d_out, d_in]`` (math layout), rescale the singular values
  ``σ̄ ≥ σ_max(W0)`` by ``F(σ̄) = log_α σ̄ − log_α σ_max + σ_max`` (α = e; ``--set prune.reduce=linear``:
  ``F = (σ̄ + σ_max)/2``), keep the singular vectors; the kernel writes ``W0 + F(Δ_n)``.
  ``mode``: ``final`` (default, once when the run finishes, as published) or ``every_batch``.
* editor ``prune`` (``--editor prune``) = MEMIT's stages + the ``prune`` constraint (run last).

Composition (tests/unit/test_composition.py): with ``nullspace`` both invariants survive in either order
(PRUNE keeps the row space of Δ_n; P cannot raise singular values). After ``rect`` (every_batch)
PRUNE re-densifies the update and RECT's sparsity is reported broken. In ``final`` mode the
end-of-run map is measured by ``run.finish()`` (``result.json["final"]``).

Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable

from editkit_memit import memit_with

from editkit.api import ConstraintSpec, EditorSpec, hookimpl
from editkit_prune.hparams import PruneHParams


def _create(hparams: PruneHParams) -> object:
    from editkit_prune.constraint import PruneStages

    return PruneStages(hparams)


CONSTRAINT = ConstraintSpec(
    name="prune",
    summary="PRUNE: on Δn = Wn − W0, rescale singular values ≥ σmax(W0) by F(σ) = logα σ − logα σmax + σmax "
    "(α = e; linear: (σ + σmax)/2) and write W0 + F(Δn); mode final (default) or every_batch",
    factory=_create,
    hparams=PruneHParams,
    invariant="σ1(W_n − W0) ≤ F(σ̄1) = σmax(W0) + logα(σ̄1/σmax(W0)) (spectral bound on the accumulated update)",
    linear=False,
)

EDITOR = memit_with(
    "prune",
    "MEMIT + PRUNE: MEMIT's stages, then the accumulated update's large singular values are restrained "
    "(Ma et al. 2025, PRUNE, arXiv 2405.16821; once at the end of the run by default)",
)


@hookimpl
def editkit_register_constraints(register: Callable[[ConstraintSpec], None]) -> None:
    register(CONSTRAINT)


@hookimpl
def editkit_register_editors(register: Callable[[EditorSpec], None]) -> None:
    register(EDITOR)
