"""Greedy completions before and after editing: what an edit looks like in text.

For each of the first ``n`` edited requests, three prompts are completed greedily: the rewrite
prompt (the edit itself), its first paraphrase (does the edit generalise?) and its first
neighbourhood prompt (another subject whose true object is the edited fact's old object: is it
left alone?). A run records the completions before editing and after (``result.json``,
``"completions"``), and the CLI prints them; a request without paraphrases or neighbourhood
prompts contributes only the prompts it has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from editkit.requests import EditRequest

EXTRAS_KEY = "completions"  # a dataset's extras: how many requests' completions a run shows by default

KINDS = ("rewrite", "paraphrase", "neighbour")
MAX_NEW_TOKENS = 6


@attrs.frozen(kw_only=True)
class CompletionProbe:
    """One prompt to complete: which request, which kind, and the object it should start with after
    the edit (``target_new`` for the rewrite prompt and paraphrase, ``target_true`` for the neighbour)."""

    case_id: str
    subject: str
    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    prompt: str
    target_true: str | None
    target_new: str

    @property
    def expected_after(self) -> str | None:
        return self.target_true if self.kind == "neighbour" else self.target_new


def completion_probes(requests: Sequence[EditRequest], n: int) -> list[CompletionProbe]:
    """The probes of the first ``n`` requests (rewrite, first paraphrase, first neighbour prompt)."""
    probes = []
    for request in requests[:n]:
        prompts = [("rewrite", request.filled_prompt)]
        prompts += [("paraphrase", p) for p in request.paraphrase_prompts[:1]]
        prompts += [("neighbour", p) for p in request.neighborhood_prompts[:1]]
        for kind, prompt in prompts:
            probes.append(CompletionProbe(
                case_id=request.case_id, subject=request.subject, kind=kind, prompt=prompt,
                target_true=request.target_true.strip() if request.target_true else None,
                target_new=request.target_new.strip(),
            ))
    return probes


def greedy_completions(model: Any, tokenizer: Any, prompts: Sequence[str], *, device: Any = "cpu",
                       max_new_tokens: int = MAX_NEW_TOKENS, skip_leading_breaks: bool = False) -> list[str]:
    """The greedy continuation of each prompt (``max_new_tokens`` tokens, cut at the first line break; with
    ``skip_leading_breaks``, at the first line break after the text begins: a model that answers a question on
    the next line is judged on its answer)."""
    import torch

    from editkit.helpers.generation import sample_continuations
    from editkit.helpers.tokens import tokenize

    if not prompts:
        return []
    texts = sample_continuations(model, tokenizer, list(prompts), max_new_tokens=max_new_tokens, top_k=1,
                                 generator=torch.Generator().manual_seed(0), device=device)
    out = []
    for prompt, text in zip(prompts, texts):
        decoded = tokenizer.decode(list(tokenize(tokenizer, prompt).ids), skip_special_tokens=True)
        continuation = text[len(decoded):] if text.startswith(decoded) else text
        if skip_leading_breaks:
            continuation = continuation.lstrip()  # the judges ignore leading whitespace
        out.append(continuation.split("\n", 1)[0].rstrip())
    return out


def starts_with(completion: str, obj: str | None) -> bool | None:
    """Whether the completion begins with the object (whitespace ignored); None without an object."""
    if obj is None:
        return None
    return completion.strip().startswith(obj.strip())


def completion_records(probes: Sequence[CompletionProbe], before: Sequence[str],
                       after: Sequence[str]) -> list[dict[str, Any]]:
    """``result.json``'s ``completions``: one record per probe with both completions and their checks."""
    return [
        {"case_id": p.case_id, "subject": p.subject, "kind": p.kind, "prompt": p.prompt,
         "target_true": p.target_true, "target_new": p.target_new, "before": b, "after": a,
         "after_as_expected": starts_with(a, p.expected_after)}
        for p, b, a in zip(probes, before, after)
    ]


def shown_completions(option: int | None, extras: Mapping[str, Any]) -> int:
    """How many requests' completions a run shows: ``--completions`` when given, else the dataset's choice
    (``extras["completions"]``), else 0."""
    if option is not None:
        return option
    value = extras.get(EXTRAS_KEY, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
