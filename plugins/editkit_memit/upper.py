"""The forward passes of the v* optimisation: full, from the edit layer up, or suffix only.

δ enters at the output of block ``L`` at the subject's last token (column ``c_r`` of row
``r``). Two things do not depend on δ, and each strategy skips one of them:

* **upper** — blocks ``0..L``: one forward pass without gradients records ``h^L``
  ``[n, T, d_model]`` and the arguments every later block was called with (attention masks,
  position ids or rotary embeddings — whatever the family passes); each step runs blocks
  ``L+1..end`` and the final norm only.
* **suffix** — every column before ``c_r``, in every block (attention is causal). With the
  prompts left-padded, all prompts of a request end with the same tokens after the subject,
  so the columns ``s = min_r c_r .. T`` hold every position δ can reach. One forward pass over
  columns ``0..s`` fills the model's key/value cache; each step runs the whole model on
  columns ``s..T`` only (typically 3–6 of 20–30), attending to the cached prefix.

Each forward returns ``(h^L before the shift, final hidden states)`` for the columns
``offset..T`` (``offset`` = 0, or ``s``). A self-check against the full model at δ = 0
decides whether a strategy reproduces the family exactly; if not, ``auto`` falls back
(suffix → upper → full). The check runs on a few rows (:func:`check_rows`: the first, the
most and the least padded), through the same row selection a step uses: whether a family's
blocks or cache can be re-run is a property of the family, and the full-batch check cost as
much as several steps of a real model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from editkit.api import ModelLayout, cache_argument, cache_of, capture_outputs, edit_output


class Unsupported(Exception):
    """The captured block arguments cannot be re-used (unknown argument types)."""


def _subset(value: Any, rows: torch.Tensor, n: int, cache: Any = None) -> Any:
    """``value`` (a recorded block argument) restricted to ``rows`` of ``n``; a key/value cache
    is replaced by ``cache`` (the caller's copy, already restricted)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if cache is not None and hasattr(value, "batch_select_indices"):
        return cache
    if isinstance(value, torch.Tensor):
        return value[rows] if value.dim() >= 1 and value.shape[0] == n and n > 1 else value
    if isinstance(value, tuple | list):
        return type(value)(_subset(v, rows, n, cache) for v in value)
    if isinstance(value, dict):
        return {k: _subset(v, rows, n, cache) for k, v in value.items()}
    raise Unsupported(f"cannot re-use a block argument of type {type(value).__name__}")


def _shifted_forward(
    model: torch.nn.Module, block: str, add: Callable[[torch.Tensor], torch.Tensor], **inputs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole model with block ``L``'s output ``h`` replaced by ``add(h)``:
    ``(h before the shift, final hidden states)``."""
    seen: dict[str, torch.Tensor] = {}

    def shifted(h: torch.Tensor) -> torch.Tensor:
        seen["h"] = h
        return add(h)

    with edit_output(model, block, shifted):
        hidden = _base(model)(**inputs).last_hidden_state
    return seen["h"], hidden


class _LaterBlocks:
    """Blocks ``L+1..end`` and the final norm, re-run alone on ``h^L + shift``.

    :meth:`record` runs one forward and keeps ``h^L`` ``[N, T', d]`` and the arguments each later
    block was called with (masks, position ids or rotary embeddings, a cache — whatever the family
    passes); a call then re-runs those blocks for a subset of rows, with a cache argument replaced
    by the caller's own copy.
    """

    def __init__(self, blocks: list, norm: torch.nn.Module, base: torch.Tensor, calls: list) -> None:
        self.blocks, self.norm, self.base, self.calls = blocks, norm, base, calls
        self.n = int(base.shape[0])

    @classmethod
    def record(cls, model: torch.nn.Module, layout: ModelLayout, layer: int,
               forward: Callable[[], torch.Tensor]) -> tuple[_LaterBlocks, torch.Tensor]:
        """Run ``forward()`` (the model, once) recording; returns the stack and what it returned."""
        if layout.final_norm is None:
            raise Unsupported("no final norm resolved")
        blocks = [model.get_submodule(layout.blocks[i]) for i in range(layer + 1, layout.n_layers)]
        calls: list[tuple[tuple, dict]] = []

        def record(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            calls.append((args[1:], {k: v for k, v in kwargs.items() if k != "hidden_states"}))

        handles = [b.register_forward_pre_hook(record, with_kwargs=True) for b in blocks]
        try:
            with torch.no_grad(), capture_outputs(model, [layout.blocks[layer]]) as out:
                result = forward()
        finally:
            for h in handles:
                h.remove()
        if len(calls) != len(blocks):
            raise Unsupported("the later blocks were not each called once")
        return cls(blocks, model.get_submodule(layout.final_norm), out[layout.blocks[layer]].detach(), calls), result

    def __call__(
        self, rows: torch.Tensor, add: Callable[[torch.Tensor], torch.Tensor], cache: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h^L of rows before the shift, final hidden states after the norm)``."""
        base = self.base[rows]
        h = add(base)
        for block, (args, kwargs) in zip(self.blocks, self.calls):
            out = block(h, *_subset(args, rows, self.n, cache), **_subset(kwargs, rows, self.n, cache))
            h = out[0] if isinstance(out, tuple) else out
        return base, self.norm(h)


class FullForward:
    """Every step runs the whole model, with δ added by a hook at block ``L``'s output."""

    offset = 0

    def __init__(self, model: torch.nn.Module, block: str, inputs: dict[str, torch.Tensor]) -> None:
        self.model, self.block, self.inputs = model, block, inputs

    def __call__(
        self, rows: torch.Tensor, add: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h^L before the shift [n, T, d], final hidden states [n, T, d])`` for ``rows``."""
        inputs = {k: v[rows] for k, v in self.inputs.items()}
        return _shifted_forward(self.model, self.block, add, **inputs, use_cache=False)


class UpperForward:
    """Blocks ``L+1..end`` and the final norm only, from a recorded ``h^L``."""

    offset = 0

    def __init__(self, model: torch.nn.Module, layout: ModelLayout, layer: int, inputs: dict[str, torch.Tensor],
                 check: bool = True):
        self.later, reference = _LaterBlocks.record(
            model, layout, layer, lambda: _base(model)(**inputs, use_cache=False).last_hidden_state  # [N, T, d]
        )
        if not check:
            return
        rows = check_rows(inputs["attention_mask"]) if "attention_mask" in inputs else torch.arange(self.later.n)
        reference = reference[rows]
        with torch.no_grad():
            _, again = self(rows, lambda h: h)
        if float((again - reference).norm()) > 1e-4 * max(float(reference.norm()), 1e-12):
            raise Unsupported("recomputing the later blocks does not reproduce the model's hidden states")

    def __call__(
        self, rows: torch.Tensor, add: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.later(rows, add)


class SuffixForward:
    """The whole model on columns ``offset..T`` only, attending to a cached prefix ``0..offset``.

    ``inputs`` must be left-padded ``[N, T]``; ``split`` is the first column any δ reaches
    (the smallest subject column). The prefix cache is computed once, without gradients; each
    call runs on its own copy of the cache restricted to the requested rows, so calls are
    independent.
    """

    def __init__(self, model: torch.nn.Module, block: str, inputs: dict[str, torch.Tensor], split: int,
                 layout: ModelLayout | None = None, layer: int = -1, trusted: bool | None = None):
        """``trusted``: None checks what reproduces the model (blocks after L alone, else the whole suffix);
        True / False uses the blocks after L alone / the whole suffix unchecked (as a checked forward of the
        same model and layer found)."""
        if split < 1:
            raise Unsupported("no prefix to cache")
        self.model, self.block, self.inputs, self.offset = model, block, inputs, int(split)
        self.n = int(inputs["input_ids"].shape[0])
        prefix = {k: v[:, : self.offset] for k, v in inputs.items()}
        try:
            with torch.no_grad():
                output = _base(model)(**prefix, use_cache=True)
        except (TypeError, ValueError) as error:
            raise Unsupported(f"the model's forward takes no key/value cache: {error}") from error
        self.cache = cache_of(output)
        if self.cache is None or not hasattr(self.cache, "batch_select_indices"):
            raise Unsupported("the model returned no selectable key/value cache")
        self.cache_argument = cache_argument(_base(model))
        self._rows: torch.Tensor | None = None
        self._cache: Any = None
        self.upper: _LaterBlocks | None = None  # recorded on the suffix columns
        everything = torch.arange(self.n, device=inputs["input_ids"].device)
        if trusted is not None:
            if trusted:
                assert layout is not None, "a trusted upper-blocks forward needs the layout"
                self.upper, _ = _LaterBlocks.record(model, layout, layer, lambda: self._forward(everything))
            return
        checked = check_rows(inputs["attention_mask"])
        with torch.no_grad():
            reference = _base(model)(**{k: v[checked] for k, v in inputs.items()},
                                         use_cache=False).last_hidden_state[:, self.offset :]
            scale = max(float(reference.norm()), 1e-12)

            def reproduces() -> bool:
                for _ in range(2):  # twice: each step must start again from the prefix
                    _, again = self(checked, lambda h: h)
                    if not bool(torch.isfinite(again).all()) or float((again - reference).norm()) > 1e-4 * scale:
                        return False
                return True

            if layout is not None and layout.final_norm is not None and 0 <= layer < layout.n_layers - 1:
                try:
                    self.upper, _ = _LaterBlocks.record(model, layout, layer, lambda: self._forward(everything))
                except Unsupported:
                    self.upper = None
                if self.upper is not None and not reproduces():
                    self.upper = None  # the blocks after L cannot be re-run alone: run the whole suffix
            if self.upper is None and not reproduces():
                raise Unsupported("the cached prefix does not reproduce the model's hidden states")

    def _suffix_inputs(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.inputs["input_ids"][rows, self.offset :],
            "attention_mask": self.inputs["attention_mask"][rows],  # [n, T]: prefix and suffix
            "position_ids": self.inputs["position_ids"][rows, self.offset :],
        }

    def __call__(
        self, rows: torch.Tensor, add: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h^L before the shift, final hidden states)``, each ``[n, T - offset, d]``, for ``rows``."""
        if self.upper is not None:  # blocks L+1..end only, from the recorded h^L
            return self.upper(rows, add, self._cache_for(rows))
        return _shifted_forward(self.model, self.block, add, **self._suffix_inputs(rows), use_cache=True,
                                **{self.cache_argument: self._cache_for(rows)})

    def _forward(self, rows: torch.Tensor) -> torch.Tensor:
        """The model on the suffix columns of ``rows`` (no shift), on its own copy of the cache."""
        return _base(self.model)(**self._suffix_inputs(rows), use_cache=True,
                                     **{self.cache_argument: self._cache_for(rows)}).last_hidden_state

    def _cache_for(self, rows: torch.Tensor) -> Any:
        """A fresh copy of the prefix cache restricted to ``rows`` (the forward appends to it and
        records autograd history on it, so each step needs its own)."""
        if self._rows is None or not torch.equal(self._rows, rows):
            selected = copy.deepcopy(self.cache)
            if len(rows) != self.n:
                selected.batch_select_indices(rows)
            self._rows, self._cache = rows.clone(), selected
        return copy.deepcopy(self._cache)


Forward = FullForward | UpperForward | SuffixForward


def check_rows(attention_mask: torch.Tensor) -> torch.Tensor:
    """Rows the self-checks run on: the first, the most padded and the least padded (sorted, distinct)."""
    lengths = attention_mask.sum(dim=1)
    picked = {0, int(lengths.argmin()), int(lengths.argmax())}
    return torch.tensor(sorted(picked), device=attention_mask.device)


def make_forward(
    model: torch.nn.Module, layout: ModelLayout | None, layer: int, block: str, inputs: dict[str, torch.Tensor],
    mode: str, split: int | None = None, like: Forward | None = None,
) -> Forward:
    """``mode``: ``full``, ``upper`` or ``suffix`` (error if unsupported), or ``auto`` (suffix,
    else upper, else full). ``suffix`` needs left-padded ``inputs`` and ``split``.

    ``like``: a forward that :func:`make_forward` built for the same model, layer and mode on other rows of
    the same step; the same strategy is used again without its self-check (when it applies to these rows:
    a suffix needs a prefix to cache)."""
    if like is not None and not isinstance(like, FullForward):
        if isinstance(like, SuffixForward) and split is not None and split >= 1:
            return SuffixForward(model, block, inputs, split, layout, layer, trusted=like.upper is not None)
        if isinstance(like, UpperForward) and layout is not None:
            return UpperForward(model, layout, layer, inputs, check=False)
    elif isinstance(like, FullForward):
        return FullForward(model, block, inputs)
    if mode == "full":
        return FullForward(model, block, inputs)
    if mode in ("suffix", "auto") and split is not None:
        try:
            return SuffixForward(model, block, inputs, split, layout, layer)
        except Unsupported:
            if mode == "suffix":
                raise
    elif mode == "suffix":
        raise Unsupported("suffix-only steps need left-padded prompts and a split column")
    if layout is None:
        if mode == "upper":
            raise Unsupported("steps from the edit layer up need the model's layout")
        return FullForward(model, block, inputs)
    try:
        return UpperForward(model, layout, layer, inputs)
    except Unsupported:
        if mode == "upper":
            raise
        return FullForward(model, block, inputs)


def _base(model: torch.nn.Module) -> Any:
    """A transformers causal LM's decoder without its head (``base_model``)."""
    return model.base_model
