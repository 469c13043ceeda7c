"""Options of the data-reading metrics (``--metric-option general.limit=100``), and where their data is.

Torch-free: the plugin registers these classes at import. The data is not part of editkit: each
metric takes it from its ``data`` option, else from an environment variable, and when neither is
set it reports nothing (``{}``) and warns once (:class:`MetricDataWarning`). A location that is set
but does not exist is an input error (exit 2), named with where it came from.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import attrs

from editkit.api import InputError

GENERAL_ENV = "EDITKIT_GENERAL_DATA"
PERPLEXITY_ENV = "EDITKIT_PERPLEXITY_DATA"
GENERAL_TASKS = ("sst2", "mrpc", "cola", "rte", "mmlu", "nli", "sentiment_analysis", "dialogue")


class MetricDataWarning(UserWarning):
    """A metric's data is not configured: the metric reports nothing."""


def _non_negative(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name}: expected >= 0, got {value!r}")


def _positive(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name}: expected >= 1, got {value!r}")


def _tasks(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    names = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in names if t not in GENERAL_TASKS]
    if value.strip() != "all" and (unknown or not names):
        raise ValueError(f"{attribute.name}: expected 'all' or a comma list of {', '.join(GENERAL_TASKS)}, "
                         f"got {value!r}")


@attrs.frozen(kw_only=True)
class GeneralOptions:
    """``data``: the directory of the eight task files (default ``$EDITKIT_GENERAL_DATA``); ``tasks``: ``all``
    or a comma list; ``offset``: items skipped at the start of each file (default 10: the reference's
    few-shot pool, which its zero-shot evaluation leaves unused); ``limit``: items per task after them
    (0: all; the reference uses 100)."""

    data: str | None = None
    tasks: str = attrs.field(default="all", validator=_tasks)
    offset: int = attrs.field(default=10, validator=_non_negative)
    limit: int = attrs.field(default=0, validator=_non_negative)

    def task_names(self) -> tuple[str, ...]:
        if self.tasks.strip() == "all":
            return GENERAL_TASKS
        return tuple(dict.fromkeys(t.strip() for t in self.tasks.split(",") if t.strip()))


@attrs.frozen(kw_only=True)
class PerplexityOptions:
    """``data``: a file of texts (default ``$EDITKIT_PERPLEXITY_DATA``): a JSON list of strings or of objects,
    JSON Lines, or plain text with one text per line; ``field``: the objects' text field (default: ``text``,
    else ``Text``, e.g. ME-PPL.json); ``offset``: texts skipped first (held out: e.g. the Wikipedia leads
    that went into C0); ``limit``: texts after them (0: all); ``max_length``: tokens per text, at most
    (longer texts are cut; also at most the model's context)."""

    data: str | None = None
    field: str | None = None
    offset: int = attrs.field(default=0, validator=_non_negative)
    limit: int = attrs.field(default=0, validator=_non_negative)
    max_length: int = attrs.field(default=1024, validator=_positive)


def data_location(given: str | None, env: str, metric: str, what: str) -> Path | None:
    """Where ``metric``'s data is: the ``data`` option, else ``$env``; None (and one warning) when neither is
    set. A location that is set but missing raises :class:`InputError` naming it and where it came from."""
    source = f"--metric-option {metric}.data" if given else f"${env}"
    value = given or os.environ.get(env)
    if not value:
        warnings.warn(f"{metric}: no data, so no {metric} figures: give {what} with --metric-option {metric}.data=PATH "
                      f"or ${env} (editkit ships no evaluation data)", MetricDataWarning, stacklevel=3)
        return None
    path = Path(value).expanduser()
    if not path.exists():
        raise InputError(f"{metric}: {source} {value}: no such file or directory")
    return path


__all__ = ["GENERAL_ENV", "GENERAL_TASKS", "PERPLEXITY_ENV", "GeneralOptions", "MetricDataWarning",
           "PerplexityOptions", "data_location"]
