"""The C0 spectrum profile a null-space run records for `editkit report`: small, exact at the ends, the
null-space size counted on the full spectrum."""

from __future__ import annotations

import json

import pytest
import torch

from editkit.keystats.spectrum import spectrum_profile


def test_a_small_spectrum_is_kept_whole_and_sorted():
    values = torch.tensor([0.5, 1e-4, 3.0, 1e-3], dtype=torch.float64)
    profile = spectrum_profile(values, threshold=2e-2)
    assert profile == {"d_in": 4, "threshold": 2e-2, "null_space": 2, "index": [0, 1, 2, 3],
                       "eigenvalues": [1e-4, 1e-3, 0.5, 3.0]}


def test_a_large_spectrum_is_downsampled_with_both_ends_and_the_full_null_space_size():
    values = torch.logspace(-8, 2, 4096, dtype=torch.float64)
    profile = spectrum_profile(values, threshold=2e-2, points=128)
    assert len(profile["index"]) == len(profile["eigenvalues"]) == 128
    assert profile["index"][0] == 0 and profile["index"][-1] == 4095
    assert profile["index"] == sorted(set(profile["index"]))
    assert profile["null_space"] == int((values < 2e-2).sum())  # counted on all 4096, not the sample
    assert profile["eigenvalues"][0] == pytest.approx(1e-8, rel=1e-3)
    assert profile["eigenvalues"][-1] == pytest.approx(100.0, rel=1e-3)
    assert len(json.dumps(profile)) < 4000  # small enough for every layer of result.json


def test_an_empty_spectrum_is_refused():
    with pytest.raises(ValueError, match="empty"):
        spectrum_profile(torch.zeros(0), threshold=1.0)
