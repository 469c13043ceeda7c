"""The ``ft`` editor's stages for one run: fine-tuning as a solve (Zhu et al. 2020, FT-L, arXiv 2012.00363).

* **locate** — the configured layers (MEMIT's generic choice by default).
* **collect-keys** — the module's input at the last prompt token of each request's filled prompt,
  current model: the position whose next-token distribution FT-L trains (``[d_in, u]``; used by
  constraints for their notes and by the kernel's Cp).
* **compute-residual** — fine-tuning has no target value for the module's output: ``R = 0``
  ``[d_out, u]``. The solve does not read it.
* **solve** — Adam on ``Δ`` ``[d_out, d_in]`` (float64 master copy) with the model computing as if
  ``W + Δ`` (:func:`editkit.helpers.tracing.added_update`); after every step ``Δ`` is clamped to the L∞ box and,
  when the problem has a row subspace, projected onto it (:mod:`editkit_ft.projection`). With a subspace
  the gradient is projected too, before the step (the steepest descent inside ``S_P``): Adam scales each
  entry separately, so a step taken from the full gradient points largely out of ``S_P`` and its
  projection keeps little of the descent (on the demo world, 100 edits, ε = lr = 5e-3: efficacy 1%
  projecting the step only; see docs/results/editors-100-edits.md for the figures with both). The problem's
  preservation terms (C0, Cp, ridge) are not used: fine-tuning has no preservation term. Several sites
  are fine-tuned one after another, each on the model holding the earlier ones' updates (the kernel
  writes a site before the next site's solve), so a single layer — the published setting — is plain FT-L.

The optimiser trajectory equals the reference's Adam on ``W`` itself (the gradient with respect to ``Δ``
is the gradient with respect to ``W``, and the clamp acts on the weights, not on Adam's state).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from editkit_memit.hparams import default_layers

from editkit.api import (
    EditBatch,
    InputError,
    RunContext,
    Site,
    SolveProblem,
    UsageError,
    added_update,
    capture_inputs,
    first_token_from,
    hookimpl,
    max_positions,
    pad_batch,
    run_until_stopped,
    tokenize,
)
from editkit_ft.hparams import FtHParams
from editkit_ft.projection import box_projection, dykstra


@attrs.frozen(kw_only=True)
class TrainingRows:
    """The padded batch FT trains on and where its target tokens are read.

    ``batch`` ``[n, T]`` (one row per request); ``tok_row``, ``tok_col``, ``tok_id`` ``[n_tok]``: for every
    target token, its row, the padded column whose logits predict it, and its id; ``prompt_end`` ``[n]``:
    the padded column of each prompt's last token.
    """

    batch: Any
    tok_row: torch.Tensor
    tok_col: torch.Tensor
    tok_id: torch.Tensor
    prompt_end: torch.Tensor


def training_rows(tokenizer: Any, requests: Any, objective: str, device: torch.device,
                  limit: int | None = None) -> TrainingRows:
    """Rows for ``objective`` ``prompt_last`` (the prompt alone; all target tokens read at its last token)
    or ``target_new`` (prompt + target but its last token; token t read at column t − 1)."""
    ids, rows, cols, targets, ends = [], [], [], [], []
    for r, request in enumerate(requests):
        prompt = request.filled_prompt
        tok = tokenize(tokenizer, prompt + request.target_new)
        first = first_token_from(tokenizer, prompt + request.target_new, len(prompt), tok)
        target = [t for t in range(first, len(tok.ids)) if not tok.special[t]]
        if first == 0 or not target:
            raise InputError(f"case {request.case_id}: target {request.target_new!r} produced no tokens after the "
                             f"prompt {prompt!r}")
        row = list(tok.ids[:first]) if objective == "prompt_last" else list(tok.ids[: target[-1]])
        if limit is not None and len(row) > limit:
            raise InputError(f"case {request.case_id}: the prompt and target take {len(row)} tokens, more than the "
                             f"model's context ({limit})")
        ids.append(row)
        ends.append(first - 1)
        for t in target:
            rows.append(r)
            cols.append(first - 1 if objective == "prompt_last" else t - 1)
            targets.append(tok.ids[t])
    batch = pad_batch(tokenizer, ids, device)
    return TrainingRows(
        batch=batch,
        tok_row=torch.tensor(rows, device=device),
        tok_col=torch.tensor([batch.index(r, c) for r, c in zip(rows, cols)], device=device),
        tok_id=torch.tensor(targets, device=device),
        prompt_end=torch.tensor([batch.index(r, c) for r, c in enumerate(ends)], device=device),
    )


def request_losses(model: torch.nn.Module, rows: TrainingRows, selection: torch.Tensor) -> torch.Tensor:
    """Mean NLL of each selected request's target tokens ``[len(selection)]`` (differentiable)."""
    sub = rows.batch.rows(selection)
    logits = model(**sub.model_inputs()).logits  # [s, T', vocab]
    local = torch.full((len(rows.batch.lengths),), -1, dtype=torch.long, device=logits.device)
    local[selection] = torch.arange(len(selection), device=logits.device)
    keep = local[rows.tok_row] >= 0
    tok_rows = local[rows.tok_row[keep]]
    # the padded column in the sub-batch: same unpadded column, the sub-batch's own shift
    unpadded = rows.tok_col[keep] - torch.tensor(rows.batch.shift, device=logits.device)[rows.tok_row[keep]]
    cols = unpadded + torch.tensor(sub.shift, device=logits.device)[tok_rows]
    logp = torch.log_softmax(logits[tok_rows, cols].float(), dim=-1)
    nll = -logp.gather(1, rows.tok_id[keep, None])[:, 0]
    total = torch.zeros(len(selection), device=logits.device).index_add(0, tok_rows, nll)
    return total / torch.bincount(tok_rows, minlength=len(selection)).clamp(min=1)


class FtStages:
    """Stage plugin created per run by the ``ft`` editor."""

    def __init__(self, hparams: FtHParams) -> None:
        self.hparams = hparams

    @hookimpl
    def editkit_locate(self, run: RunContext) -> list[Site]:
        n = run.layout.n_layers
        layers = self.hparams.layers if self.hparams.layers is not None else default_layers(n)
        bad = [layer for layer in layers if not 0 <= layer < n]
        if bad:
            raise UsageError(f"layers {bad} out of range: the model has layers 0..{n - 1}")
        return [run.layout.site(layer) for layer in sorted(set(layers))]

    @hookimpl
    def editkit_collect_keys(self, run: RunContext, batch: EditBatch, site: Site) -> torch.Tensor:
        rows = training_rows(run.tokenizer, batch.requests, "prompt_last", run.device, max_positions(run.model))
        with torch.no_grad(), capture_inputs(run.model, [site.module], stop_after_last=True) as captured:
            run_until_stopped(lambda: run.model(**rows.batch.model_inputs()))
        hidden = captured[site.module].reshape(len(batch.requests), rows.batch.input_ids.shape[1], -1)
        return hidden[torch.arange(len(batch.requests)), rows.prompt_end.cpu()].float().T.contiguous().cpu()

    @hookimpl
    def editkit_compute_residual(
        self, run: RunContext, batch: EditBatch, site: Site, keys: torch.Tensor
    ) -> torch.Tensor:
        return torch.zeros(site.d_out, keys.shape[1])

    def _offset(self, run: RunContext, site: Site) -> torch.Tensor | float:
        """``W_now − W_ref`` for the box (0 around the batch's start)."""
        if self.hparams.box == "batch":
            return 0.0
        w0 = site.to_math(run.initial_weights[site.module]).double()
        return (run.weight(site).detach().double() - w0).to(run.device)

    @hookimpl
    def editkit_solve(self, run: RunContext, batch: EditBatch, site: Site, problem: SolveProblem) -> torch.Tensor:
        hp = self.hparams
        rows = training_rows(run.tokenizer, batch.requests, hp.objective, run.device, max_positions(run.model))
        offset = self._offset(run, site)
        box = box_projection(offset, hp.linf) if hp.linf > 0 else None
        sub = problem.subspace
        project = None if sub is None else sub.project_rows
        delta = torch.zeros(site.d_out, site.d_in, dtype=torch.float64, device=run.device, requires_grad=True)
        optimiser = torch.optim.Adam([delta], lr=hp.lr)
        n = len(batch.requests)
        size = hp.chunk or n
        chunks = [torch.arange(i, min(i + size, n), device=run.device) for i in range(0, n, size)]
        task = run.progress.task(f"batch {batch.index}: fine-tune layer {site.layer}", hp.steps)
        epochs, mean = 0, float("nan")
        for epoch in range(hp.steps):
            total = 0.0
            for selection in chunks:
                with added_update(run.model, site.module, delta):
                    loss = request_losses(run.model, rows, selection).mean()
                value = float(loss.detach())
                total += value * len(selection)
                if value >= hp.early_stop_loss:
                    optimiser.zero_grad()
                    loss.backward()
                    if project is not None and delta.grad is not None:
                        delta.grad = project(delta.grad)
                    optimiser.step()
                with torch.no_grad():
                    delta.copy_(dykstra(delta.detach(), box, project, hp.box_iters))
            epochs, mean = epoch + 1, total / n
            task.advance(1)
            if mean < hp.early_stop_loss:
                break
        run.progress.finish(task)
        result = delta.detach().cpu()
        run.note(site, "ft.epochs", epochs)
        run.note(site, "ft.final_loss", round(mean, 4))
        if hp.linf > 0:
            reach = float((offset + delta.detach()).abs().max()) if delta.numel() else 0.0
            run.note(site, "ft.box", {"max_abs_change": reach, "linf": hp.linf,
                                      "holds": reach <= hp.linf * (1 + 1e-9)})
        return result


__all__ = ["FtStages", "TrainingRows", "request_losses", "training_rows"]
