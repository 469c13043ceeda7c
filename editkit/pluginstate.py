"""The stage plugins' own sequential state (``editkit_save_state`` / ``editkit_load_state``), held by the run.

What each plugin saves after a batch is kept per batch the run holds, journaled with the batch (the last batch's
entries in its ``state.safetensors``, named ``plugin/<plugin name>/<name>``; ``keys/`` and ``rng`` are the kernel's)
and given back, as the whole sequence, to each plugin's ``editkit_load_state``: on resume (lazily, before the next
batch or the final stage), after an undo and after a failed batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy
import torch

from editkit.constraintchain import reaching_only
from editkit.errors import EditkitError

if TYPE_CHECKING:  # pragma: no cover
    from editkit.run import EditRun


STATE_PREFIX = "plugin/"
"""Journal state names of the plugins' own state: ``plugin/<plugin name>/<name>`` (``keys/`` and ``rng`` are the
kernel's)."""


class PluginStates:
    """The stage plugins' own sequential state, one ``{name: tensor}`` per plugin per batch the run holds
    (``editkit_save_state`` / ``editkit_load_state``): saved after each batch, journaled with it, given back in
    full on resume (lazily, before the next batch or the final stage), after an undo and after a failed batch."""

    def __init__(self, pm: pluggy.PluginManager, plugins: list[tuple[str, object]]) -> None:
        self.names = [name for name, _ in plugins]
        self._save = {name: reaching_only(pm, p, "editkit_save_state") for name, p in plugins}
        self._load = {name: reaching_only(pm, p, "editkit_load_state") for name, p in plugins}
        self.batches: list[dict[str, dict[str, torch.Tensor]]] = []  # per batch: plugin name -> its state
        self._replayed = False

    def save(self, run: EditRun) -> dict[str, dict[str, torch.Tensor]]:
        """Each plugin's state after the batch just edited (checked: a dict of tensors; copied to the CPU)."""
        saved: dict[str, dict[str, torch.Tensor]] = {}
        for name in self.names:
            for result in self._save[name](run=run):
                if result is None:
                    continue
                if not isinstance(result, dict) or not all(
                        isinstance(k, str) and "/" not in k and isinstance(v, torch.Tensor) for k, v in result.items()):
                    raise EditkitError(f"{name}: editkit_save_state must return a dict of tensors with names "
                                       f"without '/', got {result!r:.200}")
                saved[name] = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in result.items()}
        return saved

    def commit(self, saved: dict[str, dict[str, torch.Tensor]]) -> None:
        self.batches.append(saved)

    def pop(self) -> None:
        self.batches.pop()

    def load(self, run: EditRun) -> None:
        """Give every plugin its states over the batches the run holds (oldest first)."""
        self._replayed = False
        for name in self.names:
            self._load[name](run=run, states=[batch.get(name, {}) for batch in self.batches])

    def journal_entries(self) -> dict[str, torch.Tensor]:
        """The last batch's plugin state, named for the journal's ``state.safetensors``."""
        if not self.batches:
            return {}
        return {f"{STATE_PREFIX}{name}/{key}": t
                for name, state in self.batches[-1].items() for key, t in state.items()}

    def replay(self, state: dict[str, torch.Tensor]) -> None:
        """Take a journaled batch's plugin state (loaded into the plugins before the run goes on)."""
        batch: dict[str, dict[str, torch.Tensor]] = {}
        for full, tensor in state.items():
            if not full.startswith(STATE_PREFIX):
                continue
            name, _, key = full[len(STATE_PREFIX):].rpartition("/")
            if name not in self.names:
                raise EditkitError(f"the journal holds state of {name!r}, which this run does not have "
                                   f"(its plugins: {', '.join(self.names)})")
            batch.setdefault(name, {})[key] = tensor
        self.batches.append(batch)
        self._replayed = True

    def restore_if_replayed(self, run: EditRun) -> None:
        if self._replayed:
            self.load(run)
