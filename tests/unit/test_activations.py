"""Fused activations: the same function, swapped only inside the block, always restored."""

from __future__ import annotations

import pytest
import torch
from transformers.activations import NewGELUActivation

from editkit.helpers.activations import fused_activations
from editkit.testing.tiny import tiny_model, tiny_tokenizer


def test_fused_gelu_equals_the_unfused_formula():
    x = torch.linspace(-8, 8, 4001, dtype=torch.float64, requires_grad=True)
    unfused = NewGELUActivation()(x)
    model = torch.nn.Sequential(NewGELUActivation())
    with fused_activations(model) as n:
        assert n == 1 and type(model[0]).__name__ != "NewGELUActivation"
        fused = model(x)
    torch.testing.assert_close(fused, unfused, rtol=1e-12, atol=1e-12)
    (g1,) = torch.autograd.grad(unfused.sum(), x)
    (g2,) = torch.autograd.grad(fused.sum(), x)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)
    assert isinstance(model[0], NewGELUActivation)


def test_model_outputs_unchanged_and_modules_restored_even_on_error():
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok)).double().eval()
    before = [m for m in model.modules()]
    ids = torch.tensor([tok("The mother tongue of Danielle Darrieux is").input_ids])
    with torch.no_grad():
        reference = model(input_ids=ids).logits
        with fused_activations(model) as n:
            assert n == model.config.n_layer
            fused = model(input_ids=ids).logits
    torch.testing.assert_close(fused, reference, rtol=1e-10, atol=1e-10)
    with pytest.raises(RuntimeError), fused_activations(model):
        raise RuntimeError("boom")
    assert [m for m in model.modules()] == before


def test_half_precision_models_keep_their_own_modules():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), NewGELUActivation()).to(torch.bfloat16)
    with fused_activations(model) as n:
        assert n == 0 and isinstance(model[1], NewGELUActivation)
