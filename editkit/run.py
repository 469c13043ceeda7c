"""The edit run: drives the stage hooks over batches and holds all per-run state.

An :class:`EditRun` owns its own pluggy manager with exactly the stage plugins its editor
and constraints created for it, so runs are independent and nothing is global. Per-run
method state (prefix templates, ``Cp``, projectors, ``W0``) lives on those plugin objects
or on the run.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import attrs
import pluggy
import torch

from editkit import hookspecs
from editkit.catalog import ConstraintSpec, EditorSpec
from editkit.config import RunConfig
from editkit.errors import EditkitError, NumericalError, UsageError
from editkit.hparams import applicable, build, split_overrides, to_json
from editkit.layout import ModelLayout, resolve_layout
from editkit.markers import PROJECT_NAME, hookimpl
from editkit.memory import peak_bytes, reset_peak
from editkit.plugins import PluginHost
from editkit.progress import NullProgress, Progress
from editkit.requests import EditRequest
from editkit.sites import Site
from editkit.updates import AccumulatedProposal, DeltaProposal, SolveProblem, UndoRecord


class ConstraintWarning(UserWarning):
    """A constraint's invariant does not hold on the update actually written."""


@attrs.frozen(kw_only=True)
class EditBatch:
    """One batch of requests (``u`` = ``len(requests)``), numbered from 0 within the run."""

    index: int
    requests: tuple[EditRequest, ...] = attrs.field(converter=tuple)

    def __attrs_post_init__(self) -> None:
        if not self.requests:
            raise ValueError("an edit batch needs at least one request")


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


class _KernelStages:
    """The kernel's default stage implementations (registered last, overridable)."""

    @hookimpl(trylast=True)
    def editkit_apply(self, run: EditRun, site: Site, delta: torch.Tensor) -> UndoRecord:
        parameter = run.model.get_submodule(site.module).weight
        previous = parameter.detach().clone()
        update = site.to_storage(delta)
        if tuple(update.shape) != tuple(parameter.shape):
            raise EditkitError(
                f"layer {site.layer}: update shape {tuple(update.shape)} != weight {tuple(parameter.shape)}"
            )
        with torch.no_grad():
            parameter.add_(update.to(device=parameter.device, dtype=parameter.dtype))
        return UndoRecord(site=site, parameter=parameter, previous=previous)


class EditRun:
    """One editing run on one model.

    :param model: a ``transformers`` causal LM (eval mode is set here).
    :param tokenizer: its tokenizer.
    :param config: the :class:`~editkit.config.RunConfig`.
    :param host: the discovery :class:`~editkit.plugins.PluginHost` (a fresh one by default).
    :param key_statistics: provider of ``second_moment(site)`` / ``eigendecomposition(site)``
        (see :mod:`editkit.keystats`); editors that need C0 fail clearly without one.
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        tokenizer: Any,
        config: RunConfig,
        host: PluginHost | None = None,
        key_statistics: Any = None,
        progress: Progress | None = None,
        model_id: str = "",
    ) -> None:
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

        self.editor_spec: EditorSpec = self.catalog.get("editors", config.editor)
        self.constrain_mode: str = config.constrain_mode or self.editor_spec.default_constrain_mode or "inline"
        names = list(config.constraints)
        for implied in self.editor_spec.implied_constraints:
            if implied not in names:
                names.append(implied)
        self.constraint_specs: list[ConstraintSpec] = [self.catalog.get("constraints", n) for n in names]
        if len(set(names)) != len(names):
            raise UsageError(f"a constraint is given twice: {names}")

        owners = [(self.editor_spec.name, self.editor_spec.hparams)]
        owners += [(c.name, c.hparams) for c in self.constraint_specs]
        editor_overrides, *constraint_overrides = split_overrides(dict(config.overrides), owners)
        editor_defaults, *constraint_defaults = split_overrides(applicable(dict(config.defaults), owners), owners)
        editor_values: dict[str, Any] = dict(editor_defaults)
        if config.preset is not None:
            if config.preset not in self.editor_spec.presets:
                known = ", ".join(sorted(self.editor_spec.presets)) or "none"
                raise UsageError(f"editor {self.editor_spec.name!r} has no preset {config.preset!r}; presets: {known}")
            editor_values.update(self.editor_spec.presets[config.preset])
        if config.layers is not None:
            if "layers" not in {f.name for f in attrs.fields(self.editor_spec.hparams)}:
                raise UsageError(f"editor {self.editor_spec.name!r} takes no --layers")
            editor_values["layers"] = config.layers
        editor_values.update(editor_overrides)
        self.editor_hparams = build(self.editor_spec.name, self.editor_spec.hparams, editor_values)
        self.constraint_hparams = {
            spec.name: build(spec.name, spec.hparams, {**defaults, **values})
            for spec, defaults, values in zip(self.constraint_specs, constraint_defaults, constraint_overrides)
        }
        others = {name: h for name, h in self.constraint_hparams.items() if name != self.editor_spec.name}
        self.hparams: dict[str, Any] = {self.editor_spec.name: self.editor_hparams, **others}

        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.pm.register(_KernelStages(), name="kernel")
        self.editor = self.editor_spec.factory(self.editor_hparams)
        self.pm.register(self.editor, name=f"editor:{self.editor_spec.name}")
        self.constraints: list[tuple[ConstraintSpec, object]] = []
        for spec in self.constraint_specs:
            plugin = spec.factory(self.constraint_hparams[spec.name])
            self.pm.register(plugin, name=f"constraint:{spec.name}")
            self.constraints.append((spec, plugin))
        self._constraint_callers = [self._only(plugin, "editkit_constrain_update") for _, plugin in self.constraints]
        self._measure_callers = [self._only(plugin, "editkit_measure_update") for _, plugin in self.constraints]
        self._warned: set[str] = set()

        self.generator = torch.Generator().manual_seed(config.seed)
        self.state: dict[str, Any] = {}
        sites = self.pm.hook.editkit_locate(run=self)
        if not sites:
            raise EditkitError(f"editor {self.editor_spec.name!r} located no sites")
        self.sites: tuple[Site, ...] = tuple(sorted(sites, key=lambda s: s.layer))
        self.initial_weights = {
            s.module: self.model.get_submodule(s.module).weight.detach().clone() for s in self.sites
        }
        self.past_keys: dict[str, torch.Tensor] = {}  # Cp per site module, float64 [d_in, d_in]
        self._batch_keys: list[dict[str, torch.Tensor]] = []
        if self.key_statistics is not None and hasattr(self.key_statistics, "prepare"):
            self.key_statistics.prepare(self.sites)  # C0 of the *unedited* model, one pass for all sites
        self.reports: list[BatchReport] = []
        self.final_report: BatchReport | None = None
        self.undo_log: list[list[UndoRecord]] = []
        self._current: BatchReport | None = None

    def _only(self, plugin: object, hook_name: str) -> Any:
        """A caller of ``hook_name`` that reaches ``plugin`` alone."""
        others = [p for _, p in self.pm.list_name_plugin() if p is not plugin]
        return self.pm.subset_hook_caller(hook_name, remove_plugins=others)

    # ------------------------------------------------------------------ helpers for plugins

    def note(self, site: Site, key: str, value: Any) -> None:
        """Record a per-layer figure for the current batch (goes into ``result.json``)."""
        if self._current is not None:
            self._current.layers.setdefault(site.layer, {})[key] = value

    def constraints_after(self, name: str) -> list[str]:
        """Names of the run's constraints that apply after ``name``, in order (empty if ``name`` is not run)."""
        names = [spec.name for spec in self.constraint_specs]
        return names[names.index(name) + 1 :] if name in names else []

    def weight(self, site: Site) -> torch.Tensor:
        """The site's current weight in math layout ``[d_out, d_in]`` (a view)."""
        w = self.model.get_submodule(site.module).weight
        return site.to_math(w)

    def require_key_statistics(self) -> Any:
        if self.key_statistics is None:
            raise UsageError(
                "this run needs key statistics (C0) of the edited layers: pass --corpus with their background "
                "text, e.g. --corpus wiki.jsonl:text (--stats-dir only says where they are stored; in the API, "
                "pass key_statistics)"
            )
        return self.key_statistics

    # ------------------------------------------------------------------ the stage loop

    def _constrain(self, site: Site, proposal: Any) -> Any:
        kind = type(proposal)
        for (spec, _), caller in zip(self.constraints, self._constraint_callers):
            results = [r for r in caller(run=self, site=site, proposal=proposal) if r is not None]
            if results:
                if not isinstance(results[0], kind):
                    raise EditkitError(
                        f"constraint {spec.name!r} returned {type(results[0]).__name__} for a {kind.__name__}"
                    )
                proposal = results[0]
        return proposal

    def _timed(self, report: BatchReport, stage: str, started: float) -> None:
        report.timings[stage] = report.timings.get(stage, 0.0) + time.perf_counter() - started
        report.peak_memory[stage] = max(report.peak_memory.get(stage, 0), peak_bytes(self.device))
        reset_peak(self.device)

    def edit(self, requests: Sequence[EditRequest]) -> BatchReport:
        """Edit one batch; on any failure the batch's writes are undone before raising."""
        batch = EditBatch(index=len(self.reports), requests=tuple(requests))
        report = BatchReport(index=batch.index, size=len(batch.requests))
        self._current = report
        hook = self.pm.hook
        undo: list[UndoRecord] = []
        solved: list[tuple[Site, DeltaProposal]] = []
        start = time.perf_counter()
        try:
            for site in self.sites:
                t = time.perf_counter()
                keys = hook.editkit_collect_keys(run=self, batch=batch, site=site)
                self._check(site, "keys", keys, (site.d_in, len(batch.requests)))
                self._timed(report, "collect_keys", t)
                t = time.perf_counter()
                residual = hook.editkit_compute_residual(run=self, batch=batch, site=site, keys=keys)
                self._check(site, "residual", residual, (site.d_out, len(batch.requests)))
                self._timed(report, "compute_residual", t)
                t = time.perf_counter()
                problem = SolveProblem(
                    keys=keys.double(), residual=residual.double(), past=self.past_keys.get(site.module),
                    past_batches=[b[site.module] for b in self._batch_keys if site.module in b],
                )
                problem = self._constrain(site, problem)
                delta = hook.editkit_solve(run=self, batch=batch, site=site, problem=problem)
                self._check(site, "update", delta, (site.d_out, site.d_in))
                proposal = DeltaProposal(site=site, delta=delta)
                if self.constrain_mode == "inline":
                    proposal = self._constrain(site, proposal)
                    self._check(site, "constrained update", proposal.delta, (site.d_out, site.d_in))
                self._timed(report, "solve", t)
                t = time.perf_counter()
                undo.append(hook.editkit_apply(run=self, site=site, delta=proposal.delta))
                solved.append((site, proposal))
                self._timed(report, "apply", t)
            if self.constrain_mode == "posthoc":
                t = time.perf_counter()
                for record in reversed(undo):
                    record.undo()
                undo.clear()
                for site, proposal in solved:
                    final = self._constrain(site, proposal)
                    self._check(site, "constrained update", final.delta, (site.d_out, site.d_in))
                    undo.append(hook.editkit_apply(run=self, site=site, delta=final.delta))
                self._timed(report, "posthoc", t)
            if self.constraints:
                t = time.perf_counter()
                undo.extend(self._constrain_accumulated("batch"))
                self._measure(batch_start={r.site.module: r.previous for r in reversed(undo)})
                self._timed(report, "constraints", t)
            self._note_update_norms({r.site.module: r.previous for r in reversed(undo)})
            t = time.perf_counter()
            past = self._grown_past_keys(batch)
            self._timed(report, "update_cp", t)
            t = time.perf_counter()
            hook.editkit_batch_end(run=self, batch=batch)
            self._timed(report, "batch_end", t)
        except BaseException:
            if len(self._batch_keys) > len(self.reports):
                self._batch_keys.pop()
            for record in reversed(undo):
                record.undo()
            self._current = None
            raise
        report.seconds = time.perf_counter() - start
        self.past_keys = past
        self.reports.append(report)
        self.undo_log.append(undo)
        self._current = None
        return report

    def _constrain_accumulated(self, stage: str) -> list[UndoRecord]:
        """Offer ``Δ_n = W_n − W0`` to the constraints; write ``W0 + F(Δ_n)`` where one changed it."""
        records = []
        for site in self.sites:
            w0 = self.initial_weights[site.module]
            w0 = site.to_math(w0).double()  # [d_out, d_in]
            current = self.weight(site).detach().double()
            proposal = AccumulatedProposal(site=site, delta=current - w0, initial=w0, stage=stage)
            final = self._constrain(site, proposal)
            if final is not proposal:
                self._check(site, "accumulated update", final.delta, (site.d_out, site.d_in))
                records.append(self.pm.hook.editkit_apply(run=self, site=site, delta=(w0 + final.delta) - current))
        return records

    def _note_update_norms(self, batch_start: dict[str, torch.Tensor]) -> None:
        """Per layer, ‖ΔW‖ (Frobenius) of what this batch wrote, and relative to ‖W‖ before it."""
        for site in self.sites:
            before = batch_start.get(site.module)
            if before is None:
                continue
            now = self.model.get_submodule(site.module).weight.detach()
            norm = float((now.double() - before.double()).norm())
            reference = float(before.double().norm())
            self.note(site, "update.norm", float(f"{norm:.6g}"))
            self.note(site, "update.relative", float(f"{norm / reference:.6g}") if reference > 0 else None)

    def _measure(self, batch_start: dict[str, torch.Tensor]) -> None:
        """Each constraint measures its invariant on what this batch wrote; warn once if broken.

        A broken measure may carry ``"way_out"``: in words, the exact way to keep its invariant and the
        later constraints' together (e.g. ``--set nullspace.mode=joint`` for RECT with the null space).
        The warning ends with it; it is not recorded in ``result.json``.
        """
        for site in self.sites:
            before = batch_start.get(site.module)
            if before is None:
                continue
            written = self.model.get_submodule(site.module).weight.detach().double() - before.double()
            written = site.to_math(written)  # [d_out, d_in]
            for (spec, _), caller in zip(self.constraints, self._measure_callers):
                for figures in caller(run=self, site=site, delta=written):
                    if not figures:
                        continue
                    figures = dict(figures)
                    way_out = figures.pop("way_out", None)
                    self.note(site, f"{spec.name}.invariant", figures)
                    if not figures.get("holds", True) and spec.name not in self._warned:
                        self._warned.add(spec.name)
                        later = self.constraints_after(spec.name)
                        warnings.warn(
                            f"constraint {spec.name!r}: its invariant ({spec.invariant}) does not hold on the "
                            f"update written at layer {site.layer} ({figures.get('invariant')} = "
                            f"{figures.get('value'):.3g})" + (f"; a later constraint changed it: {', '.join(later)}"
                                                             if later else "")
                            + (f"; {way_out}" if way_out else ""),
                            ConstraintWarning,
                            stacklevel=2,
                        )

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
            module: self.model.get_submodule(module).weight.detach().double().cpu() - previous.double().cpu()
            for module, previous in first_previous.items()
        }
        state = {f"keys/{module}": keys for module, keys in self._batch_keys[-1].items()}
        state["rng"] = self.generator.get_state()
        return deltas, state

    def replay(self, deltas: dict[str, torch.Tensor], state: dict[str, torch.Tensor], report: dict[str, Any]) -> None:
        """Re-apply one journaled batch exactly (weights, Cp, RNG state, report)."""
        by_module = {s.module: s for s in self.sites}
        undo: list[UndoRecord] = []
        for module, delta in deltas.items():
            if module not in by_module:
                raise EditkitError(f"journal batch edits {module!r}, which this run does not locate")
            parameter = self.model.get_submodule(module).weight
            if tuple(delta.shape) != tuple(parameter.shape):
                raise EditkitError(f"journal delta for {module} has shape {tuple(delta.shape)}, "
                                   f"weight has {tuple(parameter.shape)}")
            previous = parameter.detach().clone()
            with torch.no_grad():
                parameter.copy_((previous.double() + delta.to(previous.device)).to(parameter.dtype))
            undo.append(UndoRecord(site=by_module[module], parameter=parameter, previous=previous))
        keys = {name.removeprefix("keys/"): t for name, t in state.items() if name.startswith("keys/")}
        for module, k in keys.items():
            previous = self.past_keys.get(module)
            outer = k @ k.T
            self.past_keys[module] = outer if previous is None else previous + outer
        self._batch_keys.append(keys)
        self.generator.set_state(state["rng"])
        self.undo_log.append(undo)
        self.reports.append(BatchReport(index=len(self.reports), size=int(report.get("size", 0)),
                                        seconds=float(report.get("seconds", 0.0)),
                                        timings=dict(report.get("timings", {})),
                                        layers={int(k): v for k, v in report.get("layers", {}).items()},
                                        peak_memory={k: round(float(v) * 2**20)
                                                     for k, v in report.get("peak_memory_mib", {}).items()},
                                        replayed=True))

    def finish(self) -> BatchReport | None:
        """End of the run: offer the accumulated updates to the constraints (``stage="final"``) and
        measure the invariants on what that wrote (``self.final_report``, ``result.json["final"]``).
        ``None`` when no constraint changed the accumulated update (nothing final happened)."""
        if not self.constraints or not self.undo_log:
            return None
        report = BatchReport(index=len(self.reports), size=0)
        self._current = report
        try:
            records = self._constrain_accumulated("final")
            self._measure(batch_start={r.site.module: r.previous for r in reversed(records)})
        finally:
            self._current = None
        if not records:
            return None
        self.undo_log[-1].extend(records)
        self.final_report = report
        return report

    def _grown_past_keys(self, batch: EditBatch) -> dict[str, torch.Tensor]:
        """``Cp + K1 K1ᵀ`` per site, with K1 recomputed on the edited model (methods.md §4, §11.2g)."""
        grown = {}
        keys_of_batch = {}
        with torch.no_grad():
            for site in self.sites:
                keys = self.pm.hook.editkit_collect_keys(run=self, batch=batch, site=site).double().cpu()
                previous = self.past_keys.get(site.module)
                outer = keys @ keys.T  # [d_in, d_in]
                grown[site.module] = outer if previous is None else previous + outer
                keys_of_batch[site.module] = keys  # [d_in, u], to undo this batch's Cp share
        self._batch_keys.append(keys_of_batch)
        return grown

    @staticmethod
    def _check(site: Site, what: str, value: Any, shape: tuple[int, int]) -> None:
        if not isinstance(value, torch.Tensor):
            raise EditkitError(f"layer {site.layer}: no plugin produced the {what} (got {value!r})")
        if tuple(value.shape) != shape:
            raise EditkitError(f"layer {site.layer}: {what} has shape {tuple(value.shape)}, expected {shape}")
        if not torch.isfinite(value).all():
            raise NumericalError(f"layer {site.layer} ({site.module}): non-finite {what}; no weight was written")

    def undo_last(self, n: int = 1) -> None:
        """Undo the last ``n`` batches, restoring weights bit-exactly."""
        if n > len(self.undo_log):
            raise UsageError(f"cannot undo {n} batches: only {len(self.undo_log)} were applied")
        for _ in range(n):
            for record in reversed(self.undo_log.pop()):
                record.undo()
            self.reports.pop()
            for module, keys in self._batch_keys.pop().items():
                self.past_keys[module] = self.past_keys[module] - keys @ keys.T

    def current_weights(self) -> dict[str, torch.Tensor]:
        """The edited modules' weights now (storage layout, views)."""
        return {s.module: self.model.get_submodule(s.module).weight.detach() for s in self.sites}

    def accumulated_deltas(self) -> dict[str, torch.Tensor]:
        """``W_now − W0`` per edited module, in the module's storage layout (float32)."""
        return {
            name: (self.model.get_submodule(name).weight.detach().float() - w0.float()).contiguous()
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
