"""ZsRE token accuracy (alphaedit-reference.md §3.3): teacher-forced top-1 accuracy per token.

For rewrite and paraphrase prompts against ``target_new``, and for locality prompts against their
ground-truth answers (``record["locality"]``: ``[{"prompt", "answer"}]``): the share of target
tokens that are the argmax given the prompt and the earlier target tokens; mean per record, then
over records, ×100.
"""

from __future__ import annotations

from typing import Any

from editkit.scoring import continuation_scores


def _space(text: str) -> str:
    return text if text.startswith(" ") else " " + text


def zsre_accuracy(context: Any) -> dict[str, float]:
    records = [r for r in context.records if "locality" in r and "requested_rewrite" in r]
    if not records:
        return {}
    prompts, targets, index = [], [], []
    for i, record in enumerate(records):
        rw = record["requested_rewrite"]
        new = _space(rw["target_new"]["str"])
        items = [("zsre_efficacy", rw["prompt"].replace("{}", rw["subject"]), new)]
        items += [("zsre_generalisation", p, new) for p in record.get("paraphrase_prompts", [])]
        items += [("zsre_specificity", loc["prompt"], _space(loc["answer"])) for loc in record["locality"]]
        for kind, prompt, target in items:
            prompts.append(prompt)
            targets.append(target)
            index.append((i, kind))
    scores = continuation_scores(context.model, context.tokenizer, prompts, targets,
                                 batch_size=context.batch_size, device=context.device)
    per: dict[str, dict[int, list[float]]] = {}
    for (i, kind), (_, hits) in zip(index, scores):
        per.setdefault(kind, {}).setdefault(i, []).append(float(hits.float().mean()))
    return {kind: 100.0 * sum(sum(v) / len(v) for v in by.values()) / len(by) for kind, by in per.items()}
