"""The model's context: how many positions it has, and which texts fit in them.

A text longer than a model with learned position embeddings (GPT-2: ``n_positions``) can read
ends in an ``IndexError`` deep inside the embedding. editkit checks lengths where it knows them:

* edit requests, once the tokenizer and model are loaded and before any edit: a request whose
  prompt plus target (``target_new``, and ``target_true`` which is scored against it) does not
  fit is a bad record (:func:`over_long_requests`; named, exit 2, or skipped with ``--skip-invalid``);
* an editor's own context around a request (MEMIT's prefix templates, ``prefix ⊕ prompt ⊕ target``)
  is cut from the left, inside the prefix, to fit (:func:`clip_left`): the request itself fits;
* evaluation prompts (paraphrases, neighbourhood prompts, probes): a metric *skips* a prompt that
  does not fit with its target and counts it (:func:`fitting`), rather than truncating it, which
  would score a different question. The count is a figure of the metric's own (e.g.
  ``counterfact_skipped_prompts``) and a :class:`ContextWarning` says so.

"Fits" means the tokenised ``prompt + target`` (special tokens included) has at most
:func:`max_positions` tokens. Models whose config names no context length are not checked.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from editkit.helpers.tokens import TokenizedText, tokenize
from editkit.requests import EditRequest

#: Config fields that hold a model's context length, in the order they are read (GPT-2 names it
#: ``n_positions`` / ``n_ctx``; most families ``max_position_embeddings``; some ``seq_length``).
CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length",
                  "max_seq_len")


class ContextWarning(UserWarning):
    """Evaluation prompts were skipped because they do not fit in the model's context."""


def max_positions(model_or_config: Any) -> int | None:
    """The number of positions the model reads, from its ``transformers`` config (or None if it names none).

    Accepts a model (its ``.config`` is read) or a config; a composite config's ``text_config`` is
    read when the top level names no length.
    """
    config = getattr(model_or_config, "config", model_or_config)
    for source in (config, getattr(config, "text_config", None)):
        for name in CONTEXT_FIELDS:
            value = getattr(source, name, None) if source is not None else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def token_count(tokenizer: Any, text: str) -> int:
    """Tokens of ``text`` as editkit feeds it to the model (special tokens included)."""
    return len(tokenize(tokenizer, text).ids)


def over_long_requests(
    tokenizer: Any, requests: Sequence[EditRequest], limit: int | None,
    record_index: Mapping[str, int] | None = None,
) -> dict[str, str]:
    """``{case_id: message}`` for each request whose prompt plus a target has more than ``limit`` tokens.

    The message names the record (its index in ``record_index``, when given, and case id), the field
    and both lengths, in the form of :func:`editkit.requests.parse_records`' bad-record messages.
    """
    if limit is None:
        return {}
    out: dict[str, str] = {}
    for position, request in enumerate(requests):
        lengths = [(field, token_count(tokenizer, request.filled_prompt + target))
                   for field, target in (("target_new", request.target_new), ("target_true", request.target_true))
                   if target is not None]
        field, length = max(lengths, key=lambda item: item[1])
        if length > limit:
            index = (record_index or {}).get(request.case_id, position)
            out[request.case_id] = (
                f"record {index} (case_id {request.case_id}): requested_rewrite.prompt + {field}.str: {length} "
                f"tokens, longer than the model's context of {limit} positions"
            )
    return out


def fitting(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, Sequence[str]]], metric: str) -> list[bool]:
    """Per ``(prompt, targets)`` pair: whether ``prompt + target`` fits for every target.

    Warns once (:class:`ContextWarning`, naming ``metric``) when some do not; the caller skips those
    and reports how many.
    """
    limit = max_positions(model)
    if limit is None:
        return [True] * len(pairs)
    keep = [all(token_count(tokenizer, prompt + target) <= limit for target in targets) for prompt, targets in pairs]
    skipped = keep.count(False)
    if skipped:
        warnings.warn(f"{metric}: skipped {skipped} of {len(pairs)} evaluation prompt(s) that do not fit, with their "
                      f"target, in the model's context of {limit} positions (counted in the metric's figures)",
                      ContextWarning, stacklevel=2)
    return keep


def screen_requests(
    requests: Sequence[EditRequest], records: Sequence[Any], skipped: Sequence[str], tokenizer: Any, model: Any, *,
    source: str, skip_invalid: bool,
) -> tuple[list[EditRequest], list[str]]:
    """``editkit run``'s length check, once the model is loaded: ``(requests that fit, skipped messages)``.

    Over-long requests are bad records: without ``skip_invalid`` an :class:`InputError` names every one
    (exit 2, nothing edited); with it they join ``skipped`` (listed in ``result.json``) with one warning.
    """
    from editkit.errors import InputError

    index: dict[str, int] = {}
    for i, record in enumerate(records):
        if isinstance(record, Mapping) and "case_id" in record:
            index.setdefault(str(record["case_id"]), i)
    limit = max_positions(model)
    problems = over_long_requests(tokenizer, requests, limit, index)
    if not problems:
        return list(requests), list(skipped)
    messages = list(problems.values())
    if not skip_invalid:
        shown = "\n  ".join(messages[:50])
        more = f"\n  ... and {len(messages) - 50} more" if len(messages) > 50 else ""
        raise InputError(f"{source}: {len(messages)} record(s) too long for the model's context of {limit} positions "
                         f"(--skip-invalid skips them):\n  {shown}{more}")
    kept = [r for r in requests if r.case_id not in problems]
    if not kept:
        raise InputError(f"{source}: no request fits in the model's context of {limit} positions")
    warnings.warn(f"{source}: skipped {len(messages)} record(s) too long for the model's context of {limit} "
                  "positions; they are listed in result.json", ContextWarning, stacklevel=2)
    return kept, [*skipped, *messages]


def clip_left(tok: TokenizedText, limit: int | None, keep_from: int) -> tuple[list[int], int]:
    """``tok``'s ids with tokens dropped from the left, after any leading special tokens (BOS), so that
    at most ``limit`` remain: ``(ids, dropped)``; an index ``i >= keep_from`` becomes ``i - dropped``.

    Only tokens before ``keep_from`` (an editor's context prefix) may be dropped; when that is not
    enough, :class:`ValueError` says how many tokens the rest needs.
    """
    ids = list(tok.ids)
    if limit is None or len(ids) <= limit:
        return ids, 0
    head = 0
    while head < len(ids) and tok.special[head]:
        head += 1
    excess = len(ids) - limit
    if head + excess > keep_from:
        raise ValueError(f"{len(ids) - max(keep_from - head, 0)} tokens do not fit in the model's context of "
                         f"{limit} positions")
    return ids[:head] + ids[head + excess :], excess
