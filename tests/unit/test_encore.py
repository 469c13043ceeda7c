"""ENCORE (arXiv 2502.01636): its solve against the closed form of the authors' ``encore_main.py``,
Δ = R Kᵀ (λ_p C0 + λ_n I + Σ_prev K Kᵀ + K Kᵀ)⁻¹ (float64, relative error < 1e-9), alone and under the null-space
restriction (AlphaEdit's closed form with the ridge L2 + λ_n); and most-probable early stopping in the v*
optimisation.
"""

from __future__ import annotations

import attrs
import torch
from editkit_encore.editor import EncoreStages
from editkit_encore.hparams import EncoreHParams
from editkit_memit.targets import VStarSettings, optimise_targets
from editkit_nullspace.projector import null_space

from editkit.helpers.tracing import edit_output
from editkit.sites import Site
from editkit.testing.tiny import TINY_DIMS, tiny_model, tiny_requests, tiny_tokenizer
from editkit.updates import SolveProblem

D_IN, D_OUT, U = 20, 6, 4


class _Stats:
    def __init__(self, c0):
        self.c0 = c0

    def second_moment(self, site):
        return self.c0


class _Run:
    def __init__(self, c0):
        self.stats = _Stats(c0)

    def require_key_statistics(self):
        return self.stats


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(D_IN, U, generator=g, dtype=torch.float64)
    r = torch.randn(D_OUT, U, generator=g, dtype=torch.float64)
    earlier = [torch.randn(D_IN, 3, generator=g, dtype=torch.float64) for _ in range(2)]
    a = torch.randn(D_IN, 40, generator=g, dtype=torch.float64)
    c0 = a @ a.T / 40
    cp = earlier[0] @ earlier[0].T + earlier[1] @ earlier[1].T
    return k, r, earlier, cp, c0


SITE = Site(layer=0, module="m", block="b", d_in=D_IN, d_out=D_OUT, transposed=False)


def test_the_solve_is_encores_closed_form():
    k, r, earlier, cp, c0 = _problem()
    hp = EncoreHParams(mom2_weight=15.0, increment_penalty=2.5)
    problem = SolveProblem(keys=k, residual=r, past=cp, past_batches=earlier)
    got = EncoreStages(hp).editkit_solve(run=_Run(c0), batch=None, site=SITE, problem=problem)
    want = r @ k.T @ torch.linalg.inv(15.0 * c0 + 2.5 * torch.eye(D_IN, dtype=torch.float64) + cp + k @ k.T)
    assert float((got - want).norm() / want.norm()) < 1e-9


def test_with_the_null_space_the_increment_penalty_adds_to_alphaedits_ridge():
    k, r, earlier, cp, c0 = _problem(1)
    evals, evecs = torch.linalg.eigh(c0)
    sub = null_space(evals, evecs, float(evals[8]), relative=False)  # the 8 smallest directions
    p = sub.matrix()
    hp = EncoreHParams(mom2_weight=15.0, increment_penalty=2.5)
    problem = SolveProblem(keys=k, residual=r, past=cp, past_batches=earlier).restricted(
        sub, use_background=False, use_past=True, ridge=10.0)
    got = EncoreStages(hp).editkit_solve(run=_Run(c0), batch=None, site=SITE, problem=problem)
    eye = torch.eye(D_IN, dtype=torch.float64)
    want = r @ k.T @ p @ torch.linalg.inv(cp @ p + k @ k.T @ p + 12.5 * eye)  # AlphaEdit Eq. 14, L2 + λ_n
    assert float((got - want).norm() / want.norm()) < 1e-9


BLOCK = "model.layers.1"


def _requests():
    """Single-token targets (the tiny tokenizer has ``ĠParis``, ``Ġthe``, ...), so one shift at the subject's last
    token can make them top-1; the prompts end with the subject, where the target's token is predicted."""
    return [attrs.evolve(r, target_new=t) for r, t in zip(tiny_requests(4), ("Paris", "the", "was", "plays"))]


def _targets(model, tokenizer, stop_after_argmax: int, steps: int = 20, group_size: int = 0):
    settings = VStarSettings(lr=0.5, steps=steps, weight_decay=0.0, clamp_norm=4.0, kl_factor=0.0625,
                             early_stop_loss=0.0, stop_after_argmax=stop_after_argmax)
    return optimise_targets(model, tokenizer, block=BLOCK, requests=_requests(), templates=("{}",),
                            settings=settings, device=torch.device("cpu"), group_size=group_size)


def _top1(model, tokenizer, request, z_row) -> bool:
    """Whether the target is the argmax after the prompt with block 1's output at the last token set to ``z``."""
    ids = tokenizer(request.prompt.format(request.subject))["input_ids"]
    target = tokenizer(request.prompt.format(request.subject) + " " + request.target_new.strip())["input_ids"][-1]

    def shifted(h):
        h = h.clone()
        h[0, -1] = z_row.to(h.dtype)
        return h

    with torch.no_grad(), edit_output(model, BLOCK, shifted):
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    return int(logits.argmax()) == target


def test_most_probable_early_stopping_stops_on_the_nth_step_at_which_the_target_is_top1():
    """Reference: the v* trajectory without MPES (z after k steps is the run with k + 1 iterations), each point
    checked by a forward with block 1's output replaced; MPES with n must stop on the n-th top-1 point and return it."""
    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", vocab_size=len(tokenizer), logit_scale=20.0, **TINY_DIMS)
    trajectory = [_targets(model, tokenizer, 0, steps=k + 1).z for k in range(20)]  # z_k [u, d]
    requests = _requests()
    for n in (1, 2):
        got = _targets(model, tokenizer, n)
        for i, request in enumerate(requests):
            hits = [k for k in range(20) if _top1(model, tokenizer, request, trajectory[k][i])]
            expected = hits[n - 1] if len(hits) >= n else 19
            assert got.steps[i] == expected, (request.target_new, n, hits)
            assert torch.allclose(got.z[i], trajectory[expected][i], rtol=1e-5, atol=1e-6)
    assert any(s < 19 for s in _targets(model, tokenizer, 1).steps)  # the test exercises an actual stop
    # stopping is per request and the requests are independent: batched equals one request at a time
    batched, alone = _targets(model, tokenizer, 2), _targets(model, tokenizer, 2, group_size=1)
    assert alone.steps == batched.steps
    assert torch.allclose(alone.z, batched.z, rtol=1e-5, atol=1e-6)
