"""Composition and ordering of constraints (which invariant survives which order), measured the way editkit reports it.

Stage objects are driven directly on the section's exact counterexamples, then through the kernel
(``EditRun`` on a tiny GPT-2, Conv1D storage) with a fake editor that writes fixed updates and a
synthetic C0 whose null space is known, so no v* optimisation runs.
"""

from __future__ import annotations

import math
import warnings

import editkit_prune
import editkit_rect
import pytest
import torch
from editkit_nullspace.constraint import NullspaceStages
from editkit_nullspace.hparams import NullspaceHParams
from editkit_nullspace.joint import joint_projection
from editkit_prune.constraint import PruneStages
from editkit_prune.hparams import PruneHParams
from editkit_rect.constraint import RectStages
from editkit_rect.hparams import RectHParams
from editkit_rect.mask import apply_mask, rect_mask

from editkit import EditRun, RunConfig
from editkit.plugins import PluginHost
from editkit.requests import EditRequest
from editkit.run import ConstraintWarning
from editkit.sites import Site
from editkit.testing.fixed import fixed_editor_plugin
from editkit.testing.moments import KnownSpectrum
from editkit.testing.tiny import tiny_model, tiny_tokenizer
from editkit.updates import AccumulatedProposal, DeltaProposal

# --------------------------------------------------------------------------- stage objects, fake run


class FakeRun:
    """Math-layout weights (site not transposed), W0, notes, key statistics: what the stages use."""

    def __init__(self, site: Site, w0: torch.Tensor, moments: KnownSpectrum) -> None:
        self.w0, self.current, self.moments, self.notes = w0.double(), w0.double().clone(), moments, {}
        self.initial_weights = {site.module: self.w0}

    def weight(self, site):
        return self.current

    def note(self, site, key, value):
        self.notes[key] = value

    def require_key_statistics(self):
        return self.moments

    def constraints_after(self, name):
        return []  # the stages are driven one by one here, not as a run's constraint list


def site_of(d_out: int, d_in: int) -> Site:
    return Site(layer=0, module="m", block="b", d_in=d_in, d_out=d_out, transposed=False)


def test_section_11_2a_nullspace_then_rect_breaks_ns_exactly():
    """d_in = 2, K0 = (1, −1)/√2, P = uuᵀ with u = (1, 1)/√2; Δ = [1, 1], W = [1, 10], keep 50%."""
    site = site_of(1, 2)
    u = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64).T / math.sqrt(2)  # columns: u, then K0
    run = FakeRun(site, torch.tensor([[1.0, 10.0]]), KnownSpectrum(u, rank=1))
    ns = NullspaceStages(NullspaceHParams(mode="project"))
    rect = RectStages(RectHParams(k=50))
    delta = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    kept = ns.editkit_constrain_update(run=run, site=site, proposal=DeltaProposal(site=site, delta=delta)).delta
    assert torch.allclose(kept, delta)  # ΔP = Δ
    masked = rect.editkit_constrain_update(run=run, site=site, proposal=DeltaProposal(site=site, delta=delta)).delta
    assert torch.equal(masked, torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    broken = ns.editkit_measure_update(run=run, site=site, delta=masked)
    assert not broken["holds"] and broken["value"] == pytest.approx(math.sqrt(0.5))  # Δ'K0 = 1/√2 ≠ 0
    # (b) RECT then P: [1, 0]P = [½, ½] keeps ΔP = Δ but refills the masked entry
    projected = ns.editkit_constrain_update(run=run, site=site, proposal=DeltaProposal(site=site, delta=masked)).delta
    assert torch.allclose(projected, torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    assert ns.editkit_measure_update(run=run, site=site, delta=projected)["holds"]
    sparsity = rect.editkit_measure_update(run=run, site=site, delta=projected)
    assert not sparsity["holds"] and sparsity["outside_mask"] == 1


@pytest.mark.parametrize("order", ["nullspace-prune", "prune-nullspace"])
def test_section_11_2c_nullspace_and_prune_keep_both_invariants(order):
    g = torch.Generator().manual_seed(7)
    site = site_of(12, 30)
    basis, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))
    w0 = torch.randn(12, 30, generator=g, dtype=torch.float64)
    run = FakeRun(site, w0, KnownSpectrum(basis, rank=10))
    ns = NullspaceStages(NullspaceHParams(mode="project"))
    pr = PruneStages(PruneHParams(mode="every_batch"))
    delta = 20 * torch.randn(12, 30, generator=g, dtype=torch.float64)
    if order == "nullspace-prune":
        delta = ns.editkit_constrain_update(run=run, site=site, proposal=DeltaProposal(site=site, delta=delta)).delta
    acc = pr.editkit_constrain_update(run=run, site=site, proposal=AccumulatedProposal(
        site=site, delta=delta, initial=run.w0, stage="batch"))
    assert run.notes["prune.rescaled"] > 0
    final = acc.delta
    if order == "prune-nullspace":
        final = ns.editkit_constrain_update(run=run, site=site, proposal=DeltaProposal(site=site, delta=final)).delta
    run.current = run.w0 + final
    sb = pr.editkit_measure_update(run=run, site=site, delta=final)
    assert ns.editkit_measure_update(run=run, site=site, delta=final)["holds"]
    assert sb["holds"] and sb["value"] <= sb["bound"] * (1 + 1e-12)


def test_section_11_2d_rect_after_prune_can_raise_the_spectral_norm():
    """D = [[1, 1], [1, −1]] has σ = (√2, √2); masking its last entry gives σ_1 = (1 + √5)/2."""
    site = site_of(2, 2)
    w0 = torch.tensor([[10.0, 10.0], [10.0, 100.0]])  # σ_max(W0) ≫ √2: PRUNE leaves D as it is
    run = FakeRun(site, w0, KnownSpectrum(torch.eye(2), rank=2))
    pr = PruneStages(PruneHParams(mode="every_batch"))
    d = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    assert pr.editkit_constrain_update(run=run, site=site, proposal=AccumulatedProposal(
        site=site, delta=d, initial=run.w0, stage="batch")) is None
    masked = RectStages(RectHParams(k=75)).editkit_constrain_update(
        run=run, site=site, proposal=DeltaProposal(site=site, delta=d)).delta
    assert torch.equal(masked, torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64))
    run.current = run.w0 + masked
    sb = pr.editkit_measure_update(run=run, site=site, delta=masked)
    assert not sb["holds"] and sb["value"] == pytest.approx((1 + math.sqrt(5)) / 2) and sb["bound"] == pytest.approx(
        math.sqrt(2))


# --------------------------------------------------------------------------- through the kernel


D_MODEL, D_MLP = 16, 48
REQUEST = EditRequest(case_id=0, subject="a", prompt="{} is", target_new="b", target_true="c")


def kernel_run(constraints, overrides, batches=1, scale=1.0, mode="posthoc", family="gpt2"):
    g = torch.Generator().manual_seed(11)
    updates = [{layer: scale * torch.randn(D_MODEL, D_MLP, generator=g, dtype=torch.float64) for layer in (0, 1)}
               for _ in range(batches)]
    basis, _ = torch.linalg.qr(torch.randn(D_MLP, D_MLP, generator=g, dtype=torch.float64))
    tok = tiny_tokenizer()
    model = tiny_model(family, vocab_size=len(tok), n_layers=2, d_model=D_MODEL, d_mlp=D_MLP, seed=1)
    plugins = [("fixed", fixed_editor_plugin(updates))]
    installed = PluginHost().catalog.entries["constraints"]
    plugins += [(n, m) for n, m in (("rect", editkit_rect), ("prune", editkit_prune)) if n not in installed]
    config = RunConfig(editor="fixed", constraints=constraints, overrides=overrides, constrain_mode=mode)
    run = EditRun(model=model, tokenizer=tok, config=config, host=PluginHost(plugins=plugins),
                  key_statistics=KnownSpectrum(basis, rank=16))
    reports = [run.edit([REQUEST]) for _ in range(batches)]
    return run, reports


def constraint_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, ConstraintWarning)]


WAY_OUT = "use --constraint rect --constraint nullspace --set nullspace.mode=joint to hold both"


@pytest.mark.parametrize("ns_mode", ["auto", "project", "joint"])
@pytest.mark.parametrize("mode", ["inline", "posthoc"])
def test_nullspace_then_rect_is_reported_broken(ns_mode, mode):
    """Whatever the mode, a mask after the projection breaks ΔP = Δ; the warning names the way out."""
    with pytest.warns(ConstraintWarning, match=r"'nullspace'.*a later constraint changed it: rect") as record:
        _, (report,) = kernel_run(("nullspace", "rect"), {"nullspace.mode": ns_mode}, mode=mode)
    assert WAY_OUT in constraint_warnings(record)[0]
    for layer in (0, 1):
        assert not report.layers[layer]["nullspace.invariant"]["holds"]
        assert "way_out" not in report.layers[layer]["nullspace.invariant"]  # in the warning, not result.json
        assert report.layers[layer]["rect.invariant"]["holds"]


@pytest.mark.parametrize("ns_mode", ["auto", "project"])
def test_rect_then_projection_keeps_the_null_space(ns_mode):
    """Mask, then project (``--constraint rect --constraint nullspace``): ΔP = Δ, but P refills the mask."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _, (report,) = kernel_run(("rect", "nullspace"), {"nullspace.mode": ns_mode})
    for layer in (0, 1):
        assert report.layers[layer]["nullspace.invariant"]["holds"]
        assert not report.layers[layer]["rect.invariant"]["holds"]  # P refills masked entries (§11.2b)
    messages = constraint_warnings(record)
    assert len(messages) == 1 and "'rect'" in messages[0] and "later constraint changed it: nullspace" in messages[0]
    assert messages[0].endswith(WAY_OUT + " (each row projected onto range(P) ∩ RECT's support)")


@pytest.mark.parametrize("family", ["gpt2", "llama"])  # Conv1D (stores Wᵀ) and Linear
@pytest.mark.parametrize("mode", ["inline", "posthoc"])
def test_rect_then_joint_projection_holds_both(mode, family):
    """The exact way out: ``--constraint rect --constraint nullspace --set nullspace.mode=joint``.

    Null space of C0: 32 of d_in = 48 directions; RECT keeps 40% of 16 × 48 entries, so rows keep about
    19 entries and their intersection has dimension |S_i| + 32 − 48 ≈ 3. The written update is recomputed
    from the fixed update, RECT's mask on W0 and the projection onto range(P) ∩ support.
    """
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        run, (report,) = kernel_run(("rect", "nullspace"), {"nullspace.mode": "joint"}, mode=mode, family=family)
    assert constraint_warnings(record) == []
    fixed = run.editor.updates[0]
    null_basis = run.key_statistics.evecs[:, : D_MLP - 16]  # [d_in, 32], eigenvalues 1e-6
    for site in run.sites:
        notes = report.layers[site.layer]
        assert notes["rect.invariant"]["holds"] and notes["nullspace.invariant"]["holds"]
        assert 0 < notes["nullspace.joint_kept_norm"] < 1
        w0 = run.initial_weights[site.module]
        w0 = (w0.T if site.transposed else w0).double()  # math layout [16, 48]
        written = run.weight(site).detach().double() - w0
        mask = rect_mask(fixed[site.layer], w0, 40.0, 1e-8)
        expected = joint_projection(apply_mask(fixed[site.layer], mask), null_basis)
        assert torch.equal(written[~mask], torch.zeros(int((~mask).sum()), dtype=torch.float64))
        assert float((written - expected.delta).norm()) <= 1e-6 * float(expected.delta.norm())
        assert float(written.norm()) > 0 and notes["nullspace.joint_zero_rows"] == expected.zero_rows
        assert notes["nullspace.joint_kept_norm"] == pytest.approx(expected.kept_norm, abs=1e-6)


@pytest.mark.parametrize("ns_mode", ["auto", "project"])
@pytest.mark.parametrize("order", [("nullspace", "prune"), ("prune", "nullspace")])
def test_nullspace_and_prune_hold_in_either_order(order, ns_mode):
    overrides = {"nullspace.mode": ns_mode, "prune.mode": "every_batch"}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _, reports = kernel_run(order, overrides, batches=2, scale=3.0)
    assert constraint_warnings(record) == []
    for report in reports:
        for layer in (0, 1):
            notes = report.layers[layer]
            assert notes["prune.rescaled"] > 0
            assert notes["prune.invariant"]["holds"] and notes["nullspace.invariant"]["holds"]


def test_prune_final_keeps_the_null_space_of_the_accumulated_update():
    run, _ = kernel_run(("nullspace", "prune"), {"nullspace.mode": "project"}, batches=2, scale=3.0)
    run.finish()
    ns = run.constraints[0][1]
    for site in run.sites:
        w0 = run.initial_weights[site.module].T.double()
        written = run.weight(site).detach().double() - w0
        assert ns.editkit_measure_update(run=run, site=site, delta=written)["holds"]
        assert run.constraints[1][1].editkit_measure_update(run=run, site=site, delta=written)["holds"]


def test_prune_after_rect_densifies_and_is_reported():
    with pytest.warns(ConstraintWarning, match=r"'rect'.*a later constraint changed it: prune"):
        _, (report,) = kernel_run(("rect", "prune"), {"prune.mode": "every_batch"}, scale=3.0)
    assert report.layers[0]["prune.rescaled"] > 0 and not report.layers[0]["rect.invariant"]["holds"]
