"""First-party plugin: RECT (Gu et al. 2024, RECT, arXiv 2401.04700, EMNLP 2024), a constraint and an editor.

* constraint ``rect`` (``--constraint rect``): keep the top-``k`` % entries of each solved update
  ``Δ`` ``[d_out, d_in]`` by relative change ``|Δ_ij| / |W_ij|`` (``W`` the current weight, math
  layout), zero the rest. ``k`` = 40 by default (AlphaEdit's ``MEMIT_rect`` baseline; the official
  RECT code uses 20: ``--set rect.k=20``).
* editor ``rect`` (``--editor rect``) = MEMIT's stages + the ``rect`` constraint, run last unless
  the user places it (``--constraint rect --constraint nullspace``).

Composition (a mask and a projection do not commute): ``nullspace`` then ``rect`` (what ``--editor rect --constraint
nullspace`` runs) breaks ``ΔP = Δ``: the mask is not a coordinate projector of P's basis. editkit
measures it on the written update and warns. The exact way out is the other order with the projection
after the mask, Δ ↦ (M ⊙ Δ) P — the AlphaEdit paper's "+P" plug-in:
``--constraint rect --constraint nullspace`` (the null-space constraint re-projects any Δ that left its
subspace, in either mode). It keeps ΔP = Δ and, in turn,
refills masked entries, so RECT's own invariant is reported broken. Both together:
``--constraint rect --constraint nullspace --set nullspace.mode=joint`` projects each row of M ⊙ Δ onto
``range(P) ∩ {x : supp x ⊆ supp(M ⊙ Δ)_i}`` (:mod:`editkit_nullspace.joint`); rows whose support is
too small for that intersection (generically ``|S_i| + dim P ≤ d_in``) become 0. The warnings name it.

Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Callable

from editkit_memit import memit_with

from editkit.api import ConstraintSpec, EditorSpec, hookimpl
from editkit_rect.hparams import RectHParams


def _create(hparams: RectHParams) -> object:
    from editkit_rect.constraint import RectStages

    return RectStages(hparams)


CONSTRAINT = ConstraintSpec(
    name="rect",
    summary="RECT: keep the top-k% entries of Δ by relative change |Δij|/|Wij| (global, ties kept; k=40, "
    "the official code's 20 with --set rect.k=20), zero the rest",
    factory=_create,
    hparams=RectHParams,
    invariant="entries outside the top-k% relative-change mask are untouched (at most k% + ties change)",
    linear=False,  # linear once the mask is fixed, but the mask depends on Δ
)

EDITOR = memit_with(
    "rect",
    "MEMIT + RECT: MEMIT's stages, then each layer's update keeps only its top-k% entries by relative "
    "change (Gu et al. 2024, RECT, arXiv 2401.04700; published behaviour: --constrain-mode posthoc)",
)


@hookimpl
def editkit_register_constraints(register: Callable[[ConstraintSpec], None]) -> None:
    register(CONSTRAINT)


@hookimpl
def editkit_register_editors(register: Callable[[EditorSpec], None]) -> None:
    register(EDITOR)
