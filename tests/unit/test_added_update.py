"""editkit.helpers.tracing.added_update: the model computes as if W + Δ (math layout), for Conv1D and Linear storage,
without writing the weight, and gradients reach Δ."""

from __future__ import annotations

import copy

import pytest
import torch

from editkit.helpers.tracing import added_update
from editkit.layout import resolve_layout
from editkit.plugins import PluginHost
from editkit.testing.tiny import tiny_model


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_added_update_equals_the_written_weight_and_passes_gradients(family):
    model = tiny_model(family, vocab_size=64, n_layers=3, d_model=32, d_mlp=48).double()
    site = resolve_layout(model, PluginHost(entry_points=False).catalog.entries["architectures"]).site(1)
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(site.d_out, site.d_in, generator=g, dtype=torch.float64) * 0.05
    ids = torch.randint(0, 64, (2, 7), generator=g)
    written = copy.deepcopy(model)
    with torch.no_grad():
        weight = written.get_submodule(site.module).weight
        weight.add_(delta.T if site.transposed else delta)
    before = model.get_submodule(site.module).weight.detach().clone()
    with added_update(model, site.module, delta):
        hooked = model(input_ids=ids).logits
    torch.testing.assert_close(hooked, written(input_ids=ids).logits, rtol=1e-10, atol=1e-10)
    assert torch.equal(model.get_submodule(site.module).weight, before)  # nothing written
    assert not torch.allclose(model(input_ids=ids).logits, hooked)  # and the hook is gone

    trainable = torch.zeros_like(delta, requires_grad=True)
    with added_update(model, site.module, trainable):
        model(input_ids=ids).logits.square().sum().backward()
    assert trainable.grad is not None and float(trainable.grad.norm()) > 0
