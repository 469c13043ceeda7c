"""Batched top-k sampling (the reference's ``generate_fast``), seeded, with a key/value cache.

Prompts are left-padded so that every row's next token is read at the last column; position
ids come from the attention mask, so padding never shifts positions. The prompt is run once;
each further step feeds only the new token ``[n, 1]`` with the cached keys and values (the
same logits as re-running the whole sequence, up to float rounding; ``use_cache=False``
re-runs it, for models whose cache cannot be trusted).

Generation stays inside the model's context (:func:`~editkit.helpers.contextwindow.max_positions`): a prompt
gets at most ``context - len(prompt)`` new tokens (none when the prompt fills the context or is longer; such a
prompt is not run), so a model with learned position embeddings never reads a position it does not have. The
result says how many continuations were cut short that way (:attr:`Continuations.truncated`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from editkit.helpers.contextwindow import max_positions
from editkit.helpers.kvcache import cache_argument, cache_of
from editkit.helpers.tokens import pad_batch, tokenize


def _top_k_sample(logits: torch.Tensor, top_k: int, generator: torch.Generator) -> torch.Tensor:
    """``logits`` ``[n, vocab]`` → sampled token ids ``[n]`` (softmax over the top k)."""
    top = torch.topk(logits.float().cpu(), k=min(top_k, logits.shape[-1]), dim=-1)
    choice = torch.multinomial(torch.softmax(top.values, dim=-1), 1, generator=generator)  # [n, 1]
    return top.indices.gather(1, choice)[:, 0]


class Continuations(list[str]):
    """Prompt + continuation per prompt (a list of str), and ``truncated``: how many continuations the model's
    context cut short (fewer new tokens than asked, because prompt + continuation would not fit)."""

    truncated: int = 0


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
    use_cache: bool = True,
) -> Continuations:
    """Prompt + sampled continuation text for each prompt: ``max_new_tokens`` new tokens, or as many as fit in
    the model's context (counted in the result's ``truncated``)."""
    out = Continuations()
    limit = max_positions(model)
    side = getattr(tokenizer, "padding_side", "right")
    try:
        tokenizer.padding_side = "left"
        for start in range(0, len(prompts), batch_size):
            rows = [list(tokenize(tokenizer, p).ids) for p in prompts[start : start + batch_size]]
            budgets = [max_new_tokens if limit is None else max(0, min(max_new_tokens, limit - len(r))) for r in rows]
            out.truncated += sum(b < max_new_tokens for b in budgets)
            running = [i for i, b in enumerate(budgets) if b > 0]  # a prompt with no room left is not run
            if running:
                step = _generate_cached if use_cache else _generate_uncached
                step(model, tokenizer, [rows[i] for i in running], [budgets[i] for i in running], top_k, generator,
                     device, limit)
            out.extend(tokenizer.decode(r, skip_special_tokens=True) for r in rows)
    finally:
        tokenizer.padding_side = side
    return out


def _generate_uncached(model: Any, tokenizer: Any, rows: list[list[int]], budgets: list[int], top_k: int,
                       generator: torch.Generator, device: Any, limit: int | None) -> None:
    """Append ``budgets[i]`` sampled tokens to ``rows[i]`` (in place), re-running the whole sequence each step.
    A row whose budget is spent stays in the batch (the same samples are drawn as with the cache) but grows no
    further, so no row is longer than the context."""
    for step in range(max(budgets)):
        batch = pad_batch(tokenizer, rows, device)
        tokens = _top_k_sample(model(**batch.model_inputs(), use_cache=False).logits[:, -1], top_k, generator)
        for row, token, budget in zip(rows, tokens.tolist(), budgets):
            if step < budget:
                row.append(int(token))


def _generate_cached(model: Any, tokenizer: Any, rows: list[list[int]], budgets: list[int], top_k: int,
                     generator: torch.Generator, device: Any, limit: int | None) -> None:
    """As :func:`_generate_uncached`, feeding only the new token with the cached keys and values. A row whose
    budget is spent is still fed (its samples are dropped), at a position held inside the context."""
    steps = max(budgets)
    batch = pad_batch(tokenizer, rows, device)  # left-padded [n, T]
    mask = batch.attention_mask  # [n, T]
    position = batch.position_ids[:, -1:]  # [n, 1]
    name = cache_argument(model)
    output = model(**batch.model_inputs(), use_cache=True)
    for step in range(steps):
        tokens = _top_k_sample(output.logits[:, -1], top_k, generator)  # [n]
        for row, token, budget in zip(rows, tokens.tolist(), budgets):
            if step < budget:
                row.append(int(token))
        if step == steps - 1:
            break
        position = position + 1 if limit is None else (position + 1).clamp_max(limit - 1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)  # [n, T + step + 1]
        output = model(input_ids=tokens[:, None].to(device), attention_mask=mask, position_ids=position,
                       use_cache=True, **{name: cache_of(output)})
