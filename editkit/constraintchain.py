"""A run's constraints in their order: each offered every proposal alone, each measuring what was written.

The run registers every constraint in its own plugin manager; a chain reaches each one alone
(pluggy subset callers), in the user's order (implied constraints last), so that a constraint sees
its predecessors' result. A constraint whose measured invariant does not hold is warned about once
per run (:class:`ConstraintWarning`); every measure is noted per layer in ``result.json``.
"""

from __future__ import annotations

import warnings
from typing import Any

import pluggy

from editkit.catalog import ConstraintSpec
from editkit.errors import EditkitError
from editkit.sites import Site


class ConstraintWarning(UserWarning):
    """A constraint's invariant does not hold on the update actually written."""


class ConstraintChain:
    """``constraints``: ``(spec, plugin)`` pairs in order, registered in ``pm``."""

    def __init__(self, pm: pluggy.PluginManager, constraints: list[tuple[ConstraintSpec, object]]) -> None:
        self.constraints = constraints
        self._constrain = [reaching_only(pm, plugin, "editkit_constrain_update") for _, plugin in constraints]
        self._measure = [reaching_only(pm, plugin, "editkit_measure_update") for _, plugin in constraints]
        self._warned: set[str] = set()

    def names(self) -> list[str]:
        return [spec.name for spec, _ in self.constraints]

    def after(self, name: str) -> list[str]:
        """Names of the constraints that apply after ``name``, in order (empty if ``name`` is not run)."""
        names = self.names()
        return names[names.index(name) + 1 :] if name in names else []

    def constrain(self, run: Any, site: Site, proposal: Any, *, targets: bool = False) -> Any:
        """``proposal`` through every constraint in order; each must return one of the same type (or None).
        With ``targets`` (a ``TargetProposal``) only the constraints whose spec says ``needs_targets`` see it."""
        kind = type(proposal)
        for (spec, _), caller in zip(self.constraints, self._constrain):
            if targets and not spec.needs_targets:
                continue
            results = [r for r in caller(run=run, site=site, proposal=proposal) if r is not None]
            if results:
                if not isinstance(results[0], kind):
                    raise EditkitError(
                        f"constraint {spec.name!r} returned {type(results[0]).__name__} for a {kind.__name__}"
                    )
                proposal = results[0]
        return proposal

    def measure(self, run: Any, site: Site, written: Any) -> None:
        """Each constraint measures its invariant on ``written`` (the update at ``site``, ``[d_out, d_in]``);
        noted as ``<name>.invariant``; warn once per constraint when broken.

        A broken measure may carry ``"way_out"``: in words, the exact way to keep its invariant and the
        later constraints' together (e.g. ``--set nullspace.mode=joint`` for RECT with the null space).
        The warning ends with it; it is not recorded in ``result.json``.
        """
        for (spec, _), caller in zip(self.constraints, self._measure):
            for figures in caller(run=run, site=site, delta=written):
                if not figures:
                    continue
                figures = dict(figures)
                way_out = figures.pop("way_out", None)
                run.note(site, f"{spec.name}.invariant", figures)
                if not figures.get("holds", True) and spec.name not in self._warned:
                    self._warned.add(spec.name)
                    later = self.after(spec.name)
                    warnings.warn(
                        f"constraint {spec.name!r}: its invariant ({spec.invariant}) does not hold on the "
                        f"update written at layer {site.layer} ({figures.get('invariant')} = "
                        f"{figures.get('value'):.3g})" + (f"; a later constraint changed it: {', '.join(later)}"
                                                         if later else "")
                        + (f"; {way_out}" if way_out else ""),
                        ConstraintWarning,
                        stacklevel=3,  # the run's line that asked for the measures
                    )


def reaching_only(pm: pluggy.PluginManager, plugin: object, hook_name: str) -> Any:
    """A caller of ``hook_name`` that reaches ``plugin`` alone."""
    others = [p for _, p in pm.list_name_plugin() if p is not plugin]
    return pm.subset_hook_caller(hook_name, remove_plugins=others)
