"""MEMIT's stage implementations for one run (state: prefix templates, targets of the batch)."""

from __future__ import annotations

from contextlib import nullcontext

import torch

from editkit.api import (
    EditBatch,
    RunContext,
    Site,
    SolveProblem,
    TargetProposal,
    UsageError,
    fused_activations,
    hookimpl,
)
from editkit_memit.hparams import MemitHParams, default_layers
from editkit_memit.keys import BatchKeys, subject_hidden, subject_outputs
from editkit_memit.prefixes import run_templates
from editkit_memit.solve import PastProducts, solve_update
from editkit_memit.targets import Targets, VStarSettings, optimise_targets


class MemitStages:
    """Stage plugin created per run by the ``memit`` editor."""

    def __init__(self, hparams: MemitHParams) -> None:
        self.hparams = hparams
        self.templates: tuple[str, ...] | None = None
        self._past_products: dict[str, PastProducts] = {}  # per edited module
        # (the batch, its keys), made when the batch begins (editkit_batch_begin) and dropped at its end
        self._keys: tuple[EditBatch, BatchKeys] | None = None

    # -- locate ---------------------------------------------------------------------------
    @hookimpl
    def editkit_locate(self, run: RunContext) -> list[Site]:
        n = run.layout.n_layers
        layers = self.hparams.layers if self.hparams.layers is not None else default_layers(n)
        bad = [layer for layer in layers if not 0 <= layer < n]
        if bad:
            raise UsageError(f"layers {bad} out of range: the model has layers 0..{n - 1}")
        return [run.layout.site(layer) for layer in sorted(layers)]

    # -- collect-keys ----------------------------------------------------------------------
    def prefix_templates(self, run: RunContext) -> tuple[str, ...]:
        """Generated once per run from the unedited model with the run's seed (or restored from
        ``run.state`` when a run resumes from its journal)."""
        if self.templates is None:
            self.templates = run_templates(run, self.hparams.prefix_len)
        return self.templates

    def _batch_keys(self, run: RunContext, batch: EditBatch) -> BatchKeys:
        """The batch's key collector: its prefixed prompts tokenised once, the first edited block's inputs
        recorded once (keys of later layers are recomputed on the current model)."""
        return BatchKeys(run.model, run.tokenizer, run.layout.blocks, run.sites[-1].layer, batch.requests,
                         self.prefix_templates(run), run.device, first_layer=run.sites[0].layer)

    @hookimpl
    def editkit_batch_begin(self, run: RunContext, batch: EditBatch) -> None:
        self._keys = (batch, self._batch_keys(run, batch))

    @hookimpl
    def editkit_batch_end(self, run: RunContext, batch: EditBatch) -> None:
        self._keys = None

    @hookimpl
    def editkit_collect_keys(self, run: RunContext, batch: EditBatch, site: Site) -> torch.Tensor:
        if self._keys is None or self._keys[0] is not batch:  # asked outside a begun batch: prepared here
            self._keys = (batch, self._batch_keys(run, batch))
        with fused_activations(run.model) if self.hparams.fused_activations else nullcontext():
            return self._keys[1](site.layer, site.module)

    # -- compute-targets -------------------------------------------------------------------
    def vstar_settings(self) -> VStarSettings:
        hp = self.hparams
        return VStarSettings(
            lr=hp.v_lr, steps=hp.v_steps, weight_decay=hp.v_weight_decay, clamp_norm=hp.clamp_norm,
            kl_factor=hp.kl_factor, early_stop_loss=hp.early_stop_loss, forward=hp.vstar_forward,
            fused=hp.fused_activations, autocast=hp.vstar_autocast,
        )

    def optimised_targets(self, run: RunContext, batch: EditBatch) -> Targets:
        """v* of the batch's requests, optimised now on the current model (MEMIT §4.2); the kernel asks once per
        batch (``editkit_compute_targets``), before any site is written."""
        hp = self.hparams
        label = f"batch {batch.index}" if batch.index >= 0 else "reference sample"
        task = run.progress.task(f"{label}: v* ({len(batch.requests)} requests)", hp.v_steps)
        targets = optimise_targets(
            run.model,
            run.tokenizer,
            block=run.sites[-1].block,
            requests=batch.requests,
            templates=self.prefix_templates(run),
            settings=self.vstar_settings(),
            layout=run.layout,
            device=run.device,
            group_size=hp.vstar_batch,
            on_step=lambda advance, active: task.advance(advance) if hp.vstar_batch == 0 else None,
        )
        run.progress.finish(task)
        if batch.index < 0:
            return targets
        mean_steps = sum(targets.steps) / len(targets.steps)
        run.state["last_vstar"] = {
            "mean_steps": mean_steps,
            "mean_final_loss": sum(targets.final_loss) / len(targets.final_loss),
        }
        # how well v* reached its targets, in result.json with the last site's figures of this batch
        losses = sorted(targets.final_loss)
        run.note(run.sites[-1], "vstar.median_final_loss", round(losses[len(losses) // 2], 4))
        run.note(run.sites[-1], "vstar.share_below_0.7", round(sum(x < 0.7 for x in losses) / len(losses), 4))
        run.note(run.sites[-1], "vstar.mean_steps", round(mean_steps, 2))
        return targets

    @hookimpl
    def editkit_compute_targets(self, run: RunContext, batch: EditBatch) -> TargetProposal:
        """``z = h + δ`` at the last site's block, with ``h`` and the last site's module output ``v0`` at the
        subject's last token of the bare prompts (the model as the batch starts)."""
        targets = self.optimised_targets(run, batch)
        last = run.sites[-1]
        values = subject_outputs(run.model, run.tokenizer, [last.module], batch.requests, run.device)[last.module]
        return TargetProposal(site=last, initial=targets.h_init, target=targets.z, values=values)

    # -- compute-residual ------------------------------------------------------------------
    def current_hidden(self, run: RunContext, batch: EditBatch) -> torch.Tensor:
        """``h^L`` ``[u, d_model]`` at the subject's last token of the bare prompts, current model."""
        return subject_hidden(run.model, run.tokenizer, run.sites[-1].block, batch.requests, run.device)

    @hookimpl
    def editkit_compute_residual(
        self, run: RunContext, batch: EditBatch, site: Site, keys: torch.Tensor, targets: TargetProposal | None
    ) -> torch.Tensor:
        if targets is None:
            raise UsageError("MEMIT's residual needs the batch's target values (editkit_compute_targets)")
        remaining = len(run.sites) - run.sites.index(site)
        residual = (targets.target - self.current_hidden(run, batch)) / remaining  # [u, d_model]
        return residual.T.contiguous()  # [d_out, u]

    # -- solve -----------------------------------------------------------------------------
    @hookimpl
    def editkit_solve(self, run: RunContext, batch: EditBatch, site: Site, problem: SolveProblem) -> torch.Tensor:
        terms = []
        weight = self.hparams.mom2_weight if problem.background_weight is None else problem.background_weight
        if problem.use_background and weight > 0:
            terms.append((weight, run.require_key_statistics().second_moment(site)))
        past = None
        if (problem.use_past or self.hparams.sequential) and problem.past is not None:
            if problem.subspace is not None and problem.past_batches:
                # Cp·B products kept across batches, grown by each batch's keys (solve.PastProducts)
                products = self._past_products.setdefault(site.module, PastProducts())
                past = (problem.past, products.update(problem.subspace.basis, problem.past_batches))
            else:
                terms.append((1.0, problem.past))
        return solve_update(problem.keys, problem.residual, terms, problem.ridge, problem.subspace, past)
