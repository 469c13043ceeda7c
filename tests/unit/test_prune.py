"""PRUNE: the spectral map against a float64 reference, its modes and measure, and the kernel's write
W0 + F(Δ_n) (not W_n + F(Δ_n)) on a tiny GPT-2 whose Conv1D stores Wᵀ."""

from __future__ import annotations

import math

import editkit_prune
import pytest
import torch
from editkit_prune import CONSTRAINT
from editkit_prune.constraint import PruneStages, PruneWarning
from editkit_prune.hparams import PruneHParams
from editkit_prune.spectral import prune, restrain, restrain_scalar

from editkit import EditRun, RunConfig
from editkit.plugins import PluginHost
from editkit.requests import EditRequest
from editkit.sites import Site
from editkit.testing.fixed import fixed_editor_plugin
from editkit.testing.tiny import tiny_model, tiny_tokenizer
from editkit.updates import AccumulatedProposal, DeltaProposal


def reference_f(sigma: float, sigma_max: float, reduce: str, alpha: float) -> float:
    if sigma < sigma_max:
        return sigma
    if reduce == "linear":
        return (sigma + sigma_max) / 2
    return math.log(sigma, alpha) - math.log(sigma_max, alpha) + sigma_max


def reference_prune(delta: torch.Tensor, sigma_max: float, reduce: str = "log", alpha: float = math.e) -> torch.Tensor:
    """U diag(F(σ̄)) Vᵀ from a full float64 SVD, F per value in Python floats."""
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    mapped = torch.tensor([reference_f(float(x), sigma_max, reduce, alpha) for x in s], dtype=torch.float64)
    return (u * mapped) @ vh


def random_update(shape, top, seed):
    """A [d_out, d_in] matrix with singular values spread geometrically from ``top`` down."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], generator=g, dtype=torch.float64))
    r = min(shape)
    s = top * torch.logspace(0, -3, r, dtype=torch.float64)
    return (u[:, :r] * s) @ v[:, :r].T


@pytest.mark.parametrize(("reduce", "alpha"), [("log", math.e), ("log", 2.0), ("log", 1.2), ("linear", math.e)])
@pytest.mark.parametrize("shape", [(16, 40), (40, 16)])
def test_prune_matches_float64_reference(reduce, alpha, shape):
    delta = random_update(shape, top=50.0, seed=shape[0])
    sigma_max = 3.0
    result = prune(delta, sigma_max, reduce, alpha)
    expected = reference_prune(delta, sigma_max, reduce, alpha)
    assert torch.allclose(result.delta, expected, rtol=0, atol=1e-10)
    s = torch.linalg.svdvals(delta)
    assert result.rescaled == int((s >= sigma_max).sum()) > 1
    assert result.sigma1_after == pytest.approx(reference_f(50.0, sigma_max, reduce, alpha), rel=1e-12)
    assert float(torch.linalg.matrix_norm(result.delta, ord=2)) == pytest.approx(result.sigma1_after, rel=1e-10)


def test_below_sigma_max_nothing_changes():
    delta = random_update((8, 12), top=0.9, seed=1)
    result = prune(delta, 1.0)
    assert result.rescaled == 0 and torch.equal(result.delta, delta.double())


def test_f_is_continuous_monotone_and_has_the_section_7_bound():
    s = torch.linspace(0.01, 100, 2001, dtype=torch.float64)
    f = restrain(s, 2.0, "log", math.e)
    assert torch.all(f[1:] > f[:-1])
    assert restrain_scalar(2.0, 2.0) == pytest.approx(2.0)  # ≥ vs > does not matter
    big = s[s >= 2.0]
    assert torch.allclose(restrain(big, 2.0), 2.0 + torch.log(big / 2.0))  # σ_max + log_α(σ/σ_max)
    # §11.2e: PRUNE per batch differs from PRUNE on the sum (σ_max = 1, two batches of σ = e)
    assert restrain_scalar(2 * math.e, 1.0) == pytest.approx(1 + math.log(2 * math.e))
    assert 2 * restrain_scalar(math.e, 1.0) == pytest.approx(4.0)


def test_hparams_defaults_and_validation():
    hp = PruneHParams()
    assert (hp.mode, hp.reduce, hp.alpha) == ("final", "log", math.e)
    for bad in ({"mode": "sometimes"}, {"reduce": "sqrt"}, {"alpha": 1.0}):
        with pytest.raises(ValueError):
            PruneHParams(**bad)
    assert not CONSTRAINT.linear and "σ1" in CONSTRAINT.invariant


class FakeRun:
    """Weights in storage layout (Conv1D: Wᵀ) and W0, as EditRun exposes them."""

    def __init__(self, site: Site, w0_stored: torch.Tensor) -> None:
        self.initial_weights = {site.module: w0_stored.clone()}
        self.stored = w0_stored.clone()
        self.notes: dict[str, object] = {}

    def weight(self, site: Site) -> torch.Tensor:
        return self.stored.T if site.transposed else self.stored

    def note(self, site: Site, key: str, value: object) -> None:
        self.notes[key] = value

    def offer(self, stages: PruneStages, site: Site, stage: str) -> None:
        """The kernel's accumulated phase: offer Δ_n, write W0 + F(Δ_n) when changed."""
        w0 = self.initial_weights[site.module]
        w0 = (w0.T if site.transposed else w0).double()
        proposal = AccumulatedProposal(site=site, delta=self.weight(site).double() - w0, initial=w0, stage=stage)
        out = stages.editkit_constrain_update(run=self, site=site, proposal=proposal)
        if out is not None:
            new = (w0 + out.delta).float()
            self.stored = new.T.contiguous() if site.transposed else new


@pytest.mark.parametrize("mode", ["final", "every_batch"])
def test_modes_and_measure_on_a_conv1d_site(mode):
    site = Site(layer=0, module="h.0.mlp.c_proj", block="h.0", d_in=40, d_out=16, transposed=True)
    g = torch.Generator().manual_seed(0)
    run = FakeRun(site, torch.randn(40, 16, generator=g))
    sigma_max = float(torch.linalg.matrix_norm(run.weight(site).double(), ord=2))
    stages = PruneStages(PruneHParams(mode=mode))
    step = random_update((16, 40), top=10 * sigma_max, seed=2)
    run.stored = run.stored + step.T.float()  # one batch written
    before = run.weight(site).double() - run.initial_weights[site.module].T.double()
    run.offer(stages, site, "batch")
    measured = stages.editkit_measure_update(run=run, site=site, delta=step)
    if mode == "final":
        assert measured is None  # not in force before run.finish()
        assert torch.equal(run.weight(site).double() - run.initial_weights[site.module].T.double(), before)
    else:
        assert measured["holds"] and measured["value"] == pytest.approx(measured["bound"], rel=1e-6)
    after_batch = run.stored.clone()
    run.offer(stages, site, "final")
    if mode == "every_batch":
        assert torch.equal(run.stored, after_batch)  # not applied twice: F∘F ≠ F
    written = run.weight(site).double() - run.initial_weights[site.module].T.double()
    assert torch.allclose(written, reference_prune(before, sigma_max), atol=1e-5)
    final = stages.editkit_measure_update(run=run, site=site, delta=written)
    assert final["holds"] and final["bound"] == pytest.approx(reference_f(10 * sigma_max, sigma_max, "log", math.e))
    assert final["sigma_max_w0"] == pytest.approx(sigma_max)


def test_other_proposals_pass_through():
    site = Site(layer=0, module="m", block="b", d_in=3, d_out=2, transposed=False)
    stages = PruneStages(PruneHParams())
    assert stages.editkit_constrain_update(run=None, site=site,
                                           proposal=DeltaProposal(site=site, delta=torch.ones(2, 3))) is None


# --------------------------------------------------------------------------- through the kernel


def fixed_run(updates, constraints, overrides=(), mode="posthoc"):
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=2, d_model=16, d_mlp=48, seed=1)
    plugins = [("fixed", fixed_editor_plugin(updates))]
    if "prune" not in PluginHost().catalog.entries["constraints"]:  # before the entry point is installed
        plugins.append(("prune", editkit_prune))
    config = RunConfig(editor="fixed", constraints=constraints, overrides=overrides, constrain_mode=mode)
    return EditRun(model=model, tokenizer=tok, config=config, host=PluginHost(plugins=plugins))


def math_weight(run, layer):
    site = next(s for s in run.sites if s.layer == layer)
    return run.weight(site).detach().double(), site


@pytest.mark.parametrize("mode", ["final", "every_batch"])
def test_kernel_writes_w0_plus_f_of_the_accumulated_update(mode):
    """Catches the reference's double application: the result must be W0 + F(Δ_n), not W_n + F(Δ_n)."""
    g = torch.Generator().manual_seed(5)
    updates = [{1: 4 * torch.randn(16, 48, generator=g, dtype=torch.float64)} for _ in range(2)]
    run = fixed_run(updates, ("prune",), overrides={"prune.mode": mode})
    w0, site = math_weight(run, 1)
    w0 = w0.clone()
    sigma_max = float(torch.linalg.matrix_norm(w0, ord=2))
    request = EditRequest(case_id=0, subject="a", prompt="{} is", target_new="b", target_true="c")
    expected = torch.zeros_like(w0)
    for b in range(2):
        stored_before = run.weight(site).detach().double() - w0
        report = run.edit([request])
        if mode == "every_batch":
            expected = reference_prune(stored_before + updates[b][1], sigma_max)
            assert report.layers[1]["prune.invariant"]["holds"]
        else:
            assert "prune.invariant" not in report.layers.get(1, {})
    accumulated = run.weight(site).detach().double() - w0  # W_n − W0 before finish()
    run.finish()
    written = run.weight(site).detach().double() - w0
    if mode == "final":
        expected = reference_prune(accumulated, sigma_max)
        buggy = accumulated + expected  # W_n + F(Δ_n) − W0
        assert float((written - buggy).norm()) > 0.5 * float(accumulated.norm())
        sigma1 = float(torch.linalg.matrix_norm(accumulated, ord=2))
        assert float(torch.linalg.matrix_norm(written, ord=2)) == pytest.approx(
            reference_f(sigma1, sigma_max, "log", math.e), rel=1e-5)
    assert torch.allclose(written, expected, atol=2e-5), float((written - expected).abs().max())
    # the weight is stored transposed (Conv1D): the kernel wrote the math-layout result through it
    stored = run.model.get_submodule(site.module).weight
    assert site.transposed and tuple(stored.shape) == (48, 16)
    run.undo_last(2)
    assert torch.equal(run.weight(site).detach().double(), w0)


def test_warns_when_the_log_map_enlarges_singular_values():
    """σ_max(W0) < 1/ln α: F(σ) > σ just above σ_max (slope 1/(σ_max ln α) > 1); said once per run."""
    assert restrain_scalar(0.3, 0.2) > 0.3
    site = Site(layer=0, module="m", block="b", d_in=6, d_out=4, transposed=False)
    run = FakeRun(site, 0.2 * torch.eye(4, 6))
    stages = PruneStages(PruneHParams(mode="every_batch"))
    run.stored = run.stored + 0.3 * torch.eye(4, 6)
    with pytest.warns(PruneWarning, match="enlarged 4 singular value"):
        run.offer(stages, site, "batch")
    assert run.notes["prune.sigma1_after"] == pytest.approx(restrain_scalar(0.3, 0.2))


def test_final_stage_that_changes_nothing_still_reports_why():
    """Every singular value of Δ_n below σ_max(W0): PRUNE leaves the update alone (W_n unchanged), and the
    run's final report says so (σ̄1 against σ_max(W0), none rescaled) instead of staying silent."""
    g = torch.Generator().manual_seed(6)
    run = fixed_run([{1: 1e-3 * torch.randn(16, 48, generator=g, dtype=torch.float64)}], ("prune",))
    w0, site = math_weight(run, 1)
    sigma_max = float(torch.linalg.matrix_norm(w0, ord=2))
    run.edit([EditRequest(case_id=0, subject="a", prompt="{} is", target_new="b", target_true="c")])
    before = run.weight(site).detach().clone()
    assert run.finish() is None
    assert torch.equal(run.weight(site).detach(), before)
    notes = run.final_report.layers[1]
    assert notes["prune.rescaled"] == 0 and notes["prune.sigma_max_w0"] == pytest.approx(sigma_max)
    assert notes["prune.sigma1_before"] < sigma_max
    assert run.final_report.to_json()["layers"]["1"]["prune.rescaled"] == 0


def test_the_kernel_rounds_w_plus_delta_once():
    """The written weight is fl(W + Δ) (float64 sum, one rounding), not fl(W + fl(Δ)): with a Δ a thousand times
    W, rounding Δ first would move the result by ulps of Δ."""
    g = torch.Generator().manual_seed(8)
    update = 1e3 * torch.randn(16, 48, generator=g, dtype=torch.float64)
    run = fixed_run([{1: update}], ())
    site = next(s for s in run.sites if s.layer == 1)
    stored = run.model.get_submodule(site.module).weight
    before = stored.detach().clone()
    run.edit([EditRequest(case_id=0, subject="a", prompt="{} is", target_new="b", target_true="c")])
    assert torch.equal(stored.detach(), (before.double() + site.to_storage(update)).float())
