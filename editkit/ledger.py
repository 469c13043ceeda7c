"""The Cp ledger: the keys of the edits a sequential run has made, per edited module.

``Cp = Σ_b K_b K_bᵀ`` over the run's batches (float64, ``[d_in, d_in]``), with each batch's keys
``K_b`` (``[d_in, u]``, recomputed on the model after that batch was written) kept, so that a batch can be
undone exactly (``Cp − K_b K_bᵀ``), replayed from the journal, and offered to solvers batch by batch
(MEMIT-seq, AlphaEdit; the AlphaEdit paper, Eq. 14). A batch's keys are *staged* while its edit can still
fail and *committed* once it succeeded. Owned by :class:`editkit.run.EditRun`; plugins read ``Cp`` through
the solve problem (``problem.past``, ``problem.past_batches``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


class KeyLedger:
    """``past``: Cp per module; ``batches``: each committed batch's keys per module."""

    def __init__(self) -> None:
        self.past: dict[str, torch.Tensor] = {}
        self.batches: list[dict[str, torch.Tensor]] = []
        self._staged: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None

    def past_batches(self, module: str) -> list[torch.Tensor]:
        """The committed batches' keys of ``module``, oldest first."""
        return [b[module] for b in self.batches if module in b]

    def stage(self, keys: Mapping[str, torch.Tensor]) -> None:
        """Hold a batch's keys and the Cp they grow (``Cp + K Kᵀ`` per module) until :meth:`commit`."""
        grown = {}
        for module, k in keys.items():
            previous = self.past.get(module)
            outer = k @ k.T  # [d_in, d_in]
            grown[module] = outer if previous is None else previous + outer
        self._staged = (dict(keys), grown)

    def commit(self) -> None:
        """The staged batch is part of the run now."""
        if self._staged is None:
            raise RuntimeError("no staged batch to commit")
        keys, grown = self._staged
        self.past = grown
        self.batches.append(keys)
        self._staged = None

    def discard(self) -> None:
        """Forget a staged batch (its edit failed)."""
        self._staged = None

    def replay(self, keys: Mapping[str, torch.Tensor]) -> None:
        """Add a journaled batch's keys (exactly as its edit added them)."""
        for module, k in keys.items():
            previous = self.past.get(module)
            outer = k @ k.T
            self.past[module] = outer if previous is None else previous + outer
        self.batches.append(dict(keys))

    def undo_last(self) -> None:
        """Take the last committed batch's keys out of Cp."""
        for module, keys in self.batches.pop().items():
            self.past[module] = self.past[module] - keys @ keys.T
