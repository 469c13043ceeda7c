"""ZsRE token accuracy (alphaedit-reference.md §3.3): teacher-forced top-1 accuracy per token.

For rewrite and paraphrase prompts against ``target_new``, and for locality prompts against their
ground-truth answers (``record["locality"]``: ``[{"prompt", "answer"}]``): the share of target
tokens that are the argmax given the prompt and the earlier target tokens; mean per record, then
over records, ×100. A prompt that does not fit, with its target, in the model's context is skipped
and counted in ``zsre_skipped_prompts`` (reported only when some were; see
:func:`editkit.helpers.contextwindow.fitting`).
"""

from __future__ import annotations

from typing import Any

from editkit.api import continuation_scores, fitting


def _space(text: str) -> str:
    return text if text.startswith(" ") else " " + text


def zsre_accuracy(context: Any) -> dict[str, float]:
    records = [r for r in context.records if "locality" in r and "requested_rewrite" in r]
    if not records:
        return {}
    items: list[tuple[int, str, str, str]] = []  # (record, kind, prompt, target)
    for i, record in enumerate(records):
        rw = record["requested_rewrite"]
        new = _space(rw["target_new"]["str"])
        items.append((i, "zsre_efficacy", rw["prompt"].replace("{}", rw["subject"]), new))
        items += [(i, "zsre_generalisation", p, new) for p in record.get("paraphrase_prompts", [])]
        items += [(i, "zsre_specificity", loc["prompt"], _space(loc["answer"])) for loc in record["locality"]]
    keep = fitting(context.model, context.tokenizer, [(prompt, (target,)) for *_, prompt, target in items], "zsre")
    skipped = keep.count(False)
    items = [item for item, fits in zip(items, keep) if fits]
    scores = continuation_scores(context.model, context.tokenizer, [item[2] for item in items],
                                 [item[3] for item in items], batch_size=context.batch_size,
                                 device=context.device) if items else []
    per: dict[str, dict[int, list[float]]] = {}
    for (i, kind, _, _), (_, hits) in zip(items, scores):
        per.setdefault(kind, {}).setdefault(i, []).append(float(hits.float().mean()))
    out = {kind: 100.0 * sum(sum(v) / len(v) for v in by.values()) / len(by) for kind, by in per.items()}
    if skipped:
        out["zsre_skipped_prompts"] = float(skipped)
    return out
