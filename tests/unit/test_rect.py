"""RECT: the top-k% relative-change mask against a float64 reference, ties, Conv1D layout, the measure."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from editkit_rect.constraint import RectStages
from editkit_rect.hparams import RectHParams
from editkit_rect.mask import kept_count, rect_mask, relative_change, top_share_mask
from hypothesis import given, settings

from editkit.sites import Site
from editkit.updates import AccumulatedProposal, DeltaProposal


def reference_mask(delta: torch.Tensor, weight: torch.Tensor, k: float, eps: float = 1e-8) -> torch.Tensor:
    """Float64 reference by sorting: keep every entry whose δ is ≥ the ⌈kN/100⌉-th largest δ."""
    d = delta.double().abs() / (weight.double().abs() + eps)
    n = d.numel()
    keep = max(1, math.ceil(round(k * n / 100, 6)))
    threshold = torch.sort(d.flatten(), descending=True).values[keep - 1]
    return d >= threshold


class FakeRun:
    """What RECT needs from a run: the current weight in math layout, a notes sink and the constraint order."""

    def __init__(self, site: Site, stored: torch.Tensor) -> None:
        self.site, self.stored, self.notes = site, stored, {}

    def weight(self, site: Site) -> torch.Tensor:
        return self.stored.T if site.transposed else self.stored

    def note(self, site: Site, key: str, value: object) -> None:
        self.notes[key] = value

    def constraints_after(self, name: str) -> list[str]:
        return []  # RECT alone


@pytest.mark.parametrize("k", [40.0, 20.0, 1.0, 100.0, 33.3])
@pytest.mark.parametrize("shape", [(7, 13), (32, 128)])
def test_mask_matches_float64_reference(k, shape):
    g = torch.Generator().manual_seed(int(k * 10) + shape[0])
    delta = torch.randn(shape, generator=g, dtype=torch.float64)
    weight = torch.randn(shape, generator=g).float()
    mask = rect_mask(delta, weight, k, 1e-8)
    assert torch.equal(mask, reference_mask(delta, weight, k))
    assert int(mask.sum()) == kept_count(delta.numel(), k)  # continuous values: no ties


def test_kept_count_rounds_before_ceiling():
    assert kept_count(10, 40) == 4 and kept_count(10, 70) == 7 and kept_count(10, 41) == 5
    assert kept_count(3, 1) == 1 and kept_count(3, 100) == 3


def test_ties_at_the_threshold_are_all_kept():
    delta = torch.tensor([[4.0, 2.0, 2.0, 2.0, 1.0], [2.0, 0.5, 0.1, 2.0, 3.0]], dtype=torch.float64)
    weight = torch.ones_like(delta)
    mask = rect_mask(delta, weight, 30.0, 0.0)  # keep ⌈3⌉: 4, 3, then the five 2's tie
    assert torch.equal(mask, delta >= 2.0)
    assert int(mask.sum()) == 7 and torch.equal(mask, reference_mask(delta, weight, 30.0, 0.0))


def test_relative_change_uses_the_magnitude_of_w_and_eps():
    delta = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    weight = torch.tensor([[-2.0, 0.0, 4.0]])
    assert torch.allclose(relative_change(delta, weight, 1e-8), torch.tensor([[0.5, 1e8, 0.25]], dtype=torch.float64))


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 6), k=st.floats(0.5, 100.0), seed=st.integers(0, 2**16),
       levels=st.integers(1, 4))
def test_mask_properties(rows, cols, k, seed, levels):
    """Kept entries dominate dropped ones, at least ⌈k%⌉ are kept, and only ties exceed that."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (rows, cols), generator=g).double()  # few levels: many ties
    mask = top_share_mask(scores, k)
    keep = kept_count(scores.numel(), k)
    assert int(mask.sum()) >= keep
    if (~mask).any():
        assert float(scores[mask].min()) > float(scores[~mask].max())
    assert torch.equal(mask, reference_mask(scores, torch.ones_like(scores), k, 0.0))


def test_conv1d_site_uses_the_math_layout_weight():
    """GPT-2 stores Wᵀ [d_in, d_out]; RECT must divide Δ [d_out, d_in] by W, not by the storage."""
    g = torch.Generator().manual_seed(3)
    site = Site(layer=0, module="h.0.mlp.c_proj", block="h.0", d_in=24, d_out=8, transposed=True)
    stored = torch.randn(24, 8, generator=g)  # storage layout
    delta = torch.randn(8, 24, generator=g, dtype=torch.float64)
    stages = RectStages(RectHParams(k=25))
    run = FakeRun(site, stored)
    out = stages.editkit_constrain_update(run=run, site=site, proposal=DeltaProposal(site=site, delta=delta))
    expected = reference_mask(delta, stored.T, 25)
    assert torch.equal(out.delta != 0, expected) and torch.equal(out.delta[expected], delta[expected])
    assert out.notes == ("rect",) and run.notes["rect.kept_share"] == pytest.approx(48 / 192)
    # the measure: the written update within the mask holds; a dense one does not
    ok = stages.editkit_measure_update(run=run, site=site, delta=out.delta)
    assert ok["holds"] and ok["value"] == pytest.approx(48 / 192) and ok["outside_mask"] == 0
    bad = stages.editkit_measure_update(run=run, site=site, delta=delta)
    assert not bad["holds"] and bad["outside_mask"] == 192 - 48 and bad["value"] == 1.0
    stages.editkit_batch_end(run=run, batch=None)
    assert stages.editkit_measure_update(run=run, site=site, delta=delta) is None  # mask released


def test_other_proposals_pass_through():
    site = Site(layer=0, module="m", block="b", d_in=3, d_out=2, transposed=False)
    proposal = AccumulatedProposal(site=site, delta=torch.ones(2, 3), initial=torch.ones(2, 3), stage="final")
    assert RectStages(RectHParams()).editkit_constrain_update(run=None, site=site, proposal=proposal) is None


@pytest.mark.parametrize("bad", [{"k": 0}, {"k": 100.5}, {"eps": 0}])
def test_hparams_are_validated(bad):
    with pytest.raises(ValueError):
        RectHParams(**bad)


def test_defaults_document_both_published_settings():
    assert RectHParams().k == 40.0  # AlphaEdit's MEMIT_rect; the official RECT code's is 20
    assert "k = 20" in (RectHParams.__doc__ or "")


def test_plugins_register_a_constraint_and_an_editor_each_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys, editkit_rect, editkit_prune\n"
            "assert 'torch' not in sys.modules\n"
            "from editkit.plugins import PluginHost\n"
            "host = PluginHost(entry_points=False, plugins=[('memit', __import__('editkit_memit')),\n"
            "                  ('rect', editkit_rect), ('prune', editkit_prune)])\n"
            "print(host.catalog.names('editors'), host.catalog.names('constraints'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['memit', 'prune', 'rect'] ['prune', 'rect']"


@pytest.mark.parametrize("name", ["rect", "prune"])
def test_editors_are_memit_plus_their_constraint(name):
    import importlib

    from editkit_memit import EDITOR as MEMIT
    from editkit_memit.hparams import MemitHParams

    from editkit.errors import EditkitError

    module = importlib.import_module(f"editkit_{name}")
    editor = module.EDITOR
    assert editor.name == name and editor.implied_constraints == (name,)
    assert editor.hparams is MemitHParams and editor.presets == MEMIT.presets and editor.has_solver
    assert type(editor.factory(MemitHParams())).__name__ == "MemitStages"
    with pytest.raises(EditkitError, match="overwrite each other"):
        editor.factory(module.CONSTRAINT.hparams())
    if hasattr(editor, "default_constrain_mode"):  # once the kernel has the field: published behaviour
        assert editor.default_constrain_mode == "posthoc"
