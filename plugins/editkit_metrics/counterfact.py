"""CounterFact efficacy, generalisation and specificity (alphaedit-reference.md §3.2).

Per prompt p and candidate c: NLL_c(p) = mean over c's tokens of −log P(c_j | p, c_<j).
Efficacy / generalisation: share of the rewrite prompt / paraphrases with NLL_true > NLL_new;
specificity: share of neighbourhood prompts with NLL_true < NLL_new. Per record, then averaged
over records, ×100. Magnitudes: mean of P_new − P_true (rewrite, paraphrase) and
P_true − P_new (neighbourhood), P = exp(−NLL), ×100.
"""

from __future__ import annotations

from typing import Any

from editkit.scoring import continuation_scores


def _space(text: str) -> str:
    return text if text.startswith(" ") else " " + text


def counterfact_scores(context: Any) -> dict[str, float]:
    records = [r for r in context.records if "requested_rewrite" in r and "target_true" in r["requested_rewrite"]]
    if not records:
        return {}
    prompts: list[str] = []
    targets: list[str] = []
    index: list[tuple[int, str]] = []  # (record, kind) per prompt
    for i, record in enumerate(records):
        rw = record["requested_rewrite"]
        kinds = [("efficacy", rw["prompt"].replace("{}", rw["subject"]))]
        kinds += [("generalisation", p) for p in record.get("paraphrase_prompts", [])]
        kinds += [("specificity", p) for p in record.get("neighborhood_prompts", [])]
        for kind, prompt in kinds:
            for target in (rw["target_new"]["str"], rw["target_true"]["str"]):
                prompts.append(prompt)
                targets.append(_space(target))
            index.append((i, kind))
    scores = continuation_scores(context.model, context.tokenizer, prompts, targets,
                                 batch_size=context.batch_size, device=context.device)
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
    return out


def _p(nll: float) -> float:
    import math

    return math.exp(-nll)
