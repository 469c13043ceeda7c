"""LyapLock (arXiv 2505.15702): the update against an independent float64 reference (the stationary point of the
objective it minimises, checked by its gradient), the preservation loss against explicit samples, and the queue.

Objective of a later batch (the authors' ``lyaplock_main.py``), with ``W`` the current weight:
    V‖(W+Δ)K − (WK + R)‖² + aZλ·E_k‖(W+Δ−W0)k‖² + V‖(W+Δ)Kp − Vp‖²,  Kp, Vp earlier batches' keys and values.
Tolerances: the gradient at the returned Δ is below 1e-9 of the gradient at Δ = 0 (float64 solve).
"""

from __future__ import annotations

import math

import pytest
import torch
from editkit_lyaplock.queue import Queue, lyaplock_update, preservation_loss

D_IN, D_OUT, U = 16, 5, 4


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(D_OUT, D_IN, generator=g, dtype=torch.float64)
    w = w0 + 0.1 * torch.randn(D_OUT, D_IN, generator=g, dtype=torch.float64)
    k = torch.randn(D_IN, U, generator=g, dtype=torch.float64)
    r = torch.randn(D_OUT, U, generator=g, dtype=torch.float64)
    samples = torch.randn(D_IN, 200, generator=g, dtype=torch.float64)
    c0 = samples @ samples.T / 200
    kp = torch.randn(D_IN, 6, generator=g, dtype=torch.float64)
    vp = torch.randn(D_OUT, 6, generator=g, dtype=torch.float64)
    return w0, w, k, r, samples, c0, kp, vp


def _gradient(delta, w0, w, k, r, c0, kp, vp, lam, qw, v):
    """d/dΔ of the objective above (halved): V((W+Δ)K − WK − R)Kᵀ + aZλ(W+Δ−W0)C0 + V((W+Δ)Kp − Vp)Kpᵀ."""
    x = w + delta
    return v * (x @ k - w @ k - r) @ k.T + qw * lam * (x - w0) @ c0 + v * (x @ kp - vp) @ kp.T


@pytest.mark.parametrize("qw, v", [(1.0, 1.0), (3.7, 1.0), (2.0, 0.5)])
def test_a_later_batchs_update_is_the_objectives_stationary_point(qw, v):
    w0, w, k, r, _, c0, kp, vp = _data()
    lam = 50.0
    delta = lyaplock_update(weight=w, initial=w0, c0=c0, keys=k, residual=r, lam=lam, queue_weight=qw,
                            value_weight=v, s_vk=vp @ kp.T, s_kk=kp @ kp.T)
    zero = _gradient(torch.zeros_like(w), w0, w, k, r, c0, kp, vp, lam, qw, v)
    assert float(_gradient(delta, w0, w, k, r, c0, kp, vp, lam, qw, v).norm()) < 1e-9 * float(zero.norm())


def test_the_first_batch_is_memits_solve():
    w0, _, k, r, _, c0, _, _ = _data(1)
    delta = lyaplock_update(weight=w0, initial=w0, c0=c0, keys=k, residual=r, lam=50.0, queue_weight=None,
                            value_weight=1.0, s_vk=None, s_kk=None)
    want = r @ k.T @ torch.linalg.inv(k @ k.T + 50.0 * c0)
    assert float((delta - want).norm() / want.norm()) < 1e-10


def test_the_preservation_loss_is_the_mean_squared_output_change_over_the_corpus():
    w0, w, _, _, samples, c0, _, _ = _data(2)
    explicit = float(((w - w0) @ samples).pow(2).sum()) / samples.shape[1]  # E‖(W − W0)k‖² over the samples
    assert preservation_loss(w, w0, c0) == pytest.approx(explicit, rel=1e-12)


def test_the_queue_grows_by_the_excess_over_the_budget_and_never_falls_below_its_floor():
    queue = Queue.start(loss=2.0, alpha=60.0)
    root = math.sqrt(120.0)
    assert (queue.budget, queue.scale, queue.value, queue.floor) == (2.0, 1 / root, root, root)
    assert queue.weight == pytest.approx(1.0, rel=1e-15)
    queue.step(loss=10.0, alpha=60.0, drift=0.0)  # below the budget αD = 120: stays at the floor
    assert queue.value == root
    queue.step(loss=200.0, alpha=60.0, drift=0.5)  # 80 above: Z + a·80 + b
    assert queue.value == pytest.approx(root + 80 / root + 0.5, rel=1e-15)
    assert queue.weight == pytest.approx((root + 80 / root + 0.5) / root, rel=1e-15)
