"""v* from the edit layer up: run only the blocks after the last edited one at each step.

δ enters at the output of block ``L``; blocks ``0..L`` do not depend on δ. One forward pass
without gradients records ``h^L`` ``[n, T, d_model]`` and the arguments every later block was
called with (attention masks, position ids or rotary embeddings — whatever the family passes).
Each optimisation step then runs blocks ``L+1..end`` on ``h^L + shift`` and the final norm,
for the rows still being optimised. A self-check against the full model at δ = 0 decides
whether the family's head is reproduced exactly; if not, callers fall back to the full forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from editkit.layout import ModelLayout
from editkit.tracing import capture_outputs, edit_output


class Unsupported(Exception):
    """The captured block arguments cannot be re-used (unknown argument types)."""


def _subset(value: Any, rows: torch.Tensor, n: int) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.Tensor):
        return value[rows] if value.dim() >= 1 and value.shape[0] == n and n > 1 else value
    if isinstance(value, tuple | list):
        return type(value)(_subset(v, rows, n) for v in value)
    if isinstance(value, dict):
        return {k: _subset(v, rows, n) for k, v in value.items()}
    raise Unsupported(f"cannot re-use a block argument of type {type(value).__name__}")


class FullForward:
    """Every step runs the whole model, with δ added by a hook at block ``L``'s output."""

    def __init__(self, model: torch.nn.Module, block: str, inputs: dict[str, torch.Tensor]) -> None:
        self.model, self.block, self.inputs = model, block, inputs

    def __call__(
        self, rows: torch.Tensor, add: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h^L before the shift [n, T, d], final hidden states [n, T, d])`` for ``rows``."""
        seen: dict[str, torch.Tensor] = {}

        def shifted(h: torch.Tensor) -> torch.Tensor:
            seen["h"] = h
            return add(h)

        inputs = {k: v[rows] for k, v in self.inputs.items()}
        with edit_output(self.model, self.block, shifted):
            hidden = self.model.base_model(**inputs, use_cache=False).last_hidden_state
        return seen["h"], hidden


class UpperForward:
    """Blocks ``L+1..end`` and the final norm only, from a recorded ``h^L``."""

    def __init__(self, model: torch.nn.Module, layout: ModelLayout, layer: int, inputs: dict[str, torch.Tensor]):
        if layout.final_norm is None:
            raise Unsupported("no final norm resolved")
        self.blocks = [model.get_submodule(layout.blocks[i]) for i in range(layer + 1, layout.n_layers)]
        self.norm = model.get_submodule(layout.final_norm)
        self.n = int(inputs["input_ids"].shape[0])
        calls: list[tuple[tuple, dict]] = []

        def record(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            calls.append((args[1:], {k: v for k, v in kwargs.items() if k != "hidden_states"}))

        handles = [b.register_forward_pre_hook(record, with_kwargs=True) for b in self.blocks]
        try:
            with torch.no_grad(), capture_outputs(model, [layout.blocks[layer]]) as out:
                self.reference = model.base_model(**inputs, use_cache=False).last_hidden_state  # [N, T, d]
            self.base = out[layout.blocks[layer]].detach()  # h^L [N, T, d]
        finally:
            for h in handles:
                h.remove()
        if len(calls) != len(self.blocks):
            raise Unsupported("the later blocks were not each called once")
        self.calls = calls
        everything = torch.arange(self.n, device=self.base.device)
        with torch.no_grad():
            _, again = self(everything, lambda h: h)
        scale = float(self.reference.norm())
        if float((again - self.reference).norm()) > 1e-4 * max(scale, 1e-12):
            raise Unsupported("recomputing the later blocks does not reproduce the model's hidden states")

    def __call__(
        self, rows: torch.Tensor, add: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        base = self.base[rows]
        h = add(base)
        for block, (args, kwargs) in zip(self.blocks, self.calls):
            out = block(h, *_subset(args, rows, self.n), **_subset(kwargs, rows, self.n))
            h = out[0] if isinstance(out, tuple) else out
        return base, self.norm(h)


def make_forward(
    model: torch.nn.Module, layout: ModelLayout | None, layer: int, block: str, inputs: dict[str, torch.Tensor],
    mode: str,
) -> FullForward | UpperForward:
    """``mode``: ``full``, ``upper`` (error if unsupported) or ``auto`` (upper, else full)."""
    if mode == "full" or layout is None:
        return FullForward(model, block, inputs)
    try:
        return UpperForward(model, layout, layer, inputs)
    except Unsupported:
        if mode == "upper":
            raise
        return FullForward(model, block, inputs)
