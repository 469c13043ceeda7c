"""CounterFact efficacy, generalisation and specificity (alphaedit-reference.md §3.2).

Per prompt p and candidate c: NLL_c(p) = mean over c's tokens of −log P(c_j | p, c_<j).
Efficacy / generalisation: share of the rewrite prompt / paraphrases with NLL_true > NLL_new;
specificity: share of neighbourhood prompts with NLL_true < NLL_new. Per record, then averaged
over records, ×100. Magnitudes: mean of P_new − P_true (rewrite, paraphrase) and
P_true − P_new (neighbourhood), P = exp(−NLL), ×100.

A prompt that does not fit, with either target, in the model's context is skipped
(:func:`editkit.helpers.contextwindow.fitting`) and counted in ``counterfact_skipped_prompts`` (reported only when
some were); a record whose prompts of one kind were all skipped does not count for that kind.
"""

from __future__ import annotations

from typing import Any

from editkit.api import continuation_scores, fitting


def _space(text: str) -> str:
    return text if text.startswith(" ") else " " + text


def counterfact_scores(context: Any) -> dict[str, float]:
    records = [r for r in context.records if "requested_rewrite" in r and "target_true" in r["requested_rewrite"]]
    if not records:
        return {}
    items: list[tuple[int, str, str, tuple[str, str]]] = []  # (record, kind, prompt, (new, true)) per prompt
    for i, record in enumerate(records):
        rw = record["requested_rewrite"]
        pair = (_space(rw["target_new"]["str"]), _space(rw["target_true"]["str"]))
        kinds = [("efficacy", rw["prompt"].replace("{}", rw["subject"]))]
        kinds += [("generalisation", p) for p in record.get("paraphrase_prompts", [])]
        kinds += [("specificity", p) for p in record.get("neighborhood_prompts", [])]
        items += [(i, kind, prompt, pair) for kind, prompt in kinds]
    keep = fitting(context.model, context.tokenizer, [(prompt, pair) for _, _, prompt, pair in items], "counterfact")
    skipped = keep.count(False)
    items = [item for item, fits in zip(items, keep) if fits]
    prompts = [prompt for _, _, prompt, pair in items for _ in pair]
    targets = [target for *_, pair in items for target in pair]
    index = [(i, kind) for i, kind, _, _ in items]
    scores = continuation_scores(context.model, context.tokenizer, prompts, targets,
                                 batch_size=context.batch_size, device=context.device) if prompts else []
    per: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for n, (i, kind) in enumerate(index):
        nll_new = -float(scores[2 * n][0].mean())
        nll_true = -float(scores[2 * n + 1][0].mean())
        per.setdefault(kind, {}).setdefault(i, []).append((nll_new, nll_true))
    out: dict[str, float] = {}
    for kind, by_record in per.items():
        wins, margins = [], []
        for pairs in by_record.values():
            if kind == "specificity":
                wins.append(sum(t < n for n, t in pairs) / len(pairs))
                margins.append(sum(_p(t) - _p(n) for n, t in pairs) / len(pairs))
            else:
                wins.append(sum(t > n for n, t in pairs) / len(pairs))
                margins.append(sum(_p(n) - _p(t) for n, t in pairs) / len(pairs))
        out[kind] = 100.0 * sum(wins) / len(wins)
        out[f"{kind}_magnitude"] = 100.0 * sum(margins) / len(margins)
    if skipped:
        out["counterfact_skipped_prompts"] = float(skipped)
    return out


def _p(nll: float) -> float:
    import math

    return math.exp(-nll)
