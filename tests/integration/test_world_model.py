"""The full world model (default :class:`BuildConfig`): knows its facts, is not over-confident.

Slow: the build takes a few minutes on two CPU cores. It uses the regular cache
(``$EDITKIT_CACHE/world/<tag>``), so a later run — or a benchmark — reuses the model.
"""

from __future__ import annotations

import pytest
import torch
from editkit_world import load_world, score_probes

from editkit.requests import requests_from_records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loaded():
    return load_world(progress=False)


def test_report_meets_targets(loaded) -> None:
    report = loaded.manifest.report
    assert report["reached_target"]
    assert report["train_recall"] >= 0.95
    assert 1e-5 <= report["wrong_object_median_prob"] <= 1e-1  # calibrated, not ~1e-11
    assert report["config"]["model"]["n_layer"] == 6


def test_greedy_generation_states_facts(loaded) -> None:
    model, tokenizer, world, _ = loaded
    probes = world.fact_probes()[::500]
    scores = score_probes(model, tokenizer, [p.prompt for p in probes], [p.target for p in probes])
    assert scores.recall >= 0.9
    for probe, hit in list(zip(probes, scores.hits))[:10]:
        ids = tokenizer(probe.prompt, return_tensors="pt")
        n = len(tokenizer(probe.target)["input_ids"])
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert (tokenizer.decode(out[0, ids["input_ids"].shape[1]:]) == probe.target) == hit


def test_requests_target_known_facts(loaded) -> None:
    model, tokenizer, world, _ = loaded
    requests = requests_from_records(world.requests(50, seed=0))
    scores = score_probes(model, tokenizer, [r.filled_prompt for r in requests], [r.target_true for r in requests])
    assert scores.recall >= 0.9
