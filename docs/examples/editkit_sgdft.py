"""``--editor sgdft``: fine-tune one MLP output matrix on the requests; only ``editkit.api`` is used."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from editkit.api import EditorSpec, RunContext, Site, UsageError, hookimpl

if TYPE_CHECKING:
    import torch

    from editkit.api import EditBatch, SolveProblem


@attrs.frozen(kw_only=True)
class SgdFtHParams:
    layer: int = attrs.field(default=1, validator=attrs.validators.ge(0))
    lr: float = attrs.field(default=0.05, validator=attrs.validators.gt(0))
    steps: int = attrs.field(default=25, validator=attrs.validators.gt(0))


class SgdFtStages:
    def __init__(self, hparams: SgdFtHParams) -> None:
        self.hparams = hparams
        self._prepared: tuple[EditBatch, Any] | None = None  # (the batch, its tokenised rows)

    @hookimpl
    def editkit_locate(self, run: RunContext) -> list[Site]:
        if self.hparams.layer >= run.layout.n_layers:
            raise UsageError(f"sgdft.layer: {self.hparams.layer} is not in the model's 0..{run.layout.n_layers - 1}")
        return [run.layout.site(self.hparams.layer)]

    def _rows(self, run: RunContext, batch: EditBatch) -> tuple[Any, list[int], list[tuple[int, int, int]]]:
        """Prompt + target per request, padded; each prompt's last column; (row, column, id) per target token."""
        from editkit.api import first_token_from, pad_batch, tokenize

        ids, ends, reads = [], [], []
        for r, request in enumerate(batch.requests):
            text = request.filled_prompt + request.target_new
            tok = tokenize(run.tokenizer, text)
            first = first_token_from(run.tokenizer, text, len(request.filled_prompt), tok)
            ids.append(list(tok.ids))
            ends.append(first - 1)
            reads += [(r, t - 1, tok.ids[t]) for t in range(first, len(tok.ids)) if not tok.special[t]]
        padded = pad_batch(run.tokenizer, ids, run.device)
        columns = [(r, padded.index(r, c), i) for r, c, i in reads]
        return padded, [padded.index(r, c) for r, c in enumerate(ends)], columns

    @hookimpl
    def editkit_batch_begin(self, run: RunContext, batch: EditBatch) -> None:
        self._prepared = (batch, self._rows(run, batch))  # tokenised once per batch

    def _batch_rows(self, run: RunContext, batch: EditBatch) -> tuple[Any, list[int], list[tuple[int, int, int]]]:
        if self._prepared is None or self._prepared[0] is not batch:  # a hook called outside a begun batch
            self._prepared = (batch, self._rows(run, batch))
        return self._prepared[1]

    @hookimpl
    def editkit_collect_keys(self, run: RunContext, batch: EditBatch, site: Site) -> torch.Tensor:
        import torch

        from editkit.api import capture_inputs

        padded, ends, _ = self._batch_rows(run, batch)
        with torch.no_grad(), capture_inputs(run.model, [site.module]) as captured:
            run.model(**padded.model_inputs())
        return captured[site.module][torch.arange(len(ends)), ends].float().T.cpu()  # [d_in, u]

    @hookimpl
    def editkit_compute_residual(self, run: RunContext, batch: EditBatch, site: Site, keys: torch.Tensor) -> Any:
        return keys.new_zeros(site.d_out, keys.shape[1])  # fine-tuning has no target value for the module's output

    @hookimpl
    def editkit_solve(self, run: RunContext, batch: EditBatch, site: Site, problem: SolveProblem) -> torch.Tensor:
        import torch

        from editkit.api import added_update

        padded, _, reads = self._batch_rows(run, batch)
        rows, cols, targets = (torch.tensor(x, device=run.device) for x in zip(*reads))
        delta = torch.zeros(site.d_out, site.d_in, dtype=torch.float64, device=run.device, requires_grad=True)
        optimiser = torch.optim.Adam([delta], lr=self.hparams.lr)
        for _ in range(self.hparams.steps):
            with added_update(run.model, site.module, delta):  # the model computes as if W + Δ
                logits = run.model(**padded.model_inputs()).logits
            loss = -torch.log_softmax(logits[rows, cols].float(), dim=-1).gather(1, targets[:, None]).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if problem.subspace is not None:  # a constraint restricted the solve: stay inside it (ΔP = Δ)
                with torch.no_grad():
                    delta.copy_(problem.subspace.project_rows(delta))
        run.note(site, "sgdft.loss", round(float(loss.detach()), 4))
        return delta.detach().cpu()


EDITOR = EditorSpec(name="sgdft", summary="fine-tune one MLP output matrix with Adam (the plugin guide's example)",
                    factory=SgdFtStages, hparams=SgdFtHParams)


@hookimpl
def editkit_register_editors(register: Callable[[EditorSpec], None]) -> None:
    register(EDITOR)
