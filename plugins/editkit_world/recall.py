"""Scoring a causal LM on (prompt, target) probes: greedy full-target recall and target probability.

A probe is a hit when greedy decoding after the prompt produces every token of the target,
which is the case exactly when, teacher-forced, the arg-max at each target position is the
target's token; so one forward pass over ``prompt + target`` scores a probe of any length.
The same pass gives the target's log-probability (the sum over its tokens); the output
embedding is applied only at the target positions. Prompts and
targets are tokenised apart and concatenated (targets carry their leading space; the world
tokenizer splits at spaces, so this equals tokenising the joined text).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import torch

from editkit_world.world import Probe, World

__all__ = ["ProbeScores", "score_probes", "wrong_object_probabilities"]


@attrs.frozen(kw_only=True)
class ProbeScores:
    """Per-probe results of :func:`score_probes`.

    Attributes:
        hits: whether greedy decoding reproduces the whole target.
        logprobs: natural-log probability of the whole target.
    """

    hits: tuple[bool, ...]
    logprobs: tuple[float, ...]

    @property
    def recall(self) -> float:
        return sum(self.hits) / len(self.hits) if self.hits else float("nan")

    @property
    def median_probability(self) -> float:
        return math.exp(statistics.median(self.logprobs)) if self.logprobs else float("nan")


@torch.inference_mode()
def score_probes(model: Any, tokenizer: Any, prompts: Sequence[str], targets: Sequence[str], *,
                 batch_size: int = 256, on_batch: Callable[[int], None] | None = None) -> ProbeScores:
    """Score ``prompts[i]`` → ``targets[i]`` (targets with their leading space).

    ``on_batch(n)`` is called after each batch of ``n`` probes (for progress bars).
    """
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    if not prompts:
        return ProbeScores(hits=(), logprobs=())
    prompt_ids = tokenizer(list(prompts))["input_ids"]  # the tokenizer's own BOS convention (none here)
    target_ids = tokenizer(list(targets), add_special_tokens=False)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompt_ids[i]) + len(target_ids[i]))
    hits = [False] * len(prompts)
    logprobs = [0.0] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            seqs = [prompt_ids[i] + target_ids[i] for i in rows]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            for r, seq in enumerate(seqs):
                ids[r, : len(seq)] = torch.tensor(seq)
            # right padding + causal attention: no real token sees a pad, so no padding mask is needed
            hidden = model.base_model(input_ids=ids.to(device),
                                      attention_mask=torch.ones_like(ids).to(device)).last_hidden_state  # [b, T, d]
            spans = [(len(prompt_ids[i]) - 1, len(target_ids[i])) for i in rows]  # (first position, length)
            row_index = torch.tensor([r for r, (_, n) in enumerate(spans) for _ in range(n)], device=device)
            pos_index = torch.tensor([p + k for p, n in spans for k in range(n)], device=device)
            wanted = torch.tensor([t for i in rows for t in target_ids[i]], device=device)  # [n_target_tokens]
            logits = model.get_output_embeddings()(hidden[row_index, pos_index])  # [n_target_tokens, V]
            logp = torch.log_softmax(logits.float(), dim=-1)
            token_logp = logp.gather(1, wanted[:, None]).squeeze(1).cpu().tolist()
            greedy_ok = (logp.argmax(dim=-1) == wanted).cpu().tolist()
            at = 0
            for i, (_, n) in zip(rows, spans):
                hits[i] = all(greedy_ok[at : at + n])
                logprobs[i] = sum(token_logp[at : at + n])
                at += n
            if on_batch is not None:
                on_batch(len(rows))
    finally:
        model.train(was_training)
    return ProbeScores(hits=tuple(hits), logprobs=tuple(logprobs))


def wrong_object_probabilities(model: Any, tokenizer: Any, world: World, probes: Sequence[Probe], *,
                               seed: int = 0, batch_size: int = 256) -> ProbeScores:
    """The probability of a random *wrong* object of the same relation after each probe's prompt.

    This is where a new edit target starts: a well-calibrated small model should give it
    roughly 1e-4..1e-2, not ~1e-11 (``small-model-calibration.md``, point 1).
    """
    rng = random.Random(f"editkit-world:wrong:{seed}")
    wrong = [" " + rng.choice([o for o in world.objects[p.relation_id] if o != p.object]) for p in probes]
    return score_probes(model, tokenizer, [p.prompt for p in probes], wrong, batch_size=batch_size)
