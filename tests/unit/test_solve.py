"""The solves against independent float64 references written from the formulas (MEMIT, Meng et al. 2023 §4;
AlphaEdit, Fang et al. 2025 §3).

Tolerances: relative Frobenius error < 1e-6 (float64 throughout).
"""

from __future__ import annotations

import torch
from editkit_memit.solve import solve_update
from editkit_nullspace.projector import null_space
from hypothesis import given, settings
from hypothesis import strategies as st

from editkit.updates import Subspace

D_IN, D_OUT, U = 24, 8, 5


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def spd_with_spectrum(evals: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(evals), len(evals), generator=g, dtype=torch.float64))
    return q @ torch.diag(evals) @ q.T, q


def random_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    k1 = torch.randn(D_IN, U, generator=g, dtype=torch.float64)
    r = torch.randn(D_OUT, U, generator=g, dtype=torch.float64)
    kp = torch.randn(D_IN, 7, generator=g, dtype=torch.float64)
    evals = torch.cat([
        torch.full((10,), 1e-4, dtype=torch.float64), torch.linspace(0.5, 3.0, D_IN - 10, dtype=torch.float64)
    ])
    c0, q = spd_with_spectrum(evals, seed)
    return k1, r, kp @ kp.T, c0, q, evals


def test_memit_matches_closed_form():
    k1, r, _, c0, _, _ = random_problem()
    lam = 15.0
    reference = r @ k1.T @ torch.linalg.inv(lam * c0 + k1 @ k1.T)
    assert rel(solve_update(k1, r, lam * c0, 0.0, None), reference) < 1e-6


def test_memit_seq_adds_past_keys():
    k1, r, cp, c0, _, _ = random_problem(1)
    reference = r @ k1.T @ torch.linalg.inv(2.0 * c0 + cp + k1 @ k1.T)
    assert rel(solve_update(k1, r, 2.0 * c0 + cp, 0.0, None), reference) < 1e-6


def alphaedit_reference(k1, r, cp, p, l2):
    """AlphaEdit Eq. 14 as published: Δ = R K1ᵀ P (Cp P + K1 K1ᵀ P + L2·I)⁻¹."""
    return r @ k1.T @ p @ torch.linalg.inv(cp @ p + k1 @ k1.T @ p + l2 * torch.eye(p.shape[0], dtype=torch.float64))


def test_alphaedit_matches_closed_form_in_both_storages():
    k1, r, cp, c0, _, _ = random_problem(2)
    evals, evecs = torch.linalg.eigh(c0)
    null = evecs[:, evals < 2e-2]  # 10 null directions
    p = null @ null.T
    reference = alphaedit_reference(k1, r, cp, p, 10.0)
    as_range = Subspace(basis=null, kind="range")
    as_complement = Subspace(basis=evecs[:, evals >= 2e-2], kind="complement")
    for sub in (as_range, as_complement):
        delta = solve_update(k1, r, cp, 10.0, sub)
        assert rel(delta, reference) < 1e-6, sub.kind
        assert rel(delta @ p, delta) < 1e-10  # ΔP = Δ


def test_alphaedit_leaves_preserved_keys_untouched():
    k1, r, cp, c0, _, _ = random_problem(3)
    evals, evecs = torch.linalg.eigh(c0)
    sub = null_space(evals, evecs, 2e-2, relative=False)
    g = torch.Generator().manual_seed(9)
    k0 = evecs[:, evals >= 2e-2] @ torch.randn(int((evals >= 2e-2).sum()), 50, generator=g, dtype=torch.float64)
    delta = solve_update(k1, r, cp, 10.0, sub)
    assert float((delta @ k0).norm()) < 1e-9 * float(delta.norm() * k0.norm())
    # and the same update without the constraint does disturb them
    free = solve_update(k1, r, cp, 10.0, None)
    assert float((free @ k0).norm()) > 1e-2 * float(free.norm() * k0.norm())


def test_null_space_stores_the_smaller_basis_and_relative_threshold():
    _, _, _, c0, _, _ = random_problem(4)
    evals, evecs = torch.linalg.eigh(c0)
    small = null_space(evals, evecs, 2e-2, relative=False)
    assert small.kind == "range" and small.dim == 10
    large = null_space(evals, evecs, 2.9, relative=False)
    assert large.kind == "complement" and large.dim == int((evals < 2.9).sum())
    rel_sub = null_space(evals, evecs, 0.5, relative=True)
    assert rel_sub.dim == int((evals < 0.5 * evals.max()).sum())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=16),
    frac=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=10_000),
)
def test_projector_is_symmetric_idempotent_and_project_rows_agrees(n, frac, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n + 3, generator=g, dtype=torch.float64)
    c0 = a @ a.T / (n + 3)
    evals, evecs = torch.linalg.eigh(c0)
    threshold = float(evals.min() + frac * (evals.max() - evals.min())) + 1e-12
    sub = null_space(evals, evecs, threshold, relative=False)
    p = sub.matrix()
    assert torch.allclose(p, p.T, atol=1e-12)
    assert torch.allclose(p @ p, p, atol=1e-10)
    assert round(float(torch.trace(p))) == sub.dim == int((evals < threshold).sum())
    delta = torch.randn(3, n, generator=g, dtype=torch.float64)
    assert torch.allclose(sub.project_rows(delta), delta @ p, atol=1e-10)
    projected = sub.project_rows(delta)
    assert torch.allclose(sub.project_rows(projected), projected, atol=1e-10)  # null-space invariance


def test_weighted_terms_equal_the_summed_matrix_and_inputs_are_untouched():
    k1, r, cp, c0, _, _ = random_problem(5)
    evals, evecs = torch.linalg.eigh(c0)
    keep_c0, keep_cp = c0.clone(), cp.clone()
    for sub in (None, null_space(evals, evecs, 2e-2, relative=False), null_space(evals, evecs, 2.9, relative=False)):
        ridge = 0.0 if sub is None else 3.0
        summed = solve_update(k1, r, 7.0 * c0 + cp, ridge, sub)
        terms = solve_update(k1, r, [(7.0, c0), (1.0, cp)], ridge, sub)
        assert rel(terms, summed) < 1e-10
    assert torch.equal(c0, keep_c0) and torch.equal(cp, keep_cp)


def test_past_products_kept_across_batches_equal_the_recomputed_solve():
    """Cp·B and Bᵀ·Cp·B grown batch by batch (and restarted after an undo) give AlphaEdit's Δ and
    MEMIT_seq-in-a-subspace's Δ exactly as the recomputed products do (both storages, float64)."""
    from editkit_memit.solve import PastProducts

    g = torch.Generator().manual_seed(5)
    k1, r, _, c0, _, _ = random_problem(3)
    evals, evecs = torch.linalg.eigh(c0)
    storages = [Subspace(basis=evecs[:, evals < 2e-2].contiguous(), kind="range"),
                Subspace(basis=evecs[:, evals >= 2e-2].contiguous(), kind="complement")]
    for sub in storages:
        products = PastProducts()
        batches: list[torch.Tensor] = []
        for step in range(4):
            batches.append(torch.randn(D_IN, 3, generator=g, dtype=torch.float64))
            if step == 2:  # an undo: the earlier batches change, the products start over
                batches = [batches[0], torch.randn(D_IN, 4, generator=g, dtype=torch.float64)]
            cp = sum(b @ b.T for b in batches)
            products.update(sub.basis, batches)
            for extra in ([], [(3.0, c0)]):
                kept = solve_update(k1, r, extra, 10.0, sub, (cp, products))
                recomputed = solve_update(k1, r, [*extra, (1.0, cp)], 10.0, sub)
                assert rel(kept, recomputed) < 1e-10, (sub.kind, step, bool(extra))
            p = sub.project_rows(torch.eye(D_IN, dtype=torch.float64))
            reference = alphaedit_reference(k1, r, cp, p, 10.0)
            assert rel(solve_update(k1, r, [], 10.0, sub, (cp, products)), reference) < 1e-6
        assert products.batches == tuple(batches)


def test_past_products_need_a_subspace():
    import pytest
    from editkit_memit.solve import PastProducts

    k1, r, cp, _, _, _ = random_problem(4)
    with pytest.raises(ValueError, match="subspace"):
        solve_update(k1, r, [], 1.0, None, (cp, PastProducts()))
