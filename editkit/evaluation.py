"""Evaluation: what metric plugins receive, and running the registered metrics.

A metric (:class:`~editkit.catalog.MetricSpec`) has ``compute(context) -> dict[str, float]``.
It reads what it needs from the :class:`EvalContext` (records in the CounterFact or ZsRE
record form, plus dataset extras such as fact probes or reference texts) and returns named
figures; a metric whose inputs are absent returns ``{}``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class EvalContext:
    """What one evaluation sees.

    ``records``: the edited cases (CounterFact records: ``requested_rewrite``,
    ``paraphrase_prompts``, ``neighborhood_prompts``, ``generation_prompts``; or ZsRE-style records
    carrying ``zsre`` prompts). ``extras``: dataset-provided inputs, by name (e.g. ``fact_probes``:
    ``[(prompt, object)]`` of facts that must survive, ``reference_texts``: ``{object: [texts]}``).
    ``seed`` drives any sampling; ``generation_length`` caps generated tokens.
    """

    model: Any = attrs.field(eq=False, repr=False)
    tokenizer: Any = attrs.field(eq=False, repr=False)
    records: Sequence[Mapping[str, Any]] = attrs.field(eq=False, repr=False)
    extras: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    device: str = "cpu"
    seed: int = 0
    generation_length: int = 40
    batch_size: int = 64


def run_metrics(metrics: Mapping[str, Any], names: Sequence[str], context: EvalContext,
                timings: dict[str, float] | None = None) -> dict[str, float]:
    """Run the named metrics (``MetricSpec`` by name) and merge their figures; each metric's
    wall time goes to ``timings[name]`` (seconds) when given."""
    out: dict[str, float] = {}
    for name in names:
        started = time.perf_counter()
        figures = metrics[name].compute(context)
        if timings is not None:
            timings[name] = round(time.perf_counter() - started, 3)
        clash = set(figures) & set(out)
        if clash:
            raise ValueError(f"metric {name!r} reports figures already reported by another metric: {sorted(clash)}")
        out.update(figures)
    return out
