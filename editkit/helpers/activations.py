"""Fused equivalents of activation modules written as chains of elementwise ops, swapped in for
the duration of a block.

transformers' ``NewGELUActivation`` (GPT-2, GPT-J, GPT-Neo, ...: ``gelu_new``) evaluates
``0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`` as seven separate tensor ops, each saving its
input for the backward pass; ``torch.nn.functional.gelu(x, approximate="tanh")`` is the same
formula in one fused kernel (equal up to float rounding). In the v* optimisation of a small model
the unfused version takes a fifth of each step. :func:`fused_activations` replaces such modules
by the fused op inside a ``with`` block and always puts the originals back. In float32/float64
the two agree to rounding (5.6e-9 relative in float32); in float16/bfloat16 they differ by up to
~1e-3, so models in half precision keep their own modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["fused_activations"]

_GELU_TANH = frozenset({"NewGELUActivation"})  # class names whose forward is the tanh-approximate GELU


class _FusedGeluTanh(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x, approximate="tanh")


@contextmanager
def fused_activations(model: torch.nn.Module) -> Iterator[int]:
    """Swap known unfused activation modules of ``model`` for fused ones; yields how many
    (0 for a model in half precision)."""
    swapped: list[tuple[torch.nn.Module, str, torch.nn.Module]] = []
    parameter = next(model.parameters(), None)
    full_precision = parameter is None or parameter.dtype in (torch.float32, torch.float64)
    try:
        for parent in list(model.modules()) if full_precision else []:
            for name, child in list(parent.named_children()):
                if type(child).__name__ in _GELU_TANH:
                    setattr(parent, name, _FusedGeluTanh())
                    swapped.append((parent, name, child))
        yield len(swapped)
    finally:
        for parent, name, child in reversed(swapped):
            setattr(parent, name, child)
