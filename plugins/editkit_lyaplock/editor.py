"""LyapLock's stages: MEMIT's keys, v* and layer spreading; the queue-weighted solve; per layer the queue and the
earlier edits' values (``S_vk``, ``S_kk``), grown after each batch from the keys its solve used and the weight
written (the authors grow them right after each layer's update; the weight of a layer does not change after its
own update within a batch, so this is the same)."""

from __future__ import annotations

import torch
from editkit_memit.editor import MemitStages

from editkit.api import EditBatch, RunContext, Site, SolveProblem, UsageError, hookimpl
from editkit_lyaplock.hparams import LyapLockHParams
from editkit_lyaplock.queue import Queue, lyaplock_update, preservation_loss


class LyapLockStages(MemitStages):
    """Stage plugin created per run by the ``lyaplock`` editor."""

    hparams: LyapLockHParams

    def __init__(self, hparams: LyapLockHParams) -> None:
        super().__init__(hparams)
        self.queues: dict[str, Queue] = {}
        self.s_vk: dict[str, torch.Tensor] = {}  # [d_out, d_in]
        self.s_kk: dict[str, torch.Tensor] = {}  # [d_in, d_in]
        self.batch_keys: dict[str, torch.Tensor] = {}  # the keys this batch's solve used [d_in, u]
        self.saved: dict[str, torch.Tensor] = {}

    @hookimpl
    def editkit_solve(self, run: RunContext, batch: EditBatch, site: Site, problem: SolveProblem) -> torch.Tensor:
        if problem.subspace is not None:
            raise UsageError("lyaplock's solve cannot be restricted to a subspace")
        c0 = run.require_key_statistics().second_moment(site)
        queue = self.queues.get(site.module)
        self.batch_keys[site.module] = problem.keys.detach().double().cpu()
        return lyaplock_update(
            weight=run.weight(site).detach().cpu(), initial=site.to_math(run.initial_weights[site.module]).cpu(),
            c0=c0, keys=problem.keys, residual=problem.residual, lam=self.hparams.mom2_weight,
            queue_weight=queue.weight if queue is not None else None, value_weight=self.hparams.value_weight,
            s_vk=self.s_vk.get(site.module), s_kk=self.s_kk.get(site.module),
        )

    def _grow(self, module: str, values: torch.Tensor, keys: torch.Tensor) -> None:
        """``S_vk += Vp Kᵀ``, ``S_kk += K Kᵀ`` (the same operations on resume: bit-identical)."""
        vk, kk = values @ keys.T, keys @ keys.T
        self.s_vk[module] = vk if module not in self.s_vk else self.s_vk[module] + vk
        self.s_kk[module] = kk if module not in self.s_kk else self.s_kk[module] + kk

    @hookimpl
    def editkit_batch_end(self, run: RunContext, batch: EditBatch) -> None:
        super().editkit_batch_end(run, batch)  # MEMIT's per-batch keys are dropped
        hp = self.hparams
        self.saved = {}
        for site in run.sites:
            keys = self.batch_keys.pop(site.module)
            weight = run.weight(site).detach().double().cpu()
            values = weight @ keys  # Vp = W_new K [d_out, u]
            self._grow(site.module, values, keys)
            loss = preservation_loss(weight, site.to_math(run.initial_weights[site.module]).cpu(),
                                     run.require_key_statistics().second_moment(site))
            queue = self.queues.get(site.module)
            if queue is None:
                queue = self.queues[site.module] = Queue.start(loss, hp.alpha)
            queue.step(loss, hp.alpha, hp.drift)
            run.note(site, "lyaplock.preservation_loss", float(f"{loss:.6g}"))
            run.note(site, "lyaplock.queue_weight", float(f"{queue.weight:.6g}"))
            name = str(site.layer)
            self.saved.update({f"keys.{name}": keys.float() if torch.equal(keys.float().double(), keys) else keys,
                               f"values.{name}": values,
                               f"queue.{name}": torch.tensor([queue.budget, queue.scale, queue.value, queue.floor],
                                                             dtype=torch.float64)})

    @hookimpl
    def editkit_save_state(self, run: RunContext) -> dict[str, torch.Tensor]:
        return dict(self.saved)

    @hookimpl
    def editkit_load_state(self, run: RunContext, states: list[dict[str, torch.Tensor]]) -> None:
        self.queues, self.s_vk, self.s_kk, self.batch_keys = {}, {}, {}, {}
        for state in states:
            for site in run.sites:
                name = str(site.layer)
                if f"keys.{name}" not in state:
                    continue
                self._grow(site.module, state[f"values.{name}"].double(), state[f"keys.{name}"].double())
                budget, scale, value, floor = state[f"queue.{name}"].tolist()
                self.queues[site.module] = Queue(budget=budget, scale=scale, value=value, floor=floor)
