"""Null-space mode ``joint``: the projection of each row of Δ onto range(P) ∩ its support.

Checked in float64 against von Neumann's alternating projections (whose limit is the projection onto
the intersection), exactly 0 where the intersection is trivial, and by properties (idempotent, both
invariants, Δ_in − Δ_out orthogonal to the intersection, computed independently). The stage is driven
on a fake run with P stored either way (range or complement basis); runs through the kernel are in
``test_composition.py`` (fixed updates, GPT-2 Conv1D and Llama Linear) and
``tests/integration/test_prune_rect_run.py`` (MEMIT through ``editkit run``).
"""

from __future__ import annotations

import math

import hypothesis.strategies as st
import pytest
import torch
from editkit_nullspace.constraint import NullspaceStages
from editkit_nullspace.hparams import NullspaceHParams
from editkit_nullspace.joint import joint_projection, rank_tolerance
from editkit_rect.constraint import RectStages
from editkit_rect.hparams import RectHParams
from hypothesis import given, settings
from test_composition import FakeRun, site_of  # a run's surface

from editkit.testing.moments import KnownSpectrum
from editkit.updates import DeltaProposal, SolveProblem


def orthonormal(d: int, r: int, g: torch.Generator) -> torch.Tensor:
    """A random orthonormal basis ``[d, r]`` (float64)."""
    q, _ = torch.linalg.qr(torch.randn(d, max(r, 1), generator=g, dtype=torch.float64))
    return q[:, :r]


def masked_update(d_out: int, d_in: int, support: float, g: torch.Generator) -> torch.Tensor:
    """Random Δ ``[d_out, d_in]`` with each entry kept (nonzero) with probability ``support``."""
    delta = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    return delta * (torch.rand(d_out, d_in, generator=g, dtype=torch.float64) < support)


def alternating_projections(delta: torch.Tensor, projector: torch.Tensor, iterations: int = 20000) -> torch.Tensor:
    """von Neumann: x ← M ⊙ (x P) from x = Δ (M = Δ's support) until the change is < 1e-14·‖Δ‖."""
    keep = delta != 0
    x = delta.clone()
    scale = float(delta.norm())
    for _ in range(iterations):
        y = (x @ projector) * keep
        change = float((y - x).norm())
        x = y
        if change < 1e-14 * scale:
            break
    return x


def intersection_basis(projector: torch.Tensor, zero: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
    """Orthonormal basis ``[d_in, k]`` of {x : xP = x, x_Z = 0}, from the SVD of [I − P; rows e_jᵀ, j ∈ Z]."""
    d_in = projector.shape[0]
    eye = torch.eye(d_in, dtype=torch.float64)
    constraints = torch.cat([eye - projector, eye[zero]])  # [d_in + |Z|, d_in]
    _, sigma, vh = torch.linalg.svd(constraints, full_matrices=True)
    rank = int((sigma > tol).sum())
    return vh[rank:].T


# --------------------------------------------------------------------------- against alternating projections


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_the_limit_of_alternating_projections(seed):
    """d_in 24, r 18, 70% support: |S_i| + r − d_in ≈ 11 > 0, the intersection is non-trivial."""
    g = torch.Generator().manual_seed(seed)
    basis = orthonormal(24, 18, g)
    delta = masked_update(6, 24, 0.7, g)
    joint = joint_projection(delta, basis)
    reference = alternating_projections(delta, basis @ basis.T)
    assert float(joint.delta.norm()) > 0.1 * float(delta.norm())  # a non-trivial regime indeed
    assert float((joint.delta - reference).norm()) <= 1e-8 * float(reference.norm())
    support = (delta != 0).sum(dim=1)
    assert torch.equal(joint.dims, (support + 18 - 24).clamp_min(0))  # generic dimension |S_i| + r − d_in


def test_trivial_intersection_gives_exactly_zero():
    """d_in 24, r 6, 30% support: |S_i| + r < d_in for every row, only x = 0 holds both."""
    g = torch.Generator().manual_seed(3)
    basis = orthonormal(24, 6, g)
    delta = masked_update(5, 24, 0.3, g)
    assert int((delta != 0).sum(dim=1).max()) + 6 < 24
    joint = joint_projection(delta, basis)
    assert torch.equal(joint.delta, torch.zeros_like(delta)) and joint.zero_rows == 5
    assert torch.equal(joint.dims, torch.zeros(5, dtype=torch.int64)) and joint.kept_norm == 0.0
    reference = alternating_projections(delta, basis @ basis.T)
    assert float(reference.norm()) <= 1e-8 * float(delta.norm())  # the alternation tends to 0 too


def test_section_11_2a_counterexample_has_only_zero():
    """P = uuᵀ, u = (1, 1)/√2; RECT left Δ = [1, 0]: range(P) ∩ {x_2 = 0} = {0} (project mode gives [½, ½])."""
    u = torch.tensor([[1.0], [1.0]], dtype=torch.float64) / math.sqrt(2)
    joint = joint_projection(torch.tensor([[1.0, 0.0]], dtype=torch.float64), u)
    assert torch.equal(joint.delta, torch.zeros(1, 2, dtype=torch.float64)) and joint.zero_rows == 1


def test_dense_rows_are_projected_and_zero_rows_stay_zero():
    g = torch.Generator().manual_seed(4)
    basis = orthonormal(10, 4, g)
    delta = torch.randn(3, 10, generator=g, dtype=torch.float64)
    delta[1] = 0.0
    joint = joint_projection(delta, basis)
    assert torch.allclose(joint.delta[[0, 2]], delta[[0, 2]] @ basis @ basis.T, rtol=0, atol=1e-14)
    assert torch.equal(joint.delta[1], torch.zeros(10, dtype=torch.float64))
    assert joint.dims.tolist() == [4, 0, 4] and joint.zero_rows == 1


def test_rows_with_the_same_pattern_share_one_subspace():
    """Rows sharing a zero pattern are projected onto the same V: the map is linear on them."""
    g = torch.Generator().manual_seed(5)
    basis = orthonormal(12, 9, g)
    pattern = torch.rand(12, generator=g) < 0.75
    a, b = (torch.randn(12, generator=g, dtype=torch.float64) * pattern for _ in range(2))
    joint = joint_projection(torch.stack([a, b, 2 * a - 3 * b]), basis).delta
    assert torch.allclose(joint[2], 2 * joint[0] - 3 * joint[1], rtol=0, atol=1e-12)


def test_float32_input_keeps_dtype_and_exact_zeros():
    g = torch.Generator().manual_seed(6)
    basis = orthonormal(24, 18, g)
    delta = masked_update(4, 24, 0.7, g).float()
    joint = joint_projection(delta, basis)
    assert joint.delta.dtype == torch.float32 and bool((joint.delta[delta == 0] == 0).all())
    expected = joint_projection(delta.double(), basis).delta.float()
    assert torch.equal(joint.delta, expected)


def test_no_null_space_writes_nothing():
    delta = torch.ones(2, 3, dtype=torch.float64)
    joint = joint_projection(delta, torch.zeros(3, 0, dtype=torch.float64))
    assert torch.equal(joint.delta, torch.zeros_like(delta)) and joint.zero_rows == 2


def test_basis_shape_is_checked():
    with pytest.raises(ValueError, match="basis must be"):
        joint_projection(torch.ones(2, 3), torch.zeros(4, 2))


def test_rank_tolerance_is_the_stated_one():
    assert rank_tolerance(512, 283) == pytest.approx(512 * 2.220446049250313e-16)


# --------------------------------------------------------------------------- properties


@st.composite
def problems(draw):
    d_in = draw(st.integers(2, 16))
    r = draw(st.integers(0, d_in))
    d_out = draw(st.integers(1, 5))
    support = draw(st.sampled_from([0.2, 0.5, 0.7, 0.9, 1.0]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    return orthonormal(d_in, r, g), masked_update(d_out, d_in, support, g)


@settings(max_examples=80, deadline=None)
@given(problems())
def test_properties(problem):
    basis, delta = problem
    projector = basis @ basis.T
    scale = max(float(delta.norm()), 1e-300)
    once = joint_projection(delta, basis).delta
    twice = joint_projection(once, basis).delta
    assert float((twice - once).norm()) <= 1e-10 * scale  # idempotent
    zero = delta == 0
    assert bool((once[zero] == 0).all())  # every entry zeroed on input stays exactly 0
    if float(once.norm()) > 0:
        assert float((once - once @ projector).norm()) <= 1e-10 * float(once.norm())  # ΔP = Δ
    for i in range(delta.shape[0]):  # optimal: Δ_in − Δ_out ⟂ range(P) ∩ support_i
        v = intersection_basis(projector, zero[i])
        assert float(((delta[i] - once[i]) @ v).norm()) <= 1e-9 * scale  # ≥ |⟨Δ_in − Δ_out, x⟩| for unit x ∈ V
        assert float((once[i] - (once[i] @ v) @ v.T).norm()) <= 1e-9 * scale  # and Δ_out lies in it


# --------------------------------------------------------------------------- the stage


@pytest.mark.parametrize(("rank", "kind"), [(6, "complement"), (20, "range")])  # P stored either way
def test_stage_after_rect_holds_both_invariants(rank, kind):
    g = torch.Generator().manual_seed(8)
    d_out, d_in = 10, 28
    site = site_of(d_out, d_in)
    evecs = orthonormal(d_in, d_in, g)
    run = FakeRun(site, torch.randn(d_out, d_in, generator=g), KnownSpectrum(evecs, rank=rank))
    ns = NullspaceStages(NullspaceHParams(mode="joint"))
    rect = RectStages(RectHParams(k=70))
    assert ns.subspace(run, site).kind == kind
    solve = SolveProblem(keys=torch.randn(d_in, 2, dtype=torch.float64), residual=torch.zeros(d_out, 2))
    assert ns.editkit_constrain_update(run=run, site=site, proposal=solve) is None  # joint leaves the solve free
    delta = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    masked = rect.editkit_constrain_update(run=run, site=site, proposal=DeltaProposal(site=site, delta=delta))
    final = ns.editkit_constrain_update(run=run, site=site, proposal=masked)
    assert "nullspace: joint (range(P) ∩ support)" in final.notes
    null_basis = evecs[:, : d_in - rank]
    expected = alternating_projections(masked.delta, null_basis @ null_basis.T)
    assert float((final.delta - expected).norm()) <= 1e-8 * float(expected.norm())
    assert ns.editkit_measure_update(run=run, site=site, delta=final.delta)["holds"]
    assert rect.editkit_measure_update(run=run, site=site, delta=final.delta)["holds"]
    kept = float(final.delta.norm() / masked.delta.norm())
    assert run.notes["nullspace.joint_kept_norm"] == pytest.approx(kept, abs=1e-6) and 0 < kept < 1
    assert run.notes["nullspace.joint_zero_rows"] == int((final.delta == 0).all(dim=1).sum())


def test_project_mode_refills_what_joint_keeps_at_zero():
    """The same input through ``project``: the mask check fails, which is what ``joint`` is for."""
    g = torch.Generator().manual_seed(9)
    site = site_of(6, 24)
    run = FakeRun(site, torch.randn(6, 24, generator=g), KnownSpectrum(orthonormal(24, 24, g), rank=6))
    rect = RectStages(RectHParams(k=70))
    masked = rect.editkit_constrain_update(run=run, site=site, proposal=DeltaProposal(
        site=site, delta=torch.randn(6, 24, generator=g, dtype=torch.float64)))
    for mode, holds in (("project", False), ("joint", True)):
        out = NullspaceStages(NullspaceHParams(mode=mode)).editkit_constrain_update(
            run=run, site=site, proposal=masked).delta
        assert rect.editkit_measure_update(run=run, site=site, delta=out)["holds"] is holds
