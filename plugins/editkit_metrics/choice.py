"""Scoring candidate continuations of prompts, and texts, in batches bounded by tokens.

:func:`candidate_logprobs`: for ``(prompt, candidates)`` items, the mean per-token log-probability of
each candidate after the prompt (teacher-forced). When every candidate of an item is one token after
the same prompt tokens (" Yes"/" No", " A"…" D"), the item costs one sequence; otherwise one per candidate.
:func:`token_batches` groups sequences so that a forward pass holds at most ``budget`` padded tokens
(the logits of a 49k-token vocabulary take 200 kB per token), a longer sequence going alone.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from editkit.api import first_token_from, pad_batch, tokenize

TOKEN_BUDGET = 2048


def token_batches(lengths: Sequence[int], budget: int = TOKEN_BUDGET) -> list[list[int]]:
    """Indices of ``lengths`` grouped, shortest first, so that ``rows × longest ≤ budget`` (or one row)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[i] <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def logits_at(model: Any, padded: Any, positions: Sequence[int]) -> tuple[torch.Tensor, dict[int, int]]:
    """Logits ``[n, k, vocab]`` at the padded ``positions`` (for every row), and position → column; only those
    columns are projected onto the vocabulary when the model takes ``logits_to_keep`` (transformers ≥ 4.50)."""
    wanted = sorted(set(positions))
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        keep = torch.tensor(wanted, device=padded.input_ids.device)
        return model(**padded.model_inputs(), logits_to_keep=keep).logits, {p: i for i, p in enumerate(wanted)}
    return model(**padded.model_inputs()).logits, {p: p for p in wanted}


@torch.no_grad()
def candidate_logprobs(model: Any, tokenizer: Any, items: Sequence[tuple[str, Sequence[str]]], *,
                       device: Any = "cpu", budget: int = TOKEN_BUDGET) -> list[list[float]]:
    """Per item, per candidate: mean over the candidate's tokens of log P(token | prompt, earlier tokens)."""
    rows: list[tuple[list[int], list[tuple[int, int, int, int]]]] = []  # (input ids, [(position, target, item, cand)])
    for i, (prompt, candidates) in enumerate(items):
        encoded = []
        for candidate in candidates:
            full = prompt + candidate
            tok = tokenize(tokenizer, full)
            first = first_token_from(tokenizer, full, len(prompt), tok)
            if not 0 < first < len(tok.ids):
                raise ValueError(f"candidate {candidate!r} produced no tokens after prompt {prompt[-80:]!r}")
            encoded.append((list(tok.ids), first))
        prefix = encoded[0][0][: encoded[0][1]]
        if all(len(ids) == first + 1 and ids[:first] == prefix for ids, first in encoded):
            rows.append((prefix, [(first - 1, ids[first], i, j) for j, (ids, first) in enumerate(encoded)]))
        else:
            for j, (ids, first) in enumerate(encoded):
                rows.append((ids[:-1], [(t - 1, ids[t], i, j) for t in range(first, len(ids))]))
    sums = [[0.0] * len(c) for _, c in items]
    counts = [[0] * len(c) for _, c in items]
    for batch in token_batches([len(ids) for ids, _ in rows], budget):
        padded = pad_batch(tokenizer, [rows[r][0] for r in batch], device)
        logits, column = logits_at(model, padded, [padded.index(k, pos) for k, r in enumerate(batch)
                                                   for pos, *_ in rows[r][1]])  # [n, columns, vocab]
        for k, r in enumerate(batch):
            wanted = rows[r][1]
            positions = torch.tensor([column[padded.index(k, pos)] for pos, *_ in wanted], device=logits.device)
            logp = torch.log_softmax(logits[k, positions].double(), dim=-1)  # [n_wanted, vocab]
            for m, (_, target, i, j) in enumerate(wanted):
                sums[i][j] += float(logp[m, target])
                counts[i][j] += 1
    return [[s / n for s, n in zip(ss, ns)] for ss, ns in zip(sums, counts)]


@torch.no_grad()
def text_nll(model: Any, tokenizer: Any, token_lists: Sequence[Sequence[int]], *, device: Any = "cpu",
             budget: int = TOKEN_BUDGET) -> list[tuple[float, int]]:
    """Per token list: (sum of −log P(token_t | tokens_<t) over t ≥ 1, number of those tokens)."""
    out: list[tuple[float, int]] = [(0.0, 0)] * len(token_lists)
    for batch in token_batches([len(ids) for ids in token_lists], budget):
        padded = pad_batch(tokenizer, [list(token_lists[r]) for r in batch], device)
        logits = model(**padded.model_inputs()).logits  # [n, T, vocab]
        for k, r in enumerate(batch):
            ids = token_lists[r]
            if len(ids) < 2:
                continue
            positions = torch.tensor([padded.index(k, t) for t in range(len(ids) - 1)], device=logits.device)
            logp = torch.log_softmax(logits[k, positions].double(), dim=-1)
            targets = torch.tensor(list(ids[1:]), device=logits.device)
            out[r] = (-float(logp.gather(1, targets[:, None]).sum()), len(ids) - 1)
    return out
