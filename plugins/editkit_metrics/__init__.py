"""First-party plugin: the evaluation metrics of the AlphaEdit/MEMIT papers, and retention.

Each metric is a :class:`editkit.MetricSpec` whose ``compute(context)`` returns figures in
percent (fluency in the paper's scale: 100 × weighted n-gram entropy in bits; perplexity as such).
"""

from __future__ import annotations

from collections.abc import Callable

from editkit.api import MetricSpec, hookimpl
from editkit_metrics.options import GeneralOptions, PerplexityOptions


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


def _general(context):
    from editkit_metrics.general import general_capability

    return general_capability(context)


def _generation(context):
    from editkit_metrics.generation import generation_scores

    return generation_scores(context)


def _portability(context):
    from editkit_metrics.generation import portability

    return portability(context)


def _perplexity(context):
    from editkit_metrics.perplexity import perplexity

    return perplexity(context)


METRICS = (
    MetricSpec(name="counterfact", summary="efficacy, generalisation, specificity (share of prompts where the "
               "mean-per-token NLL prefers the right object) and their magnitudes", compute=_counterfact),
    MetricSpec(name="fluency", summary="weighted bi/tri-gram entropy of sampled generations, and TF-IDF "
               "consistency against reference texts of the new object", compute=_fluency),
    MetricSpec(name="zsre", summary="teacher-forced top-1 token accuracy on rewrite, paraphrase and "
               "locality prompts", compute=_zsre),
    MetricSpec(name="retention", summary="greedy recall of facts that were not edited", compute=_retention),
    MetricSpec(name="general", summary="general capability (AlphaEdit Fig. 4): SST-2, MRPC, CoLA, RTE, MMLU, NLI, "
               "sentiment, dialogue; answers by candidate log-probability; weighted F1 (MCC for CoLA, accuracy "
               "for MMLU); data from --metric-option general.data=DIR or $EDITKIT_GENERAL_DATA",
               compute=_general, options=GeneralOptions),
    MetricSpec(name="generation", summary="edits judged by greedy generation, not teacher forcing: the rewrite "
               "prompt, paraphrases and neighbourhood prompts begin with the right object (CounterFact); exact match "
               "and token F1 of the answer (ZsRE); known facts still generated", compute=_generation),
    MetricSpec(name="portability", summary="portability questions (an answer that follows from the edit), "
               "teacher-forced token accuracy and generation exact match / token F1", compute=_portability),
    MetricSpec(name="perplexity", summary="token-weighted perplexity on held-out texts; data from --metric-option "
               "perplexity.data=FILE or $EDITKIT_PERPLEXITY_DATA", compute=_perplexity, options=PerplexityOptions),
)


@hookimpl
def editkit_register_metrics(register: Callable[[MetricSpec], None]) -> None:
    for metric in METRICS:
        register(metric)
