"""A threshold below every eigenvalue of C0 leaves an empty null space: Δ = 0 at that layer, which the
constraint must say, once per layer, naming the layer and the threshold, and note in result.json."""

from __future__ import annotations

import warnings

import pytest
import torch
from editkit_nullspace.constraint import NullspaceStages, NullspaceWarning
from editkit_nullspace.hparams import NullspaceHParams

from editkit.sites import Site
from editkit.updates import DeltaProposal, SolveProblem

D_IN, D_OUT = 8, 4


class Spectrum:
    """C0 with eigenvalues ``evals`` (ascending) on a fixed orthonormal basis."""

    def __init__(self, evals: list[float]) -> None:
        basis, _ = torch.linalg.qr(torch.randn(D_IN, D_IN, generator=torch.Generator().manual_seed(0),
                                               dtype=torch.float64))
        self.evals, self.evecs = torch.tensor(evals, dtype=torch.float64), basis

    def eigendecomposition(self, site):
        return self.evals, self.evecs


class NotingRun:
    """What the stages use of a run: key statistics and per-layer notes (by layer)."""

    def __init__(self, spectrum: Spectrum) -> None:
        self.spectrum, self.notes = spectrum, {}

    def require_key_statistics(self):
        return self.spectrum

    def note(self, site, key, value):
        self.notes.setdefault(site.layer, {})[key] = value


def site(layer: int) -> Site:
    return Site(layer=layer, module=f"h.{layer}.mlp", block=f"h.{layer}", d_in=D_IN, d_out=D_OUT, transposed=False)


def empty_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, NullspaceWarning)]


def test_an_empty_null_space_is_warned_once_per_layer_and_noted():
    stages = NullspaceStages(NullspaceHParams(threshold=1e-12, mode="project"))
    run = NotingRun(Spectrum([1e-4 * (i + 1) for i in range(D_IN)]))
    delta = torch.randn(D_OUT, D_IN, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(3):  # three batches
            for layer in (13, 14):
                out = stages.editkit_constrain_update(run=run, site=site(layer), proposal=DeltaProposal(
                    site=site(layer), delta=delta))
                assert torch.equal(out.delta, torch.zeros_like(delta))  # what the warning announces
    messages = empty_warnings(record)
    assert len(messages) == 2
    for layer, message in zip((13, 14), messages):
        assert f"the null space at layer {layer} is empty" in message
        assert "below the threshold 1e-12 (the smallest is 0.0001)" in message
        assert "--set nullspace.threshold" in message
    assert run.notes[13]["nullspace.empty"] == {"threshold": 1e-12, "smallest_eigenvalue": pytest.approx(1e-4)}


def test_relative_threshold_is_named_with_its_absolute_value():
    stages = NullspaceStages(NullspaceHParams(threshold=1e-9, relative=True, mode="solve"))
    run = NotingRun(Spectrum([0.5 + i for i in range(D_IN)]))
    problem = SolveProblem(keys=torch.randn(D_IN, 2, dtype=torch.float64),
                           residual=torch.randn(D_OUT, 2, dtype=torch.float64))
    with pytest.warns(NullspaceWarning, match=r"threshold 1e-09 × the largest eigenvalue 7.5 = 7.5e-09"):
        stages.editkit_constrain_update(run=run, site=site(2), proposal=problem)
    assert run.notes[2]["nullspace.dim"] == 0


def test_a_non_empty_null_space_says_nothing():
    stages = NullspaceStages(NullspaceHParams(threshold=1e-2, mode="project"))
    run = NotingRun(Spectrum([1e-6, 1e-5, *[1.0] * (D_IN - 2)]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stages.editkit_constrain_update(run=run, site=site(0), proposal=DeltaProposal(
            site=site(0), delta=torch.randn(D_OUT, D_IN, dtype=torch.float64)))
    assert "nullspace.empty" not in run.notes.get(0, {})
