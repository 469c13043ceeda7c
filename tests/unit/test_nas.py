"""NAS (Norm-Anchor Scaling, arXiv 2602.02543): the anchoring of v* against a per-request float64 reference written
from the authors' ``NAS/compute_z.py``, the trimmed mean of ``util/vstar_stats.py``, the anchor sample, the stored
reference norm and its identity, and the state a resumed run gets back.

Tolerances: float64 throughout; the anchored vectors agree to 1e-12 relative (a few roundings of d-vector norms).
"""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from editkit_nas.anchor import _record_form, anchor_requests, trimmed_mean
from editkit_nas.constraint import EPS, NasStages, anchored
from editkit_nas.hparams import NasHParams
from hypothesis import given, settings
from hypothesis import strategies as st

from editkit.errors import UsageError


def reference(h: torch.Tensor, z: torch.Tensor, v0: torch.Tensor, norm: float, factor: float):
    """One request at a time, as the authors' code reads: v* = v0 + δ; skip above factor·n̄; else rescale."""
    out, skipped = [], []
    for hi, zi, vi in zip(h, z, v0):
        vstar = vi + (zi - hi)
        length = float(vstar.norm())
        if norm > 0 and length > factor * norm:
            vstar, skip = vi, True
        else:
            vstar, skip = (vstar * (norm / (length + EPS)) if length > EPS else vstar), False
        out.append((hi - vi) + vstar)
        skipped.append(skip)
    return torch.stack(out), skipped


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), norm=st.floats(0.1, 10.0), factor=st.sampled_from([2.0, 5.0]))
def test_anchoring_matches_the_per_request_reference(seed, norm, factor):
    g = torch.Generator().manual_seed(seed)
    u, d = 7, 12
    h = torch.randn(u, d, generator=g, dtype=torch.float64) * 3
    v0 = torch.randn(u, d, generator=g, dtype=torch.float64)
    scale = torch.rand(u, 1, generator=g, dtype=torch.float64) * 4 * norm  # some above factor·n̄, some below
    delta = torch.randn(u, d, generator=g, dtype=torch.float64)
    delta = delta / delta.norm(dim=-1, keepdim=True) * scale
    z = h + delta
    got, withdrawn = anchored(h, z, v0, norm, factor)
    want, skipped = reference(h, z, v0, norm, factor)
    assert withdrawn.tolist() == skipped
    assert float((got - want).norm()) <= 1e-12 * float(want.norm())
    vstar = v0 + (got - h)
    kept = ~withdrawn
    # every kept v* has the reference norm; a withdrawn request aims at its unedited output exactly
    # ‖v*·n̄/(‖v*‖ + ε)‖ = n̄·‖v*‖/(‖v*‖ + ε): within n̄·ε/‖v*‖ of n̄, plus float64 rounding
    length = (v0 + (z - h)).norm(dim=-1)[kept]
    gap = (vstar[kept].norm(dim=-1) - norm).abs()
    assert bool((gap <= norm * (EPS / length + 1e-14)).all())
    assert torch.equal(got[withdrawn], h[withdrawn])


def test_trimmed_mean_drops_the_largest_share():
    values = [float(v) for v in range(1, 101)]  # 1..100: drop floor(0.05·100) = 5 largest
    assert trimmed_mean(values, 0.05) == pytest.approx(sum(range(1, 96)) / 95, rel=1e-15)
    assert trimmed_mean([3.0, 1.0], 0.05) == 2.0  # floor(0.1) = 0 dropped
    assert trimmed_mean([5.0], 0.99) == 5.0  # at least one kept


def test_the_anchor_sample_is_the_authors_draw_and_reads_both_record_forms(tmp_path):
    flat = [{"case_id": i, "prompt": f"The capital of Country{i} is", "subject": f"Country{i}",
             "target_new": f"City{i}", "ground_truth": "Paris"} for i in range(50)]
    path = tmp_path / "cf.json"
    path.write_text(json.dumps(flat))
    requests = anchor_requests(str(path), 10, seed=0)
    expected = random.Random(0).sample(range(50), 10)
    assert [r.case_id for r in requests] == [str(i) for i in expected]
    assert requests[0].prompt == "The capital of {} is" and requests[0].target_new.strip() == f"City{expected[0]}"
    assert _record_form({"requested_rewrite": {}}, 0) == {"requested_rewrite": {}}  # CounterFact form kept
    assert len(anchor_requests(str(path), 500, seed=0)) == 50  # fewer records than asked: all of them


def test_a_bad_anchor_file_names_the_record(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"case_id": 0, "prompt": "x", "subject": "", "target_new": "y"}]))
    with pytest.raises(UsageError, match=r"nas.anchor_data=.*record 0"):
        anchor_requests(str(path), 1, seed=0)
    path.write_text("{")
    with pytest.raises(UsageError, match="not JSON"):
        anchor_requests(str(path), 1, seed=0)


def test_the_reference_norm_is_state_a_resumed_run_gets_back_exactly():
    stages = NasStages(NasHParams(norm=1.0))
    assert stages.editkit_save_state(run=None) is None  # nothing measured yet: nothing to journal
    stages.norm = math.pi * 1e3
    saved = stages.editkit_save_state(run=None)
    other = NasStages(NasHParams())
    other.editkit_load_state(run=None, states=[{}, saved])
    assert other.norm == stages.norm  # bit-exact (float64 tensor)
    other.editkit_load_state(run=None, states=[])
    assert other.norm is None
