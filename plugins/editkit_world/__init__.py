"""editkit_world: the built-in demo knowledge world and a small GPT-2 that has learned it.

* :class:`World` (``World.generate(WorldConfig(seed=0))``) — 1,000 two-word subjects, six
  relations with shared objects, train / held-out / generation templates, CounterFact-format
  :meth:`World.requests`, training texts, recall probes and a background corpus. Pure Python.
* :func:`build_world_model` — trains the tokenizer and a GPT-2 (6 layers) on the world and
  saves them with ``save_pretrained``; :func:`load_world` loads the cached build from
  :func:`world_cache_dir` (building it first if needed), :func:`world_info` describes it.

Importing this package does not import torch; the names that need it load on first use.
"""

from __future__ import annotations

from editkit.api import lazy_attributes
from editkit_world.cache import (
    CorruptCacheError,
    LoadedWorld,
    Manifest,
    build_cached,
    load_world,
    verify_cache,
    world_cache_dir,
    world_info,
)
from editkit_world.config import BuildConfig, ModelConfig, TrainConfig
from editkit_world.relations import RELATIONS, Relation
from editkit_world.world import Fact, Probe, Templates, World, WorldConfig

_LAZY = {
    "BuildReport": "editkit_world.train",
    "build_world_model": "editkit_world.train",
    "ProbeScores": "editkit_world.recall",
    "score_probes": "editkit_world.recall",
    "train_tokenizer": "editkit_world.tokenizer",
}

__all__ = [
    "RELATIONS",
    "BuildConfig",
    "BuildReport",
    "CorruptCacheError",
    "Fact",
    "LoadedWorld",
    "Manifest",
    "ModelConfig",
    "Probe",
    "ProbeScores",
    "Relation",
    "Templates",
    "TrainConfig",
    "World",
    "WorldConfig",
    "build_cached",
    "build_world_model",
    "load_world",
    "score_probes",
    "train_tokenizer",
    "verify_cache",
    "world_cache_dir",
    "world_info",
]


__getattr__ = lazy_attributes(__name__, _LAZY)
