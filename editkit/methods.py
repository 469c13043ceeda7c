"""The methods of a run: the editor and constraints its config names, with their hyperparameters resolved.

Resolution order per method (later wins): the hparams class's defaults, the values calibrated for the
model (``config.defaults``, only those exactly one method of the run holds), the editor's ``--preset``,
``--layers`` (editors that take layers), then the user's ``--set``. An editor may imply constraints (RECT
implies its mask); they join the constraints the user gave, after them. Torch-free.
"""

from __future__ import annotations

from typing import Any

import attrs

from editkit.catalog import Catalog, ConstraintSpec, EditorSpec
from editkit.config import RunConfig
from editkit.errors import UsageError
from editkit.hparams import applicable, build, split_overrides


@attrs.frozen(kw_only=True)
class RunMethods:
    """``editor_spec`` and ``constraint_specs`` (user order, implied ones last) with their built
    hyperparameters, and where delta-transforming constraints act (``constrain_mode``)."""

    editor_spec: EditorSpec
    constraint_specs: tuple[ConstraintSpec, ...] = attrs.field(converter=tuple)
    constrain_mode: str
    editor_hparams: Any
    constraint_hparams: dict[str, Any]

    @property
    def hparams(self) -> dict[str, Any]:
        """Every method's hyperparameters by name (the editor's under its name when a constraint shares it)."""
        others = {name: h for name, h in self.constraint_hparams.items() if name != self.editor_spec.name}
        return {self.editor_spec.name: self.editor_hparams, **others}

    @classmethod
    def resolve(cls, catalog: Catalog, config: RunConfig) -> RunMethods:
        """The methods ``config`` names in ``catalog``; :class:`UsageError` for an unknown name, a constraint
        given twice, an unknown preset, ``--layers`` for an editor without layers, or a bad ``--set``."""
        editor_spec: EditorSpec = catalog.get("editors", config.editor)
        names = list(config.constraints)
        for implied in editor_spec.implied_constraints:
            if implied not in names:
                names.append(implied)
        constraint_specs = [catalog.get("constraints", n) for n in names]
        if len(set(names)) != len(names):
            raise UsageError(f"a constraint is given twice: {names}")
        _check_composition(editor_spec, constraint_specs)
        owners = [(editor_spec.name, editor_spec.hparams)] + [(c.name, c.hparams) for c in constraint_specs]
        editor_overrides, *constraint_overrides = split_overrides(dict(config.overrides), owners)
        editor_defaults, *constraint_defaults = split_overrides(applicable(dict(config.defaults), owners), owners)
        constraint_hparams = {
            spec.name: build(spec.name, spec.hparams, {**defaults, **values})
            for spec, defaults, values in zip(constraint_specs, constraint_defaults, constraint_overrides)
        }
        return cls(editor_spec=editor_spec, constraint_specs=constraint_specs,
                   constrain_mode=config.constrain_mode or editor_spec.default_constrain_mode or "inline",
                   editor_hparams=_editor_hparams(editor_spec, config, editor_defaults, editor_overrides),
                   constraint_hparams=constraint_hparams)


def _editor_hparams(spec: EditorSpec, config: RunConfig, defaults: dict[str, str], overrides: dict[str, str]) -> Any:
    values: dict[str, Any] = dict(defaults)
    if config.preset is not None:
        if config.preset not in spec.presets:
            known = ", ".join(sorted(spec.presets)) or "none"
            raise UsageError(f"editor {spec.name!r} has no preset {config.preset!r}; presets: {known}")
        values.update(spec.presets[config.preset])
    if config.layers is not None:
        if "layers" not in {f.name for f in attrs.fields(spec.hparams)}:
            raise UsageError(f"editor {spec.name!r} takes no --layers")
        values["layers"] = config.layers
    values.update(overrides)
    return build(spec.name, spec.hparams, values)


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
