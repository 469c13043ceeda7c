"""Hook specifications of the ``editkit`` project: the contract between the kernel and plugins.

There are two families of hooks.

**Catalog hooks** are called once on the *discovery* plugin manager (every installed plugin,
found through the ``editkit`` entry-point group). Each receives a ``register`` callback;
the kernel records which plugin registered what, rejects duplicate names and validates the
entries (see :mod:`editkit.catalog`).

**Stage hooks** are called on the *run* plugin manager, which holds only the objects that
the run's editor and constraints created for this run (plus the kernel's default ``apply``).
So an editor's stage implementations never have to check whether they are "the active
method": if they are called, they are. The kernel drives them per batch and per located
site in this order::

    sites = editkit_locate(run)                                     # once per run
    for batch:
        for site in sites (ascending layer):
            keys     = editkit_collect_keys(run, batch, site)        # K1 [d_in, u]
            residual = editkit_compute_residual(run, batch, site, keys)   # R [d_out, u]
            problem  = SolveProblem(keys, residual, ...)
            for c in constraints (user order):                       # may restrict the solve
                problem = editkit_constrain_update(run, site, problem) or problem
            delta    = editkit_solve(run, batch, site, problem)      # Δ [d_out, d_in]
            for c in constraints (user order):                       # may transform Δ
                delta = editkit_constrain_update(run, site, DeltaProposal(delta)) or delta
            undo     = editkit_apply(run, site, delta)
        for site, for c in constraints:                              # on Δ_n = W_n − W0 (PRUNE)
            editkit_constrain_update(run, site, AccumulatedProposal(Δ_n, stage="batch"))
        for site, for c in constraints:
            editkit_measure_update(run, site, written Δ)             # invariants, measured
        Cp += K1 K1ᵀ (keys recomputed on the edited model)
        editkit_batch_end(run, batch)                                # other sequential state
    for site, for c in constraints:                                  # run.finish()
        editkit_constrain_update(run, site, AccumulatedProposal(Δ_n, stage="final"))

Orientation: every matrix handed through these hooks is in *math layout*, ``v = W k`` with
``W`` of shape ``[d_out, d_in]`` (``d_out`` = d_model, ``d_in`` = d_mlp), whatever the storage
layout of the module (GPT-2's ``Conv1D`` stores ``Wᵀ``); only ``apply`` deals with storage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from editkit.markers import hookspec

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

    from editkit.run import Batch, EditRun
    from editkit.sites import Site
    from editkit.updates import AccumulatedProposal, DeltaProposal, SolveProblem, UndoRecord

    Proposal = SolveProblem | DeltaProposal | AccumulatedProposal


# --------------------------------------------------------------------------- catalog hooks


@hookspec
def editkit_register_editors(register: Callable[[Any], None]) -> None:
    """Register editors (full editing methods, selectable with ``--editor NAME``).

    :param register: call it with one :class:`editkit.catalog.EditorSpec` per editor.

    Calling convention: every plugin's implementation is called; nothing is returned.
    Implemented by: editor plugins (first-party ``memit``; third-party packages).
    """


@hookspec
def editkit_register_constraints(register: Callable[[Any], None]) -> None:
    """Register constraints (selectable, repeatable and ordered, with ``--constraint NAME``).

    :param register: call it with one :class:`editkit.catalog.ConstraintSpec` per constraint.

    Calling convention: every plugin's implementation is called; nothing is returned.
    Implemented by: constraint plugins (first-party ``nullspace``; third-party packages).
    """


@hookspec
def editkit_register_architectures(register: Callable[[Any], None]) -> None:
    """Register model architectures: how to find the edit sites of a ``transformers`` family.

    :param register: call it with one :class:`editkit.catalog.ArchitectureSpec` per
        ``model_type`` (the value of ``config.model_type``).

    Calling convention: every plugin's implementation is called; nothing is returned.
    Implemented by: architecture plugins (first-party ``architectures``). Models whose
    ``model_type`` nobody registered fall back to the kernel's structural search.
    """


@hookspec
def editkit_register_datasets(register: Callable[[Any], None]) -> None:
    """Register datasets of edit requests (selectable with ``--dataset NAME``).

    :param register: call it with one :class:`editkit.catalog.DatasetSpec` per dataset.

    Calling convention: every plugin's implementation is called; nothing is returned.
    Implemented by: dataset plugins.
    """


@hookspec
def editkit_register_metrics(register: Callable[[Any], None]) -> None:
    """Register evaluation metrics.

    :param register: call it with one :class:`editkit.catalog.MetricSpec` per metric.

    Calling convention: every plugin's implementation is called; nothing is returned.
    Implemented by: metric plugins.
    """


@hookspec
def editkit_register_commands(register: Callable[[Any], None]) -> None:
    """Register extra ``editkit`` subcommands.

    :param register: call it with one :class:`editkit.catalog.CommandSpec` per subcommand.

    Calling convention: every plugin's implementation is called; nothing is returned. The module
    that implements this hook must not import torch (``editkit --help`` loads it).
    Implemented by: plugins that bring their own commands (first-party ``world``).
    """


@hookspec
def editkit_register_models(register: Callable[[Any], None]) -> None:
    """Register models by name, so that ``--model NAME`` loads them (e.g. ``smollm2-135m``).

    :param register: call it with one :class:`editkit.catalog.ModelSpec` per model: how to tell
        whether it is installed, the command that installs it, and where its ``.gguf`` file or
        ``save_pretrained`` directory is.

    Calling convention: every plugin's implementation is called; nothing is returned. The module
    that implements this hook must not import torch (``editkit models`` loads it).
    Implemented by: model-source plugins (first-party ``models``).
    """


# --------------------------------------------------------------------------- stage hooks


@hookspec(firstresult=True)
def editkit_locate(run: EditRun) -> list[Site] | None:
    """Locate: choose the modules this run edits.

    :param run: the run (model, layout, configuration, per-run state).
    :returns: the edit sites in ascending layer order, each a :class:`editkit.sites.Site`
        made with ``run.layout.site(layer)`` or an equivalent.

    Calling convention: stops at the first non-None result (firstresult).
    Implemented by: the run's editor.
    """


@hookspec(firstresult=True)
def editkit_collect_keys(run: EditRun, batch: Batch, site: Site) -> torch.Tensor | None:
    """Collect-keys: the input of the edited module for each request of the batch.

    Called once per site on the *current* model (earlier sites of the batch already written).

    :param batch: the batch (``batch.requests``: ``u`` :class:`~editkit.requests.EditRequest`).
    :param site: the located module.
    :returns: ``K1``, float tensor of shape ``[d_in, u]`` (one column per request, in
        ``batch.requests`` order).

    Calling convention: firstresult. Implemented by: the run's editor.
    """


@hookspec(firstresult=True)
def editkit_compute_residual(
    run: EditRun, batch: Batch, site: Site, keys: torch.Tensor
) -> torch.Tensor | None:
    """Compute-residual: what the update at this site must add to the module's output.

    MEMIT-family editors optimise target hidden states once per batch (cache them in their
    per-run state) and spread ``Z − H_current`` over the remaining sites.

    :param keys: ``K1`` ``[d_in, u]`` as returned by ``editkit_collect_keys`` for this site.
    :returns: ``R``, float tensor of shape ``[d_out, u]`` with ``(W + Δ) K1 ≈ W K1 + R`` the goal.

    Calling convention: firstresult. Implemented by: the run's editor.
    """


@hookspec
def editkit_constrain_update(run: EditRun, site: Site, proposal: Proposal) -> Proposal | None:
    """Constrain-update: restrict the solve, or transform the solved update.

    The kernel calls this hook **once per constraint, in the order the user gave**, each
    time with only that constraint's implementation, and threads the result through. A
    proposal is one of two kinds:

    * :class:`~editkit.updates.SolveProblem` (before the solve): the constraint may return a
      restricted problem, e.g. ``problem.restricted(subspace, ...)`` to make the solver fit
      inside a row subspace (AlphaEdit's null space) or change its preservation terms.
    * :class:`~editkit.updates.DeltaProposal` (after the solve, ``Δ`` ``[d_out, d_in]``): the
      constraint may return ``proposal.with_delta(T(Δ))`` (projection, mask, spectral map).
      With ``constrain_mode="inline"`` this happens before the site is written (later sites
      compensate); with ``"posthoc"`` after all sites of the batch were written unconstrained.
    * :class:`~editkit.updates.AccumulatedProposal` (after each batch, ``stage="batch"``, and at the
      end of the run, ``stage="final"``): ``Δ_n = W_n − W0``; returning ``with_delta(F(Δ_n))``
      makes the kernel write ``W0 + F(Δ_n)`` (PRUNE).

    :returns: the new proposal (same kind as received), or None to leave it unchanged.

    Calling convention: called per constraint; each call returns one proposal or None.
    Implemented by: constraints.
    """


@hookspec
def editkit_measure_update(run: EditRun, site: Site, delta: torch.Tensor) -> dict[str, Any] | None:
    """Measure this constraint's invariant on the update actually written at ``site``.

    Called once per constraint (alone, like ``editkit_constrain_update``) after a batch's
    updates are written, with ``Δ`` ``[d_out, d_in]`` = what this batch added to the weight.

    :returns: ``{"invariant": str, "value": float, "holds": bool}`` (more keys allowed) or None.
        The kernel records it per layer and batch in ``result.json`` and warns once when a
        constraint's invariant does not hold on the written update (a later constraint broke it).

    Calling convention: called per constraint. Implemented by: constraints.
    """


@hookspec(firstresult=True)
def editkit_solve(run: EditRun, batch: Batch, site: Site, problem: SolveProblem) -> torch.Tensor | None:
    """Solve: turn keys and residual (and the constraints' restrictions) into an update.

    :param problem: keys ``[d_in, u]``, residual ``[d_out, u]``, preservation terms
        ``[d_in, d_in]``, ridge and optional row subspace (see :class:`~editkit.updates.SolveProblem`).
    :returns: ``Δ`` of shape ``[d_out, d_in]`` (float64 recommended); it must lie in the
        problem's row subspace when one is set.

    Calling convention: firstresult. Implemented by: the run's editor.
    """


@hookspec(firstresult=True)
def editkit_apply(run: EditRun, site: Site, delta: torch.Tensor) -> UndoRecord | None:
    """Apply: write ``Δ`` (math layout ``[d_out, d_in]``) into the site's weight.

    :returns: an :class:`~editkit.updates.UndoRecord` whose ``undo()`` restores the weight
        bit-exactly.

    Calling convention: firstresult. Implemented by: the kernel (default, runs last);
    an editor may override it (e.g. to write in a quantised format).
    """


@hookspec
def editkit_batch_end(run: EditRun, batch: Batch) -> None:
    """After every site of a batch was written: update sequential state.

    MEMIT-family editors recompute the batch's keys on the edited model here and add
    ``K1 K1ᵀ`` to ``Cp``.

    Calling convention: every stage plugin of the run is called; nothing is returned.
    Implemented by: editors and constraints that keep state across batches.
    """


STAGE_HOOKS = (
    "editkit_locate",
    "editkit_collect_keys",
    "editkit_compute_residual",
    "editkit_constrain_update",
    "editkit_solve",
    "editkit_apply",
    "editkit_measure_update",
    "editkit_batch_end",
)
CATALOG_HOOKS = (
    "editkit_register_editors",
    "editkit_register_constraints",
    "editkit_register_architectures",
    "editkit_register_datasets",
    "editkit_register_metrics",
    "editkit_register_commands",
    "editkit_register_models",
)
