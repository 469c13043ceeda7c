"""Teacher-forced scoring of continuations: the primitive every evaluation metric uses.

``continuation_scores(model, tok, prompts, targets)`` returns, per (prompt, target) pair,
the log-probability of each target token given the prompt and the earlier target tokens,
and whether it was the argmax, computed in padded batches (positions from the attention mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from editkit.tokens import first_token_from, pad_batch, tokenize


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
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = pad_batch(tokenizer, [ids[:-1] for ids, _ in chunk], device)
        logits = model(**batch.model_inputs()).logits.float()  # [n, T, vocab]
        logp = torch.log_softmax(logits, dim=-1)
        for r, (ids, first) in enumerate(chunk):
            cols = torch.tensor([batch.index(r, t - 1) for t in range(first, len(ids))], device=logp.device)
            wanted = torch.tensor(ids[first:], device=logp.device)
            row = logp[r, cols]  # [n_t, vocab]
            out.append((row.gather(1, wanted[:, None])[:, 0].cpu(), (row.argmax(-1) == wanted).cpu()))
    return out
