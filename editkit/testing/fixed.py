"""A stand-in editor that writes given updates: test a constraint inside the real kernel.

``fixed_editor_plugin(updates)`` registers editor ``fixed`` whose solve returns
``updates[batch][layer]`` (``[d_out, d_in]``, math layout) for the layers named in
``updates[0]`` — no keys, no v*, no solve — restricted to the solve problem's subspace when a
constraint sets one (as a real solver would). Everything else (constraint order, inline or
post-hoc application, invariant measurements, undo) is the kernel's own, so a constraint
author sees exactly what their constraint does to a known Δ::

    host = PluginHost(plugins=[("fixed", fixed_editor_plugin(updates)), ("mine", my_plugin)])
    run = EditRun(model=model, tokenizer=tok, host=host,
                  config=RunConfig(editor="fixed", constraints=("mine",)))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from editkit.catalog import EditorSpec
from editkit.markers import hookimpl

__all__ = ["FixedUpdates", "NoHParams", "fixed_editor_plugin"]


@attrs.frozen
class NoHParams:
    """The ``fixed`` editor has no hyperparameters."""


class FixedUpdates:
    """Stage plugin of the ``fixed`` editor: ``updates[batch.index][site.layer]`` as the solve."""

    def __init__(self, updates: Sequence[Mapping[int, Any]]) -> None:
        self.updates = updates

    @hookimpl
    def editkit_locate(self, run: Any) -> list:
        return [run.layout.site(layer) for layer in sorted(self.updates[0])]

    @hookimpl
    def editkit_collect_keys(self, run: Any, batch: Any, site: Any) -> Any:
        import torch

        return torch.zeros(site.d_in, len(batch.requests))

    @hookimpl
    def editkit_compute_residual(self, run: Any, batch: Any, site: Any, keys: Any) -> Any:
        import torch

        return torch.zeros(site.d_out, len(batch.requests))

    @hookimpl
    def editkit_solve(self, run: Any, batch: Any, site: Any, problem: Any) -> Any:
        delta = self.updates[batch.index][site.layer]
        return problem.subspace.project_rows(delta) if problem.subspace is not None else delta


class _FixedEditorPlugin:
    def __init__(self, updates: Sequence[Mapping[int, Any]]) -> None:
        self.updates = updates

    @hookimpl
    def editkit_register_editors(self, register: Any) -> None:
        register(EditorSpec(name="fixed", summary="writes given updates (tests)",
                            factory=lambda hparams: FixedUpdates(self.updates), hparams=NoHParams))


def fixed_editor_plugin(updates: Sequence[Mapping[int, Any]]) -> object:
    """A plugin object registering editor ``fixed`` that writes ``updates[batch][layer]``."""
    return _FixedEditorPlugin(updates)
