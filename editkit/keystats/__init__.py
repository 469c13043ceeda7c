"""Key statistics: the background second moment C0 = E[k kᵀ] of each edited module's input.

MEMIT-family editors use C0 in their solve; AlphaEdit's null-space projector comes from its
eigendecomposition. Modules, one concept each:

* :mod:`~editkit.keystats.corpus` — :class:`CorpusSpec`: which background texts;
* :mod:`~editkit.keystats.collect` — one forward pass per batch for all layers, resumable;
* :mod:`~editkit.keystats.distributed` — sharding over ``torchrun`` ranks;
* :mod:`~editkit.keystats.identity` — what a statistics file holds, as a lookup key;
* :mod:`~editkit.keystats.store` — safetensors files, checksums, atomic writes, checkpoints;
* :mod:`~editkit.keystats.spectrum` — eigenvalue summary and null-space size;
* :mod:`~editkit.keystats.statistics` — :class:`KeyStatistics`, what runs and plugins call.

Importing this package does not import torch; :class:`KeyStatistics` and the store load on
first access.
"""

from __future__ import annotations

from editkit.keystats.corpus import WIKIPEDIA, CorpusSpec
from editkit.lazy import lazy_attributes

_LAZY = {
    "KeyStatistics": "editkit.keystats.statistics",
    "StatsStore": "editkit.keystats.store",
    "StoredStatistics": "editkit.keystats.store",
    "CorruptStatisticsError": "editkit.keystats.store",
    "SpectrumSummary": "editkit.keystats.spectrum",
    "DistContext": "editkit.keystats.distributed",
}

__all__ = [
    "WIKIPEDIA",
    "CorpusSpec",
    "CorruptStatisticsError",
    "DistContext",
    "KeyStatistics",
    "SpectrumSummary",
    "StatsStore",
    "StoredStatistics",
]


__getattr__ = lazy_attributes(__name__, _LAZY)
