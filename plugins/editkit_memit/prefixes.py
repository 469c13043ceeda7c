"""Prefix (context) templates, sampled once per run from the unedited model (MEMIT: Meng et al. 2023, arXiv 2210.07229).

Templates are ``["{}"] + [g_j + ". {}"]`` with one short sample ``g_j`` per seed word; the
run's seeded generator makes them reproducible, and they are stored in the run's state.
"""

from __future__ import annotations

from typing import Any

import torch

from editkit.api import RunContext, tokenize

SEED_WORDS = ("The", "Therefore", "Because", "I", "You")


@torch.no_grad()
def sample_prefixes(
    model: torch.nn.Module,
    tokenizer: Any,
    *,
    generator: torch.Generator,
    length: int = 10,
    top_k: int = 5,
    seeds: tuple[str, ...] = SEED_WORDS,
) -> tuple[str, ...]:
    """One top-k sample of ``length`` tokens (seed included) per seed word → context templates."""
    device = next(model.parameters()).device
    templates = ["{}"]
    for word in seeds:
        ids = list(tokenize(tokenizer, word).ids)
        while len(ids) < length:
            inputs = torch.tensor([ids], device=device)
            logits = model(input_ids=inputs).logits[0, -1].float().cpu()  # [vocab]
            top = torch.topk(logits, k=min(top_k, logits.shape[-1]))
            probs = torch.softmax(top.values, dim=-1)
            choice = int(torch.multinomial(probs, 1, generator=generator).item())
            ids.append(int(top.indices[choice]))
        text = tokenizer.decode(ids, skip_special_tokens=True).replace("{", " ").replace("}", " ").strip()
        templates.append(f"{text}. {{}}")
    return tuple(templates)


def run_templates(run: RunContext, length: int) -> tuple[str, ...]:
    """The run's prefix templates: restored from ``run.state["prefix_templates"]`` (a resumed run, or
    another stage object of the same run), else sampled once from the (unedited) model with the run's
    generator and stored there. Shared by every editor that uses MEMIT's keys and v*."""
    if run.state.get("prefix_templates"):
        return tuple(run.state["prefix_templates"])
    templates = sample_prefixes(run.model, run.tokenizer, generator=run.generator, length=length)
    run.state["prefix_templates"] = list(templates)
    return templates
