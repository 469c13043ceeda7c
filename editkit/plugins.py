"""Plugin discovery: one :class:`PluginHost` per run or command, never a module global.

Plugins are found through the ``editkit`` entry-point group, first-party ones (those of the
``editkit`` distribution) included, and loaded first-party first. ``EDITKIT_DISABLE_PLUGINS`` (comma
list of entry-point names, or ``DISTRIBUTION:NAME`` for one distribution's entry point only) blocks
plugins. A plugin that fails to import, or whose catalog hooks raise (e.g. it registers a name another
plugin already registered), is recorded with its error and unregistered — none of its entries are kept —
and the others still load; the CLI prints one warning naming it. The same holds for an entry point whose
name another distribution's entry point already took (a third-party ``memit`` never replaces the
first-party editor) and for a second entry point of a module already loaded under another name: the
first-party (else the first loaded) one is kept, and the warning names both and how to skip the other.
Importing a plugin must not import torch (plugins import heavy modules inside their hooks), so listing
plugins stays fast.
"""

from __future__ import annotations

import functools
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
    """A plugin that could not be used: ``phase`` is ``"import"``, ``"registration"``, ``"name"`` (another
    distribution's entry point of the same name was kept: ``kept`` describes it) or ``"module"`` (its module
    is already loaded under the entry point ``kept`` describes). ``disable``: the ``EDITKIT_DISABLE_PLUGINS``
    value that skips this one only (default: its name)."""

    name: str
    entry_point: str
    error: str
    distribution: str | None = None
    phase: str = "import"
    version: str | None = None
    kept: str | None = None
    disable: str | None = None

    def describe(self) -> str:
        """One line for a warning: which plugin, from which distribution, what failed, how to silence it."""
        dist = " ".join(p for p in (self.distribution, self.version) if p)
        origin = f" from {dist}" if dist else ""
        skip = f"set {DISABLE_ENV}={self.disable or self.name} to skip it"
        if self.phase == "name":
            return (f"plugin {self.name!r}{origin} ({self.entry_point}) is ignored: {self.kept} has the same "
                    f"entry-point name and is kept ({skip}, or uninstall {self.distribution or 'it'})")
        if self.phase == "module":
            return (f"plugin {self.name!r}{origin} ({self.entry_point}) is ignored: its module is already loaded "
                    f"as {self.kept} ({skip})")
        action = "failed to load" if self.phase == "import" else "failed to register its entries"
        return f"plugin {self.name!r}{origin} ({self.entry_point}) {action}: {self.error}; it is disabled ({skip})"


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
        """Load every entry point, the ``editkit`` distribution's first, then by name and distribution."""
        found = list(md.entry_points(group=ENTRY_POINT_GROUP))
        names = [ep.name for ep in found]
        for ep in sorted(found, key=lambda e: (_origin(e)[0] != PROJECT_NAME, e.name, _origin(e)[0] or "")):
            dist, version = _origin(ep)
            qualified = f"{dist}:{ep.name}" if dist else ep.name
            if ep.name in self.blocked or qualified in self.blocked:
                continue
            # skipping it by name alone would skip the kept one too when another entry point has its name
            disable = qualified if names.count(ep.name) > 1 else ep.name
            failure = functools.partial(PluginFailure, name=ep.name, entry_point=ep.value, distribution=dist,
                                        version=version, disable=disable)
            if ep.name in self._entry_points:  # another distribution's entry point of this name came first
                if (self._dist[ep.name][0], self._entry_points[ep.name]) != (dist, ep.value):  # not listed twice
                    kept = self._described(ep.name)
                    self.failures.append(failure(phase="name", kept=kept,
                                                 error=f"its entry-point name is taken by {kept}, which is kept"))
                continue
            try:
                plugin = ep.load()
                loaded_as = self.pm.get_name(plugin)
                if loaded_as is not None:  # the same module under another entry point
                    kept = self._described(loaded_as)
                    self.failures.append(failure(phase="module", kept=kept,
                                                 error=f"its module is already loaded as {kept}"))
                    continue
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not take the others down
                self.failures.append(failure(error=_one_line(exc)))
                continue
            self._dist[ep.name] = (dist, version)
            self._entry_points[ep.name] = ep.value

    def _described(self, name: str) -> str:
        """``plugin 'memit' (first-party) from editkit 0.1.0 (editkit_memit)``: a loaded entry point, for a warning."""
        dist = " ".join(p for p in self._dist.get(name, (None, None)) if p)
        first = " (first-party)" if self._dist.get(name, (None, None))[0] == PROJECT_NAME else ""
        return f"plugin {name!r}{first} from {dist or 'an unknown distribution'} ({self._entry_points.get(name, '?')})"

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

    def origin(self, kind: str, name: str) -> dict[str, Any] | None:
        """Who provides catalog entry ``name`` of ``kind`` (``"editors"``, ``"constraints"``, ...): ``{"name",
        "plugin", "distribution", "version"}`` (distribution and version None for a plugin registered
        in-process); None when no plugin registered it."""
        plugin = self.catalog.providers.get((kind, name))
        if plugin is None:
            return None
        dist, version = self._dist.get(plugin, (None, None))
        return {"name": name, "plugin": plugin, "distribution": dist, "version": version}

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


def _origin(ep: md.EntryPoint) -> tuple[str | None, str | None]:
    """``(distribution name, version)`` of an entry point (None, None when it has no distribution)."""
    dist = getattr(ep, "dist", None)
    return (dist.name, dist.version) if dist is not None else (None, None)


def _one_line(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip().replace("\n", " ")
