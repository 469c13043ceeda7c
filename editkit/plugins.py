"""Plugin discovery: one :class:`PluginHost` per run or command, never a module global.

Plugins are found through the ``editkit`` entry-point group, first-party ones included.
``EDITKIT_DISABLE_PLUGINS`` (comma list of entry-point names) blocks plugins. A plugin that
fails to import, or whose catalog hooks raise (e.g. it registers a name another plugin already
registered), is recorded with its error and unregistered — none of its entries are kept — and the
others still load; the CLI prints one warning naming it. Importing a plugin
must not import torch (plugins import heavy modules inside their hooks), so listing plugins
stays fast.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import traceback
from collections.abc import Iterable
from typing import Any

import attrs
import pluggy

from editkit import hookspecs
from editkit.catalog import Catalog
from editkit.markers import ENTRY_POINT_GROUP, PROJECT_NAME

DISABLE_ENV = "EDITKIT_DISABLE_PLUGINS"


@attrs.frozen(kw_only=True)
class PluginInfo:
    """What ``editkit plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    provides: dict[str, list[str]] = attrs.field(eq=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": list(self.hooks),
            "provides": self.provides,
        }


@attrs.frozen(kw_only=True)
class PluginFailure:
    """A plugin that could not be used: ``phase`` is ``"import"`` or ``"registration"``."""

    name: str
    entry_point: str
    error: str
    distribution: str | None = None
    phase: str = "import"

    def describe(self) -> str:
        """One line for a warning: which plugin, from which distribution, what failed, how to silence it."""
        origin = f" from {self.distribution}" if self.distribution else ""
        action = "failed to load" if self.phase == "import" else "failed to register its entries"
        return (f"plugin {self.name!r}{origin} ({self.entry_point}) {action}: {self.error}; it is disabled "
                f"(set {DISABLE_ENV}={self.name} to skip it)")


def blocked_from_env(environ: dict[str, str] | None = None) -> set[str]:
    raw = (environ if environ is not None else os.environ).get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


class PluginHost:
    """A discovery plugin manager, its catalog, and what failed to load."""

    def __init__(
        self,
        *,
        entry_points: bool = True,
        plugins: Iterable[tuple[str, object]] = (),
        blocked: Iterable[str] | None = None,
    ) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self._dist: dict[str, tuple[str | None, str | None]] = {}
        self._entry_points: dict[str, str] = {}
        self.blocked = set(blocked_from_env() if blocked is None else blocked)
        for name in self.blocked:
            self.pm.set_blocked(name)
        if entry_points:
            self._load_entry_points()
        for name, plugin in plugins:
            if name not in self.blocked:
                self.pm.register(plugin, name=name)
                self._dist.setdefault(name, (None, None))
        self.pm.check_pending()
        self.catalog = self._build_catalog()

    def _load_entry_points(self) -> None:
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in self.blocked or self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not take the others down
                dist = getattr(ep, "dist", None)
                self.failures.append(PluginFailure(name=ep.name, entry_point=ep.value, error=_one_line(exc),
                                                   distribution=dist.name if dist else None))
                continue
            dist = getattr(ep, "dist", None)
            self._dist[ep.name] = (dist.name if dist else None, dist.version if dist else None)
            self._entry_points[ep.name] = ep.value

    def _build_catalog(self) -> Catalog:
        """Each plugin's catalog hooks, one plugin at a time (first-party plugins first, then by name).

        A plugin's entries are staged and kept only if all its catalog hooks succeed; a plugin whose
        hooks raise is unregistered and recorded in :attr:`failures`.
        """
        catalog = Catalog()
        named = [(n, p) for n, p in self.pm.list_name_plugin() if p is not None]
        order = sorted(named, key=lambda np: (self._dist.get(np[0], (None, None))[0] != PROJECT_NAME, np[0]))
        for name, plugin in order:
            staged = catalog.staging()
            try:
                for hook_name in hookspecs.CATALOG_HOOKS:
                    kind = hook_name.removeprefix("editkit_register_")
                    others = [p for n, p in named if n != name]
                    single = self.pm.subset_hook_caller(hook_name, remove_plugins=others)
                    single(register=staged.register_callback(kind, name))
                catalog.merge(staged)
            except Exception as exc:  # one faulty plugin must not break every command
                self.pm.unregister(plugin)
                dist = self._dist.pop(name, (None, None))[0]
                self.failures.append(PluginFailure(
                    name=name, entry_point=self._entry_points.get(name, getattr(plugin, "__name__", name)),
                    error=_one_line(exc), distribution=dist, phase="registration"))
        return catalog

    def info(self) -> list[PluginInfo]:
        out = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda np: np[0]):
            if plugin is None:
                continue
            callers = self.pm.get_hookcallers(plugin) or []
            dist, version = self._dist.get(name, (None, None))
            out.append(
                PluginInfo(
                    name=name,
                    module=getattr(plugin, "__name__", type(plugin).__name__),
                    distribution=dist,
                    version=version,
                    hooks=tuple(sorted(c.name for c in callers)),
                    provides=self.catalog.provided_by(name),
                )
            )
        return out


def _one_line(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip().replace("\n", " ")
