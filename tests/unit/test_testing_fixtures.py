"""editkit.testing: the opt-in pytest plugin's fixtures, the in-memory key statistics and EditOutcome."""

from __future__ import annotations

import subprocess
import sys

import attrs
import editkit_memit
import pytest
import torch

from editkit import hookimpl
from editkit.layout import resolve_layout
from editkit.testing.tiny import EDIT_FAMILIES

pytest_plugins = ["editkit.testing.fixtures"]


def test_loading_the_plugin_imports_no_torch():
    code = ("import sys, editkit.testing.fixtures\n"
            "print([m for m in ('torch', 'transformers') if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("tiny_family", EDIT_FAMILIES)
def test_an_edit_on_every_family_raises_targets_preserves_the_rest_and_undoes(tiny_family, tiny_model, editkit_run):
    assert tiny_model.config.model_type == tiny_family
    outcome = editkit_run()
    outcome.assert_edited()
    outcome.assert_preserved()
    outcome.assert_undo_exact()


@pytest.mark.parametrize("tiny_model", ["llama"], indirect=True)
def test_nullspace_runs_pass_the_preserved_keys_check_and_a_leak_fails_it(tiny_model, key_stats, editkit_run):
    assert tiny_model.config.model_type == "llama"
    outcome = editkit_run(constraints=["nullspace"], batch_size=2)
    assert key_stats.prepared == [s.module for s in outcome.sites]  # C0 taken before the first edit
    outcome.assert_edited()
    outcome.assert_preserved()
    site = outcome.sites[0]
    leaky = dict(outcome.edited)
    leaky[site.weight_name] = outcome.edited[site.weight_name] + 1e-3  # a constant: not in the null space
    with pytest.raises(AssertionError, match=r"layer 1: the written update leaves the null space .*‖Δ − ΔP‖/‖Δ‖ = "):
        attrs.evolve(outcome, edited=leaky).assert_preserved()
    outcome.assert_undo_exact()


def test_failed_assertions_say_what_is_wrong(editkit_run):
    outcome = editkit_run()
    with pytest.raises(AssertionError, match=r"did not rise \(by more than 0.0\) for 4 of 4 requests: case 0 "):
        attrs.evolve(outcome, after=outcome.before).assert_edited()
    touched = dict(outcome.edited)
    touched["transformer.wte.weight"] = touched["transformer.wte.weight"] + 1.0
    with pytest.raises(AssertionError, match=r"weights outside the located sites changed .*transformer\.wte\.weight "
                                             r"\(max \|change\| 1\)"):
        attrs.evolve(outcome, edited=touched).assert_preserved()
    name = outcome.sites[0].weight_name
    moved = dict(outcome.initial)
    moved[name] = moved[name] + 1.0
    with pytest.raises(AssertionError, match=rf"undo_last did not restore the model bit-exactly: {name} "):
        attrs.evolve(outcome, initial=moved).assert_undo_exact()


def test_key_stats_are_float64_moments_and_their_eigendecomposition(tiny_model, key_stats, plugin_manager):
    site = resolve_layout(tiny_model, plugin_manager().catalog.entries["architectures"]).site(1)
    c0 = key_stats.second_moment(site)
    assert c0.dtype == torch.float64 and tuple(c0.shape) == (site.d_in, site.d_in)
    assert torch.equal(c0, c0.T)
    evals, evecs = key_stats.eigendecomposition(site)
    assert float(evals.min()) > -1e-12
    assert torch.allclose(evecs @ torch.diag(evals) @ evecs.T, c0, atol=1e-12)
    assert key_stats.second_moment(site) is c0  # cached


class _Extra:
    @hookimpl
    def editkit_register_metrics(self, register):
        pass


def test_plugin_manager_is_isolated_from_entry_points_and_the_environment(plugin_manager, monkeypatch):
    monkeypatch.setenv("EDITKIT_DISABLE_PLUGINS", "memit")
    host = plugin_manager()
    assert sorted(name for name, _ in host.pm.list_name_plugin()) == ["architectures", "memit", "nullspace"]
    host = plugin_manager(_Extra(), editkit_memit)  # first-party given again: not registered twice
    assert sorted(name for name, _ in host.pm.list_name_plugin()) == ["_Extra", "architectures", "memit",
                                                                      "nullspace"]
    assert plugin_manager(first_party=False).catalog.names("editors") == []
