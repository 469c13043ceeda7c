"""Fluency (weighted n-gram entropy of generations) and consistency (TF-IDF cosine), §3.2.

Fluency per generated text: H2/3 + 2·H3/3 with H_n the Shannon entropy (bits) of the text's
n-gram frequency distribution; averaged over texts and records, ×100. Consistency: cosine of
TF-IDF vectors between a record's generated texts (joined) and the reference texts of its new
object (``context.extras["reference_texts"][object]``), IDF over all reference documents, ×100.
Words are ``\\w+`` runs and single punctuation marks.

Generations stay inside the model's context: a prompt gets at most ``context − len(prompt)`` new tokens (of
``generation_length``); how many generations were cut short that way is ``fluency_truncated_generations``
(only when some were).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from editkit.api import sample_continuations

WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def ngram_entropy(tokens: Sequence[str], n: int) -> float:
    grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    if total == 0:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in grams.values())


def fluency_of(text: str) -> float:
    tokens = words(text)
    return ngram_entropy(tokens, 2) / 3 + 2 * ngram_entropy(tokens, 3) / 3


def tfidf_cosine(doc: str, reference: str, idf: Mapping[str, float]) -> float:
    def vector(text: str) -> dict[str, float]:
        counts = Counter(w for w in words(text) if w in idf)
        return {w: c * idf[w] for w, c in counts.items()}

    a, b = vector(doc), vector(reference)
    dot = sum(v * b.get(w, 0.0) for w, v in a.items())
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb) if na and nb else 0.0


def inverse_document_frequency(documents: Sequence[str]) -> dict[str, float]:
    df = Counter(w for doc in documents for w in set(words(doc)))
    n = len(documents)
    return {w: math.log((1 + n) / (1 + c)) + 1 for w, c in df.items()}  # smoothed, as sklearn


def fluency_and_consistency(context: Any) -> dict[str, float]:
    """Fluency and consistency over the records' generation prompts; ``extras["generation_records"]``
    (an int > 0) limits them to the first that many records with generation prompts."""
    records = [r for r in context.records if r.get("generation_prompts")]
    limit = context.extras.get("generation_records")
    if limit:
        records = records[: int(limit)]
    if not records:
        return {}
    prompts = [p for r in records for p in r["generation_prompts"]]
    generator = torch.Generator().manual_seed(context.seed)
    texts = sample_continuations(context.model, context.tokenizer, prompts, max_new_tokens=context.generation_length,
                                 generator=generator, device=context.device, batch_size=context.batch_size)
    out: dict[str, float] = {}
    truncated = texts.truncated  # generations cut short by the model's context
    if truncated:
        out["fluency_truncated_generations"] = float(truncated)
    per_record: list[list[str]] = []
    start = 0
    for r in records:
        per_record.append(texts[start : start + len(r["generation_prompts"])])
        start += len(r["generation_prompts"])
    flu = [sum(fluency_of(t) for t in ts) / len(ts) for ts in per_record]
    out["fluency"] = 100.0 * sum(flu) / len(flu)
    references = context.extras.get("reference_texts")
    if references:
        idf = inverse_document_frequency([" ".join(v) for v in references.values()])
        cons = []
        for r, ts in zip(records, per_record):
            new = r["requested_rewrite"]["target_new"]["str"]
            if new in references:
                cons.append(tfidf_cosine(" ".join(ts), " ".join(references[new]), idf))
        if cons:
            out["consistency"] = 100.0 * sum(cons) / len(cons)
    return out
