"""The Cp ledger: the keys of the edits a sequential run has made, per edited module.

``Cp = Σ_b K_b K_bᵀ`` over the run's batches (``[d_in, d_in]``, float32 as the AlphaEdit reference's
``cache_c``; solvers take it to float64 one layer at a time), with each batch's keys ``K_b`` (float64
``[d_in, u]``, recomputed on the model after that batch was written) kept, so that a batch can be undone
(Cp summed again from the remaining batches: exactly what a resumed run rebuilds, where subtracting in float32
would not be), replayed from the journal, and offered to solvers batch by batch (MEMIT-seq, AlphaEdit; the
AlphaEdit paper, Eq. 14). A batch's keys are *staged* while its edit can still fail and *committed* once it
succeeded: only then does Cp grow, one module at a time (``torch.addmm``: no ``K Kᵀ`` temporary, and at most one
module's old and new Cp alive together); a commit interrupted part way puts the modules it grew back as they were.
A Cp once handed out is never changed in place. Owned by
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
        self._past: dict[str, torch.Tensor] = {}
        self.batches: list[dict[str, torch.Tensor]] = []
        self._staged: dict[str, torch.Tensor] | None = None
        self._stale: set[str] = set()  # modules whose Cp a failed rebuild left wrong: summed again when next read

    @property
    def past(self) -> dict[str, torch.Tensor]:
        """Cp per module (read only: the ledger replaces a module's Cp, never changes it in place)."""
        if self._stale:
            self._rebuild(sorted(self._stale))
        return self._past

    def past_batches(self, module: str) -> list[torch.Tensor]:
        """The committed batches' keys of ``module``, oldest first."""
        return [b[module] for b in self.batches if module in b]

    def stage(self, keys: Mapping[str, torch.Tensor]) -> None:
        """Hold a batch's keys until :meth:`commit` (Cp is not touched before)."""
        self._staged = dict(keys)

    def commit(self) -> None:
        """The staged batch is part of the run now: Cp grows by its keys. If that fails part way (an interrupt,
        memory), the modules already grown are summed again from the committed batches and the batch stays staged
        (for :meth:`discard`)."""
        if self._staged is None:
            raise RuntimeError("no staged batch to commit")
        grown: list[str] = []
        try:
            for module, k in self._staged.items():
                grown.append(module)  # before: an interrupt right after the growth still puts it back
                self._grow(module, k)
        except BaseException:
            self._rebuild(grown)
            raise
        self.batches.append(self._staged)
        self._staged = None

    def discard(self) -> None:
        """Forget a staged batch (its edit failed)."""
        self._staged = None

    def replay(self, keys: Mapping[str, torch.Tensor]) -> None:
        """Add a journaled batch's keys (exactly as its edit added them)."""
        for module, k in keys.items():
            self._grow(module, k)
        self.batches.append(dict(keys))

    def undo_last(self, n: int = 1) -> None:
        """Take the last ``n`` committed batches out: each module they touched has its Cp summed again from the
        batches that remain, in order, as :meth:`commit` and :meth:`replay` summed it (bit for bit what a resumed
        run holds; ``Σ_b d²·u_b`` flops per module)."""
        if not 0 <= n <= len(self.batches):
            raise RuntimeError(f"cannot undo {n} batches: {len(self.batches)} committed")
        touched: set[str] = set()
        for _ in range(n):
            touched.update(self.batches.pop())
        self._rebuild(sorted(touched))

    def _grow(self, module: str, k: torch.Tensor) -> None:
        """``Cp ← Cp + K Kᵀ`` for one module, a new tensor (a module's first batch starts from zero); the old
        Cp stays the ledger's until the new one exists."""
        self._past[module] = self._added(self._past.get(module), k)

    def _added(self, past: torch.Tensor | None, k: torch.Tensor) -> torch.Tensor:
        k = k.to(self.DTYPE)  # [d_in, u]
        if past is None:
            past = torch.zeros(k.shape[0], k.shape[0], dtype=self.DTYPE, device=k.device)
        return torch.addmm(past, k, k.T)

    def _rebuild(self, modules: list[str]) -> None:
        """Cp of ``modules`` summed again from the committed batches, in order (absent where none has keys for
        it). A module stays marked stale until its new Cp is in place: if this is interrupted, the next read of
        :attr:`past` sums it again."""
        self._stale.update(modules)
        for module in modules:
            total = None
            for batch in self.batches:
                if module in batch:
                    total = self._added(total, batch[module])
            if total is None:
                self._past.pop(module, None)
            else:
                self._past[module] = total
            self._stale.discard(module)
