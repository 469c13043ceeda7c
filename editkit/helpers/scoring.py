"""Teacher-forced scoring of continuations: the primitive every evaluation metric uses.

``continuation_scores(model, tok, prompts, targets)`` returns, per (prompt, target) pair,
the log-probability of each target token given the prompt and the earlier target tokens,
and whether it was the argmax, computed in padded batches (positions from the attention mask).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from editkit.helpers.tokens import first_token_from, pad_batch, tokenize


@torch.no_grad()
def continuation_scores(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    targets: Sequence[str],
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per pair: (log-probs of the target tokens ``[n_t]``, argmax-equals-target flags ``[n_t]``)."""
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    rows: list[tuple[list[int], int]] = []
    for prompt, target in zip(prompts, targets):
        full = prompt + target
        tok = tokenize(tokenizer, full)
        first = first_token_from(tokenizer, full, len(prompt), tok)
        if first >= len(tok.ids) or first == 0:
            raise ValueError(f"target {target!r} produced no tokens after prompt {prompt!r}")
        rows.append((list(tok.ids), first))
    # Rows sorted by length so that a batch pads little, and the output head evaluated only at the
    # columns whose logits predict a target token (``logits_to_keep``, where the model takes it): on a
    # 49k vocabulary the head and the log-softmax over every column cost as much as the blocks.
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    out: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(rows)
    selective = _takes_logits_to_keep(model)
    for start in range(0, len(order), batch_size):
        chunk_index = order[start : start + batch_size]
        chunk = [rows[i] for i in chunk_index]
        batch = pad_batch(tokenizer, [ids[:-1] for ids, _ in chunk], device)
        columns = [[batch.index(r, t - 1) for t in range(first, len(ids))] for r, (ids, first) in enumerate(chunk)]
        kept = sorted({c for cols in columns for c in cols})
        if selective and len(kept) < batch.input_ids.shape[1]:
            where = {c: i for i, c in enumerate(kept)}
            logits = model(**batch.model_inputs(),
                           logits_to_keep=torch.tensor(kept, device=batch.input_ids.device)).logits  # [n, k, V]
        else:
            where = {c: c for c in kept}
            logits = model(**batch.model_inputs()).logits  # [n, T, vocab]
        for r, ((ids, first), cols) in enumerate(zip(chunk, columns)):
            at = torch.tensor([where[c] for c in cols], device=logits.device)
            wanted = torch.tensor(ids[first:], device=logits.device)
            picked = logits[r, at]
            picked = picked if picked.dtype == torch.float64 else picked.float()  # half precision → float32
            row = torch.log_softmax(picked, dim=-1)  # [n_t, vocab]
            out[chunk_index[r]] = (row.gather(1, wanted[:, None])[:, 0].cpu(), (row.argmax(-1) == wanted).cpu())
    return [pair for pair in out if pair is not None]


def _takes_logits_to_keep(model: torch.nn.Module) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
