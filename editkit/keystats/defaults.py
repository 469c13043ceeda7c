"""The defaults ``editkit run`` and ``editkit stats`` share, so that both name the same statistics.

* one store: ``$EDITKIT_STATS_DIR`` when set, else ``$EDITKIT_CACHE/stats``
  (:func:`editkit.helpers.cachedir.cache_root`), for every model and corpus (files are keyed exactly);
* one token budget, :data:`DEFAULT_MAX_TOKENS`; ``all`` means every selected document;
* one corpus selection: with the budget ``all``, an ``hf:`` stream keeps its first
  :data:`HF_DEFAULT_SAMPLES` documents unless a sample count is given.

Nothing here imports torch (the CLI's parsers use it).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from editkit.helpers.cachedir import cache_root
from editkit.keystats.corpus import CorpusSpec

__all__ = ["DEFAULT_MAX_TOKENS", "HF_DEFAULT_SAMPLES", "STATS_DIR_ENV", "corpus_selection", "default_stats_dir",
           "describe_budget", "token_budget"]

DEFAULT_MAX_TOKENS = 200_000
HF_DEFAULT_SAMPLES = 100_000  # the reference's mom2_n_samples (articles), for an unbounded hf: stream
STATS_DIR_ENV = "EDITKIT_STATS_DIR"
ALL = "all"


def default_stats_dir() -> Path:
    """``$EDITKIT_STATS_DIR`` (when set and non-empty), else ``$EDITKIT_CACHE/stats``; not created here."""
    return Path(os.environ.get(STATS_DIR_ENV) or cache_root() / "stats").expanduser()


def token_budget(text: str) -> int | None:
    """argparse type of a token budget: a positive integer, or ``all`` (None: every selected document)."""
    if text.strip().lower() == ALL:
        return None
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of tokens or 'all', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of tokens or 'all', got {text!r}")
    return value


def describe_budget(max_tokens: int | None, *, up_to: bool = False) -> str:
    if max_tokens is None:
        return "every selected document"
    return f"{'up to ' if up_to else ''}{max_tokens:,} tokens"


def corpus_selection(text: str, *, max_tokens: int | None, samples: int | None = None, seed: int | None = None,
                     text_field: str | None = None) -> CorpusSpec:
    """The corpus both commands build from ``--corpus`` and the token budget (see the module docstring)."""
    selection: dict[str, Any] = {"samples": samples, "seed": seed}
    if text_field:
        selection["text_field"] = text_field
    corpus = CorpusSpec.parse(text, **selection)
    if corpus.kind == "hf" and samples is None and max_tokens is None:
        corpus = CorpusSpec.parse(text, **{**selection, "samples": HF_DEFAULT_SAMPLES})
    return corpus
