"""Conformance suite: check a third-party editor or constraint against the hook contracts.

Enable it with one line in a test module of your plugin::

    from editkit.testing.conformance import make_conformance_tests
    import my_plugin

    TestConformance = make_conformance_tests(plugin=my_plugin, constraint="myconstraint")

(``editor="myeditor"`` for an editor). The returned class holds one test per check, parametrised over
model families; every failure says in words what is wrong and what the contract asks. The checks are
also plain functions (:data:`CHECKS`, :func:`run_conformance`) for use outside pytest.

What is checked (``kind`` = editor or constraint, runs on tiny random models, 2 batches of 2 requests):

* ``registration`` — a valid spec is registered by the plugin itself; frozen attrs hyperparameters that
  build from their defaults; the factory returns a fresh stage object per run, implementing the stage
  hooks its kind needs and no unknown hooks; no stage hooks on the module.
* ``light_import`` — importing the plugin module does not import torch or transformers.
* ``stage_contract`` — the stage hooks called directly: shapes, dtypes, finite values, inputs not
  modified in place, no weight written outside ``editkit_apply``, declared linearity holds, an editor's
  solve stays inside the problem's row subspace, an editor's target values match ``computes_targets``, a
  constraint that ``needs_targets`` transforms a ``TargetProposal``.
* ``written_update`` — a full run succeeds and writes finite updates of the weights' own dtype; the
  constraint's measured invariant holds; an editor raises the target log-prob of most requests.
* ``untouched_outside_sites`` — no parameter or buffer outside the located sites changes (bit-exact).
* ``undo_exact`` — ``undo_last`` restores every weight bit-exactly.
* ``seed_determinism`` — the same seed on a fresh copy of the model writes identical updates.
* ``resume_exact`` — a run that replays two batches from their journal artifacts (weights, Cp, RNG, the
  plugins' own state) and edits a third writes the same bits, and saves the same plugin state, as one that
  never stopped.
* ``composes_with_nullspace`` — a plugin that declares a conflict with ``nullspace`` is refused with a
  :class:`UsageError` naming both; otherwise, with ``--constraint <it> --constraint nullspace`` (and, for a
  constraint that
  commutes with the projection, ``--constraint nullspace --constraint <it>``) the written update satisfies
  ``‖Δ − ΔP‖/‖Δ‖ ≤ tol`` for the null-space constraint's own ``P`` on the run; an editor run with
  ``--constraint nullspace`` must solve inside the subspace (no re-projection needed).
* ``bad_hyperparameters`` — unknown keys, non-numbers for numeric fields and the values you declare
  invalid fail with :class:`editkit.errors.UsageError` naming the field.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NoReturn, cast

import attrs
import pluggy
import pytest
import torch

from editkit import hookspecs
from editkit.constraintchain import reaching_only
from editkit.converters import to_tuple
from editkit.errors import UsageError
from editkit.markers import PROJECT_NAME
from editkit.plugins import PluginHost
from editkit.requests import EditBatch
from editkit.run import EditRun
from editkit.sites import Site
from editkit.testing.harness import (
    EditOutcome,
    build_run,
    differences,
    nullspace_violation,
    plugin_host,
    plugin_name,
    run_edit,
    snapshot,
)
from editkit.testing.moments import MomentsFromText
from editkit.testing.tiny import TINY_DIMS, tiny_model, tiny_requests, tiny_texts, tiny_tokenizer
from editkit.updates import DeltaProposal, SolveProblem, Subspace, TargetProposal

EDITOR_HOOKS = ("editkit_locate", "editkit_collect_keys", "editkit_compute_residual", "editkit_solve")


class ConformanceFailure(AssertionError):
    """A plugin does not meet a hook contract; the message says what is wrong."""


class ConformanceSkip(Exception):
    """A check does not apply to this plugin (the message says why)."""


def _as_dict(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return (value,)  # one (name, plugin) pair
    if isinstance(value, list | tuple):
        return tuple(value)
    return (value,)


def _invalid(value: Mapping[str, Any] | None) -> dict[str, tuple[str, ...]]:
    out = {}
    for field, values in (value or {}).items():
        out[field] = (values,) if isinstance(values, str) else tuple(str(v) for v in values)
    return out


@attrs.frozen(kw_only=True)
class ConformanceSubject:
    """What is checked: the plugin(s) and the editor or constraint name they register.

    ``plugins``: the plugin module or object (or several, or ``(name, plugin)`` pairs) that register it;
    they join the first-party plugins in an isolated host. ``constraint``: the constraint under test
    (runs use ``editor``, MEMIT by default); without it, ``editor`` is under test. ``overrides``:
    ``--set`` values for every run (e.g. ``{"normclamp.ratio": "0.01"}``). ``invalid_hparams``: field →
    values that must be rejected. ``min_efficacy``: the fraction of requests whose target log-prob an
    editor must raise. ``nullspace_tol``: the tolerance on ``‖Δ − ΔP‖/‖Δ‖`` beyond float rounding.
    ``commutes_with_nullspace``: whether a constraint keeps ``ΔP = Δ`` when it runs *after* the null-space
    constraint (true for scalings; false for masks and spectral maps, which must come before it).
    """

    plugins: tuple[Any, ...] = attrs.field(converter=_as_tuple)
    editor: str = "memit"
    constraint: str | None = None
    families: tuple[str, ...] = attrs.field(default=("gpt2", "llama"), converter=to_tuple)
    overrides: Mapping[str, str] = attrs.field(factory=dict, converter=_as_dict, eq=False)
    invalid_hparams: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, converter=_invalid, eq=False)
    min_efficacy: float = 0.5
    nullspace_tol: float = 1e-6
    commutes_with_nullspace: bool = True

    def __attrs_post_init__(self) -> None:
        if not self.plugins:
            raise ValueError("ConformanceSubject needs the plugin under test")
        if not self.families:
            raise ValueError("ConformanceSubject needs at least one model family")

    @property
    def kind(self) -> Literal["editor", "constraint"]:
        return "constraint" if self.constraint is not None else "editor"

    @property
    def name(self) -> str:
        return self.constraint if self.constraint is not None else self.editor

    @property
    def catalog_kind(self) -> str:
        return f"{self.kind}s"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r}"

    def host(self) -> PluginHost:
        """A fresh isolated plugin host: the first-party plugins and :attr:`plugins`."""
        return plugin_host(*self.plugins)

    def plugin_names(self) -> set[str]:
        return {item[0] if isinstance(item, tuple) else plugin_name(item) for item in self.plugins}


@attrs.frozen(kw_only=True)
class RunAttempt:
    """One full run for the checks: its outcome, or why it failed; plus warnings and batch reports."""

    outcome: EditOutcome | None = attrs.field(default=None, eq=False)
    error: str | None = None
    warnings: tuple[str, ...] = ()
    reports: tuple[dict[str, Any], ...] = attrs.field(default=(), eq=False)
    command: str = ""

    def require(self, label: str, what: str) -> EditOutcome:
        if self.outcome is None:
            raise ConformanceFailure(f"{label}: the edit run ({self.command}) failed, so {what} cannot be "
                                     f"checked: {self.error}")
        return self.outcome


def describe_exception(exc: BaseException) -> str:
    """``Type: message (raised in file:line, function)`` for the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (raised in {os.path.basename(frames[-1].filename)}:{frames[-1].lineno}, {frames[-1].name})" \
        if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


@attrs.define(kw_only=True)
class ConformanceSession:
    """The runs the checks share for one subject and model family (computed on first use)."""

    subject: ConformanceSubject
    family: str
    _tokenizer: Any = attrs.field(default=None, init=False, repr=False)
    _attempts: dict[str, RunAttempt] = attrs.field(factory=dict, init=False, repr=False)

    @property
    def label(self) -> str:
        return f"{self.subject.label} on a tiny {self.family}"

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = tiny_tokenizer()
        return self._tokenizer

    def fresh(self) -> tuple[torch.nn.Module, MomentsFromText]:
        """A fresh tiny model (always the same weights) and its key statistics."""
        model = tiny_model(self.family, vocab_size=len(self.tokenizer), logit_scale=20.0, **TINY_DIMS)
        return model, MomentsFromText(model=model, tokenizer=self.tokenizer, texts=tiny_texts())

    def constraints(self, *extra: str) -> tuple[str, ...]:
        own = (self.subject.constraint,) if self.subject.constraint is not None else ()
        return (*own, *extra)

    def command(self, constraints: Sequence[str]) -> str:
        return " ".join(["--editor", self.subject.editor, *(f"--constraint {c}" for c in constraints)])

    def build(self, constraints: Sequence[str], overrides: Mapping[str, str] | None = None) -> EditRun:
        model, stats = self.fresh()
        return build_run(model=model, tokenizer=self.tokenizer, key_statistics=stats, host=self.subject.host(),
                         editor=self.subject.editor, constraints=constraints,
                         overrides={**self.subject.overrides, **(overrides or {})})

    def attempt(self, key: str, constraints: Sequence[str], seed: int = 0) -> RunAttempt:
        if key not in self._attempts:
            self._attempts[key] = self._run(constraints, seed)
        return self._attempts[key]

    def _run(self, constraints: Sequence[str], seed: int) -> RunAttempt:
        model, stats = self.fresh()
        command = self.command(constraints)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                outcome = run_edit(model=model, tokenizer=self.tokenizer, requests=tiny_requests(4), batch_size=2,
                                   key_statistics=stats, host=self.subject.host(), editor=self.subject.editor,
                                   constraints=constraints, overrides=self.subject.overrides, seed=seed)
            except Exception as exc:
                return RunAttempt(error=describe_exception(exc), command=command)
        return RunAttempt(outcome=outcome, warnings=tuple(str(w.message) for w in caught), command=command,
                          reports=tuple(r.to_json() for r in outcome.run.reports))

    @property
    def main(self) -> RunAttempt:
        return self.attempt("main", self.constraints())

    @property
    def again(self) -> RunAttempt:
        return self.attempt("again", self.constraints())

    @property
    def with_nullspace(self) -> RunAttempt:
        return self.attempt("nullspace", self.constraints("nullspace"))


def _fail(label: str, *parts: str) -> NoReturn:
    raise ConformanceFailure(f"{label}: " + " ".join(parts))


# --------------------------------------------------------------------------- registration


def _stage_hook_names(plugin: object) -> tuple[set[str], str | None]:
    """Hooks a stage object implements, and an error when it implements an unknown one."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    try:
        pm.register(plugin)
        pm.check_pending()
    except (pluggy.PluginValidationError, ValueError) as exc:
        return set(), str(exc)
    return {c.name for c in pm.get_hookcallers(plugin) or []}, None


def check_registration(session: ConformanceSession) -> None:
    """The plugin registers a valid spec, its hyperparameters and factory follow the conventions."""
    subject, label = session.subject, session.subject.label
    kind = subject.catalog_kind
    try:
        host = subject.host()
    except Exception as exc:
        _fail(label, f"registering the plugin failed: {describe_exception(exc)}")
    if subject.name not in host.catalog.entries[kind]:
        mine = {k: v for n in subject.plugin_names() for k, v in host.catalog.provided_by(n).items()}
        _fail(label, f"no {subject.kind} named {subject.name!r} is registered (the plugin registered: "
              f"{mine or 'nothing'}); implement editkit_register_{kind}(register) and call "
              f"register(editkit.{subject.kind.capitalize()}Spec(name={subject.name!r}, ...)).")
    provider = host.catalog.providers[(kind, subject.name)]
    if provider not in subject.plugin_names():
        _fail(label, f"is registered by plugin {provider!r}, not by the plugin under test "
              f"({', '.join(sorted(subject.plugin_names()))}).")
    for name in subject.plugin_names():
        module_level = {c.name for c in host.pm.get_hookcallers(host.pm.get_plugin(name)) or []}
        stray = sorted(module_level & set(hookspecs.STAGE_HOOKS))
        if stray:
            _fail(label, f"plugin {name!r} implements stage hooks at discovery level ({', '.join(stray)}); they are "
                  "never called there: put them on the object the spec's factory returns.")
    spec = host.catalog.entries[kind][subject.name]
    if not spec.summary.strip():
        _fail(label, "has an empty summary; say in one line what it does (shown by `editkit plugins`).")
    if subject.kind == "constraint" and not spec.invariant.strip():
        _fail(label, "has an empty invariant; say in words what it guarantees on the update it returns.")
    if not attrs.has(spec.hparams):
        _fail(label, f"hyperparameters {spec.hparams!r} are not an attrs class; use @attrs.frozen(kw_only=True) "
              "with a default and a validator per field, so `--set` can fill and check them.")
    try:
        hparams = spec.hparams()
    except Exception as exc:
        _fail(label, f"hyperparameters {spec.hparams.__name__} cannot be built from their defaults "
              f"({describe_exception(exc)}); every field needs a default.")
    fields = attrs.fields(spec.hparams)
    if fields:
        try:
            setattr(hparams, fields[0].name, getattr(hparams, fields[0].name))
        except attrs.exceptions.FrozenInstanceError:
            pass
        else:
            _fail(label, f"hyperparameters {spec.hparams.__name__} are mutable; use @attrs.frozen so a run's "
                  "settings cannot change while it runs.")
    try:
        first, second = spec.factory(hparams), spec.factory(hparams)
    except Exception as exc:
        _fail(label, f"the spec's factory failed with its default hyperparameters: {describe_exception(exc)}")
    if first is second:
        _fail(label, "the spec's factory returned the same object twice; it must create a fresh stage plugin per "
              "run, or state would leak between runs.")
    hooks, error = _stage_hook_names(first)
    if error:
        _fail(label, f"its stage plugin {type(first).__name__} cannot be registered: {error}")
    needed = {"editkit_constrain_update"} if subject.kind == "constraint" else set(EDITOR_HOOKS)
    missing = sorted(needed - hooks)
    if missing:
        _fail(label, f"its stage plugin {type(first).__name__} does not implement {', '.join(missing)} "
              "(mark the methods with @editkit.hookimpl).")
    catalog = sorted(hooks & set(hookspecs.CATALOG_HOOKS))
    if catalog:
        _fail(label, f"its stage plugin implements catalog hooks ({', '.join(catalog)}); catalog hooks belong on "
              "the module or object registered through the entry point.")


def check_light_import(session: ConformanceSession) -> None:
    """Importing the plugin module loads neither torch nor transformers (``editkit plugins`` stays fast)."""
    label = session.subject.label
    modules = [p for p in session.subject.plugins
               if not isinstance(p, tuple) and hasattr(p, "__file__") and isinstance(getattr(p, "__name__", None), str)]
    if not modules:
        raise ConformanceSkip("the plugin is not a module")
    for module in modules:
        if importlib.util.find_spec(module.__name__) is None:
            raise ConformanceSkip(f"{module.__name__} is not importable by name")
        code = ("import importlib, sys\n"
                f"importlib.import_module({module.__name__!r})\n"
                "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules))\n")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
        if done.returncode != 0:
            _fail(label, f"importing {module.__name__} in a fresh interpreter failed: {done.stderr.strip()[-800:]}")
        heavy = done.stdout.strip()
        if heavy:
            _fail(label, f"importing {module.__name__} imports {heavy}; import heavy modules inside the factory or "
                  "the stage module, so that `editkit plugins` and `editkit --help` stay fast.")


# --------------------------------------------------------------------------- stage contract


def _only(run: EditRun, plugin: object, hook: str) -> Callable[..., Any]:
    return reaching_only(run.pm, plugin, hook)


def _call(label: str, what: str, caller: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return caller(**kwargs)
    except Exception as exc:
        _fail(label, f"{what} raised {describe_exception(exc)}")


def _check_matrix(label: str, what: str, value: Any, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> None:
    if not isinstance(value, torch.Tensor):
        _fail(label, f"{what} is {type(value).__name__}, not a torch.Tensor.")
    if tuple(value.shape) != shape:
        _fail(label, f"{what} has shape {tuple(value.shape)}; the contract is {shape} (math layout [d_out, d_in], "
              "one column per request).")
    if not value.is_floating_point():
        _fail(label, f"{what} has dtype {value.dtype}; it must be a floating-point tensor.")
    if dtype is not None and value.dtype != dtype:
        _fail(label, f"{what} has dtype {value.dtype} but was given {dtype}; return the dtype you were given.")
    if not torch.isfinite(value).all():
        bad = int((~torch.isfinite(value)).sum())
        _fail(label, f"{what} has {bad} non-finite (NaN or inf) entries.")


def _unchanged_weights(label: str, before: Mapping[str, torch.Tensor], model: torch.nn.Module, what: str) -> None:
    changed = differences(before, snapshot(model), before)
    if changed:
        _fail(label, f"{what} changed model weights ({'; '.join(changed)}); stage hooks return values and "
              "only editkit_apply writes weights.")


def _constraint_contract(session: ConformanceSession) -> None:
    label, name = session.label, session.subject.name
    run = session.build(session.constraints())
    plugin = next(p for spec, p in run.constraints if spec.name == name)
    spec = run.catalog.get("constraints", name)
    caller = _only(run, plugin, "editkit_constrain_update")
    g = torch.Generator().manual_seed(0)
    before = snapshot(run.model)

    def call(site: Site, proposal: Any) -> Any:
        kind = type(proposal).__name__
        results = [r for r in _call(label, f"layer {site.layer}: editkit_constrain_update on a {kind}", caller,
                                    run=run, site=site, proposal=proposal)
                   if r is not None]
        if not results:
            return None
        if not isinstance(results[0], type(proposal)):
            _fail(label, f"editkit_constrain_update returned a {type(results[0]).__name__} for a {kind}; return "
                  "the same kind of proposal (or None to leave it unchanged).")
        return results[0]

    if spec.needs_targets:
        _targets_contract(label, run, call)
    for site in run.sites:
        shape = (site.d_out, site.d_in)
        keys = torch.randn(site.d_in, 3, generator=g, dtype=torch.float64)
        residual = torch.randn(site.d_out, 3, generator=g, dtype=torch.float64)
        kept = (keys.clone(), residual.clone())
        problem = call(site, SolveProblem(keys=keys, residual=residual))
        if not (torch.equal(keys, kept[0]) and torch.equal(residual, kept[1])):
            _fail(label, f"layer {site.layer}: editkit_constrain_update modified the SolveProblem's keys or "
                  "residual in place; build a new problem (problem.restricted(...) or attrs.evolve).")
        if problem is not None:
            _check_matrix(label, f"layer {site.layer}: the restricted problem's keys", problem.keys, (site.d_in, 3))
            _check_matrix(label, f"layer {site.layer}: the restricted problem's residual", problem.residual,
                          (site.d_out, 3))
            if problem.subspace is not None and problem.subspace.ambient != site.d_in:
                _fail(label, f"layer {site.layer}: the problem's row subspace lives in {problem.subspace.ambient} "
                      f"dimensions; rows of Δ have d_in = {site.d_in}.")
        weight = run.weight(site).detach().double()
        noise = torch.randn(*shape, generator=g, dtype=torch.float64)
        typical = noise * (0.5 * float(weight.norm()) / float(noise.norm()))
        cases = {"a typical update": typical, "a small update": typical * 1e-6,
                 "a zero update": torch.zeros(shape, dtype=torch.float64)}
        outputs = {}
        for what, delta in cases.items():
            original = delta.clone()
            result = call(site, DeltaProposal(site=site, delta=delta))
            if not torch.equal(delta, original):
                _fail(label, f"layer {site.layer}: editkit_constrain_update modified Δ in place ({what}); return "
                      "proposal.with_delta(new) and leave the proposal's tensor alone.")
            if result is not None and result.site != site:
                _fail(label, f"layer {site.layer}: the returned DeltaProposal is for {result.site.module}, "
                      f"not {site.module}.")
            out = delta if result is None else result.delta
            _check_matrix(label, f"layer {site.layer}: the constrained Δ for {what}", out, shape, torch.float64)
            outputs[what] = out
        if spec.linear:
            other = torch.randn(*shape, generator=g, dtype=torch.float64) * float(typical.norm()) / float(noise.norm())
            t_other = call(site, DeltaProposal(site=site, delta=other))
            t_other = other if t_other is None else t_other.delta
            t_sum = call(site, DeltaProposal(site=site, delta=typical * 2 + other))
            t_sum = typical * 2 + other if t_sum is None else t_sum.delta
            expected = 2 * outputs["a typical update"] + t_other
            gap = float((t_sum - expected).norm()) / max(float(expected.norm()), 1e-300)
            if gap > 1e-8:
                _fail(label, f"layer {site.layer}: declared linear=True, but T(2Δ + Δ') differs from "
                      f"2T(Δ) + T(Δ') by {gap:.3g} (relative); declare linear=False.")
        accumulated = _accumulated_proposal(site, run)
        if accumulated is not None:
            original = accumulated.delta.clone()
            result = call(site, accumulated)
            if not torch.equal(accumulated.delta, original):
                _fail(label, f"layer {site.layer}: editkit_constrain_update modified an AccumulatedProposal's Δ in "
                      "place.")
            if result is not None:
                _check_matrix(label, f"layer {site.layer}: the constrained accumulated Δ", result.delta, shape,
                              torch.float64)
    _unchanged_weights(label, before, run.model, "calling editkit_constrain_update")


def _accumulated_proposal(site: Site, run: EditRun) -> Any:
    """An ``AccumulatedProposal`` (stage ``batch``) when this kernel has them, else None."""
    try:
        from editkit.updates import AccumulatedProposal
    except ImportError:  # pragma: no cover - older kernels
        return None
    w0 = run.weight(site).detach().double()
    g = torch.Generator().manual_seed(1)
    delta = torch.randn(site.d_out, site.d_in, generator=g, dtype=torch.float64) * 1e-3 * float(w0.norm())
    return AccumulatedProposal(site=site, delta=delta, initial=w0.clone(), stage="batch")


def _editor_contract(session: ConformanceSession) -> None:
    label = session.label
    run = session.build(())
    spec = run.editor_spec
    n_layers = run.layout.n_layers
    layers = [s.layer for s in run.sites]
    if len(set(layers)) != len(layers) or any(not 0 <= layer < n_layers for layer in layers):
        _fail(label, f"editkit_locate returned layers {layers}; each must be unique and in 0..{n_layers - 1}.")
    for site in run.sites:
        try:
            weight = cast(torch.Tensor, run.model.get_submodule(site.module).weight)
        except AttributeError:
            _fail(label, f"located site {site.module!r} is not a module with a weight in this model.")
        if tuple(weight.shape) != site.storage_shape:
            _fail(label, f"located site {site.module}: Site says storage shape {site.storage_shape} but the weight is "
                  f"{tuple(weight.shape)}; build sites with run.layout.site(layer).")
    before = snapshot(run.model)
    requests = tiny_requests(2)
    batch = EditBatch(index=0, requests=requests)
    hook = run.pm.hook
    g = torch.Generator().manual_seed(0)
    targets = _editor_targets(label, run, batch)
    for site in run.sites:
        keys = _call(label, f"layer {site.layer}: editkit_collect_keys", hook.editkit_collect_keys, run=run,
                     batch=batch, site=site)
        _check_matrix(label, f"layer {site.layer}: the keys from editkit_collect_keys", keys, (site.d_in, 2))
        residual = _call(label, f"layer {site.layer}: editkit_compute_residual", hook.editkit_compute_residual,
                         run=run, batch=batch, site=site, keys=keys, targets=targets)
        _check_matrix(label, f"layer {site.layer}: the residual from editkit_compute_residual", residual,
                      (site.d_out, 2))
        problem = SolveProblem(keys=keys.double(), residual=residual.double())
        delta = _call(label, f"layer {site.layer}: editkit_solve", hook.editkit_solve, run=run, batch=batch,
                      site=site, problem=problem)
        _check_matrix(label, f"layer {site.layer}: the update from editkit_solve", delta, (site.d_out, site.d_in))
        if spec.has_solver:
            basis, _ = torch.linalg.qr(torch.randn(site.d_in, site.d_in // 2, generator=g, dtype=torch.float64))
            sub = Subspace(basis=basis, kind="range")
            restricted = problem.restricted(sub, use_background=False, use_past=True, ridge=1e-3)
            delta = _call(label, f"layer {site.layer}: editkit_solve on a restricted problem", hook.editkit_solve,
                          run=run, batch=batch, site=site, problem=restricted)
            _check_matrix(label, f"layer {site.layer}: the update from editkit_solve on a restricted problem", delta,
                          (site.d_out, site.d_in))
            delta = delta.double()
            norm = float(delta.norm())
            leak = float((delta - sub.project_rows(delta)).norm()) / norm if norm else 0.0
            if leak > 1e-8:
                _fail(label, f"layer {site.layer}: editkit_solve ignored the problem's row subspace: "
                      f"‖Δ − ΔP‖/‖Δ‖ = {leak:.3g}. With problem.subspace set, Δ must satisfy Δ = ΔP (solve in the "
                      "subspace), or declare has_solver=False so constraints project instead.")
    _unchanged_weights(label, before, run.model, "calling the editor's stage hooks")


def _editor_targets(label: str, run: EditRun, batch: EditBatch) -> TargetProposal | None:
    """The editor's ``editkit_compute_targets`` for ``batch``, checked against its spec's ``computes_targets``."""
    implemented = run.editor_spec.computes_targets
    result = _call(label, "editkit_compute_targets", _only(run, run.editor, "editkit_compute_targets"),
                   run=run, batch=batch)  # firstresult: one value, None when not implemented
    found = [result] if result is not None else []
    if not implemented:
        if found:
            _fail(label, "editkit_compute_targets returns target values but the EditorSpec says computes_targets="
                  "False; declare computes_targets=True so constraints on target values (nas) can run with it.")
        return None
    if not found or not isinstance(found[0], TargetProposal):
        _fail(label, "the EditorSpec says computes_targets=True but editkit_compute_targets returned "
              f"{found[0] if found else None!r}, not a TargetProposal.")
    targets: TargetProposal = found[0]
    u, width = len(batch.requests), run.sites[-1].d_out
    for what in ("initial", "target", "values"):
        _check_matrix(label, f"the TargetProposal's {what}", getattr(targets, what), (u, width))
    return targets


def _targets_contract(label: str, run: EditRun, call: Callable[[Site, Any], Any]) -> None:
    """A constraint on target values: offered the editor's ``TargetProposal`` of two requests, it returns one of the
    same shape, finite, without modifying the given tensors."""
    targets = run.targets_for(tiny_requests(2))
    kept = (targets.initial.clone(), targets.target.clone(), targets.values.clone())
    result = call(targets.site, targets)
    if not all(torch.equal(a, b) for a, b in zip(kept, (targets.initial, targets.target, targets.values))):
        _fail(label, "editkit_constrain_update modified the TargetProposal's tensors in place; return "
              "proposal.with_target(new).")
    if result is None:
        _fail(label, "declares needs_targets=True but left the TargetProposal unchanged (returned None).")
    _check_matrix(label, "the constrained targets", result.target, tuple(targets.target.shape))
    if result.skipped and len(result.skipped) != targets.target.shape[0]:
        _fail(label, f"the constrained targets flag {len(result.skipped)} requests as skipped; there are "
              f"{targets.target.shape[0]}.")


def check_stage_contract(session: ConformanceSession) -> None:
    """The stage hooks, called directly, honour shapes, dtypes, finiteness and purity."""
    try:
        if session.subject.kind == "constraint":
            _constraint_contract(session)
        else:
            _editor_contract(session)
    except ConformanceFailure:
        raise
    except Exception as exc:
        _fail(session.label, f"setting up a run failed: {describe_exception(exc)}")


# --------------------------------------------------------------------------- full runs


def check_written_update(session: ConformanceSession) -> None:
    """A full run succeeds; the written updates are finite, of the weight's dtype, and keep the invariants."""
    subject, label = session.subject, session.label
    attempt = session.main
    outcome = attempt.require(label, "the written update")
    for site in outcome.sites:
        name = site.weight_name
        if outcome.edited[name].dtype != outcome.initial[name].dtype:
            _fail(label, f"layer {site.layer}: the weight's dtype changed from {outcome.initial[name].dtype} to "
                  f"{outcome.edited[name].dtype}.")
        if not torch.isfinite(outcome.edited[name]).all():
            _fail(label, f"layer {site.layer}: the written weight has non-finite entries.")
    for report in attempt.reports:
        for layer, notes in report["layers"].items():
            figures = notes.get(f"{subject.name}.invariant")
            if isinstance(figures, dict) and not figures.get("holds", True):
                _fail(label, f"batch {report['index']}, layer {layer}: its own measured invariant does not hold on the "
                      f"written update: {figures}.")
    if subject.kind == "editor":
        if all(float(d.abs().max()) == 0.0 for d in outcome.written.values()):
            _fail(label, "the run wrote nothing at any located site.")
        rose = sum(a.new_logprob > b.new_logprob for a, b in zip(outcome.after, outcome.before))
        if rose < subject.min_efficacy * len(outcome.requests):
            _fail(label, f"raised the target log-prob of only {rose} of {len(outcome.requests)} requests (needs "
                  f"{subject.min_efficacy:.0%}).")


def check_untouched_outside_sites(session: ConformanceSession) -> None:
    """No parameter or buffer outside the located sites changes, bit for bit."""
    outcome = session.main.require(session.label, "the weights outside the sites")
    sites = {s.weight_name for s in outcome.sites}
    changed = differences(outcome.initial, outcome.edited, [n for n in outcome.initial if n not in sites])
    if changed:
        _fail(session.label, f"the run changed weights outside the located sites ({', '.join(sorted(sites))}): "
              f"{'; '.join(changed)}. Only editkit_apply writes, and only the site it is given.")


def check_undo_exact(session: ConformanceSession) -> None:
    """``undo_last`` over every batch restores every weight bit-exactly."""
    outcome = session.main.require(session.label, "undo")
    try:
        outcome.run.undo_last(len(outcome.run.undo_log))
    except Exception as exc:
        _fail(session.label, f"undo_last raised {describe_exception(exc)}")
    changed = differences(outcome.initial, snapshot(outcome.run.model), outcome.initial)
    if changed:
        _fail(session.label, f"undo_last did not restore the model bit-exactly: {'; '.join(changed)}. editkit_apply "
              "must return an UndoRecord holding the exact previous storage values.")


def check_seed_determinism(session: ConformanceSession) -> None:
    """Two runs with the same seed on the same starting model write bit-identical updates."""
    first = session.main.require(session.label, "determinism")
    second = session.again.require(session.label, "determinism")
    changed = differences(first.edited, second.edited, first.edited)
    if changed:
        _fail(session.label, f"two runs with seed {first.run.config.seed} on the same model wrote different "
              f"weights: {'; '.join(changed)}. Draw randomness from run.generator and keep state on the per-run "
              "stage object, not in module globals.")


def _leaves_nullspace(session: ConformanceSession, attempt: RunAttempt, label: str) -> str | None:
    """Why the written update of ``attempt`` is not in the null-space constraint's subspace, or None."""
    outcome = attempt.require(label, "composition with the null-space constraint")
    nullspace: Any = next(p for spec, p in outcome.run.constraints if spec.name == "nullspace")
    for site in outcome.sites:
        sub = nullspace.subspace(outcome.run, site)
        if not 0 < sub.dim < sub.ambient:
            raise ConformanceSkip(f"layer {site.layer}: the null space has {sub.dim} of {sub.ambient} dimensions")
        problem = nullspace_violation(outcome.run, nullspace, site, outcome.written[site.module],
                                      outcome.initial[site.weight_name], session.subject.nullspace_tol,
                                      writes=len(outcome.batch_written))
        if problem:
            return problem
    return None


def check_composes_with_nullspace(session: ConformanceSession) -> None:
    """With ``nullspace`` in the run the written update stays in its subspace: ``‖Δ − ΔP‖/‖Δ‖`` small.

    A constraint is run as ``--constraint <it> --constraint nullspace`` and, unless the subject says it
    does not commute with the projection (``commutes_with_nullspace=False``), also in the reverse order,
    where nothing re-projects after it. An editor is run with ``--constraint nullspace`` and must not
    need the null-space constraint to re-project its solve.
    """
    subject = session.subject
    if subject.name == "nullspace":
        raise ConformanceSkip("the subject is the null-space constraint itself")
    catalog = subject.host().catalog
    spec = catalog.get(subject.catalog_kind, subject.name)
    implied = [catalog.get("constraints", c) for c in getattr(spec, "implied_constraints", ())]
    if any("nullspace" in s.conflicts for s in (spec, *implied)):
        _refused_with_nullspace(session)
        return
    attempt = session.with_nullspace
    label = f"{session.label}, run as `{attempt.command}`"
    problem = _leaves_nullspace(session, attempt, label)
    if problem:
        hint = ("its transform must keep rows of Δ inside the subspace, or act on the SolveProblem instead"
                if subject.kind == "constraint" else "its solve must honour problem.subspace")
        _fail(label, f"{problem}; {hint}.")
    if subject.kind == "editor":
        leaks = [(report["index"], layer, notes["nullspace.reprojected"]) for report in attempt.reports
                 for layer, notes in report["layers"].items() if "nullspace.reprojected" in notes]
        if leaks:
            batch, layer, leak = leaks[0]
            _fail(label, f"batch {batch}, layer {layer}: the null-space constraint had to re-project the solved "
                  f"update (it left the subspace by ‖Δ − ΔP‖/‖Δ‖ = {leak:.3g}); with problem.subspace set, "
                  "editkit_solve must return Δ = ΔP (or declare has_solver=False).")
        return
    if not subject.commutes_with_nullspace:
        return
    reverse = session.attempt("nullspace-first", ("nullspace", subject.name))
    label = f"{session.label}, run as `{reverse.command}`"
    problem = _leaves_nullspace(session, reverse, label)
    if problem:
        _fail(label, f"{problem}; its transform of Δ does not commute with Δ ↦ ΔP. If that is intended, pass "
              "commutes_with_nullspace=False and tell users to order it before nullspace.")


def _refused_with_nullspace(session: ConformanceSession) -> None:
    """A plugin that declares it cannot run with ``nullspace`` is refused with a :class:`UsageError` before any
    work, naming both and saying why."""
    label = f"{session.label}, run as `{session.command(session.constraints('nullspace'))}`"
    try:
        session.build(session.constraints("nullspace"))
    except UsageError as exc:
        if "nullspace" not in str(exc) or "cannot run together" not in str(exc):
            _fail(label, f"was refused, but the message does not name both methods: {exc}")
        return
    except Exception as exc:
        _fail(label, f"declares a conflict with nullspace but failed with {describe_exception(exc)} instead of a "
              "UsageError before any work.")
    _fail(label, "declares a conflict with nullspace, yet the run was built; the kernel should refuse it.")


def check_resume_exact(session: ConformanceSession) -> None:
    """A run that replays its first batches from their journal artifacts (weights, Cp, RNG and the plugins' own
    state, ``editkit_save_state`` / ``editkit_load_state``) and edits the next writes bit-identical weights, and
    its plugins save the same state, as a run that never stopped."""
    label = session.label
    constraints = session.constraints()
    requests = tiny_requests(6)
    batches = [requests[i : i + 2] for i in range(0, 6, 2)]
    try:
        straight = session.build(constraints)
        journal: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]] = []
        run_state: dict[str, Any] = {}
        for chunk in batches:
            straight.edit(chunk)
            if not journal:  # the journal's manifest keeps run.state as it is after the first batch
                run_state = json.loads(json.dumps(straight.state))
            deltas, state = straight.batch_artifacts()
            journal.append((deltas, state, straight.reports[-1].to_json()))
        resumed = session.build(constraints)
        resumed.state.update(run_state)
        for deltas, state, report in journal[:-1]:
            resumed.replay(deltas, state, report)
        resumed.edit(batches[-1])
    except Exception as exc:
        _fail(label, f"editing or replaying three batches failed: {describe_exception(exc)}")
    changed = differences(snapshot(straight.model), snapshot(resumed.model), snapshot(straight.model))
    if changed:
        _fail(label, f"a run resumed after two batches wrote other weights in the third than one that never stopped "
              f"({'; '.join(changed)}): save in editkit_save_state everything the next batch depends on and restore "
              "it exactly in editkit_load_state.")
    first, second = straight.plugin_states.batches[-1], resumed.plugin_states.batches[-1]
    for name in sorted(set(first) | set(second)):
        a, b = first.get(name, {}), second.get(name, {})
        if set(a) != set(b) or any(not torch.equal(a[k], b[k]) for k in a):
            _fail(label, f"{name}: after the third batch the resumed run's saved state differs from the straight "
                  f"run's ({sorted(a)} vs {sorted(b)}).")


def _numeric(field: attrs.Attribute) -> bool:
    default = field.default
    return isinstance(default, int | float) and not isinstance(default, bool)


def check_bad_hyperparameters(session: ConformanceSession) -> None:
    """Bad ``--set`` values fail with :class:`~editkit.errors.UsageError` naming the field, before any edit."""
    subject, label = session.subject, session.subject.label
    spec = subject.host().catalog.get(subject.catalog_kind, subject.name)
    cases: list[tuple[str, str]] = [("no_such_hparam", "1")]
    cases += [(f.name, "not-a-number") for f in attrs.fields(spec.hparams) if _numeric(f)]
    cases += [(field, value) for field, values in subject.invalid_hparams.items() for value in values]
    constraints = session.constraints()
    for field, value in cases:
        key = f"{subject.name}.{field}"
        try:
            session.build(constraints, {key: value})
        except UsageError as exc:
            if not re.search(rf"\b{re.escape(field)}\b", str(exc)):
                _fail(label, f"--set {key}={value} raised a UsageError that does not name {field!r}: {exc}")
            continue
        except Exception as exc:
            _fail(label, f"--set {key}={value} raised {describe_exception(exc)} instead of editkit.errors.UsageError "
                  f"naming {field!r}; validate it in {spec.hparams.__name__} (attrs validator raising ValueError).")
        _fail(label, f"--set {key}={value} was accepted; it must fail with a UsageError naming {field!r} "
              f"(add a validator to {spec.hparams.__name__}.{field}).")


CHECKS: dict[str, Callable[[ConformanceSession], None]] = {
    "registration": check_registration,
    "light_import": check_light_import,
    "stage_contract": check_stage_contract,
    "written_update": check_written_update,
    "untouched_outside_sites": check_untouched_outside_sites,
    "undo_exact": check_undo_exact,
    "seed_determinism": check_seed_determinism,
    "composes_with_nullspace": check_composes_with_nullspace,
    "resume_exact": check_resume_exact,
    "bad_hyperparameters": check_bad_hyperparameters,
}
"""Every check by name, in the order :func:`run_conformance` runs them."""

FAMILY_FREE = ("registration", "light_import", "bad_hyperparameters")
"""Checks that do not depend on the model family (run on the first one only)."""


# --------------------------------------------------------------------------- programmatic use


@attrs.frozen(kw_only=True)
class CheckResult:
    """One check on one family: ``status`` is ``passed``, ``failed`` or ``skipped``; ``message`` says why."""

    check: str
    family: str
    status: Literal["passed", "failed", "skipped"]
    message: str = ""


@attrs.frozen(kw_only=True)
class ConformanceReport:
    """The results of :func:`run_conformance`."""

    subject: ConformanceSubject
    results: tuple[CheckResult, ...] = attrs.field(converter=to_tuple)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.status == "failed")

    def message(self, check: str) -> str:
        """The failure (or skip) message of ``check`` ('' when it passed everywhere)."""
        return "\n".join(r.message for r in self.results if r.check == check and r.message)

    def assert_ok(self) -> None:
        if self.failures:
            raise ConformanceFailure("\n".join(f"[{r.check}] {r.message}" for r in self.failures))


def run_check(name: str, session: ConformanceSession) -> CheckResult:
    """Run one check of :data:`CHECKS`, catching its failure or skip into a :class:`CheckResult`."""
    try:
        CHECKS[name](session)
    except ConformanceFailure as exc:
        return CheckResult(check=name, family=session.family, status="failed", message=str(exc))
    except ConformanceSkip as exc:
        return CheckResult(check=name, family=session.family, status="skipped", message=str(exc))
    return CheckResult(check=name, family=session.family, status="passed")


def run_conformance(subject: ConformanceSubject, *, checks: Iterable[str] | None = None,
                    families: Sequence[str] | None = None) -> ConformanceReport:
    """Run ``checks`` (default: all) on ``families`` (default: the subject's) and report, without pytest."""
    names = list(checks) if checks is not None else list(CHECKS)
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown conformance checks {unknown}; known: {', '.join(CHECKS)}")
    results: list[CheckResult] = []
    for i, family in enumerate(families or subject.families):
        session = ConformanceSession(subject=subject, family=family)
        results.extend(run_check(n, session) for n in names if i == 0 or n not in FAMILY_FREE)
    return ConformanceReport(subject=subject, results=results)


# --------------------------------------------------------------------------- pytest


def _run_in_pytest(name: str, session: ConformanceSession) -> None:
    """Run a check as a pytest test: a failure is reported by its message alone, a skip as a skip."""
    __tracebackhide__ = True
    result = run_check(name, session)
    if result.status == "skipped":
        pytest.skip(result.message)
    if result.status == "failed":
        pytest.fail(f"[{name}] {result.message}", pytrace=False)


def make_conformance_tests(
    *,
    plugin: Any,
    editor: str | None = None,
    constraint: str | None = None,
    families: Sequence[str] = ("gpt2", "llama"),
    overrides: Mapping[str, str] | None = None,
    invalid_hparams: Mapping[str, Sequence[str] | str] | None = None,
    min_efficacy: float = 0.5,
    nullspace_tol: float = 1e-6,
    commutes_with_nullspace: bool = True,
) -> type:
    """A pytest test class checking ``constraint`` (or ``editor``) registered by ``plugin``.

    Assign it to a module-level name starting with ``Test``::

        TestConformance = make_conformance_tests(plugin=my_plugin, constraint="myconstraint")

    The checks that run edits are parametrised over ``families`` and share the runs of a family (class
    scope). The other arguments are those of :class:`ConformanceSubject`.
    """
    if editor is None and constraint is None:
        raise ValueError("make_conformance_tests: give constraint=NAME or editor=NAME")
    subject = ConformanceSubject(plugins=plugin, editor=editor or "memit", constraint=constraint,
                                 families=families, overrides=overrides or {}, invalid_hparams=invalid_hparams,
                                 min_efficacy=min_efficacy, nullspace_tol=nullspace_tol,
                                 commutes_with_nullspace=commutes_with_nullspace)

    class Conformance:
        """Hook-contract conformance of one editkit plugin (generated by make_conformance_tests)."""

        conformance_subject = subject

        @pytest.fixture(scope="class")
        @classmethod
        def conformance_any_family(cls) -> ConformanceSession:
            return ConformanceSession(subject=subject, family=subject.families[0])

        @pytest.fixture(scope="class", params=subject.families)
        @classmethod
        def conformance_session(cls, request: pytest.FixtureRequest) -> ConformanceSession:
            return ConformanceSession(subject=subject, family=request.param)

        def test_registration(self, conformance_any_family: ConformanceSession) -> None:
            _run_in_pytest("registration", conformance_any_family)

        def test_light_import(self, conformance_any_family: ConformanceSession) -> None:
            _run_in_pytest("light_import", conformance_any_family)

        def test_bad_hyperparameters(self, conformance_any_family: ConformanceSession) -> None:
            _run_in_pytest("bad_hyperparameters", conformance_any_family)

        def test_stage_contract(self, conformance_session: ConformanceSession) -> None:
            _run_in_pytest("stage_contract", conformance_session)

        def test_written_update(self, conformance_session: ConformanceSession) -> None:
            _run_in_pytest("written_update", conformance_session)

        def test_untouched_outside_sites(self, conformance_session: ConformanceSession) -> None:
            _run_in_pytest("untouched_outside_sites", conformance_session)

        def test_seed_determinism(self, conformance_session: ConformanceSession) -> None:
            _run_in_pytest("seed_determinism", conformance_session)

        def test_composes_with_nullspace(self, conformance_session: ConformanceSession) -> None:
            _run_in_pytest("composes_with_nullspace", conformance_session)

        def test_undo_exact(self, conformance_session: ConformanceSession) -> None:
            _run_in_pytest("undo_exact", conformance_session)

        def test_resume_exact(self, conformance_session: ConformanceSession) -> None:
            _run_in_pytest("resume_exact", conformance_session)

    words = re.split(r"[^0-9a-zA-Z]+", subject.name)
    Conformance.__name__ = Conformance.__qualname__ = "Test" + "".join(w.capitalize() for w in words) + "Conformance"
    return Conformance


__all__ = [
    "CHECKS",
    "CheckResult",
    "ConformanceFailure",
    "ConformanceReport",
    "ConformanceSession",
    "ConformanceSkip",
    "ConformanceSubject",
    "make_conformance_tests",
    "run_conformance",
]
