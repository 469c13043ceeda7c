"""Site.to_math / Site.to_storage: the one place that knows a module's storage layout (GPT-2's Conv1D stores
Wᵀ, nn.Linear stores W); math layout is ``v = W k`` with ``W`` ``[d_out, d_in]``."""

from __future__ import annotations

import pytest
import torch

from editkit.layout import resolve_layout
from editkit.plugins import PluginHost
from editkit.sites import Site
from editkit.testing.tiny import tiny_model


@pytest.fixture(scope="module")
def architectures():
    return PluginHost().catalog.entries["architectures"]


@pytest.mark.parametrize(("family", "module_class"), [("gpt2", "Conv1D"), ("llama", "Linear")])
def test_to_math_is_the_map_the_module_computes(family, module_class, architectures):
    model = tiny_model(family, n_layers=2, d_model=16, d_mlp=40)
    site = resolve_layout(model, architectures).site(1)
    module = model.get_submodule(site.module)
    assert type(module).__name__ == module_class
    assert site.transposed == (module_class == "Conv1D")
    w = site.to_math(module.weight.detach())
    assert tuple(w.shape) == (site.d_out, site.d_in) == (16, 40)
    keys = torch.randn(3, site.d_in, generator=torch.Generator().manual_seed(0))
    bias = module.bias.detach() if getattr(module, "bias", None) is not None else 0.0
    with torch.no_grad():
        expected = module(keys) - bias  # [3, d_out]
    torch.testing.assert_close(keys @ w.T, expected)  # v = W k, one key per row here


@pytest.mark.parametrize("transposed", [True, False])
def test_round_trip_is_exact_and_copies_nothing(transposed):
    site = Site(layer=0, module="m", block="b", d_in=5, d_out=3, transposed=transposed)
    stored = torch.randn(*site.storage_shape, dtype=torch.float64)
    math = site.to_math(stored)
    assert tuple(math.shape) == (3, 5)
    back = site.to_storage(math)
    assert tuple(back.shape) == site.storage_shape
    assert torch.equal(back, stored) and back.data_ptr() == stored.data_ptr()  # views, bit for bit
    delta = torch.randn(3, 5, dtype=torch.float64)
    assert torch.equal(site.to_math(site.to_storage(delta)), delta)


def test_to_storage_then_add_is_the_math_update():
    """What the kernel's apply does: W_stored + to_storage(Δ) is W + Δ in math layout."""
    site = Site(layer=0, module="m", block="b", d_in=4, d_out=2, transposed=True)
    stored = torch.randn(4, 2, dtype=torch.float64)
    delta = torch.randn(2, 4, dtype=torch.float64)
    torch.testing.assert_close(site.to_math(stored + site.to_storage(delta)), site.to_math(stored) + delta)
