"""``--set nullspace.energy=e``: the null space as the smallest eigen-directions of C0 whose cumulative
share of its trace stays below ``e``
(the AlphaEdit author's advice for models without near-null eigenvalues), on known spectra in float64."""

from __future__ import annotations

import warnings

import pytest
import torch
from editkit_nullspace.constraint import NullspaceStages, NullspaceWarning
from editkit_nullspace.hparams import NullspaceHParams
from editkit_nullspace.projector import energy_count, null_mask, null_space

from editkit.hparams import build
from editkit.sites import Site
from editkit.updates import SolveProblem

D_IN, D_OUT = 8, 4


def basis(seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(D_IN, D_IN, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def brute_force_count(evals: list[float], energy: float) -> int:
    """The definition, spelled out: the largest k with sum of the k smallest < energy · trace."""
    ordered = sorted(max(v, 0.0) for v in evals)
    total = sum(ordered)
    best = 0
    for k in range(len(ordered) + 1):
        if sum(ordered[:k]) < energy * total:
            best = k
    return best


def test_energy_count_on_a_known_spectrum():
    # trace 1 + 2 + 3 + 4 = 10: shares of the 1, 2, 3 smallest are 0.1, 0.3, 0.6
    evals = torch.tensor([3.0, 1.0, 4.0, 2.0], dtype=torch.float64)
    assert energy_count(evals, 0.05) == 0  # even the smallest holds 10%
    assert energy_count(evals, 0.1) == 0  # "below": 0.1 is not below 0.1
    assert energy_count(evals, 0.11) == 1
    assert energy_count(evals, 0.3) == 1
    assert energy_count(evals, 0.31) == 2
    assert energy_count(evals, 0.61) == 3
    assert energy_count(evals, 1.0) == 3  # all four hold exactly the trace, not below it
    assert null_mask(evals, 2e-2, False, energy=0.31).tolist() == [False, True, False, True]


@pytest.mark.parametrize("seed", range(5))
def test_energy_count_matches_the_definition_on_random_spectra(seed):
    g = torch.Generator().manual_seed(seed)
    evals = [*(torch.rand(D_IN, generator=g, dtype=torch.float64) ** 4).tolist(), -1e-12]  # a rounding negative
    for energy in (1e-3, 0.01, 0.05, 0.2, 0.5, 0.9):
        assert energy_count(torch.tensor(evals, dtype=torch.float64), energy) == brute_force_count(evals, energy)


def test_energy_null_space_is_spanned_by_the_smallest_eigenvectors():
    evals = torch.tensor([5.0, 1e-3, 2.0, 2e-3, 1.0, 3e-3, 4.0, 3.0], dtype=torch.float64)  # trace 15.006
    evecs = basis()
    sub = null_space(evals, evecs, 2e-2, False, energy=0.001)  # 1e-3+2e-3+3e-3 = 6e-3 < 0.015 < 1.006
    assert sub.dim == 3
    expected = evecs[:, [1, 3, 5]] @ evecs[:, [1, 3, 5]].T
    assert torch.allclose(sub.matrix(), expected, atol=1e-12)
    # the same spectrum by threshold gives the same P, as it should for a spectrum with a clear gap
    assert torch.allclose(null_space(evals, evecs, 0.5, False).matrix(), expected, atol=1e-12)
    # the energy the update may use: the kept directions hold less than the share of C0's trace
    c0 = evecs @ torch.diag(evals) @ evecs.T
    assert float(torch.trace(sub.matrix() @ c0)) < 0.001 * float(torch.trace(c0))
    large = null_space(evals, evecs, 2e-2, False, energy=0.5)  # + 1 + 2 = 3.006 < 7.503 < 6.006 + 3
    assert large.dim == 6 and large.kind == "complement"


def test_energy_option_is_validated_and_excludes_relative():
    assert build("nullspace", NullspaceHParams, {"energy": "0.01"}).energy == 0.01
    for bad in ("0", "1.5", "-0.1"):
        with pytest.raises(Exception, match=r"energy: expected a share of C0's energy in \(0, 1\]"):
            build("nullspace", NullspaceHParams, {"energy": bad})
    with pytest.raises(Exception, match="energy and relative"):
        build("nullspace", NullspaceHParams, {"energy": "0.01", "relative": "true"})


class Spectrum:
    def __init__(self, evals):
        self.evals, self.evecs = torch.tensor(evals, dtype=torch.float64), basis()

    def eigendecomposition(self, site):
        return self.evals, self.evecs


class NotingRun:
    def __init__(self, spectrum):
        self.spectrum, self.notes = spectrum, {}

    def require_key_statistics(self):
        return self.spectrum

    def note(self, site, key, value):
        self.notes.setdefault(site.layer, {})[key] = value


def test_the_stage_uses_energy_and_notes_the_null_space_size():
    site = Site(layer=3, module="h.3.mlp", block="h.3", d_in=D_IN, d_out=D_OUT, transposed=False)
    evals = [0.001 * (i + 1) for i in range(4)] + [1.0 + i for i in range(4)]  # small 0.01 of trace 10.01
    problem = SolveProblem(keys=torch.randn(D_IN, 2, dtype=torch.float64),
                           residual=torch.randn(D_OUT, 2, dtype=torch.float64))
    run = NotingRun(Spectrum(evals))
    NullspaceStages(NullspaceHParams(energy=0.01, mode="solve")).editkit_constrain_update(
        run=run, site=site, proposal=problem)
    assert run.notes[3]["nullspace.dim"] == 4  # 0.010 < 0.1001; with the 1.0 it would be 1.01
    assert run.notes[3]["nullspace.energy_share"] == pytest.approx(0.010 / 10.01)
    # the absolute default (2e-2) would keep the same four here; a tighter share keeps fewer
    run = NotingRun(Spectrum(evals))
    NullspaceStages(NullspaceHParams(energy=0.0005, mode="solve")).editkit_constrain_update(
        run=run, site=site, proposal=problem)
    assert run.notes[3]["nullspace.dim"] == 2  # 0.001 + 0.002 < 0.005005 < 0.006


def test_an_empty_energy_null_space_is_warned_naming_the_share():
    site = Site(layer=5, module="h.5.mlp", block="h.5", d_in=D_IN, d_out=D_OUT, transposed=False)
    run = NotingRun(Spectrum([1.0] * D_IN))  # each direction holds 1/8 of the energy
    stages = NullspaceStages(NullspaceHParams(energy=0.1, mode="project"))
    problem = SolveProblem(keys=torch.randn(D_IN, 2, dtype=torch.float64),
                           residual=torch.randn(D_OUT, 2, dtype=torch.float64))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        stages.editkit_constrain_update(run=run, site=site, proposal=problem)
    messages = [str(w.message) for w in record if issubclass(w.category, NullspaceWarning)]
    assert len(messages) == 1
    assert "layer 5 is empty" in messages[0] and "0.125 of its energy" in messages[0]
    assert "--set nullspace.energy" in messages[0]
    assert run.notes[5]["nullspace.dim"] == 0
