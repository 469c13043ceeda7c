"""Model layouts: every covered family resolves on a tiny random model; hooks on each site fire."""

from __future__ import annotations

import pytest
import torch

from editkit.helpers.tracing import capture_inputs
from editkit.layout import LayoutError, resolve_layout
from editkit.plugins import PluginHost
from editkit.testing.tiny import FAMILIES, tiny_model


@pytest.fixture(scope="module")
def architectures():
    return PluginHost().catalog.entries["architectures"]


@pytest.mark.parametrize("family", FAMILIES)
def test_family_resolves_and_sites_fire(family, architectures):
    model = tiny_model(family, n_layers=3, d_model=32, d_mlp=96)
    layout = resolve_layout(model, architectures)
    assert layout.source == "catalog" and layout.n_layers == 3
    assert (layout.d_model, layout.d_mlp) == (32, 96)
    assert layout.transposed == (family == "gpt2")
    for layer in range(3):
        site = layout.site(layer)
        assert tuple(model.get_submodule(site.module).weight.shape) == site.storage_shape
    names = [layout.site(i).module for i in range(3)]
    with capture_inputs(model, names) as cap:
        model(input_ids=torch.tensor([[5, 6, 7, 8]]))
    assert set(cap) == set(names)
    assert all(cap[n].shape[-1] == 96 for n in names)
    assert layout.final_norm is not None and layout.unembed is not None


@pytest.mark.parametrize("family", ["gpt2", "llama", "gpt_neox"])
def test_structural_fallback_finds_the_same_sites(family, architectures):
    model = tiny_model(family, n_layers=2, d_model=32, d_mlp=96)
    known = resolve_layout(model, architectures)
    found = resolve_layout(model, {})
    assert found.source == "structural"
    assert found.mlp_out == known.mlp_out and found.transposed == known.transposed


def test_unsupported_model_names_what_is_missing():
    class NoMlp(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"model_type": "weird", "num_hidden_layers": 2, "hidden_size": 8})()
            self.layers = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(2)])

    with pytest.raises(LayoutError, match="no MLP down-projection"):
        resolve_layout(NoMlp(), {})
    model = tiny_model("gpt2", n_layers=2)
    with pytest.raises(LayoutError, match="layer 5 is out of range"):
        resolve_layout(model, {}).site(5)


def test_capture_context_reused_across_forwards_stops_after_the_last_module_each_time():
    from editkit.helpers.tracing import run_until_stopped

    model = tiny_model("gpt2", n_layers=3, d_model=32, d_mlp=96)
    names = ["transformer.h.0.mlp.c_proj", "transformer.h.2.mlp.c_proj"]
    with capture_inputs(model, names, stop_after_last=True) as cap:
        run_until_stopped(lambda: model(input_ids=torch.tensor([[1, 2, 3]])))
        first = {k: v.clone() for k, v in cap.items()}
        run_until_stopped(lambda: model(input_ids=torch.tensor([[4, 5, 6]])))
    for name in names:  # both modules captured the second forward's inputs, not stale ones
        assert not torch.equal(cap[name], first[name])


def test_capture_outputs_stops_after_the_last_module_and_matches_a_full_forward():
    from editkit.helpers.tracing import capture_outputs, run_until_stopped

    model = tiny_model("llama", n_layers=3, d_model=32, d_mlp=96)
    names = ["model.layers.0", "model.layers.1"]
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad(), capture_outputs(model, [*names, "model.layers.2"]) as full:
        model(input_ids=ids)
    reached = []
    handle = model.get_submodule("model.layers.2").register_forward_pre_hook(lambda m, a: reached.append(1))
    try:
        with torch.no_grad(), capture_outputs(model, names, stop_after_last=True) as cap:
            run_until_stopped(lambda: model(input_ids=ids))
            run_until_stopped(lambda: model(input_ids=ids))  # the context stops every forward, not only the first
    finally:
        handle.remove()
    assert reached == []  # the forward ended after layer 1's output
    for name in names:
        assert torch.equal(cap[name], full[name])
