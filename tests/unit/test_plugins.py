"""Plugin discovery: entry points, a throwaway third-party package, blocking, broken plugins."""

from __future__ import annotations

import importlib.metadata as md
import sys
import textwrap

import pytest

from editkit.plugins import PluginHost


def test_first_party_plugins_come_through_entry_points():
    host = PluginHost()
    names = {i.name: i for i in host.info()}
    assert {"memit", "nullspace", "architectures"} <= set(names)
    assert names["memit"].distribution == "editkit"
    assert names["memit"].provides == {"editors": ["memit"]}
    assert "editkit_register_editors" in names["memit"].hooks
    assert host.catalog.providers[("constraints", "nullspace")] == "nullspace"


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    """A real installed-looking distribution (dist-info with entry_points.txt) on sys.path."""
    pkg = tmp_path / "editkit_demo_thirdparty"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        import attrs
        from editkit import ConstraintSpec, hookimpl

        @attrs.frozen
        class H:
            scale: float = 1.0

        class Stages:
            def __init__(self, hparams):
                self.hparams = hparams

            @hookimpl
            def editkit_constrain_update(self, run, site, proposal):
                return None

        @hookimpl
        def editkit_register_constraints(register):
            register(ConstraintSpec(name="noop3p", summary="does nothing", factory=Stages, hparams=H,
                                    invariant="none", linear=True))
    '''))
    dist = tmp_path / "editkit_demo_thirdparty-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: editkit-demo-thirdparty\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[editkit]\nnoop3p = editkit_demo_thirdparty\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "noop3p"
    sys.modules.pop("editkit_demo_thirdparty", None)


def test_third_party_package_is_discovered_and_can_be_blocked(third_party, monkeypatch):
    host = PluginHost()
    info = {i.name: i for i in host.info()}[third_party]
    assert info.distribution == "editkit-demo-thirdparty" and info.version == "1.2.3"
    assert info.provides == {"constraints": ["noop3p"]}
    monkeypatch.setenv("EDITKIT_DISABLE_PLUGINS", f" {third_party} , nullspace")
    blocked = PluginHost()
    names = {i.name for i in blocked.info()}
    assert third_party not in names and "nullspace" not in names and "memit" in names
    assert "noop3p" not in blocked.catalog.names("constraints")


def test_a_broken_plugin_is_reported_and_the_others_load(monkeypatch):
    real = md.entry_points

    def with_broken(**kwargs):
        eps = list(real(**kwargs))
        if kwargs.get("group") == "editkit":
            eps.append(md.EntryPoint(name="broken", value="editkit_no_such_module_xyz", group="editkit"))
        return eps

    monkeypatch.setattr("editkit.plugins.md.entry_points", with_broken)
    host = PluginHost()
    assert [f.name for f in host.failures] == ["broken"]
    assert "editkit_no_such_module_xyz" in host.failures[0].error
    assert "memit" in host.catalog.names("editors")


def test_duplicate_registration_disables_that_plugin_and_names_both():
    from editkit_memit import EDITOR

    from editkit import ConstraintSpec, hookimpl

    class Copy:
        @hookimpl
        def editkit_register_constraints(self, register):
            register(ConstraintSpec(name="copy-extra", summary="s", factory=lambda h: object(), hparams=object,
                                    invariant="none", linear=True))

        @hookimpl
        def editkit_register_editors(self, register):
            register(EDITOR)

    host = PluginHost(plugins=[("copy", Copy())])
    [failure] = host.failures
    assert failure.name == "copy" and failure.phase == "registration"
    assert "registered twice: by 'memit' and by 'copy'" in failure.error
    assert "EDITKIT_DISABLE_PLUGINS=copy" in failure.describe()
    # the first-party editor is kept, none of the faulty plugin's entries are, and it is unregistered
    assert host.catalog.providers[("editors", "memit")] == "memit"
    assert "copy-extra" not in host.catalog.names("constraints")
    assert host.pm.get_plugin("copy") is None
    assert "memit" in host.catalog.names("editors") and "nullspace" in host.catalog.names("constraints")


def test_a_registration_hook_that_raises_is_reported_and_the_others_load():
    from editkit import hookimpl

    class Faulty:
        @hookimpl
        def editkit_register_metrics(self, register):
            raise RuntimeError("cannot find my data file")

    host = PluginHost(plugins=[("faulty", Faulty())])
    assert [(f.name, f.phase) for f in host.failures] == [("faulty", "registration")]
    assert "RuntimeError: cannot find my data file" in host.failures[0].error
    assert "counterfact" in host.catalog.names("metrics")


def test_unknown_names_list_the_available_ones():
    from editkit.errors import UsageError

    host = PluginHost()
    with pytest.raises(UsageError, match="unknown editor 'nope'; available: betaedit, emmet, encore, ft, "
                                         "lyaplock, memit, prune, rect, rome"):
        host.catalog.get("editors", "nope")
