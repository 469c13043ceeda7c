"""The edit run: drives the stage hooks over batches and holds all per-run state.

An :class:`EditRun` owns its own pluggy manager with exactly the stage plugins its editor
and constraints created for it, so runs are independent and nothing is global. Per-run
method state (prefix templates, ``Cp``, projectors, ``W0``) lives on those plugin objects
or on the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import attrs
import pluggy
import torch

from editkit import hookspecs
from editkit.allocator import release_free_memory
from editkit.catalog import ConstraintSpec, EditorSpec
from editkit.config import RunConfig
from editkit.constraintchain import ConstraintChain
from editkit.constraintchain import ConstraintWarning as ConstraintWarning  # its home before the chain had one
from editkit.errors import EditkitError, NumericalError, UsageError
from editkit.helpers.progress import NullProgress, Progress
from editkit.hparams import to_json
from editkit.layout import ModelLayout, resolve_layout
from editkit.ledger import KeyLedger
from editkit.markers import PROJECT_NAME, hookimpl
from editkit.memory import PeakMeter
from editkit.methods import RunMethods
from editkit.plugins import PluginHost
from editkit.pluginstate import PluginStates
from editkit.requests import EditBatch, EditRequest
from editkit.sites import Site
from editkit.updates import (
    AccumulatedProposal,
    DeltaProposal,
    SolveProblem,
    TargetProposal,
    UndoRecord,
    add_exactly,
)

if TYPE_CHECKING:
    from editkit.api import KeyStatisticsView, RunContext


@attrs.define(kw_only=True)
class BatchReport:
    """What happened in one batch: stage timings (s) and per-layer notes from plugins."""

    index: int
    size: int
    seconds: float = 0.0
    timings: dict[str, float] = attrs.field(factory=dict)
    layers: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    peak_memory: dict[str, int] = attrs.field(factory=dict)  # bytes, per stage (see editkit.memory)
    replayed: bool = False  # restored from the journal by a resumed run, not edited in this process

    @contextmanager
    def stage(self, name: str, meter: PeakMeter) -> Iterator[None]:
        """Time the stage ``name`` (seconds add up over the batch's sites) and its peak memory (a lap of
        ``meter``); nothing is recorded when the stage raises (the batch is undone). What the stage freed goes
        back to the system as it ends (:func:`editkit.allocator.release_free_memory`), before the next lap."""
        started = time.perf_counter()
        yield
        release_free_memory()
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started
        self.peak_memory[name] = max(self.peak_memory.get(name, 0), meter.lap())

    def to_json(self) -> dict[str, Any]:
        data = {
            "index": self.index,
            "size": self.size,
            "seconds": round(self.seconds, 4),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "peak_memory_mib": {k: round(v / 2**20, 1) for k, v in self.peak_memory.items()},
            "layers": {str(k): v for k, v in sorted(self.layers.items())},
        }
        if self.replayed:
            data["replayed"] = True
        return data

    @classmethod
    def from_journal(cls, data: dict[str, Any], *, index: int) -> BatchReport:
        """The report :meth:`to_json` wrote, as a resumed run restores it (``replayed``)."""
        return cls(index=index, size=int(data.get("size", 0)), seconds=float(data.get("seconds", 0.0)),
                   timings=dict(data.get("timings", {})),
                   layers={int(k): v for k, v in data.get("layers", {}).items()},
                   peak_memory={k: round(float(v) * 2**20) for k, v in data.get("peak_memory_mib", {}).items()},
                   replayed=True)


def weight_parameter(model: torch.nn.Module, module: str) -> torch.nn.Parameter:
    """The ``weight`` parameter of ``model``'s submodule ``module`` (storage layout)."""
    return cast(torch.nn.Parameter, model.get_submodule(module).weight)


class _KernelStages:
    """The kernel's default stage implementations (registered last, overridable)."""

    @hookimpl(trylast=True)
    def editkit_apply(self, run: EditRun, site: Site, delta: torch.Tensor) -> UndoRecord:
        parameter = weight_parameter(run.model, site.module)
        previous = parameter.detach().clone()
        update = site.to_storage(delta)
        if tuple(update.shape) != tuple(parameter.shape):
            raise EditkitError(
                f"layer {site.layer}: update shape {tuple(update.shape)} != weight {tuple(parameter.shape)}"
            )
        with torch.no_grad():
            add_exactly(parameter, update)
        return UndoRecord(site=site, parameter=parameter, previous=previous)


def _stage_plugins(methods: RunMethods) -> tuple[pluggy.PluginManager, object, list[tuple[ConstraintSpec, object]]]:
    """A plugin manager with the kernel's stages, the editor and the constraints (in order) made for one run."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(_KernelStages(), name="kernel")
    editor = methods.editor_spec.factory(methods.editor_hparams)
    pm.register(editor, name=f"editor:{methods.editor_spec.name}")
    constraints: list[tuple[ConstraintSpec, object]] = []
    for spec in methods.constraint_specs:
        plugin = spec.factory(methods.constraint_hparams[spec.name])
        pm.register(plugin, name=f"constraint:{spec.name}")
        constraints.append((spec, plugin))
    return pm, editor, constraints


class EditRun:
    """One editing run on one model.

    :param model: a ``transformers`` causal LM (eval mode is set here).
    :param tokenizer: its tokenizer.
    :param config: the :class:`~editkit.config.RunConfig`.
    :param host: the discovery :class:`~editkit.plugins.PluginHost` (a fresh one by default).
    :param key_statistics: provider of ``second_moment(site)`` / ``eigendecomposition(site)``
        (see :mod:`editkit.keystats`); editors that need C0 fail clearly without one.
    :param undo_depth: how many of the latest batches :meth:`undo_last` can undo (None: every batch). Each batch's
        undo record holds the previous weights of every edited module (``d_out × d_in`` per site), so a long run
        with no bound holds a copy of the edited weights per batch; ``editkit run`` keeps 1 (its journal undoes
        batches on disk: ``editkit undo``).
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        tokenizer: Any,
        config: RunConfig,
        host: PluginHost | None = None,
        key_statistics: KeyStatisticsView | None = None,
        progress: Progress | None = None,
        model_id: str = "",
        undo_depth: int | None = None,
    ) -> None:
        if undo_depth is not None and undo_depth < 1:
            raise UsageError(f"undo_depth must be at least 1 (the last batch's records make its journal entry), "
                             f"or None for every batch; got {undo_depth}")
        self.undo_depth = undo_depth
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.config = config
        self.model_id = model_id
        self.host = host or PluginHost()
        self.catalog = self.host.catalog
        self.key_statistics = key_statistics
        self.progress: Progress = progress or NullProgress()
        self.device = torch.device(config.device)
        self.layout: ModelLayout = resolve_layout(model, self.catalog.entries["architectures"])

        self.methods = RunMethods.resolve(self.catalog, config)  # specs and hyperparameters (editkit.methods)
        self.pm, self.editor, self.constraints = _stage_plugins(self.methods)  # this run's own manager
        self._chain = ConstraintChain(self.pm, self.constraints)

        self.generator = torch.Generator().manual_seed(config.seed)
        self.state: dict[str, Any] = {}
        sites = self.pm.hook.editkit_locate(run=self)
        if not sites:
            raise EditkitError(f"editor {self.editor_spec.name!r} located no sites")
        self.sites: tuple[Site, ...] = tuple(sorted(sites, key=lambda s: s.layer))
        self.initial_weights = {
            s.module: weight_parameter(self.model, s.module).detach().clone() for s in self.sites
        }
        self.ledger = KeyLedger()  # Cp per site module (float32 [d_in, d_in]) and each batch's keys
        if self.key_statistics is not None and hasattr(self.key_statistics, "prepare"):
            self.key_statistics.prepare(self.sites)  # C0 of the *unedited* model, one pass for all sites
        self.reports: list[BatchReport] = []
        self.peaks = PeakMeter(self.device)  # each stage's peak memory is a lap (see edit())
        self.final_report: BatchReport | None = None
        self.undo_log: list[list[UndoRecord]] = []
        self._current: BatchReport | None = None
        self.plugin_states = PluginStates(self.pm, [(f"editor:{self.editor_spec.name}", self.editor)]
                                          + [(f"constraint:{spec.name}", p) for spec, p in self.constraints])
        self._model_identity: dict[str, Any] | None = None

    # ------------------------------------------------------------------ the methods (editkit.methods)

    @property
    def editor_spec(self) -> EditorSpec:
        return self.methods.editor_spec

    @property
    def constraint_specs(self) -> list[ConstraintSpec]:
        """The run's constraints in order: the user's, then those the editor implies."""
        return list(self.methods.constraint_specs)

    @property
    def constrain_mode(self) -> str:
        """Where delta-transforming constraints act: ``inline`` or ``posthoc``."""
        return self.methods.constrain_mode

    @property
    def editor_hparams(self) -> Any:
        return self.methods.editor_hparams

    @property
    def constraint_hparams(self) -> dict[str, Any]:
        return self.methods.constraint_hparams

    @property
    def hparams(self) -> dict[str, Any]:
        """Every method's hyperparameters by name."""
        return self.methods.hparams

    # ------------------------------------------------------------------ helpers for plugins

    def note(self, site: Site, key: str, value: Any) -> None:
        """Record a per-layer figure for the current batch (goes into ``result.json``)."""
        if self._current is not None:
            self._current.layers.setdefault(site.layer, {})[key] = value

    def constraints_after(self, name: str) -> list[str]:
        """Names of the run's constraints that apply after ``name``, in order (empty if ``name`` is not run)."""
        return self._chain.after(name)

    def weight(self, site: Site) -> torch.Tensor:
        """The site's current weight in math layout ``[d_out, d_in]`` (a view)."""
        w = weight_parameter(self.model, site.module)
        return site.to_math(w)

    @property
    def past_keys(self) -> dict[str, torch.Tensor]:
        """Cp per site module, float64 ``[d_in, d_in]``, from the batches edited so far (:mod:`editkit.ledger`)."""
        return self.ledger.past

    @property
    def edits_done(self) -> int:
        """Requests edited by the batches the run holds (replayed ones included)."""
        return sum(r.size for r in self.reports)

    def targets_for(self, requests: Sequence[EditRequest]) -> TargetProposal:
        """The editor's target values for ``requests`` on the model as it is now (nothing is edited)."""
        if not self.editor_spec.computes_targets:
            raise UsageError(f"editor {self.editor_spec.name!r} computes no target values")
        targets = self.pm.hook.editkit_compute_targets(run=self, batch=EditBatch(index=-1, requests=tuple(requests)))
        if not isinstance(targets, TargetProposal):
            raise EditkitError(f"editor {self.editor_spec.name!r} says it computes target values, but its "
                               f"editkit_compute_targets returned {targets!r}")
        return targets

    def store_dir(self) -> Path | None:
        """The key statistics' store root (None: statistics in memory, or none)."""
        store = getattr(self.key_statistics, "store", None)
        root = getattr(store, "root", None)
        return Path(root) if root is not None else None

    def model_identity(self) -> dict[str, Any]:
        """The unedited model's identity as the key statistics name it
        (:func:`editkit.keystats.identity.model_identity`: name, sha256 of its parameters and buffers with the
        edited modules' W0, config, tokenizer)."""
        if self._model_identity is None:
            from editkit.keystats.identity import model_identity

            edited = {module: weight_parameter(self.model, module) for module in self.initial_weights}
            saved = {module: p.detach().clone() for module, p in edited.items()}
            try:
                with torch.no_grad():
                    for module, parameter in edited.items():
                        parameter.copy_(self.initial_weights[module])
                    self._model_identity = model_identity(self.model, self.tokenizer, self.model_id)
            finally:
                with torch.no_grad():
                    for module, parameter in edited.items():
                        parameter.copy_(saved[module])
        return dict(self._model_identity)

    def require_key_statistics(self) -> KeyStatisticsView:
        if self.key_statistics is None:
            raise UsageError(
                "this run needs key statistics (C0) of the edited layers: pass --corpus with their background "
                "text, e.g. --corpus wiki.jsonl:text (--stats-dir only says where they are stored; in the API, "
                "pass key_statistics)"
            )
        return self.key_statistics

    # ------------------------------------------------------------------ the stage loop

    def edit(self, requests: Sequence[EditRequest]) -> BatchReport:
        """Edit one batch; on any failure the batch's writes are undone before raising.

        The plugins' batch begin and the target values; per site: collect keys, compute the residual, solve
        (with the constraints inline), apply; then,
        for the whole batch, the post-hoc constraints, the constraints on the accumulated update and their
        measures, the batch's keys on the edited model, the plugins' batch end, and last Cp grown by those keys
        (the one step after the plugins' that can fail).

        Each stage's peak memory is its own (:mod:`editkit.memory`): the peak is reset as the batch begins and
        after every stage (laps of :attr:`peaks`, which keeps the largest)."""
        self.plugin_states.restore_if_replayed(self)
        batch = EditBatch(index=len(self.reports), requests=tuple(requests))
        report = BatchReport(index=batch.index, size=len(batch.requests))
        self._current = report
        undo: list[UndoRecord] = []
        self.peaks.lap()  # what came before the batch is not its own
        start = time.perf_counter()
        try:
            with report.stage("batch_begin", self.peaks):
                self.pm.hook.editkit_batch_begin(run=self, batch=batch)
            with report.stage("compute_targets", self.peaks):
                targets = self._targets(batch)
            solved = []  # post hoc only: inline, each update is written and dropped (D·d float64 per layer less)
            for site in self.sites:
                if self.constrain_mode == "posthoc":
                    solved.append((site, self._edit_site(batch, site, report, undo, targets)))
                else:
                    self._edit_site(batch, site, report, undo, targets)
            self._constrain_batch(solved, report, undo)
            self._note_update_norms({r.site.module: r.previous for r in reversed(undo)})
            with report.stage("update_cp", self.peaks):
                self.ledger.stage(self._keys_after(batch))
            with report.stage("batch_end", self.peaks):
                self.pm.hook.editkit_batch_end(run=self, batch=batch)
                saved = self.plugin_states.save(self)
            with report.stage("commit_cp", self.peaks):
                self.ledger.commit()  # the last step that can fail: Cp grows (put back if that fails part way)
        except BaseException as failure:
            self.ledger.discard()
            for record in reversed(undo):
                record.undo()
            self._current = None
            try:
                self.plugin_states.load(self)  # the plugins' state as the committed batches left it
            except Exception as restore:  # the batch's own error stays the cause
                raise EditkitError(f"a batch failed ({failure!r}), and restoring the plugins' state then failed too: "
                                   f"{restore}") from failure
            raise
        report.seconds = time.perf_counter() - start
        self.plugin_states.commit(saved)
        self.reports.append(report)
        self._log_undo(undo)
        self._current = None
        return report

    def _targets(self, batch: EditBatch) -> TargetProposal | None:
        """The editor's target values for the batch, through the constraints (``TargetProposal``)."""
        targets = self.pm.hook.editkit_compute_targets(run=self, batch=batch)
        if targets is None:
            return None
        if not isinstance(targets, TargetProposal):
            raise EditkitError(f"editor {self.editor_spec.name!r}: editkit_compute_targets returned "
                               f"{type(targets).__name__}, not a TargetProposal")
        u = len(batch.requests)
        if targets.target.shape[0] != u:
            raise EditkitError(f"editor {self.editor_spec.name!r}: {targets.target.shape[0]} target values for "
                               f"{u} requests")
        targets = self._chain.constrain(self, targets.site, targets, targets=True)
        if not torch.isfinite(targets.target).all():
            raise NumericalError(f"non-finite target values after the constraints ({', '.join(targets.notes)})")
        if targets.skipped:
            self.note(targets.site, "targets.skipped", sum(targets.skipped))
        return targets

    def _edit_site(self, batch: EditBatch, site: Site, report: BatchReport, undo: list[UndoRecord],
                   targets: TargetProposal | None) -> DeltaProposal:
        """The stages of one site: keys, residual, solve (constrained inline), apply (its undo record to ``undo``);
        the update it wrote."""
        hook, u = self.pm.hook, len(batch.requests)
        with report.stage("collect_keys", self.peaks):
            keys = hook.editkit_collect_keys(run=self, batch=batch, site=site)
            self._check(site, "keys", keys, (site.d_in, u))
        with report.stage("compute_residual", self.peaks):
            residual = hook.editkit_compute_residual(run=self, batch=batch, site=site, keys=keys, targets=targets)
            self._check(site, "residual", residual, (site.d_out, u))
        with report.stage("solve", self.peaks):
            proposal = self._solve(batch, site, keys, residual)
        with report.stage("apply", self.peaks):
            undo.append(hook.editkit_apply(run=self, site=site, delta=proposal.delta))
        return proposal

    def _solve(self, batch: EditBatch, site: Site, keys: torch.Tensor, residual: torch.Tensor) -> DeltaProposal:
        """The site's update from the (constrained) solve problem; constrained again here when inline."""
        problem = SolveProblem(keys=keys.double(), residual=residual.double(), past=self.ledger.past.get(site.module),
                               past_batches=self.ledger.past_batches(site.module))
        problem = self._chain.constrain(self, site, problem)
        delta = self.pm.hook.editkit_solve(run=self, batch=batch, site=site, problem=problem)
        self._check(site, "update", delta, (site.d_out, site.d_in))
        proposal = DeltaProposal(site=site, delta=delta)
        if self.constrain_mode == "inline":
            proposal = self._chain.constrain(self, site, proposal)
            self._check(site, "constrained update", proposal.delta, (site.d_out, site.d_in))
        return proposal

    def _constrain_batch(self, solved: list[tuple[Site, DeltaProposal]], report: BatchReport,
                         undo: list[UndoRecord]) -> None:
        """Post hoc: undo the batch's writes and write the constrained updates instead; then the
        constraints on the accumulated update, and their measures of what the batch wrote."""
        if self.constrain_mode == "posthoc":
            with report.stage("posthoc", self.peaks):
                for record in reversed(undo):
                    record.undo()
                undo.clear()
                for site, proposal in solved:
                    final = self._chain.constrain(self, site, proposal)
                    self._check(site, "constrained update", final.delta, (site.d_out, site.d_in))
                    undo.append(self.pm.hook.editkit_apply(run=self, site=site, delta=final.delta))
        if self.constraints:
            with report.stage("constraints", self.peaks):
                undo.extend(self._constrain_accumulated("batch"))
                self._measure(batch_start={r.site.module: r.previous for r in reversed(undo)})

    def _constrain_accumulated(self, stage: Literal["batch", "final"]) -> list[UndoRecord]:
        """Offer ``Δ_n = W_n − W0`` to the constraints; write ``W0 + F(Δ_n)`` where one changed it."""
        records = []
        for site in self.sites:
            w0 = self.initial_weights[site.module]
            w0 = site.to_math(w0).double()  # [d_out, d_in]
            current = self.weight(site).detach().double()
            proposal = AccumulatedProposal(site=site, delta=current - w0, initial=w0, stage=stage)
            final = self._chain.constrain(self, site, proposal)
            if final is not proposal:
                self._check(site, "accumulated update", final.delta, (site.d_out, site.d_in))
                records.append(self.pm.hook.editkit_apply(run=self, site=site, delta=(w0 + final.delta) - current))
        return records

    def _note_update_norms(self, batch_start: dict[str, torch.Tensor]) -> None:
        """Per layer, ‖ΔW‖ (Frobenius) of what this batch wrote, relative to ‖W‖ before it, and ‖W_n‖/‖W_0‖ (the
        edited weight's growth over the run: sequential collapse shows there first)."""
        for site in self.sites:
            before = batch_start.get(site.module)
            if before is None:
                continue
            now = weight_parameter(self.model, site.module).detach()
            norm = float((now.double() - before.double()).norm())
            reference = float(before.double().norm())
            self.note(site, "update.norm", float(f"{norm:.6g}"))
            self.note(site, "update.relative", float(f"{norm / reference:.6g}") if reference > 0 else None)
            initial = float(self.initial_weights[site.module].double().norm())
            growth = float(now.double().norm()) / initial if initial > 0 else None
            self.note(site, "weight.growth", float(f"{growth:.6g}") if growth is not None else None)  # ‖W_n‖/‖W_0‖

    def _measure(self, batch_start: dict[str, torch.Tensor]) -> None:
        """Each constraint measures its invariant on what this batch wrote (:class:`ConstraintChain`)."""
        for site in self.sites:
            before = batch_start.get(site.module)
            if before is None:
                continue
            written = weight_parameter(self.model, site.module).detach().double() - before.double()
            written = site.to_math(written)  # [d_out, d_in]
            self._chain.measure(self, site, written)

    # ------------------------------------------------------------------ durable state (journal)

    def batch_artifacts(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """What the last batch wrote and the state it leaves, for the journal.

        Returns ``deltas`` (per module, storage layout, float64: exact, so replay and revert are
        bit-exact) and ``state`` (``keys/<module>``: the batch's keys ``[d_in, u]`` from which Cp is
        rebuilt; ``rng``: the run generator's state).
        """
        if not self.undo_log:
            raise EditkitError("no batch was edited yet")
        first_previous: dict[str, torch.Tensor] = {}
        for record in self.undo_log[-1]:
            first_previous.setdefault(record.site.module, record.previous)
        deltas = {
            module: weight_parameter(self.model, module).detach().double().cpu() - previous.double().cpu()
            for module, previous in first_previous.items()
        }
        state = {f"keys/{module}": keys for module, keys in self.ledger.batches[-1].items()}
        state["rng"] = self.generator.get_state()
        state.update(self.plugin_states.journal_entries())
        return deltas, state

    def replay(self, deltas: dict[str, torch.Tensor], state: dict[str, torch.Tensor], report: dict[str, Any],
               final: dict[str, Any] | None = None) -> None:
        """Re-apply one journaled batch exactly (weights, Cp, RNG state, report; ``final``: what
        :meth:`finish` reported after it, journaled with the run's last batch)."""
        by_module = {s.module: s for s in self.sites}
        undo: list[UndoRecord] = []
        for module, delta in deltas.items():
            if module not in by_module:
                raise EditkitError(f"journal batch edits {module!r}, which this run does not locate")
            parameter = weight_parameter(self.model, module)
            if tuple(delta.shape) != tuple(parameter.shape):
                raise EditkitError(f"journal delta for {module} has shape {tuple(delta.shape)}, "
                                   f"weight has {tuple(parameter.shape)}")
            previous = parameter.detach().clone()
            with torch.no_grad():
                add_exactly(parameter, delta)
            undo.append(UndoRecord(site=by_module[module], parameter=parameter, previous=previous))
        self.ledger.replay({name.removeprefix("keys/"): t for name, t in state.items() if name.startswith("keys/")})
        self.generator.set_state(state["rng"])
        self.plugin_states.replay(state)
        self._log_undo(undo)
        self.reports.append(BatchReport.from_journal(report, index=len(self.reports)))
        if final is not None:
            self.final_report = BatchReport.from_journal(final, index=int(final.get("index", len(self.reports))))

    def finish(self) -> BatchReport | None:
        """End of the run: offer the accumulated updates to the constraints (``stage="final"``) and
        measure the invariants on what that wrote (``self.final_report``, ``result.json["final"]``).
        ``None`` when no constraint changed the accumulated update (nothing final happened); what the
        constraints noted while deciding so (e.g. PRUNE: no singular value above σ_max(W0)) is kept in
        ``self.final_report`` all the same, so a run says why its final stage left the update alone."""
        if not self.constraints or not self.undo_log:
            return None
        self.plugin_states.restore_if_replayed(self)
        report = BatchReport(index=len(self.reports), size=0)
        self._current = report
        try:
            records = self._constrain_accumulated("final")
            self._measure(batch_start={r.site.module: r.previous for r in reversed(records)})
        finally:
            self._current = None
        if not records:
            if report.layers:
                self.final_report = report
            return None
        self.undo_log[-1].extend(records)
        self.final_report = report
        return report

    def _keys_after(self, batch: EditBatch) -> dict[str, torch.Tensor]:
        """The batch's keys per site recomputed on the edited model (K1, float64 ``[d_in, u]``, on the CPU),
        which grow Cp (Fang et al. 2025, AlphaEdit, arXiv 2410.02355, §3: Cp holds the keys of earlier edits)."""
        with torch.no_grad():
            return {site.module: self.pm.hook.editkit_collect_keys(run=self, batch=batch, site=site).double().cpu()
                    for site in self.sites}

    @staticmethod
    def _check(site: Site, what: str, value: Any, shape: tuple[int, int]) -> None:
        if not isinstance(value, torch.Tensor):
            raise EditkitError(f"layer {site.layer}: no plugin produced the {what} (got {value!r})")
        if tuple(value.shape) != shape:
            raise EditkitError(f"layer {site.layer}: {what} has shape {tuple(value.shape)}, expected {shape}")
        if not torch.isfinite(value).all():
            raise NumericalError(f"layer {site.layer} ({site.module}): non-finite {what}; no weight was written")

    def _log_undo(self, undo: list[UndoRecord]) -> None:
        """Keep a batch's undo records, and only the latest ``undo_depth`` batches' (older ones are dropped)."""
        self.undo_log.append(undo)
        if self.undo_depth is not None and len(self.undo_log) > self.undo_depth:
            del self.undo_log[: len(self.undo_log) - self.undo_depth]

    def undo_last(self, n: int = 1) -> None:
        """Undo the last ``n`` batches, restoring weights bit-exactly."""
        if n > len(self.undo_log):
            if len(self.undo_log) < len(self.reports):
                raise UsageError(f"cannot undo {n} batches: this run keeps undo records for its last "
                                 f"{self.undo_depth} batch(es) only (undo_depth)")
            raise UsageError(f"cannot undo {n} batches: only {len(self.undo_log)} were applied")
        undone = 0
        try:
            for _ in range(n):
                for record in reversed(self.undo_log.pop()):
                    record.undo()
                self.reports.pop()
                self.plugin_states.pop()
                undone += 1
        finally:
            self.ledger.undo_last(undone)  # Cp summed again from the batches that remain
        self.plugin_states.load(self)

    def peak_memory_so_far(self) -> int:
        """The largest peak memory of this process (CPU) or the run's device (CUDA) since the run began, in bytes;
        the batches' stage peaks, what came between them, and what came since the last."""
        return self.peaks.so_far()

    def current_weights(self) -> dict[str, torch.Tensor]:
        """The edited modules' weights now (storage layout, views)."""
        return {s.module: weight_parameter(self.model, s.module).detach() for s in self.sites}

    def accumulated_deltas(self) -> dict[str, torch.Tensor]:
        """``W_now − W0`` per edited module, in the module's storage layout (float32)."""
        return {
            name: (weight_parameter(self.model, name).detach().float() - w0.float()).contiguous()
            for name, w0 in self.initial_weights.items()
        }

    def describe(self) -> dict[str, Any]:
        return {
            "editor": self.editor_spec.name,
            "constraints": [c.name for c in self.constraint_specs],
            "hparams": {name: to_json(h) for name, h in self.hparams.items()},
            "constraint_hparams": {name: to_json(h) for name, h in self.constraint_hparams.items()},
            "constrain_mode": self.constrain_mode,
            "sites": [{"layer": s.layer, "module": s.module, "transposed": s.transposed} for s in self.sites],
            "layout": self.layout.to_json(),
        }


if TYPE_CHECKING:  # pragma: no cover - checked by mypy (`make test`): the kernel's run is what plugins see

    def _edit_run_is_a_run_context(run: EditRun) -> RunContext:
        return run
