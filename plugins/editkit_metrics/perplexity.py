"""Perplexity on held-out text, token-weighted: ``exp(Σ NLL / Σ tokens)`` over every predicted token of every text.

Each text is tokenised alone (special tokens as the tokenizer adds them) and cut to ``max_length``
tokens (and the model's context); token ``t ≥ 1`` is predicted from tokens ``< t``. Figures:
``perplexity``, ``perplexity_tokens`` (predicted tokens) and ``perplexity_texts``.

Options (``--metric-option perplexity.KEY=VALUE``, :class:`~editkit_metrics.options.PerplexityOptions`):
the file of texts (else ``$EDITKIT_PERPLEXITY_DATA``; without either, ``{}`` and one warning), the text
field, ``offset`` texts held back for something else (e.g. the C0 corpus's) and ``limit``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from editkit.api import InputError, max_positions, metric_options, tokenize
from editkit_metrics.choice import text_nll
from editkit_metrics.options import PERPLEXITY_ENV, PerplexityOptions, data_location


def _text_of(entry: Any, field: str | None, where: str) -> str:
    if isinstance(entry, str):
        text = entry
    elif isinstance(entry, dict):
        name = field or next((f for f in ("text", "Text") if f in entry), None)
        if name is None or name not in entry:
            raise InputError(f"perplexity: {where}: no text field {name or 'text/Text'!r} (--metric-option "
                             "perplexity.field=NAME)")
        text = entry[name]
    else:
        raise InputError(f"perplexity: {where}: expected a string or a JSON object, got {type(entry).__name__}")
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"perplexity: {where}: expected a non-empty text, got {text!r}")
    return text


def read_texts(path: Path, field: str | None, *, offset: int, limit: int) -> list[str]:
    """Texts ``offset+1 …`` of ``path`` (at most ``limit``, 0: all); a bad entry is named by record or line."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"perplexity: {path}: cannot read ({exc})") from None
    entries: list[tuple[Any, str]] = []
    stripped = raw.lstrip()
    if path.suffix == ".txt":
        entries = [(line, f"{path} line {n}") for n, line in enumerate(raw.splitlines(), start=1) if line.strip()]
    elif stripped.startswith("["):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InputError(f"perplexity: {path}: not valid JSON ({exc})") from None
        entries = [(entry, f"{path} record {i}") for i, entry in enumerate(data)]
    else:
        for n, line in enumerate(raw.splitlines(), start=1):
            if line.strip():
                try:
                    entries.append((json.loads(line), f"{path} line {n}"))
                except json.JSONDecodeError as exc:
                    raise InputError(f"perplexity: {path} line {n}: not JSON ({exc.msg})") from None
    chosen = entries[offset : offset + limit] if limit else entries[offset:]
    if not chosen:
        raise InputError(f"perplexity: {path}: no texts after the first {offset} (of {len(entries)})")
    return [_text_of(entry, field, where) for entry, where in chosen]


def perplexity(context: Any) -> dict[str, float]:
    options = metric_options(context, "perplexity", PerplexityOptions)
    path = data_location(options.data, PERPLEXITY_ENV, "perplexity", "a file of held-out texts (e.g. ME-PPL.json)")
    if path is None:
        return {}
    texts = read_texts(path, options.field, offset=options.offset, limit=options.limit)
    length = min(options.max_length, max_positions(context.model) or options.max_length)
    token_lists = [tokenize(context.tokenizer, text).ids[:length] for text in texts]
    per_text = text_nll(context.model, context.tokenizer, token_lists, device=context.device)
    total = math.fsum(nll for nll, _ in per_text)
    tokens = sum(n for _, n in per_text)
    if tokens == 0:
        raise InputError(f"perplexity: {path}: the texts have no token to predict (each needs two or more)")
    return {"perplexity": math.exp(total / tokens), "perplexity_tokens": float(tokens),
            "perplexity_texts": float(len(texts))}
