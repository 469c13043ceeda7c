"""The demo world as an editkit plugin: the ``demo`` dataset and the ``editkit world`` command.

Registered through the ``editkit`` entry-point group like any other plugin. ``demo`` provides
edit requests (CounterFact records), the background corpus for key statistics, the built model
(built once into the cache on first use) and evaluation extras: one recall probe per fact for
retention, and reference texts per object for consistency. Importing this module does not
import torch.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from functools import cache
from typing import Any

from editkit.api import CommandSpec, DatasetSpec, hookimpl
from editkit_world.cache import build_cached, verify_cache, world_cache_dir, world_info
from editkit_world.config import BuildConfig
from editkit_world.world import World

DEMO_GENERATION_RECORDS = 100
"""Fluency is sampled for the first 100 edited records (5 prompts each, 40 tokens): enough for a stable
mean, and the main command stays quick (``--generation-records 0`` samples all)."""


@cache
def _world() -> World:
    return World.generate(BuildConfig().world)


def _requests(n: int | None = None, seed: int | str = 0) -> list[dict[str, Any]]:
    world = _world()
    return world.requests(len(world.subjects) if n is None else int(n), int(seed))


def _corpus() -> tuple[str, ...]:
    return _world().background_corpus()


def _model() -> str:
    directory = world_cache_dir()
    try:
        verify_cache(directory)
    except Exception:  # missing or corrupt: (re)build, atomically
        build_cached(directory, BuildConfig(), progress=True)
    return str(directory)


def _extras() -> dict[str, Any]:
    world = _world()
    seen: set[tuple[str, str]] = set()
    probes = []
    for probe in world.fact_probes():  # the first train template of each fact
        key = (probe.subject, probe.relation_id)
        if key not in seen:
            seen.add(key)
            probes.append((probe.subject, probe.prompt, probe.object))
    references: dict[str, list[str]] = {}
    for text in world.training_texts():
        for obj in _objects_in(world, text):
            references.setdefault(obj, []).append(text)
    return {"fact_probes": probes, "reference_texts": {k: v[:50] for k, v in references.items()},
            "generation_records": DEMO_GENERATION_RECORDS}


def _objects_in(world: World, text: str) -> list[str]:
    words = set(text.replace(".", " ").split())
    return [o for objs in world.objects.values() for o in objs if o in words]


DEMO_SETTINGS = {"v_lr": "1.0", "clamp_norm": "2.0", "v_steps": "25"}
"""v* calibrated for the demo model (the run's defaults when it edits that model; ``--set`` overrides).

With the published v* (lr 0.5, clamp 0.75·‖h‖, 20 steps) the clamp binds and the median v* loss
stays at 1.44 (22% of requests below 0.7): nothing downstream can write an edit that v* never
found. lr 1, clamp 2, 25 steps reach a median loss of ≈0.3. The solve's λ (15000), the null-space
threshold (2e-2) and L2 (10) stay as published, so ``--constraint nullspace`` is AlphaEdit as
published; see docs/results/demo-world.md for what they do on this model."""

DEMO = DatasetSpec(
    name="demo",
    summary="the built-in demo world: 1,000 synthetic subjects x 6 relations and a small GPT-2 that knows them",
    load=_requests,
    corpus=_corpus,
    model=_model,
    extras=_extras,
    settings=DEMO_SETTINGS,
)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("build", "info"), help="build the demo model (once), or describe it")
    parser.add_argument("--force", action="store_true", help="with build: rebuild even if a valid build exists")
    parser.add_argument("--json", action="store_true", help="with info: machine-readable output")


def _main(args: argparse.Namespace) -> int:
    directory = world_cache_dir()
    if args.action == "build":
        if args.force or not world_info()["valid"]:
            build_cached(directory, BuildConfig(), progress=True)
        info = world_info()
        print(f"demo world model at {directory}: train recall {info['train_recall']:.3f}, held-out paraphrase "
              f"recall {info['heldout_recall']:.3f}, {info['n_params']:,} parameters")
        return 0
    info = world_info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            if key not in ("config", "files"):
                print(f"{key:>26}: {value}")
    return 0


WORLD_COMMAND = CommandSpec(name="world", help="build or describe the built-in demo world model",
                            add_arguments=_add_arguments, main=_main)


@hookimpl
def editkit_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    register(DEMO)


@hookimpl
def editkit_register_commands(register: Callable[[CommandSpec], None]) -> None:
    register(WORLD_COMMAND)
