"""Does a model know a fact set? Greedy completions of every prompt, compared with the true object.

An edit record passes when the greedy completions of its rewrite prompt, its paraphrase and its
neighbourhood prompt all start with ``target_true`` (the neighbour shares the edited fact's true
object, as in CounterFact); a retention probe passes when its completion starts with its object.
Used by ``benchmarks/smollm2_facts.py`` (which keeps only passing facts) and by the slow test that
re-checks the shipped set on the real model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from editkit.api import greedy_completions, starts_with

CHECK = ("greedy completion (6 new tokens) of the rewrite prompt, the paraphrase and the neighbourhood prompt "
         "starts with target_true; of a retention probe's prompt, with its object")


@attrs.frozen(kw_only=True)
class Verdict:
    index: int
    kind: str  # "edit" or "retention"
    label: str  # subject
    completions: tuple[tuple[str, str, bool], ...]  # (prompt, completion, starts with the true object)

    @property
    def passed(self) -> bool:
        return all(ok for _, _, ok in self.completions)


def _edit_prompts(record: Mapping[str, Any]) -> list[str]:
    rewrite = record["requested_rewrite"]
    return [rewrite["prompt"].replace("{}", rewrite["subject"]), *record["paraphrase_prompts"],
            *record["neighborhood_prompts"]]


def judge(model: Any, tokenizer: Any, edits: Sequence[Mapping[str, Any]],
          retention: Sequence[Sequence[str]], device: Any = "cpu") -> list[Verdict]:
    """One verdict per edit record, then one per retention probe."""
    prompts, owners = [], []
    for i, record in enumerate(edits):
        for prompt in _edit_prompts(record):
            prompts.append(prompt)
            owners.append(("edit", i, record["requested_rewrite"]["subject"],
                           record["requested_rewrite"]["target_true"]["str"]))
    for i, (subject, prompt, obj) in enumerate(retention):
        prompts.append(prompt)
        owners.append(("retention", i, subject, obj))
    completions = greedy_completions(model, tokenizer, prompts, device=device)
    grouped: dict[tuple[str, int], list] = {}
    labels: dict[tuple[str, int], str] = {}
    for (kind, i, label, obj), prompt, text in zip(owners, prompts, completions):
        grouped.setdefault((kind, i), []).append((prompt, text, bool(starts_with(text, obj))))
        labels[(kind, i)] = label
    return [Verdict(index=i, kind=kind, label=labels[(kind, i)], completions=tuple(rows))
            for (kind, i), rows in grouped.items()]


def failures(model: Any, tokenizer: Any, edits: Sequence[Mapping[str, Any]],
             retention: Sequence[Sequence[str]], device: Any = "cpu") -> list[Verdict]:
    """The facts the model does not get right."""
    return [v for v in judge(model, tokenizer, edits, retention, device) if not v.passed]
