"""Hook specifications of the ``editkit`` project: the contract between the kernel and plugins.

The docstrings below are the normative contract, and the hook reference in ``docs/writing-a-plugin.md``
is generated from them (``python docs/hook_reference.py``; ``tests/unit/test_hook_docs.py`` fails when
the page and the docstrings differ). Names in the signatures come from :mod:`editkit.api`, the declared
plugin API.

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

    sites = editkit_locate(run)                                     # once, when the run is made
    for batch:
        editkit_batch_begin(run, batch)                              # the plugins' per-batch preparation
        targets = editkit_compute_targets(run, batch)                # z, h, v0 [u, d_model] or None
        for c in constraints with needs_targets (user order):        # may rescale or withdraw targets (NAS)
            targets = editkit_constrain_update(run, targets.site, targets) or targets
        for site in sites (ascending layer):
            keys     = editkit_collect_keys(run, batch, site)        # K1 [d_in, u], current model
            residual = editkit_compute_residual(run, batch, site, keys, targets)   # R [d_out, u]
            problem  = SolveProblem(keys, residual, past=Cp, past_batches=...)
            for c in constraints (user order):                       # may restrict the solve
                problem = editkit_constrain_update(run, site, problem) or problem
            delta    = editkit_solve(run, batch, site, problem)      # Δ [d_out, d_in]
            if constrain_mode == "inline":
                for c in constraints (user order):                   # may transform Δ
                    delta = editkit_constrain_update(run, site, DeltaProposal(delta)) or delta
            undo     = editkit_apply(run, site, delta)               # written before the next site
        if constrain_mode == "posthoc":                              # every site undone, then per site:
            constrain (DeltaProposal, as above) and editkit_apply the constrained Δ
        for site, for c in constraints:                              # on Δ_n = W_n − W0 (PRUNE)
            editkit_constrain_update(run, site, AccumulatedProposal(Δ_n, stage="batch"))
        for site, for c in constraints:
            editkit_measure_update(run, site, written Δ)             # invariants, measured
        for site:                                                    # the kernel's Cp, edited model
            Cp += K1 K1ᵀ with K1 = editkit_collect_keys(run, batch, site)
        editkit_batch_end(run, batch)                                # the plugins' own sequential state
        for p in stage plugins: editkit_save_state(run)              # journaled with the batch
    on resume, an undo or a failed batch, for p in stage plugins:
        editkit_load_state(run, states)                              # what save_state gave after each batch
    run.finish():
        for site, for c in constraints:
            editkit_constrain_update(run, site, AccumulatedProposal(Δ_n, stage="final"))
        for site, for c in constraints: editkit_measure_update(...)  # only if a final proposal changed Δ_n

Orientation: every matrix handed through these hooks is in *math layout*, ``v = W k`` with
``W`` of shape ``[d_out, d_in]`` (``d_out`` = d_model, ``d_in`` = d_mlp), whatever the storage
layout of the module (GPT-2's ``Conv1D`` stores ``Wᵀ``; ``Site.to_math`` / ``Site.to_storage``
convert); only ``apply`` deals with storage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from editkit.markers import hookspec

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

    from editkit.api import RunContext
    from editkit.catalog import (
        ArchitectureSpec,
        CommandSpec,
        ConstraintSpec,
        DatasetSpec,
        EditorSpec,
        MetricSpec,
        ModelSpec,
    )
    from editkit.requests import EditBatch
    from editkit.sites import Site
    from editkit.updates import Proposal, SolveProblem, TargetProposal, UndoRecord


# --------------------------------------------------------------------------- catalog hooks


@hookspec
def editkit_register_editors(register: Callable[[EditorSpec], None]) -> None:
    """Register editors (full editing methods, selectable with ``--editor NAME``).

    :param register: call it with one ``EditorSpec`` per editor: ``name``, ``summary``,
        ``factory(hparams)`` (returns a fresh stage object for one run), ``hparams`` (a frozen attrs
        class whose defaults are the generic defaults), ``presets`` (preset name → field overrides),
        ``implied_constraints`` (constraints the editor always runs last), ``has_solver`` (whether its
        ``editkit_solve`` honours ``problem.subspace``; if not, constraints project the solved update
        instead) and ``default_constrain_mode`` (``inline`` or ``posthoc``).

    The stage object implements ``editkit_locate``, ``editkit_collect_keys``, ``editkit_compute_residual``
    and ``editkit_solve`` (optionally ``editkit_compute_targets``, ``editkit_batch_begin``,
    ``editkit_batch_end``, ``editkit_apply``,
    ``editkit_save_state`` / ``editkit_load_state``). ``computes_targets`` says whether it implements
    ``editkit_compute_targets``; ``conflicts`` maps a constraint name to why the editor cannot run with it
    (refused before any work, exit 2).

    Calling convention: every plugin's implementation is called; nothing is returned.
    Implemented by: editor plugins (first-party ``memit``, ``emmet``, ``rome``, ``ft``; third-party packages).
    """


@hookspec
def editkit_register_constraints(register: Callable[[ConstraintSpec], None]) -> None:
    """Register constraints (selectable, repeatable and ordered, with ``--constraint NAME``).

    :param register: call it with one ``ConstraintSpec`` per constraint: ``name``, ``summary``,
        ``factory(hparams)`` (a fresh stage object per run, implementing ``editkit_constrain_update`` and
        optionally ``editkit_measure_update``, ``editkit_batch_begin``, ``editkit_batch_end``,
        ``editkit_save_state`` /
        ``editkit_load_state``), ``hparams``, ``invariant`` (in words, what the constraint guarantees on the
        update it returns), ``linear`` (whether ``T(aΔ + bΔ') = aT(Δ) + bT(Δ')``; the conformance suite
        checks a constraint that says so), ``needs_targets`` (it acts on ``TargetProposal``: refused with an
        editor whose spec says ``computes_targets=False``) and ``conflicts`` (a constraint or editor name →
        why they cannot run together; refused before any work, exit 2).

    Calling convention: every plugin's implementation is called; nothing is returned.
    Implemented by: constraint plugins (first-party ``nullspace``, ``prune``, ``rect``, ``nas``,
    ``betaedit``; third-party packages).
    """


@hookspec
def editkit_register_architectures(register: Callable[[ArchitectureSpec], None]) -> None:
    """Register model architectures: how to find the edit sites of a ``transformers`` family.

    :param register: call it with one ``ArchitectureSpec`` per ``model_type`` (the value of
        ``config.model_type``): ``layers`` (the blocks' module list), ``mlp_out`` (the MLP output
        projection, ``{}`` for the layer index), ``final_norm`` and ``unembed``, as dotted module names.

    Calling convention: every plugin's implementation is called; nothing is returned.
    Implemented by: architecture plugins (first-party ``architectures``). Models whose
    ``model_type`` nobody registered fall back to the kernel's structural search.
    """


@hookspec
def editkit_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register datasets of edit requests and corpora (selectable with ``--dataset NAME`` / ``--corpus NAME``).

    :param register: call it with one ``DatasetSpec`` per dataset: ``load(**options)`` gives
        CounterFact-style records (``--dataset NAME``), ``corpus(**options)`` texts for key statistics
        (``--corpus NAME``), ``corpus_identity()`` what those texts are (e.g. a file's sha256, so cached
        statistics follow a change). ``model()`` returns a model path the dataset ships; ``model_name``
        instead names a model ``--model`` accepts: a run on that model then takes the dataset's requests,
        corpus and ``settings`` (calibrated hyperparameters) as defaults. ``extras()`` may give
        ``fact_probes`` (retention) and ``completions`` (how many edits' greedy completions to print).

    Calling convention: every plugin's implementation is called; nothing is returned.
    Implemented by: dataset plugins (first-party ``datasets``, ``wikileads``, ``facts``, ``world``).
    """


@hookspec
def editkit_register_metrics(register: Callable[[MetricSpec], None]) -> None:
    """Register evaluation metrics.

    :param register: call it with one ``MetricSpec`` per metric: ``name``, ``summary``, ``compute`` and
        optionally ``options``. ``compute(context)`` receives one ``EvalContext`` (the model as it is at
        this evaluation, its tokenizer, the edited cases as ``records``, ``extras`` by name, ``device``,
        ``seed``, ``generation_length``, ``batch_size``) and returns a ``dict[str, float]`` of named figures
        (printed before and after editing and stored in ``result.json``; names must not clash with another
        metric's); a metric whose inputs are absent returns ``{}``. ``options`` is an attrs class whose
        fields all have defaults (in a module that does not import torch): ``editkit run --metric-option
        NAME.KEY=VALUE`` fills it, checked before any work, and the metric reads it with
        ``metric_options(context, NAME, OptionsClass)``.

    Calling convention: every plugin's implementation is called; nothing is returned.
    Implemented by: metric plugins (first-party ``metrics``).
    """


@hookspec
def editkit_register_commands(register: Callable[[CommandSpec], None]) -> None:
    """Register extra ``editkit`` subcommands.

    :param register: call it with one ``CommandSpec`` per subcommand: ``name``, ``help``,
        ``add_arguments(parser)`` (fills the argparse parser) and ``main(args)`` (runs the command and
        returns its exit code; import heavy modules inside it).

    Calling convention: every plugin's implementation is called; nothing is returned. The module
    that implements this hook must not import torch (``editkit --help`` loads it).
    Implemented by: plugins that bring their own commands (first-party ``world``: ``editkit world build|info``).
    """


@hookspec
def editkit_register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register models by name, so that ``--model NAME`` loads them (e.g. ``smollm2-135m``).

    :param register: call it with one ``ModelSpec`` per model: ``name``, ``summary``, ``licence``,
        ``source``, ``size_bytes``, ``install`` (the exact command that installs it, shown when it is
        missing), ``installed()`` (whether it is on this machine) and ``path()`` (its ``.gguf`` file,
        which editkit dequantizes once into its cache, or a ``save_pretrained`` directory); optionally
        ``settings``, hyperparameters calibrated for the model on held-out cases (``--set`` form, e.g.
        ``{"layers": "4-8"}``), the defaults of every run that edits it.

    Calling convention: every plugin's implementation is called; nothing is returned. The module
    that implements this hook, ``installed()`` and ``path()`` must not import torch (``editkit models``
    loads it). Implemented by: model-source plugins (first-party ``models``).
    """


# --------------------------------------------------------------------------- stage hooks


@hookspec(firstresult=True)
def editkit_locate(run: RunContext) -> list[Site] | None:
    """Locate: choose the modules this run edits.

    Called once, when the run is made (before the key statistics are prepared for the sites).

    :param run: the run (model, layout, configuration, per-run state): see ``RunContext``.
    :returns: the edit sites, each a ``Site`` made with ``run.layout.site(layer)`` or an equivalent,
        unique layers in range (the kernel sorts them by layer; an empty list is an error).

    Calling convention: stops at the first non-None result (firstresult).
    Implemented by: the run's editor.
    """


@hookspec(firstresult=True)
def editkit_collect_keys(run: RunContext, batch: EditBatch, site: Site) -> torch.Tensor | None:
    """Collect-keys: the input of the edited module for each request of the batch.

    Called once per site during the batch, on the *current* model (earlier sites of the batch already
    written), and once more per site after the batch was written, by the kernel, on the *edited* model
    and under ``torch.no_grad()``: those keys grow ``Cp`` (``Cp += K1 K1ᵀ``). So the result must depend
    on the model, batch and site only (what is drawn once per run, like prefix templates, stays fixed).

    :param batch: the batch (``batch.index``, ``batch.requests``: ``u`` ``EditRequest`` objects).
    :param site: the located module.
    :returns: ``K1``, float tensor of shape ``[d_in, u]`` (one column per request, in
        ``batch.requests`` order); the kernel checks the shape and that it is finite.

    Calling convention: firstresult. Implemented by: the run's editor.
    """


@hookspec(firstresult=True)
def editkit_compute_targets(run: RunContext, batch: EditBatch) -> TargetProposal | None:
    """Compute-targets: the values the batch's edits aim at, before any residual is formed.

    Called once per batch, before the first site, on the model as it is when the batch starts (and by
    ``run.targets_for(requests)`` for requests that are not edited, e.g. a constraint's reference sample).
    The kernel offers the result to every constraint whose spec says ``needs_targets``, in order (a
    ``TargetProposal``: NAS rescales ``v*``, or withdraws a request) and passes what they return to
    ``editkit_compute_residual`` as ``targets``.

    :returns: a ``TargetProposal`` (``initial`` ``h``, ``target`` ``z``, ``values`` ``v0``, each
        ``[u, d_model]`` in ``batch.requests`` order, at ``site``'s block and module), or None for an editor
        without target values (fine-tuning). An editor that implements it says ``computes_targets=True`` in
        its ``EditorSpec``, so that constraints that need targets can be refused before a run starts.

    Calling convention: firstresult. Implemented by: the run's editor (first-party ``memit`` and its family).
    """


@hookspec(firstresult=True)
def editkit_compute_residual(
    run: RunContext, batch: EditBatch, site: Site, keys: torch.Tensor, targets: TargetProposal | None
) -> torch.Tensor | None:
    """Compute-residual: what the update at this site must add to the module's output.

    MEMIT-family editors spread ``z − h_current`` over the remaining sites, with ``z`` from
    ``targets`` (what ``editkit_compute_targets`` returned, as the constraints left it).

    :param keys: ``K1`` ``[d_in, u]`` as returned by ``editkit_collect_keys`` for this site.
    :param targets: this batch's ``TargetProposal`` after the constraints, or None when the editor computes
        none (an implementation may leave the argument out).
    :returns: ``R``, float tensor of shape ``[d_out, u]`` with ``(W + Δ) K1 ≈ W K1 + R`` the goal
        (zeros for an editor with no target value, e.g. fine-tuning); checked for shape and finiteness.

    Calling convention: firstresult. Implemented by: the run's editor.
    """


@hookspec
def editkit_constrain_update(run: RunContext, site: Site, proposal: Proposal) -> Proposal | None:
    """Constrain-update: restrict the solve, or transform the solved update.

    The kernel calls this hook **once per constraint, in the order the user gave**, each
    time with only that constraint's implementation, and threads the result through. A
    proposal is one of four kinds:

    * ``TargetProposal`` (once per batch, before any residual, only to a constraint whose spec says
      ``needs_targets``; ``site`` is where the targets are): the constraint may return
      ``proposal.with_target(z', skipped)`` (NAS: ``v*`` rescaled to a reference norm, or the request
      withdrawn, ``z' = h``).
    * ``SolveProblem`` (before the solve; keys, residual, ``past`` = ``Cp`` and ``past_batches``): the
      constraint may return a restricted problem, e.g. ``problem.restricted(subspace, ...)`` to make the
      solver fit inside a row subspace (AlphaEdit's null space) or change its preservation terms.
    * ``DeltaProposal`` (after the solve, ``Δ`` ``[d_out, d_in]``): the constraint may return
      ``proposal.with_delta(T(Δ))`` (projection, mask, spectral map). With ``constrain_mode="inline"``
      this happens before the site is written (later sites compensate); with ``"posthoc"`` after all
      sites of the batch were written unconstrained (the kernel undoes them and writes the constrained Δ).
    * ``AccumulatedProposal`` (after each batch, ``stage="batch"``, and at the end of the run,
      ``stage="final"``): ``Δ_n = W_n − W0``, ``initial`` = ``W0`` (math layout); returning
      ``with_delta(F(Δ_n))`` makes the kernel write ``W0 + F(Δ_n)`` (PRUNE).

    :returns: the new proposal (same kind as received; another kind is an error), or None to leave it
        unchanged. Never modify the given tensors, the model or its weights.

    Calling convention: called per constraint; each call returns one proposal or None.
    Implemented by: constraints.
    """


@hookspec
def editkit_measure_update(run: RunContext, site: Site, delta: torch.Tensor) -> dict[str, Any] | None:
    """Measure this constraint's invariant on the update actually written at ``site``.

    Called once per constraint (alone, like ``editkit_constrain_update``) after a batch's updates are
    written, with ``Δ`` ``[d_out, d_in]`` = what this batch added to the weight (a ``stage="batch"``
    rewrite included), and at ``run.finish()`` on what a ``stage="final"`` rewrite changed, if one did.

    :returns: ``{"invariant": str, "value": float, "holds": bool}`` (more keys allowed) or None.
        The kernel records it per layer and batch in ``result.json`` and warns once when a
        constraint's invariant does not hold on the written update (a later constraint broke it).
        An optional ``"way_out"`` (words: how to keep this invariant and the later constraints'
        together) ends that warning and is not recorded.

    Calling convention: called per constraint. Implemented by: constraints.
    """


@hookspec(firstresult=True)
def editkit_solve(run: RunContext, batch: EditBatch, site: Site, problem: SolveProblem) -> torch.Tensor | None:
    """Solve: turn keys and residual (and the constraints' restrictions) into an update.

    :param problem: keys ``[d_in, u]``, residual ``[d_out, u]``, preservation terms
        ``[d_in, d_in]`` (``past`` = ``Cp``; the editor owns ``λ·C0``), ``use_background`` /
        ``use_past``, ridge and optional row subspace (see ``SolveProblem``).
    :returns: ``Δ`` of shape ``[d_out, d_in]`` (float64 recommended; checked for shape and
        finiteness, nothing is written otherwise); ``Δ = ΔP`` when ``problem.subspace`` is set
        (an editor whose spec says ``has_solver=True``).

    Calling convention: firstresult. Implemented by: the run's editor.
    """


@hookspec(firstresult=True)
def editkit_apply(run: RunContext, site: Site, delta: torch.Tensor) -> UndoRecord | None:
    """Apply: write ``Δ`` (math layout ``[d_out, d_in]``) into the site's weight.

    Called for every solved (and constrained) update, and for the kernel's rewrites: a post-hoc
    constrained update, and ``W0 + F(Δ_n) − W_n`` when a constraint changed an accumulated proposal.

    :returns: an ``UndoRecord`` whose ``undo()`` restores the weight bit-exactly.

    Calling convention: firstresult. Implemented by: the kernel (default, runs last; it writes
    ``site.to_storage(Δ)`` in the weight's dtype); an editor may override it (e.g. to write in a
    quantised format).
    """


@hookspec
def editkit_batch_begin(run: RunContext, batch: EditBatch) -> None:
    """Before anything of a batch is computed: per-batch work of your own, done once (tokenised prompts,
    recorded inputs), instead of caching it inside the per-site hooks by the batch's identity.

    The model is as the batch starts (nothing of it written yet). Work that depends on the edited weights
    belongs in the per-site hooks, which the kernel calls again on the edited model (``Cp``'s keys). A batch
    that fails is undone; the next ``edit`` begins a new batch (a new ``EditBatch``, possibly with the same
    index), so drop what you prepared in ``editkit_batch_end`` or replace it here. Hooks may also be called
    outside a batch (``run.targets_for``, tests): keep a fallback for a batch that was not begun.

    Calling convention: every stage plugin of the run is called; nothing is returned.
    Implemented by: editors (first-party ``memit`` and the editors built on it, the plugin guide's ``sgdft``).
    """


@hookspec
def editkit_batch_end(run: RunContext, batch: EditBatch) -> None:
    """After every site of a batch was written and measured: update the plugins' own sequential state.

    The kernel grows ``Cp`` (``Cp += K1 K1ᵀ`` with the batch's keys recomputed on the edited model by
    ``editkit_collect_keys``) right after this hook, as the batch's last step: here ``run.past_keys`` is still
    the Cp of the earlier batches. Editors and constraints do not grow it themselves. Use it for state of
    your own (e.g. a cache that the edited weights invalidate).

    Calling convention: every stage plugin of the run is called; nothing is returned.
    Implemented by: editors and constraints that keep state across batches.
    """


@hookspec
def editkit_save_state(run: RunContext) -> dict[str, torch.Tensor] | None:
    """What this plugin's sequential state became in the batch just edited, to journal with the batch.

    Called once per stage plugin (alone) after ``editkit_batch_end``. Tensors only (a number as a 0-d
    float64 tensor: stored exactly), CPU, names of your choice; the kernel keeps them with the batch
    (``state.safetensors`` of the journal entry, under the plugin's name) and gives back the whole sequence
    to ``editkit_load_state``. Return a batch's *increment* (e.g. the batch's keys) when the state is a sum
    over batches, or a snapshot when it is small (a queue, a counter, a reference norm); large derived state
    (a refreshed projector) is better recomputed on load from what the run has (``Cp``, ``C0``).

    :returns: ``{name: tensor}``, or None for a plugin without sequential state.

    Calling convention: called per stage plugin. Implemented by: editors and constraints with state across
    batches (first-party ``nas``, ``betaedit``, ``lyaplock``).
    """


@hookspec
def editkit_load_state(run: RunContext, states: list[dict[str, torch.Tensor]]) -> None:
    """Restore this plugin's sequential state to what it was after the given batches.

    :param states: what ``editkit_save_state`` returned after each batch the run now holds, oldest first
        (``{}`` for a batch where it returned None); an empty list means before the first batch.

    Called once per stage plugin (alone) when a resumed run has replayed its journal (before its next
    batch), after ``run.undo_last()``, and when a batch failed (its writes were undone). Restoring must be
    exact: a resumed run continues with the same numbers as one that never stopped (bit-exact, tested).

    Calling convention: called per stage plugin. Implemented by: the plugins that implement
    ``editkit_save_state``.
    """


STAGE_HOOKS = (
    "editkit_locate",
    "editkit_compute_targets",
    "editkit_collect_keys",
    "editkit_compute_residual",
    "editkit_constrain_update",
    "editkit_solve",
    "editkit_apply",
    "editkit_measure_update",
    "editkit_batch_begin",
    "editkit_batch_end",
    "editkit_save_state",
    "editkit_load_state",
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
