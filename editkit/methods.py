"""The methods of a run: the editor and constraints its config names, with their hyperparameters resolved.

Resolution order per method (later wins): the hparams class's defaults, the values calibrated for the
model (``config.defaults``, only those exactly one method of the run holds), the editor's ``--preset``,
``--layers`` (editors that take layers), then the user's ``--set``. An editor may imply constraints (RECT
implies its mask); they join the constraints the user gave, after them. Where each value that is not the
class's default came from is :attr:`RunMethods.sources` (:func:`provenance` names the calibrated defaults'
origin). ``editkit run`` offers a dataset's calibrated defaults to the editor only without ``--preset`` (a
preset is complete: :func:`without_editor_defaults`). Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from editkit.catalog import Catalog, ConstraintSpec, EditorSpec
from editkit.config import RunConfig
from editkit.converters import to_tuple
from editkit.errors import UsageError
from editkit.hparams import applicable, build, holder, split_overrides

DEFAULTS = "defaults"
"""The source :attr:`RunMethods.sources` gives a value from ``config.defaults`` (:func:`provenance` names it)."""


@attrs.frozen(kw_only=True)
class RunMethods:
    """``editor_spec`` and ``constraint_specs`` (user order, implied ones last) with their built
    hyperparameters, and where delta-transforming constraints act (``constrain_mode``).

    ``sources``: ``"method.field"`` → ``(source, value)`` for every value not taken from the hparams class's
    defaults; the source is :data:`DEFAULTS` (``config.defaults``), ``"preset NAME"``, ``"--layers"`` or
    ``"--set"``, the value the built hyperparameters hold."""

    editor_spec: EditorSpec
    constraint_specs: tuple[ConstraintSpec, ...] = attrs.field(converter=to_tuple)
    constrain_mode: str
    editor_hparams: Any
    constraint_hparams: dict[str, Any]
    sources: Mapping[str, tuple[str, Any]] = attrs.field(factory=dict)

    @property
    def hparams(self) -> dict[str, Any]:
        """Every method's hyperparameters by name (the editor's under its name when a constraint shares it)."""
        others = {name: h for name, h in self.constraint_hparams.items() if name != self.editor_spec.name}
        return {self.editor_spec.name: self.editor_hparams, **others}

    @classmethod
    def resolve(cls, catalog: Catalog, config: RunConfig) -> RunMethods:
        """The methods ``config`` names in ``catalog``; :class:`UsageError` for an unknown name, a constraint
        given twice, an unknown preset, ``--layers`` for an editor without layers, or a bad ``--set``."""
        editor_spec, constraint_specs = _specs(catalog, config)
        _check_composition(editor_spec, constraint_specs)
        owners = _owners(editor_spec, constraint_specs)
        editor_overrides, *constraint_overrides = split_overrides(dict(config.overrides), owners)
        editor_defaults, *constraint_defaults = split_overrides(applicable(dict(config.defaults), owners), owners)
        sources: dict[str, tuple[str, Any]] = {}
        constraint_hparams = {}
        for spec, defaults, values in zip(constraint_specs, constraint_defaults, constraint_overrides):
            built = build(spec.name, spec.hparams, {**defaults, **values})
            constraint_hparams[spec.name] = built
            _note_sources(sources, spec.name, built, {**dict.fromkeys(defaults, DEFAULTS),
                                                     **dict.fromkeys(values, "--set")})
        editor_hparams, editor_sources = _editor_hparams(editor_spec, config, editor_defaults, editor_overrides)
        _note_sources(sources, editor_spec.name, editor_hparams, editor_sources)
        return cls(editor_spec=editor_spec, constraint_specs=constraint_specs,
                   constrain_mode=config.constrain_mode or editor_spec.default_constrain_mode or "inline",
                   editor_hparams=editor_hparams, constraint_hparams=constraint_hparams,
                   sources=dict(sorted(sources.items())))


def _specs(catalog: Catalog, config: RunConfig) -> tuple[EditorSpec, list[ConstraintSpec]]:
    """The editor and the constraints (the user's, then the editor's implied ones) ``config`` names."""
    editor_spec: EditorSpec = catalog.get("editors", config.editor)
    names = list(config.constraints)
    for implied in editor_spec.implied_constraints:
        if implied not in names:
            names.append(implied)
    constraint_specs = [catalog.get("constraints", n) for n in names]
    if len(set(names)) != len(names):
        raise UsageError(f"a constraint is given twice: {names}")
    return editor_spec, constraint_specs


def _owners(editor: EditorSpec, constraints: list[ConstraintSpec]) -> list[tuple[str, type]]:
    return [(editor.name, editor.hparams)] + [(c.name, c.hparams) for c in constraints]


def _note_sources(sources: dict[str, tuple[str, Any]], owner: str, hparams: Any, fields: Mapping[str, str]) -> None:
    for field, source in fields.items():
        sources[f"{owner}.{field}"] = (source, getattr(hparams, field))


def _editor_hparams(spec: EditorSpec, config: RunConfig, defaults: dict[str, str],
                    overrides: dict[str, str]) -> tuple[Any, dict[str, str]]:
    """The editor's hyperparameters and the source of each field given (see :attr:`RunMethods.sources`)."""
    values: dict[str, Any] = dict(defaults)
    sources = dict.fromkeys(defaults, DEFAULTS)
    if config.preset is not None:
        if config.preset not in spec.presets:
            known = ", ".join(sorted(spec.presets)) or "none"
            raise UsageError(f"editor {spec.name!r} has no preset {config.preset!r}; presets: {known}")
        values.update(spec.presets[config.preset])
        sources.update(dict.fromkeys(spec.presets[config.preset], f"preset {config.preset}"))
    if config.layers is not None:
        if "layers" not in {f.name for f in attrs.fields(spec.hparams)}:
            raise UsageError(f"editor {spec.name!r} takes no --layers")
        values["layers"] = config.layers
        sources["layers"] = "--layers"
    values.update(overrides)
    sources.update(dict.fromkeys(overrides, "--set"))
    return build(spec.name, spec.hparams, values), sources


def without_editor_defaults(catalog: Catalog, config: RunConfig,
                            defaults: Mapping[str, str]) -> dict[str, str]:
    """``defaults`` (``--set`` form) less those that the editor of ``config`` would take: with ``--preset`` the
    preset is complete, so calibrated defaults apply to the constraints' hyperparameters only."""
    editor_spec, constraint_specs = _specs(catalog, config)
    owners = _owners(editor_spec, constraint_specs)
    return {key: value for key, value in defaults.items() if holder(key, owners) != 0}


def provenance(methods: RunMethods, defaults: str) -> dict[str, dict[str, Any]]:
    """``"method.field"`` → ``{"source", "value"}`` (JSON) for every value not from the class's defaults;
    ``defaults`` names where ``config.defaults`` came from (e.g. ``"dataset default (smollm2-facts)"``)."""
    return {key: {"source": defaults if source == DEFAULTS else source,
                  "value": list(value) if isinstance(value, tuple) else value}
            for key, (source, value) in methods.sources.items()}


def provenance_lines(methods: RunMethods, defaults: str) -> list[str]:
    """One line per source (calibrated defaults, preset, ``--layers``, ``--set``) naming the values it gave."""
    rank = {DEFAULTS: 0, "--layers": 2, "--set": 3}  # the order they apply in; a preset is 1
    by_source: dict[str, list[str]] = {}
    for key, (source, value) in sorted(methods.sources.items(), key=lambda item: rank.get(item[1][0], 1)):
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        by_source.setdefault(defaults if source == DEFAULTS else source, []).append(f"{key}={shown}")
    return [f"hyperparameters from {source}: {' '.join(items)}" for source, items in by_source.items()]


def _check_composition(editor: EditorSpec, constraints: list[ConstraintSpec]) -> None:
    """:class:`UsageError` (exit 2, before any work) for a combination that is not meaningful: a constraint on
    target values with an editor that computes none, or two methods that declare a conflict (the reason is
    theirs)."""
    names = [c.name for c in constraints]
    for spec in constraints:
        if spec.needs_targets and not editor.computes_targets:
            raise UsageError(f"constraint {spec.name!r} acts on the target values of each edit, and editor "
                             f"{editor.name!r} computes none; use an editor that optimises target values "
                             "(memit and its family)")
    pairs = [(editor.name, editor.conflicts)] + [(c.name, c.conflicts) for c in constraints]
    present = {editor.name, *names}
    for owner, conflicts in pairs:
        for other, why in conflicts.items():
            if other in present and other != owner:
                raise UsageError(f"{owner!r} and {other!r} cannot run together: {why}")
