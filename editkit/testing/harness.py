"""Run a whole edit in-process and check what it did: the engine behind the pytest fixtures.

* :func:`plugin_host` — an isolated :class:`~editkit.plugins.PluginHost` (no entry points, nothing
  blocked) holding the first-party plugins a run needs plus the plugins under test;
* :func:`run_edit` — ``EditRun`` + batches + ``finish()`` on a model, with settings that make edits
  measurable on tiny random models (:func:`tiny_overrides`);
* :class:`EditOutcome` — snapshots before and after, and ``assert_edited`` / ``assert_preserved`` /
  ``assert_undo_exact``, whose failures say in words what is wrong.

Every matrix here is in math layout, ``W`` ``[d_out, d_in]``, like the hooks.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import torch

from editkit.config import RunConfig
from editkit.converters import to_tuple
from editkit.job.pipeline import EditScore, score_requests
from editkit.plugins import PluginHost
from editkit.requests import EditRequest
from editkit.run import EditRun
from editkit.sites import Site

FIRST_PARTY: tuple[str, ...] = ("architectures", "memit", "nullspace")
"""First-party plugins every test host holds (module ``editkit_<name>``, registered as ``<name>``)."""

TINY_EDITOR_DEFAULTS: dict[str, str] = {
    "layers": "1,2", "v_steps": "20", "v_lr": "0.5", "clamp_norm": "4", "mom2_weight": "1",
}
"""Editor settings for tiny random models (applied to the fields the editor's hyperparameters have)."""

TINY_NULLSPACE_DEFAULTS: dict[str, str] = {"threshold": "0.1", "relative": "true", "l2": "1e-3"}
"""Null-space settings for tiny random models: the keys are small (‖k‖² ~ 1), so the paper's ridge
L2 = 10 and absolute threshold 2e-2 would leave either no null space or no edit."""


# --------------------------------------------------------------------------- plugin hosts


def first_party_plugins() -> list[tuple[str, object]]:
    """``[(name, module)]`` of :data:`FIRST_PARTY` (imported here; importing them loads no torch)."""
    return [(name, importlib.import_module(f"editkit_{name}")) for name in FIRST_PARTY]


def plugin_name(plugin: object) -> str:
    """The name a plugin gets in a test host: a module ``editkit_foo`` is ``foo`` (its usual entry-point
    name); any other object is named after its class."""
    name = getattr(plugin, "__name__", None)
    if isinstance(name, str) and hasattr(plugin, "__file__"):
        return name.rsplit(".", 1)[-1].removeprefix("editkit_")
    return type(plugin).__name__


def plugin_host(*plugins: object | tuple[str, object], first_party: bool = True) -> PluginHost:
    """An isolated discovery host: the first-party plugins (unless ``first_party=False``) and ``plugins``.

    Each plugin is a module or object with ``@editkit.hookimpl`` catalog hooks, or a ``(name, plugin)``
    pair. Installed entry points are not loaded and ``EDITKIT_DISABLE_PLUGINS`` is ignored, so the
    result does not depend on what else is installed.
    """
    named: list[tuple[str, object]] = []
    for item in plugins:
        name, plugin = item if isinstance(item, tuple) else (plugin_name(item), item)
        taken = {n for n, _ in named}
        base, k = name, 2
        while name in taken:
            name, k = f"{base}-{k}", k + 1
        named.append((name, plugin))
    given_names = {n for n, _ in named}
    given_objects = [p for _, p in named]
    base_plugins = [
        (n, p) for n, p in (first_party_plugins() if first_party else [])
        if n not in given_names and all(p is not g for g in given_objects)
    ]
    return PluginHost(entry_points=False, plugins=[*base_plugins, *named], blocked=())


# --------------------------------------------------------------------------- settings


def tiny_overrides(host: PluginHost, editor: str, constraints: Sequence[str],
                   overrides: Mapping[str, str] | None = None, *, layers_given: bool = False) -> dict[str, str]:
    """``--set`` assignments for a tiny run: :data:`TINY_EDITOR_DEFAULTS` for the fields the editor has,
    :data:`TINY_NULLSPACE_DEFAULTS` when ``nullspace`` is in the run, then ``overrides`` on top (a bare or
    qualified key in ``overrides`` replaces the default for that field)."""
    user = dict(overrides or {})
    defaults: dict[str, str] = {}
    editor_fields = {f.name for f in attrs.fields(host.catalog.get("editors", editor).hparams)}
    for field, value in TINY_EDITOR_DEFAULTS.items():
        if field in editor_fields and not (field == "layers" and layers_given):
            defaults[f"{editor}.{field}"] = value
    if "nullspace" in constraints:
        defaults.update({f"nullspace.{k}": v for k, v in TINY_NULLSPACE_DEFAULTS.items()})
    kept = {k: v for k, v in defaults.items() if k not in user and k.split(".", 1)[1] not in user}
    return {**kept, **user}


# --------------------------------------------------------------------------- snapshots


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer, by ``state_dict`` name."""
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def math_layout(site: Site, stored: torch.Tensor) -> torch.Tensor:
    """A site's weight (or difference of weights) from storage to math layout ``[d_out, d_in]``."""
    return site.to_math(stored)


def differences(before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor],
                names: Iterable[str]) -> list[str]:
    """``"name (max |change| x)"`` for each of ``names`` not bit-identical between two snapshots."""
    out = []
    for name in names:
        a, b = before[name], after[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            out.append(f"{name} ({tuple(a.shape)} {a.dtype} became {tuple(b.shape)} {b.dtype})")
        elif not torch.equal(a, b):
            change = (b.double() - a.double()).abs().nan_to_num(nan=float("inf")).max()
            out.append(f"{name} (max |change| {float(change):.3g})")
    return out


def rounding_allowance(weight: torch.Tensor, delta_norm: float) -> float:
    """What storing ``W + Δ`` in the weight's dtype can change in ``‖·‖/‖Δ‖`` terms: ``2·eps·‖W‖/‖Δ‖``."""
    if delta_norm <= 0:
        return 0.0
    return 2 * torch.finfo(weight.dtype).eps * float(weight.double().norm()) / delta_norm


# --------------------------------------------------------------------------- outcome


@attrs.frozen(kw_only=True)
class EditOutcome:
    """What one :func:`run_edit` did.

    ``initial`` / ``edited``: full model snapshots (every parameter and buffer) before the run and
    after the last batch; ``written``: per edited module, ``W_final − W0`` in math layout, float64;
    ``batch_written``: the same per batch; ``before`` / ``after``: per-request scores
    (:func:`editkit.job.pipeline.score_requests`). ``run`` is the live :class:`~editkit.run.EditRun`
    (its model is still edited until :meth:`assert_undo_exact` undoes it).
    """

    run: EditRun = attrs.field(eq=False, repr=False)
    requests: tuple[EditRequest, ...] = attrs.field(converter=to_tuple)
    before: tuple[EditScore, ...] = attrs.field(converter=to_tuple, repr=False)
    after: tuple[EditScore, ...] = attrs.field(converter=to_tuple, repr=False)
    initial: Mapping[str, torch.Tensor] = attrs.field(eq=False, repr=False)
    edited: Mapping[str, torch.Tensor] = attrs.field(eq=False, repr=False)
    batch_written: tuple[Mapping[str, torch.Tensor], ...] = attrs.field(eq=False, repr=False)

    @property
    def sites(self) -> tuple[Site, ...]:
        return self.run.sites

    @property
    def written(self) -> dict[str, torch.Tensor]:
        """``W_final − W0`` per edited module (math layout ``[d_out, d_in]``, float64)."""
        return {s.module: math_layout(s, self.edited[s.weight_name].double() - self.initial[s.weight_name].double())
                for s in self.sites}

    def initial_weight(self, site: Site) -> torch.Tensor:
        """``W0`` of ``site`` in math layout (float64)."""
        return math_layout(site, self.initial[site.weight_name]).double()

    def describe(self) -> str:
        constraints = ", ".join(c.name for c in self.run.constraint_specs) or "no constraint"
        return f"editor {self.run.editor_spec.name!r} with {constraints}"

    # ------------------------------------------------------------------ assertions

    def assert_edited(self, min_rise: float = 0.0) -> None:
        """Every request's ``target_new`` log-prob rose by more than ``min_rise`` (nats, per-token mean)."""
        failed = [
            f"case {r.case_id} ({r.subject!r} → {r.target_new.strip()!r}): {b.new_logprob:.3f} → {a.new_logprob:.3f}"
            for r, b, a in zip(self.requests, self.before, self.after)
            if not a.new_logprob > b.new_logprob + min_rise
        ]
        if failed:
            raise AssertionError(
                f"{self.describe()}: the target log-prob did not rise (by more than {min_rise}) for "
                f"{len(failed)} of {len(self.requests)} requests: " + "; ".join(failed)
            )

    def assert_preserved(self, tol: float = 1e-6) -> None:
        """Nothing outside the located sites changed (bit-exact), and with ``nullspace`` in the run the
        preserved keys are preserved: ``‖Δ − ΔP‖/‖Δ‖ ≤ tol`` (plus float rounding) with ``P`` the run's
        own projector, and the outputs of the preserved keys move no more than ``ΔP = Δ`` allows."""
        site_weights = {s.weight_name for s in self.sites}
        changed = differences(self.initial, self.edited, [n for n in self.initial if n not in site_weights])
        if changed:
            raise AssertionError(
                f"{self.describe()}: weights outside the located sites changed (only "
                f"{', '.join(sorted(site_weights))} may change): " + "; ".join(changed)
            )
        nullspace = next((p for spec, p in self.run.constraints if spec.name == "nullspace"), None)
        if nullspace is None:
            return
        for site in self.sites:
            problem = nullspace_violation(self.run, nullspace, site, self.written[site.module],
                                          self.initial[site.weight_name], tol, writes=len(self.batch_written))
            if problem:
                raise AssertionError(f"{self.describe()}: {problem}")

    def assert_undo_exact(self) -> None:
        """``run.undo_last`` over every batch restores every parameter and buffer bit-exactly."""
        self.run.undo_last(len(self.run.undo_log))
        changed = differences(self.initial, snapshot(self.run.model), self.initial)
        if changed:
            raise AssertionError(
                f"{self.describe()}: undo_last did not restore the model bit-exactly: " + "; ".join(changed)
            )


def nullspace_violation(run: EditRun, nullspace: Any, site: Site, delta: torch.Tensor, weight: torch.Tensor,
                        tol: float, *, writes: int = 1) -> str | None:
    """Why ``delta`` (math layout, float64) is not a null-space update at ``site``, or None.

    Uses the ``nullspace`` stage plugin's own subspace on ``run`` (``nullspace.subspace(run, site)``)
    and C0 from the run's key statistics. ``weight`` is the site's stored weight (its dtype sets the
    rounding allowance, once per write: ``writes`` batches).
    """
    norm = float(delta.norm())
    if norm == 0.0:
        return None
    sub = nullspace.subspace(run, site)
    allowed = tol + writes * rounding_allowance(weight, norm)
    leak = float((delta - sub.project_rows(delta)).norm()) / norm
    if not leak <= allowed:
        return (f"layer {site.layer}: the written update leaves the null space of the preserved keys: "
                f"‖Δ − ΔP‖/‖Δ‖ = {leak:.3g} > {allowed:.3g} (P: {sub.dim} of {sub.ambient} dimensions)")
    c0 = run.require_key_statistics().second_moment(site).double()  # [d_in, d_in]
    p = sub.matrix(torch.float64)
    lam_null = float(torch.linalg.eigvalsh(p @ c0 @ p).max().clamp_min(0.0))
    lam_max = float(torch.linalg.eigvalsh(c0).max().clamp_min(0.0))
    moved = float(torch.trace(delta @ c0 @ delta.T).clamp_min(0.0)) ** 0.5 / norm  # RMS ‖Δk‖ / ‖Δ‖
    bound = (lam_null ** 0.5 + lam_max ** 0.5 * allowed) * (1 + 1e-9) + 1e-12
    if not moved <= bound:
        return (f"layer {site.layer}: the update moves the outputs of the preserved keys by RMS "
                f"{moved:.3g}·‖Δ‖, more than an update inside the null space can ({bound:.3g}·‖Δ‖)")
    return None


# --------------------------------------------------------------------------- running


def build_run(
    *,
    model: torch.nn.Module,
    tokenizer: Any,
    key_statistics: Any = None,
    host: PluginHost | None = None,
    editor: str = "memit",
    constraints: Sequence[str] = (),
    overrides: Mapping[str, str] | None = None,
    seed: int = 0,
    batch_size: int = 100,
    layers: Sequence[int] | None = None,
    constrain_mode: str | None = None,
    tiny_defaults: bool = True,
) -> EditRun:
    """An :class:`~editkit.run.EditRun` on ``model`` (nothing edited yet); the arguments as in :func:`run_edit`."""
    host = host if host is not None else plugin_host()
    constraints = tuple(constraints)
    sets = (tiny_overrides(host, editor, constraints, overrides, layers_given=layers is not None)
            if tiny_defaults else dict(overrides or {}))
    config = RunConfig(editor=editor, constraints=constraints, overrides=sets.items(), seed=seed,  # type: ignore[arg-type]
                       batch_size=batch_size, layers=layers, constrain_mode=constrain_mode)  # type: ignore[arg-type]
    torch.manual_seed(seed)
    return EditRun(model=model, tokenizer=tokenizer, config=config, host=host, key_statistics=key_statistics)


def run_edit(
    *,
    model: torch.nn.Module,
    tokenizer: Any,
    requests: Sequence[EditRequest],
    key_statistics: Any = None,
    host: PluginHost | None = None,
    editor: str = "memit",
    constraints: Sequence[str] = (),
    overrides: Mapping[str, str] | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    layers: Sequence[int] | None = None,
    constrain_mode: str | None = None,
    tiny_defaults: bool = True,
) -> EditOutcome:
    """Edit ``model`` in place: one :class:`~editkit.run.EditRun`, ``requests`` in batches of ``batch_size``
    (default: one batch), then ``run.finish()``.

    ``host`` defaults to :func:`plugin_host` (first-party plugins only). With ``tiny_defaults`` the
    settings of :func:`tiny_overrides` are used under ``overrides``. The global torch RNG is seeded with
    ``seed`` first, as ``editkit run`` does.
    """
    if not requests:
        raise ValueError("run_edit needs at least one request")
    initial = snapshot(model)
    run = build_run(model=model, tokenizer=tokenizer, key_statistics=key_statistics, host=host, editor=editor,
                    constraints=constraints, overrides=overrides, seed=seed, batch_size=batch_size or len(requests),
                    layers=layers, constrain_mode=constrain_mode, tiny_defaults=tiny_defaults)
    before = score_requests(model, tokenizer, requests)
    step = run.config.batch_size
    batch_written: list[dict[str, torch.Tensor]] = []
    for start in range(0, len(requests), step):
        previous = {s.module: run.weight(s).detach().double().clone() for s in run.sites}
        run.edit(requests[start : start + step])
        batch_written.append({s.module: run.weight(s).detach().double() - previous[s.module] for s in run.sites})
    run.finish()
    after = score_requests(model, tokenizer, requests)
    return EditOutcome(run=run, requests=requests, before=before, after=after, initial=initial,
                       edited=snapshot(model), batch_written=tuple(batch_written))
