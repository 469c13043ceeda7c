"""BetaEdit (arXiv 2605.09285): the projected solve against the authors' own (non-symmetric) system in
``algs/betaedit/betaedit_main.py``, Δᵀ = solve(P(KKᵀ + Cp + λ1 C0) + λ2 I, P K Rᵀ); the refresh matrix; the refresh
schedule; Cp rebuilt at a refresh bit-identically to the kernel's ledger; and the stop rule.

Tolerances: float64, relative Frobenius error < 1e-9 (two solves of a well-conditioned system).
"""

from __future__ import annotations

import pytest
import torch
from editkit_betaedit.constraint import BetaEditStages, past_at, refresh_matrix
from editkit_betaedit.hparams import BetaEditHParams
from editkit_memit.solve import solve_update
from editkit_nullspace.projector import null_space

from editkit.errors import NumericalError
from editkit.ledger import KeyLedger
from editkit.sites import Site
from editkit.updates import DeltaProposal, SolveProblem

D_IN, D_OUT, U = 24, 7, 5
SITE = Site(layer=3, module="m", block="b", d_in=D_IN, d_out=D_OUT, transposed=False)


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(D_IN, U, generator=g, dtype=torch.float64)
    r = torch.randn(D_OUT, U, generator=g, dtype=torch.float64)
    batches = [torch.randn(D_IN, U, generator=g, dtype=torch.float64) for _ in range(3)]
    a = torch.randn(D_IN, 18, generator=g, dtype=torch.float64)  # rank 18 < 24: C0 has a null space
    c0 = a @ a.T / 18 + 1e-4 * torch.eye(D_IN, dtype=torch.float64)
    return k, r, batches, c0


@pytest.mark.parametrize("lambda1", [0.0, 3.0, 3000.0])
def test_the_projected_solve_is_betaedits_system(lambda1):
    k, r, batches, c0 = _data()
    cp = sum(b @ b.T for b in batches)
    evals, evecs = torch.linalg.eigh(c0)
    sub = null_space(evals, evecs, 2e-2, relative=False)
    assert 0 < sub.dim < D_IN
    p = sub.matrix()
    eye = torch.eye(D_IN, dtype=torch.float64)
    want = torch.linalg.solve(p @ (k @ k.T + cp + lambda1 * c0) + 10.0 * eye, p @ k @ r.T).T  # the authors' form
    terms = [(lambda1, c0), (1.0, cp)]
    got = solve_update(k, r, terms, 10.0, sub)  # what the kernel's MEMIT solve does with BetaEdit's problem
    assert float((got - want).norm() / want.norm()) < 1e-9
    assert float((got - got @ p).norm() / got.norm()) < 1e-12  # ΔP = Δ


def test_the_constraint_restricts_the_problem_to_its_projector_with_lambda1_and_lambda2():
    k, r, _, c0 = _data(1)
    stages = BetaEditStages(BetaEditHParams(lambda1=7.0, lambda2=3.0))
    run = _Run(c0, edits=0)
    problem = stages.editkit_constrain_update(run=run, site=SITE, proposal=SolveProblem(keys=k, residual=r))
    assert problem.use_background and problem.background_weight == 7.0 and problem.use_past and problem.ridge == 3.0
    evals, evecs = torch.linalg.eigh(c0)
    assert torch.allclose(problem.subspace.matrix(), null_space(evals, evecs, 2e-2, relative=False).matrix())


class _Stats:
    def __init__(self, c0):
        self.c0 = c0

    def second_moment(self, site):
        return self.c0

    def eigendecomposition(self, site):
        return torch.linalg.eigh(self.c0)


class _Run:
    def __init__(self, c0, edits):
        self.stats, self.edits_done, self.notes = _Stats(c0), edits, {}
        self.device = torch.device("cpu")

    def require_key_statistics(self):
        return self.stats

    def note(self, site, key, value):
        self.notes[key] = value


def test_p_is_refreshed_every_tau_edits_from_the_refresh_matrix():
    k, r, batches, c0 = _data(2)
    ledger = KeyLedger()
    stages = BetaEditStages(BetaEditHParams(lambda1=5.0, refresh_every=10))
    seen = []
    for edits in (0, 5, 10, 15):  # batches of 5: refreshes before the batch that starts at 10
        run = _Run(c0, edits)
        problem = SolveProblem(keys=k, residual=r, past=ledger.past.get("m"),
                               past_batches=ledger.past_batches("m"))
        restricted = stages.editkit_constrain_update(run=run, site=SITE, proposal=problem)
        seen.append((edits, stages.refreshed_at, restricted.subspace.matrix()))
        ledger.stage({"m": batches[len(seen) - 1] if len(seen) <= 3 else k})
        ledger.commit()
    assert [s[1] for s in seen] == [0, 0, 10, 10]
    cp = ledger.past_batches("m")
    past = past_at(cp, 10)  # Cp as the ledger held it at the refresh (float32)
    m = refresh_matrix(past, 10, c0, 5.0)
    assert torch.allclose(m, (past.double() / 10 + 5.0 * c0) / 6.0, rtol=1e-14)
    exact = cp[0] @ cp[0].T + cp[1] @ cp[1].T  # float64: Cp's float32 sums are within their rounding of it
    bound = 3 * U * torch.finfo(torch.float32).eps * float((cp[0].abs() @ cp[0].abs().T
                                                             + cp[1].abs() @ cp[1].abs().T).max())
    assert float((past.double() - exact).abs().max()) <= bound
    evals, evecs = torch.linalg.eigh(m)
    assert torch.equal(seen[2][2], null_space(evals, evecs, 2e-2, relative=False).matrix())
    assert torch.equal(seen[3][2], seen[2][2])  # kept until the next refresh


def test_cp_at_a_refresh_is_rebuilt_bit_identically_to_the_ledger():
    _, _, batches, _ = _data(3)
    ledger = KeyLedger()
    for b in batches:
        ledger.stage({"m": b})
        ledger.commit()
    assert torch.equal(past_at(ledger.past_batches("m"), 3 * U), ledger.past["m"])
    with pytest.raises(NumericalError, match="cannot rebuild Cp"):
        past_at(ledger.past_batches("m"), 2 * U + 1)


def test_the_stop_rule_refuses_an_update_too_large():
    k, r, _, c0 = _data(4)
    stages = BetaEditStages(BetaEditHParams(abort_norm=1.0))
    run = _Run(c0, edits=300)
    stages.editkit_constrain_update(run=run, site=SITE, proposal=SolveProblem(keys=k, residual=r))
    small = torch.full((D_OUT, D_IN), 0.9 * 5 ** 0.5 / (D_OUT * D_IN) ** 0.5, dtype=torch.float64)
    assert stages.editkit_constrain_update(run=run, site=SITE, proposal=DeltaProposal(site=SITE, delta=small)) is None
    with pytest.raises(NumericalError, match=r"layer 3 .*‖Δ‖_F/√u = 1.1.* after 300 edits"):
        stages.editkit_constrain_update(run=run, site=SITE, proposal=DeltaProposal(site=SITE, delta=small / 0.9 * 1.1))
