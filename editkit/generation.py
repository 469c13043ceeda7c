"""Batched top-k sampling (the reference's ``generate_fast``), seeded, no KV cache needed.

Prompts are left-padded each step so that every row's next token is read at the last
column; position ids come from the attention mask, so padding never shifts positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from editkit.tokens import pad_batch, tokenize


@torch.no_grad()
def sample_continuations(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    top_k: int = 5,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
) -> list[str]:
    """Prompt + sampled continuation text for each prompt."""
    out: list[str] = []
    side = getattr(tokenizer, "padding_side", "right")
    try:
        tokenizer.padding_side = "left"
        for start in range(0, len(prompts), batch_size):
            rows = [list(tokenize(tokenizer, p).ids) for p in prompts[start : start + batch_size]]
            for _ in range(max_new_tokens):
                batch = pad_batch(tokenizer, rows, device)
                logits = model(**batch.model_inputs()).logits[:, -1].float().cpu()  # [n, vocab]
                top = torch.topk(logits, k=min(top_k, logits.shape[-1]), dim=-1)
                choice = torch.multinomial(torch.softmax(top.values, dim=-1), 1, generator=generator)[:, 0]
                for row, token in zip(rows, top.indices.gather(1, choice[:, None])[:, 0].tolist()):
                    row.append(int(token))
            out.extend(tokenizer.decode(r, skip_special_tokens=True) for r in rows)
    finally:
        tokenizer.padding_side = side
    return out
