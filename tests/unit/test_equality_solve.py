"""ROME's and EMMET's closed forms (editkit_emmet.equality) against independent float64 references on random
matrices: ROME's rank-one update is the formula of Meng et al. 2022 Eq. 2, EMMET's solution meets its equality
constraints and is the minimum of its preservation cost (checked against a KKT system solved directly), and the
subspace-restricted solves keep Δ = ΔP; dependent keys are reduced to their independent combinations."""

from __future__ import annotations

import pytest
import torch
from editkit_emmet.equality import equality_update, preservation

from editkit.updates import Subspace

D_OUT, D_IN = 7, 12


def spd(n: int, g: torch.Generator) -> torch.Tensor:
    a = torch.randn(n, 3 * n, generator=g, dtype=torch.float64)
    return a @ a.T / (3 * n)


@pytest.fixture
def g() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_rome_rank_one_is_the_papers_formula(g):
    c0, w = spd(D_IN, g), torch.randn(D_OUT, D_IN, generator=g, dtype=torch.float64)
    k, v = torch.randn(D_IN, 1, generator=g, dtype=torch.float64), torch.randn(D_OUT, 1, generator=g,
                                                                                dtype=torch.float64)
    # reference: Ŵ = W + Λ (C⁻¹k)ᵀ, Λ = (v − Wk) / ((C⁻¹k)ᵀ k), with an explicit inverse
    c_inv_k = torch.linalg.inv(c0) @ k
    expected = ((v - w @ k) / (c_inv_k.T @ k)) @ c_inv_k.T
    for scale in (1.0, 15000.0):  # C = λ·C0: the scale cancels
        got = equality_update(preservation([(scale, c0)], 0.0, None, D_IN), k, v - w @ k)
        assert got.solved_with == "exact"
        torch.testing.assert_close(got.delta, expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose((w + expected) @ k, v, atol=1e-12)


def test_rome_original_code_form_with_the_bare_key(g):
    """ROME's code: direction C⁻¹k* (averaged key), constraint met at the bare key k_b."""
    c0 = spd(D_IN, g)
    k_star, k_bare = (torch.randn(D_IN, 1, generator=g, dtype=torch.float64) for _ in range(2))
    r = torch.randn(D_OUT, 1, generator=g, dtype=torch.float64)
    u = torch.linalg.inv(c0) @ k_star
    u = u / u.norm()
    expected = (r / (k_bare.T @ u)) @ u.T  # rome/compute_v.py: Δ = r uᵀ / (k_bᵀ u)
    got = equality_update(preservation([(1.0, c0)], 0.0, None, D_IN), k_bare, r, direction_keys=k_star)
    torch.testing.assert_close(got.delta, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got.delta @ k_bare, r, rtol=1e-10, atol=1e-12)


def kkt_reference(m: torch.Tensor, k: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """argmin tr(X M Xᵀ) s.t. X K = R, row by row from the KKT system [[2M, K], [Kᵀ, 0]] [xᵀ; μ] = [0; rᵀ]."""
    n, u = k.shape
    kkt = torch.zeros(n + u, n + u, dtype=torch.float64)
    kkt[:n, :n], kkt[:n, n:], kkt[n:, :n] = 2 * m, k, k.T
    rhs = torch.cat([torch.zeros(n, r.shape[0], dtype=torch.float64), r.T])
    return torch.linalg.solve(kkt, rhs)[:n].T


def test_emmet_meets_its_constraints_and_minimises_the_preservation_cost(g):
    c0, cp = spd(D_IN, g), spd(D_IN, g)
    k = torch.randn(D_IN, 4, generator=g, dtype=torch.float64)
    r = torch.randn(D_OUT, 4, generator=g, dtype=torch.float64)
    pres = preservation([(2.0, c0), (1.0, cp)], 0.5, None, D_IN)
    got = equality_update(pres, k, r, batch_ridge=0.0)
    assert got.solved_with == "exact" and got.kept == 4
    torch.testing.assert_close(got.delta @ k, r, rtol=1e-10, atol=1e-10)
    a = 2.0 * c0 + cp + 0.5 * torch.eye(D_IN, dtype=torch.float64)
    torch.testing.assert_close(got.delta, kkt_reference(a, k, r), rtol=1e-9, atol=1e-10)
    # EMMET's closed form (Gupta et al. 2024, arXiv 2403.14236) with explicit inverses
    a_inv = torch.linalg.inv(a)
    torch.testing.assert_close(got.delta, r @ torch.linalg.inv(k.T @ a_inv @ k) @ k.T @ a_inv, rtol=1e-9, atol=1e-10)


def test_emmet_lambda_is_a_ridge_on_the_batch_system(g):
    c0 = spd(D_IN, g)
    k = torch.randn(D_IN, 3, generator=g, dtype=torch.float64)
    r = torch.randn(D_OUT, 3, generator=g, dtype=torch.float64)
    got = equality_update(preservation([(1.0, c0)], 0.0, None, D_IN), k, r, batch_ridge=0.1)
    c_inv = torch.linalg.inv(c0)
    expected = r @ torch.linalg.inv(k.T @ c_inv @ k + 0.1 * torch.eye(3, dtype=torch.float64)) @ k.T @ c_inv
    assert got.solved_with == "ridge"
    torch.testing.assert_close(got.delta, expected, rtol=1e-9, atol=1e-10)
    # one request: no ridge (the reference adds λ_E only for batches of more than one)
    one = equality_update(preservation([(1.0, c0)], 0.0, None, D_IN), k[:, :1], r[:, :1], batch_ridge=0.1)
    assert one.solved_with == "exact"
    torch.testing.assert_close(one.delta @ k[:, :1], r[:, :1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["range", "complement"])
def test_the_subspace_restricted_solve_keeps_rows_in_range_p_and_meets_the_constraints(g, kind):
    cp = spd(D_IN, g)
    q, _ = torch.linalg.qr(torch.randn(D_IN, D_IN, generator=g, dtype=torch.float64))
    inside, outside = q[:, :8], q[:, 8:]  # P = inside insideᵀ
    sub = Subspace(basis=inside, kind="range") if kind == "range" else Subspace(basis=outside, kind="complement")
    k = torch.randn(D_IN, 3, generator=g, dtype=torch.float64)
    r = torch.randn(D_OUT, 3, generator=g, dtype=torch.float64)
    got = equality_update(preservation([(1.0, cp)], 10.0, sub, D_IN), k, r)
    p = inside @ inside.T
    assert float((got.delta - got.delta @ p).norm() / got.delta.norm()) < 1e-12
    torch.testing.assert_close(got.delta @ k, r, rtol=1e-9, atol=1e-10)
    # reference: X = Δ Q over coordinates y = Qᵀk, min tr(X (Qᵀ(Cp + αI)Q) Xᵀ) s.t. X QᵀK = R, by KKT
    m = inside.T @ (cp + 10.0 * torch.eye(D_IN, dtype=torch.float64)) @ inside
    torch.testing.assert_close(got.delta, kkt_reference(m, inside.T @ k, r) @ inside.T, rtol=1e-9, atol=1e-10)


def test_duplicate_keys_are_reduced_to_their_independent_combinations(g):
    """Two requests with the same key and different targets: no Δ meets both; without a ridge the solve
    holds their average exactly (the least-squares compromise) and says so."""
    c0 = spd(D_IN, g)
    k1, k2 = (torch.randn(D_IN, 1, generator=g, dtype=torch.float64) for _ in range(2))
    keys = torch.cat([k1, k2, k1], dim=1)
    r = torch.randn(D_OUT, 3, generator=g, dtype=torch.float64)
    got = equality_update(preservation([(1.0, c0)], 0.0, None, D_IN), keys, r, batch_ridge=0.0)
    assert got.solved_with == "reduced" and got.kept == 2 and got.dependent and got.key_condition < 1e-12
    torch.testing.assert_close(got.delta @ k1, (r[:, :1] + r[:, 2:]) / 2, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(got.delta @ k2, r[:, 1:2], rtol=1e-9, atol=1e-10)
    ridged = equality_update(preservation([(1.0, c0)], 0.0, None, D_IN), keys, r, batch_ridge=0.1)
    assert ridged.solved_with == "ridge" and ridged.dependent


def test_a_key_outside_the_subspace_gets_no_update(g):
    q, _ = torch.linalg.qr(torch.randn(D_IN, D_IN, generator=g, dtype=torch.float64))
    sub = Subspace(basis=q[:, :6], kind="range")
    key = q[:, 6:7] * 3.0  # orthogonal to range(P)
    got = equality_update(preservation([], 1.0, sub, D_IN), key, torch.ones(D_OUT, 1, dtype=torch.float64))
    assert got.kept == 0 and got.solved_with == "reduced"
    assert torch.count_nonzero(got.delta) == 0


def test_a_singular_preservation_matrix_is_flagged_and_pseudo_inverted(g):
    low = torch.randn(D_IN, 3, generator=g, dtype=torch.float64)
    pres = preservation([(1.0, low @ low.T)], 0.0, None, D_IN)
    assert pres.singular
    k = low[:, :1]  # in range(C): C⁺k is a valid direction
    r = torch.randn(D_OUT, 1, generator=g, dtype=torch.float64)
    got = equality_update(pres, k, r)
    torch.testing.assert_close(got.delta @ k, r, rtol=1e-8, atol=1e-10)


def test_with_keys_adds_earlier_requests_to_the_preservation(g):
    cp = spd(D_IN, g)
    k = torch.randn(D_IN, 2, generator=g, dtype=torch.float64)
    sub = Subspace(basis=torch.linalg.qr(torch.randn(D_IN, 5, generator=g, dtype=torch.float64))[0], kind="range")
    grown = preservation([(1.0, cp)], 2.0, sub, D_IN).with_keys(k)
    direct = preservation([(1.0, cp + k @ k.T)], 2.0, sub, D_IN)
    torch.testing.assert_close(grown.matrix, direct.matrix, rtol=1e-12, atol=1e-12)
