"""ROME's stage implementations for one run (Meng et al. 2022, ROME, arXiv 2202.05262, §3).

Per batch, at the one located site (math layout: ``W`` ``[d_out, d_in]``, keys ``[d_in, u]``):

* **collect-keys** — MEMIT's prefix-averaged keys ``k*`` (:func:`editkit_memit.keys.collect_keys`), or
  with ``constraint_key=bare`` the bare prompt's key ``k_b``: the keys at which ``Δ k = r`` is met.
* **compute-residual** — v* with MEMIT's optimiser (:func:`editkit_memit.targets.optimise_targets`) at
  this layer's output, whose shift at the subject's last token equals the MLP output's (the residual
  stream adds it), decay and clamp relative to ``‖m_init‖`` as ROME's code: ``v* = m_init + δ`` with
  ``m_init = W k_b (+ bias)``, so the residual at key ``k`` is ``r = v* − (W k + b) = δ + W (k_b − k)``.
* **solve** — the requests one after another, each a rank-one equality solve
  (:func:`editkit_emmet.equality.equality_update` with u = 1) on the model holding the batch's earlier
  rank-one edits: request ``i``'s residual is taken on ``W + Δ_{<i}`` (its v* re-optimised there with
  ``refresh_targets``, through :func:`editkit.helpers.tracing.added_update`, no weight written), and when the
  problem carries ``Cp`` (``--constraint nullspace``) the earlier requests' keys join it, so a batch of
  N gives the weights N batches of one give. The update returned is ``Σ_i Δ_i``.

**Two requests for the same subject and relation in one batch** (same subject, and the same
``relation_id`` when both records have one, else the same prompt template): they are applied in order,
so the later one is written on a model that already holds the earlier, and with the same prompt its
rank-one update re-targets the very key the earlier one set: the earlier target does not survive
(``Δ k = r_later``; with different prompts of one relation, mostly not). The run warns once, naming
the case ids (:class:`OverwriteWarning`), and each such batch notes the pairs in ``result.json``
(``rome.overwritten``).
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from typing import Any

import attrs
import torch
from editkit_emmet.equality import equality_update, preservation
from editkit_memit.hparams import default_layers
from editkit_memit.keys import collect_keys, subject_prompts
from editkit_memit.prefixes import run_templates
from editkit_memit.targets import VStarSettings, optimise_targets

from editkit.api import (
    EditBatch,
    RunContext,
    Site,
    SolveProblem,
    UsageError,
    added_update,
    capture_inputs,
    capture_outputs,
    fused_activations,
    hookimpl,
    max_positions,
    pad_batch,
)
from editkit_rome.hparams import RomeHParams


class OverwriteWarning(UserWarning):
    """Two requests of one ROME batch edit the same subject and relation: the later overwrites the earlier."""


class NoComponentWarning(UserWarning):
    """A request's key has no component in the solve's subspace: it gets no update."""


@attrs.frozen(kw_only=True)
class BatchTargets:
    """What the batch's solve needs besides the problem: the prefix-averaged keys ``[d_in, u]``, the bare
    prompt's keys ``[d_in, u]``, the v* shifts ``δ`` ``[u, d_out]`` and final v* losses, batch start."""

    average: torch.Tensor = attrs.field(eq=False, repr=False)
    bare: torch.Tensor = attrs.field(eq=False, repr=False)
    shift: torch.Tensor = attrs.field(eq=False, repr=False)
    final_loss: tuple[float, ...]


def relation_of(request: Any) -> str:
    """The relation a request edits: its record's ``relation_id`` if it has one, else its prompt template."""
    record = request.record or {}
    rewrite = record.get("requested_rewrite") if isinstance(record, dict) else None
    relation = rewrite.get("relation_id") if isinstance(rewrite, dict) else None
    return f"relation {relation}" if relation is not None else f"prompt {request.prompt!r}"


def same_fact_pairs(requests: Any) -> list[tuple[Any, Any]]:
    """``(earlier, later)`` pairs of requests with the same subject and relation (:func:`relation_of`);
    each later request is paired with the latest earlier one it overwrites."""
    last: dict[tuple[str, str], Any] = {}
    pairs = []
    for request in requests:
        key = (request.subject, relation_of(request))
        if key in last:
            pairs.append((last[key], request))
        last[key] = request
    return pairs


class RomeStages:
    """Stage plugin created per run by the ``rome`` editor."""

    def __init__(self, hparams: RomeHParams) -> None:
        self.hparams = hparams
        self._targets: tuple[Any, BatchTargets] | None = None  # (batch object, its targets), as MEMIT's
        self._warned: set[str] = set()

    # -- locate ---------------------------------------------------------------------------
    @hookimpl
    def editkit_locate(self, run: RunContext) -> list[Site]:
        n = run.layout.n_layers
        layers = self.hparams.layers if self.hparams.layers is not None else default_layers(n)[-1:]
        bad = [layer for layer in layers if not 0 <= layer < n]
        if bad:
            raise UsageError(f"layers {bad} out of range: the model has layers 0..{n - 1}")
        return [run.layout.site(layers[0])]

    # -- collect-keys ----------------------------------------------------------------------
    def _fused(self, run: RunContext) -> Any:
        return fused_activations(run.model) if self.hparams.fused_activations else nullcontext()

    def _average_keys(self, run: RunContext, batch: EditBatch, site: Site) -> torch.Tensor:
        templates = run_templates(run, self.hparams.prefix_len)
        with self._fused(run):
            return collect_keys(run.model, run.tokenizer, site.module, batch.requests, templates, run.device)

    @torch.no_grad()
    def _bare(self, run: RunContext, site: Site, requests: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """At the subject's last token of the bare prompts, current model (and any added update in
        force): the keys ``k_b`` ``[d_in, u]`` and the MLP outputs ``m`` ``[u, d_out]``, float64."""
        ids, positions = subject_prompts(run.tokenizer, requests, ["{}"], limit=max_positions(run.model))
        padded = pad_batch(run.tokenizer, ids, run.device)
        with self._fused(run), capture_inputs(run.model, [site.module]) as ins, \
                capture_outputs(run.model, [site.module]) as outs:
            model: Any = run.model  # a transformers causal LM: its base_model gives the hidden states
            model.base_model(**padded.model_inputs(), use_cache=False)
        rows = torch.arange(len(ids))
        cols = torch.tensor([padded.index(r, p) for r, p in enumerate(positions)])
        return ins[site.module][rows, cols].double().T.cpu(), outs[site.module][rows, cols].double().cpu()

    @hookimpl
    def editkit_collect_keys(self, run: RunContext, batch: EditBatch, site: Site) -> torch.Tensor:
        if self.hparams.constraint_key == "bare":
            return self._bare(run, site, batch.requests)[0].float()
        return self._average_keys(run, batch, site)

    # -- compute-residual ------------------------------------------------------------------
    def _shifts(
        self, run: RunContext, site: Site, requests: Any, m_init: torch.Tensor
    ) -> tuple[torch.Tensor, list[float]]:
        """v* shifts ``δ`` ``[u, d_out]`` (float64) optimised on the current model, and final losses."""
        hp = self.hparams
        targets = optimise_targets(
            run.model, run.tokenizer, block=site.block, requests=requests,
            templates=run_templates(run, hp.prefix_len),
            settings=VStarSettings(lr=hp.v_lr, steps=hp.v_steps, weight_decay=hp.v_weight_decay,
                                   clamp_norm=hp.clamp_norm_factor, kl_factor=hp.kl_factor,
                                   early_stop_loss=hp.early_stop_loss, forward=hp.vstar_forward,
                                   fused=hp.fused_activations),
            layout=run.layout, device=run.device,
            norm_reference=m_init.norm(dim=-1).clamp_min(1e-12).tolist(),
        )
        return (targets.z - targets.h_init).double(), list(targets.final_loss)

    def targets(self, run: RunContext, batch: EditBatch, site: Site) -> BatchTargets:
        if self._targets is None or self._targets[0] is not batch:
            bare, m_init = self._bare(run, site, batch.requests)
            average = self._average_keys(run, batch, site).double()
            task = run.progress.task(f"batch {batch.index}: v* ({len(batch.requests)} requests)", None)
            shift, losses = self._shifts(run, site, batch.requests, m_init)
            run.progress.finish(task)
            self._targets = (batch, BatchTargets(average=average, bare=bare, shift=shift, final_loss=tuple(losses)))
        return self._targets[1]

    @hookimpl
    def editkit_compute_residual(
        self, run: RunContext, batch: EditBatch, site: Site, keys: torch.Tensor
    ) -> torch.Tensor:
        t = self.targets(run, batch, site)
        weight = run.weight(site).detach().double().cpu()
        return t.shift.T + weight @ (t.bare - keys.double())  # [d_out, u], float64

    # -- solve -----------------------------------------------------------------------------
    def _refreshed(self, run: RunContext, site: Site, request: Any, applied: torch.Tensor, key: torch.Tensor,
                   weight: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Request's residual ``[d_out, 1]`` at ``key`` on ``W + applied``, v* re-optimised there."""
        with added_update(run.model, site.module, applied.to(run.device)):
            bare, m_init = self._bare(run, site, [request])
            shift, losses = self._shifts(run, site, [request], m_init)
        return shift.T + (weight + applied) @ (bare - key), losses[0]

    @hookimpl
    def editkit_solve(self, run: RunContext, batch: EditBatch, site: Site, problem: SolveProblem) -> torch.Tensor:
        hp = self.hparams
        t = self.targets(run, batch, site)
        terms = []
        if problem.use_background:
            lam = hp.mom2_weight if problem.background_weight is None else problem.background_weight
            terms.append((lam, run.require_key_statistics().second_moment(site)))
        if problem.use_past and problem.past is not None:
            terms.append((1.0, problem.past))
        base = preservation(terms, problem.ridge, problem.subspace, site.d_in)
        weight = run.weight(site).detach().double().cpu()
        keys, residual = problem.keys.double(), problem.residual.double()
        total = torch.zeros(site.d_out, site.d_in, dtype=torch.float64)
        losses = list(t.final_loss)
        for i, request in enumerate(batch.requests):
            key = keys[:, i : i + 1]
            if i > 0 and hp.refresh_targets:
                r, losses[i] = self._refreshed(run, site, request, total, key, weight)
            else:
                r = residual[:, i : i + 1] - total @ key  # the residual on W + Δ_{<i}
            pres = base.with_keys(keys[:, :i]) if problem.use_past and i > 0 else base
            direction = t.average[:, i : i + 1] if hp.constraint_key == "bare" else None
            result = equality_update(pres, key, r, direction_keys=direction, rcond=hp.rcond)
            if result.kept == 0:
                self._warn_no_component(run, batch, site, request, result.key_condition)
            total += result.delta
        self._note(run, batch, site, losses)
        return total

    def _warn_no_component(self, run: RunContext, batch: EditBatch, site: Site, request: Any, condition: float) -> None:
        message = (f"rome, batch {batch.index}, layer {site.layer}: case {request.case_id}'s key has no component in "
                   f"the solve's subspace (‖Pk‖/‖k‖ = {condition:.2e} < rcond {self.hparams.rcond:g}), so it gets no "
                   "update")
        run.note(site, f"rome.no_update.{request.case_id}", message)
        if "no_component" not in self._warned:
            self._warned.add("no_component")
            warnings.warn(message, NoComponentWarning, stacklevel=3)

    def _note(self, run: RunContext, batch: EditBatch, site: Site, losses: list[float]) -> None:
        ordered = sorted(losses)
        run.note(site, "vstar.median_final_loss", round(ordered[len(ordered) // 2], 4))
        run.note(site, "vstar.share_below_0.7", round(sum(x < 0.7 for x in losses) / len(losses), 4))
        pairs = same_fact_pairs(batch.requests)
        if not pairs:
            return
        run.note(site, "rome.overwritten", [[a.case_id, b.case_id] for a, b in pairs])
        if "overwrite" not in self._warned:
            self._warned.add("overwrite")
            said = "; ".join(f"case {b.case_id} ({b.target_new.strip()!r}) overwrites case {a.case_id} "
                             f"({a.target_new.strip()!r}), both {a.subject!r}, {relation_of(a)}" for a, b in pairs)
            warnings.warn(
                f"rome, batch {batch.index}: two requests edit the same subject and relation: {said}. ROME applies a "
                "batch's requests in order as rank-one edits, so the later one is written on the model holding the "
                "earlier and re-targets the same key: the earlier target does not survive (result.json notes the "
                "pairs as rome.overwritten)",
                OverwriteWarning,
                stacklevel=3,
            )


__all__ = ["NoComponentWarning", "OverwriteWarning", "RomeStages", "same_fact_pairs"]
