"""collect-keys: MLP keys at the subject's last token, two-level prefix average (methods.md §2.2).

``k_i = ½·k(bare prompt_i) + ½·mean_j k(prefix_j ⊕ prompt_i)``; one batched forward for all
requests and templates, stopped right after the edited module's input is captured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from editkit.requests import EditRequest
from editkit.tokens import last_token_before, pad_batch, tokenize
from editkit.tracing import capture_inputs, run_until_stopped


def subject_prompts(
    tokenizer: Any, requests: Sequence[EditRequest], templates: Sequence[str], suffix: str = ""
) -> tuple[list[list[int]], list[int]]:
    """Token ids of ``template.format(prompt)`` filled with the subject (plus ``suffix`` text),
    and the unpadded index of the subject's last token, request-major, template-minor."""
    ids, positions = [], []
    for request in requests:
        for template in templates:
            text_template = template.replace("{}", request.prompt)
            before, _, after = text_template.partition("{}")
            text = before + request.subject + after + suffix
            tok = tokenize(tokenizer, text)
            ids.append(list(tok.ids))
            positions.append(last_token_before(tokenizer, text, len(before) + len(request.subject), tok))
    return ids, positions


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
    ids, positions = subject_prompts(tokenizer, requests, templates)
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
