"""Tests of editkit-normclamp, written with editkit's public test support only:
the ``editkit.testing.fixtures`` pytest plugin and the conformance suite."""

from __future__ import annotations

import editkit_normclamp
import pytest
import torch

from editkit.testing.conformance import make_conformance_tests

pytest_plugins = ["editkit.testing.fixtures"]

# The whole hook-contract suite, on GPT-2 and Llama; ratio 0.01 so that the clamp is active in its runs.
TestNormclampConformance = make_conformance_tests(
    plugin=editkit_normclamp, constraint="normclamp", overrides={"normclamp.ratio": "0.01"},
    invalid_hparams={"ratio": ["0", "-1", "nan", "inf"]},
)


def factors(outcome) -> list[float]:
    return [notes["normclamp.factor"] for report in outcome.run.reports for notes in report.layers.values()]


def test_registers_the_constraint_with_its_hyperparameter(plugin_manager):
    host = plugin_manager(editkit_normclamp)
    spec = host.catalog.get("constraints", "normclamp")
    assert host.catalog.providers[("constraints", "normclamp")] == "normclamp"
    assert spec.hparams().ratio == 0.1
    assert spec.linear is False and "commutes" in spec.invariant


@pytest.mark.parametrize("tiny_family", ["gpt2", "llama"])
def test_every_written_update_is_bounded(editkit_run):
    ratio = 0.01
    outcome = editkit_run(constraints=["normclamp"], plugins=[editkit_normclamp], batch_size=2,
                          overrides={"normclamp.ratio": str(ratio)})
    assert min(factors(outcome)) < 1  # the clamp was active
    weights = {s.module: outcome.initial_weight(s) for s in outcome.sites}
    for batch in outcome.batch_written:
        for site in outcome.sites:
            delta, weight = batch[site.module], weights[site.module]
            assert float(delta.norm()) <= ratio * float(weight.norm()) * (1 + 1e-5)
            weights[site.module] = weight + delta
    outcome.assert_preserved()
    outcome.assert_undo_exact()


def test_a_loose_bound_leaves_the_update_unchanged(editkit_run):
    plain = editkit_run()
    written = plain.written
    plain.assert_undo_exact()  # tiny_model is back to its initial weights, bit for bit
    loose = editkit_run(constraints=["normclamp"], plugins=[editkit_normclamp], overrides={"normclamp.ratio": "1e6"})
    assert factors(loose) == [1.0] * len(loose.sites)
    assert all(torch.equal(loose.written[m], written[m]) for m in written)


@pytest.mark.parametrize("tiny_model", ["qwen2"], indirect=True)
def test_composes_with_the_null_space_and_still_edits(editkit_run):
    outcome = editkit_run(constraints=["normclamp", "nullspace"], plugins=[editkit_normclamp],
                          overrides={"normclamp.ratio": "0.05"})
    outcome.assert_edited()
    outcome.assert_preserved(tol=1e-6)  # ‖Δ − ΔP‖/‖Δ‖ with the run's own P, and the preserved keys' outputs
    outcome.assert_undo_exact()
