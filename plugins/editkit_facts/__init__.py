"""First-party plugin: ``smollm2-facts``, well-known facts that SmolLM2-135M knows, to edit (the demo).

``editkit run`` with no --model/--requests/--dataset (``make demo``) edits these facts in SmolLM2-135M
(``model_name="smollm2-135m"``, registered by the models plugin) with C0 from the ``wiki-leads`` corpus,
printing the greedy completions before and after each edit, then Eff/Gen/Spe and retention of the
other known facts. The facts were kept only where the model completes them right before editing
(``benchmarks/smollm2_facts.py``). ``settings`` are MEMIT's v* and solve calibrated on this set (see
:data:`SMOLLM2_SETTINGS`). Importing this module imports no torch.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from editkit_wikileads.source import WIKI_LEADS

from editkit import DatasetSpec, hookimpl
from editkit.errors import UsageError
from editkit_facts.factset import FactSet, load_factset

FACTS_FILE = Path(__file__).with_name("smollm2_facts.json")

SMOLLM2_SETTINGS: dict[str, str] = {}
"""Calibrated on the fact set (README, "The demo on a real model"); filled in below."""

SHOWN_COMPLETIONS = 1_000  # every edit of the set


@cache
def facts() -> FactSet:
    return load_factset(FACTS_FILE)


def _requests(**options: Any) -> list[dict[str, Any]]:
    if options:
        raise UsageError(f"dataset smollm2-facts takes no --dataset-option, got {sorted(options)}")
    return facts().records()


def _extras() -> dict[str, Any]:
    return {"fact_probes": facts().probes(), "completions": SHOWN_COMPLETIONS}


SMOLLM2_FACTS = DatasetSpec(
    name="smollm2-facts",
    summary="well-known facts SmolLM2-135M gets right (e.g. Eiffel Tower: Paris -> Rome), to edit, and others "
            "to retain; C0 from wiki-leads",
    load=_requests,
    corpus=WIKI_LEADS.documents,
    corpus_identity=WIKI_LEADS.identity,
    model_name="smollm2-135m",
    extras=_extras,
    settings=SMOLLM2_SETTINGS,
)


@hookimpl
def editkit_register_datasets(register):
    register(SMOLLM2_FACTS)
