"""General capability (AlphaEdit paper Fig. 4): eight classification tasks, answers read from log-probabilities.

For each task of :mod:`editkit_metrics.general_tasks` the model's answer to an item is the candidate
continuation with the highest mean per-token log-probability after the prompt (the first of equal ones);
the figure is ``general_<task>_<f1|mcc|acc>``: support-weighted F1 (MCC for CoLA, accuracy for MMLU)
of the answers against the labels, ×100 (:mod:`editkit_metrics.classification`). Items whose prompt
and candidates do not fit in the model's context are skipped (:func:`editkit.helpers.contextwindow.fitting`) and
counted in ``general_skipped_items`` (reported only when some were).

Options (``--metric-option general.KEY=VALUE``, :class:`~editkit_metrics.options.GeneralOptions`): the
data directory (else ``$EDITKIT_GENERAL_DATA``; without either, ``{}`` and one warning), the tasks,
and ``limit`` items per task for quick runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from editkit.api import fitting, metric_options
from editkit_metrics.choice import candidate_logprobs
from editkit_metrics.classification import SCORES
from editkit_metrics.general_tasks import TASKS, read_task
from editkit_metrics.options import GENERAL_ENV, GeneralOptions, data_location


def general_capability(context: Any) -> dict[str, float]:
    options = metric_options(context, "general", GeneralOptions)
    directory = data_location(options.data, GENERAL_ENV, "general", "the directory of the eight task files "
                              "(sst2.jsonl, ..., e.g. data/real/general)")
    if directory is None:
        return {}
    tasks = [TASKS[name] for name in options.task_names()]
    loaded = {task.name: read_task(directory, task, offset=options.offset, limit=options.limit) for task in tasks}
    out: dict[str, float] = {}
    skipped = 0
    for task in tasks:
        items = loaded[task.name]
        keep = fitting(context.model, context.tokenizer, [(prompt, task.candidates) for prompt, _ in items],
                       f"general ({task.name})")
        skipped += keep.count(False)
        items = [item for item, fits in zip(items, keep) if fits]
        if not items:
            continue
        scores = candidate_logprobs(context.model, context.tokenizer,
                                    [(prompt, task.candidates) for prompt, _ in items], device=context.device)
        predicted = [_first_best(s) for s in scores]
        out[f"general_{task.name}_{task.figure}"] = 100.0 * SCORES[task.figure]([label for _, label in items],
                                                                                predicted)
    if skipped:
        out["general_skipped_items"] = float(skipped)
    return out


def _first_best(scores: Sequence[float]) -> int:
    """The index of the highest score (the first of equal ones)."""
    return max(range(len(scores)), key=lambda j: (scores[j], -j))
