"""collect-keys: MLP keys at the subject's last token, two-level prefix average (methods.md §2.2).

``k_i = ½·k(bare prompt_i) + ½·mean_j k(prefix_j ⊕ prompt_i)``; one batched forward for all
requests and templates, stopped right after the edited module's input is captured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from editkit.api import (
    EditRequest,
    InputError,
    capture_inputs,
    clip_left,
    first_token_from,
    last_token_before,
    max_positions,
    pad_batch,
    run_until_stopped,
    tokenize,
)


def subject_prompts(
    tokenizer: Any, requests: Sequence[EditRequest], templates: Sequence[str], suffix: str = "",
    limit: int | None = None,
) -> tuple[list[list[int]], list[int]]:
    """Token ids of ``template.format(prompt)`` filled with the subject (plus ``suffix`` text),
    and the unpadded index of the subject's last token, request-major, template-minor.

    With ``limit`` (the model's context, :func:`editkit.context.max_positions`) a prefixed text
    longer than that loses tokens from the start of its prefix (:func:`editkit.context.clip_left`).
    """
    ids, positions = [], []
    for request in requests:
        for template in templates:
            text_template = template.replace("{}", request.prompt)
            before, _, after = text_template.partition("{}")
            text = before + request.subject + after + suffix
            tok = tokenize(tokenizer, text)
            kept, dropped = clip_to_context(tokenizer, text, tok, template, limit, request)
            ids.append(kept)
            positions.append(last_token_before(tokenizer, text, len(before) + len(request.subject), tok) - dropped)
    return ids, positions


def clip_to_context(tokenizer: Any, text: str, tok: Any, template: str, limit: int | None,
                    request: EditRequest) -> tuple[list[int], int]:
    """``text``'s ids cut from the left inside the template's prefix to fit ``limit``: ``(ids, dropped)``."""
    prefix = template.partition("{}")[0]
    keep_from = first_token_from(tokenizer, text, len(prefix), tok) if prefix else 0
    try:
        return clip_left(tok, limit, keep_from)
    except ValueError as exc:
        raise InputError(f"case {request.case_id}: {exc} (prompt {request.filled_prompt!r})") from None


@torch.no_grad()
def collect_keys(
    model: torch.nn.Module,
    tokenizer: Any,
    module: str,
    requests: Sequence[EditRequest],
    templates: Sequence[str],
    device: torch.device,
) -> torch.Tensor:
    """Keys ``K1`` ``[d_in, u]`` (float32) at ``module``'s input."""
    ids, positions = subject_prompts(tokenizer, requests, templates, limit=max_positions(model))
    batch = pad_batch(tokenizer, ids, device)
    with capture_inputs(model, [module], stop_after_last=True) as captured:
        run_until_stopped(lambda: model(**batch.model_inputs()))
    hidden = captured[module].reshape(len(ids), batch.input_ids.shape[1], -1)  # [u * n_templates, T, d_in]
    rows = torch.arange(len(ids), device=hidden.device)
    cols = torch.tensor([batch.index(r, p) for r, p in enumerate(positions)], device=hidden.device)
    per_prompt = hidden[rows, cols].float()  # [u * n_templates, d_in]
    n_t = len(templates)
    per_prompt = per_prompt.view(len(requests), n_t, -1)
    bare = per_prompt[:, 0]  # [u, d_in]
    keys = bare if n_t == 1 else 0.5 * bare + 0.5 * per_prompt[:, 1:].mean(dim=1)  # [u, d_in]
    return keys.T.contiguous().cpu()
