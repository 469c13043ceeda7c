"""The Cp ledger: the keys of the edits a sequential run has made, per edited module.

``Cp = Σ_b K_b K_bᵀ`` over the run's batches (``[d_in, d_in]``, float32 as the AlphaEdit reference's
``cache_c``; solvers take it to float64 one layer at a time), with each batch's keys ``K_b`` (float64
``[d_in, u]``, recomputed on the model after that batch was written) kept, so that a batch can be undone
(``Cp − K_b K_bᵀ``), replayed from the journal, and offered to solvers batch by batch (MEMIT-seq, AlphaEdit;
the AlphaEdit paper, Eq. 14). A batch's keys are *staged* while its edit can still fail and *committed* once it
succeeded: only then does Cp grow, one module at a time (``torch.addmm``: no ``K Kᵀ`` temporary, and at most one
module's old and new Cp alive together). A Cp once handed out is never changed in place. Owned by
:class:`editkit.run.EditRun`; plugins read ``Cp`` through the solve problem (``problem.past``,
``problem.past_batches``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


class KeyLedger:
    """``past``: Cp per module (float32); ``batches``: each committed batch's keys per module (float64)."""

    DTYPE = torch.float32

    def __init__(self) -> None:
        self.past: dict[str, torch.Tensor] = {}
        self.batches: list[dict[str, torch.Tensor]] = []
        self._staged: dict[str, torch.Tensor] | None = None

    def past_batches(self, module: str) -> list[torch.Tensor]:
        """The committed batches' keys of ``module``, oldest first."""
        return [b[module] for b in self.batches if module in b]

    def stage(self, keys: Mapping[str, torch.Tensor]) -> None:
        """Hold a batch's keys until :meth:`commit` (Cp is not touched before)."""
        self._staged = dict(keys)

    def commit(self) -> None:
        """The staged batch is part of the run now: Cp grows by its keys."""
        if self._staged is None:
            raise RuntimeError("no staged batch to commit")
        self._add(self._staged, 1.0)
        self.batches.append(self._staged)
        self._staged = None

    def discard(self) -> None:
        """Forget a staged batch (its edit failed)."""
        self._staged = None

    def replay(self, keys: Mapping[str, torch.Tensor]) -> None:
        """Add a journaled batch's keys (exactly as its edit added them)."""
        self._add(keys, 1.0)
        self.batches.append(dict(keys))

    def undo_last(self) -> None:
        """Take the last committed batch's keys out of Cp."""
        self._add(self.batches.pop(), -1.0)

    def _add(self, keys: Mapping[str, torch.Tensor], sign: float) -> None:
        """``Cp ← Cp + sign · K Kᵀ`` per module, a new tensor each (a module's first batch starts from zero)."""
        for module, k in keys.items():
            k = k.to(self.DTYPE)  # [d_in, u]
            previous = self.past.pop(module, None)  # dropped here: only the ledger's reference goes
            if previous is None:
                previous = torch.zeros(k.shape[0], k.shape[0], dtype=self.DTYPE, device=k.device)
            self.past[module] = torch.addmm(previous, k, k.T, alpha=sign)
