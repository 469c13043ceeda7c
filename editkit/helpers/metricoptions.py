"""Metric options: ``editkit run --metric-option NAME.KEY=VALUE`` → the metric's own options class.

A metric that takes options registers an attrs class as :attr:`editkit.catalog.MetricSpec.options`
(every field with a default). The command line gives ``NAME.KEY=VALUE`` pairs; they are checked
before any work (the metric is one this run evaluates, the key is a field, the value converts and
passes the class's validators: :class:`~editkit.errors.UsageError`, exit 2, otherwise), kept as
strings in the run's invocation (so ``--resume`` rebuilds them) and handed to the metrics as built
objects in ``EvalContext.extras["metric_options"][NAME]``, which :func:`metric_options` reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from editkit.errors import UsageError
from editkit.hparams import build

EXTRAS_KEY = "metric_options"


def parse_metric_options(items: Sequence[str], metrics: Mapping[str, Any],
                         selected: Sequence[str]) -> dict[str, dict[str, str]]:
    """``["general.limit=100"]`` → ``{"general": {"limit": "100"}}``, checked (see the module docstring)."""
    raw: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, field = key.strip().partition(".")
        if not sep or not dot or not name or not field:
            raise UsageError(f"--metric-option expects METRIC.KEY=VALUE, e.g. general.limit=100, got {item!r}")
        if name not in metrics:
            raise UsageError(f"--metric-option {key.strip()}: unknown metric {name!r}; available: "
                             f"{', '.join(sorted(metrics)) or 'none installed'}")
        if name not in selected:
            raise UsageError(f"--metric-option {key.strip()}: metric {name!r} is not evaluated in this run (--metrics "
                             f"{','.join(selected) or 'none'})")
        options = metrics[name].options
        fields = [f.name for f in attrs.fields(options)] if options is not None else []
        if field not in fields:
            valid = f"valid: {', '.join(f'{name}.{f}' for f in fields)}" if fields else "it takes no options"
            raise UsageError(f"--metric-option {key.strip()}: metric {name!r} has no option {field!r}; {valid}")
        raw.setdefault(name, {})[field] = value.strip()
    build_metric_options(raw, metrics)
    return raw


def build_metric_options(raw: Mapping[str, Mapping[str, str]], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The options objects of :func:`parse_metric_options`' strings (a bad value: :class:`UsageError`)."""
    return {name: build(f"--metric-option {name}", metrics[name].options, dict(values))
            for name, values in raw.items()}


def metric_options(context: Any, name: str, cls: type) -> Any:
    """The options of metric ``name`` in an evaluation context: the ones given, else ``cls()`` (the defaults)."""
    given = (context.extras.get(EXTRAS_KEY) or {}).get(name)
    return given if given is not None else cls()


__all__ = ["EXTRAS_KEY", "build_metric_options", "metric_options", "parse_metric_options"]
