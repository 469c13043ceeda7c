"""Scoped torch hooks: every hook is registered by a context manager and always removed."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

import torch


class StopForward(Exception):
    """Raised by a hook to end a forward pass early (after the last module of interest)."""


def _hidden(output: object) -> torch.Tensor:
    """The hidden-state tensor of a block output (a tensor, or a tuple starting with one)."""
    return output[0] if isinstance(output, tuple) else output  # type: ignore[index,return-value]


def _replace_hidden(output: object, hidden: torch.Tensor) -> object:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden  # type: ignore[index]


@contextmanager
def capture_inputs(
    model: torch.nn.Module,
    module_names: Sequence[str],
    *,
    stop_after_last: bool = False,
    detach: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the (first positional) input of each named module on every forward.

    Yields a dict ``name -> tensor`` that holds the input of the most recent forward
    (``[batch, seq, d_in]``). With ``stop_after_last`` the forward is cut short (by
    :class:`StopForward`, which callers catch via :func:`run_until_stopped`) once the last
    of ``module_names`` in execution order was reached.
    """
    captured: dict[str, torch.Tensor] = {}
    wanted = set(module_names)
    this_pass: set[str] = set()  # modules seen in the current forward; a module firing again starts a new one
    handles = []

    def make(name: str) -> Callable:
        def hook(module: torch.nn.Module, args: tuple) -> None:
            if name in this_pass:
                this_pass.clear()
            this_pass.add(name)
            x = args[0]
            captured[name] = x.detach() if detach else x
            if stop_after_last and wanted.issubset(this_pass):
                raise StopForward

        return hook

    try:
        for name in module_names:
            handles.append(model.get_submodule(name).register_forward_pre_hook(make(name)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture_outputs(
    model: torch.nn.Module, module_names: Sequence[str], *, stop_after_last: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the hidden-state output of each named module (``[batch, seq, d]``). With
    ``stop_after_last`` the forward is cut short (by :class:`StopForward`, caught by
    :func:`run_until_stopped`) once the last of ``module_names`` in execution order has produced its
    output, as :func:`capture_inputs` does."""
    captured: dict[str, torch.Tensor] = {}
    wanted = set(module_names)
    this_pass: set[str] = set()  # modules seen in the current forward; a module firing again starts a new one
    handles = []

    def make(name: str) -> Callable:
        def hook(module: torch.nn.Module, args: tuple, output: object) -> None:
            if name in this_pass:
                this_pass.clear()
            this_pass.add(name)
            captured[name] = _hidden(output)
            if stop_after_last and wanted.issubset(this_pass):
                raise StopForward

        return hook

    try:
        for name in module_names:
            handles.append(model.get_submodule(name).register_forward_hook(make(name)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def edit_output(
    model: torch.nn.Module, module_name: str, fn: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[None]:
    """Replace the hidden-state output ``h`` of ``module_name`` by ``fn(h)`` during the block."""

    def hook(module: torch.nn.Module, args: tuple, output: object) -> object:
        return _replace_hidden(output, fn(_hidden(output)))

    handle = model.get_submodule(module_name).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def added_update(model: torch.nn.Module, module_name: str, delta: torch.Tensor) -> Iterator[None]:
    """During the block, ``module_name`` computes as if its weight were ``W + Δ``, without writing it.

    ``Δ`` is in math layout ``[d_out, d_in]`` (``v = W k``, whatever the module's storage layout): the
    module's output gains ``x Δᵀ`` for its input ``x`` ``[..., d_in]``, in the input's dtype. Gradients
    reach ``Δ`` when it requires them, so an editor can evaluate or optimise an update before
    ``editkit_apply`` writes it.
    """

    def hook(module: torch.nn.Module, args: tuple, output: object) -> object:
        x = args[0]
        return _replace_hidden(output, _hidden(output) + x @ delta.to(dtype=x.dtype, device=x.device).T)

    handle = model.get_submodule(module_name).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def run_until_stopped(forward: Callable[[], object]) -> None:
    """Call ``forward()``; a :class:`StopForward` raised by a hook ends it normally."""
    with suppress(StopForward):
        forward()
