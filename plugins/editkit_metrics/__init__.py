"""First-party plugin: the evaluation metrics of the AlphaEdit/MEMIT papers, and retention.

Each metric is a :class:`editkit.MetricSpec` whose ``compute(context)`` returns figures in
percent (fluency in the paper's scale: 100 × weighted n-gram entropy in bits).
"""

from __future__ import annotations

from editkit import MetricSpec, hookimpl


def _counterfact(context):
    from editkit_metrics.counterfact import counterfact_scores

    return counterfact_scores(context)


def _fluency(context):
    from editkit_metrics.fluency import fluency_and_consistency

    return fluency_and_consistency(context)


def _zsre(context):
    from editkit_metrics.zsre import zsre_accuracy

    return zsre_accuracy(context)


def _retention(context):
    from editkit_metrics.retention import retention

    return retention(context)


METRICS = (
    MetricSpec(name="counterfact", summary="efficacy, generalisation, specificity (share of prompts where the "
               "mean-per-token NLL prefers the right object) and their magnitudes", compute=_counterfact),
    MetricSpec(name="fluency", summary="weighted bi/tri-gram entropy of sampled generations, and TF-IDF "
               "consistency against reference texts of the new object", compute=_fluency),
    MetricSpec(name="zsre", summary="teacher-forced top-1 token accuracy on rewrite, paraphrase and "
               "locality prompts", compute=_zsre),
    MetricSpec(name="retention", summary="greedy recall of facts that were not edited", compute=_retention),
)


@hookimpl
def editkit_register_metrics(register):
    for metric in METRICS:
        register(metric)
