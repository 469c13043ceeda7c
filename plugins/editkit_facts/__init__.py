"""First-party plugin: ``smollm2-facts``, well-known facts that SmolLM2-135M knows, to edit (the demo).

``editkit run`` with no --model/--requests/--dataset (``make demo``) edits these facts in SmolLM2-135M
(``model_name="smollm2-135m"``, registered by the models plugin) with C0 from 1,000 ``wiki-leads`` texts,
printing the greedy completions before and after each edit, then Eff/Gen/Spe and retention of the
other known facts. The facts were kept only where the model completes them right before editing
(``benchmarks/smollm2_facts.py``). ``settings`` are MEMIT's v* and solve calibrated on this set (see
:data:`SMOLLM2_SETTINGS`). Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from editkit_wikileads.source import WIKI_LEADS

from editkit.api import DatasetSpec, UsageError, hookimpl
from editkit_facts.factset import FactSet, load_factset

FACTS_FILE = Path(__file__).with_name("smollm2_facts.json")

SMOLLM2_SETTINGS = {"layers": "4-8", "v_lr": "1.0", "v_steps": "10", "early_stop_loss": "0.3"}
"""MEMIT's edited layers and v* calibrated on the 20 edits of the set (docs/demo.md).

With the published v* (lr 0.5, 20 steps, stop at loss 0.05) v* needs ~17 steps per request (the demo's main
cost on 2 cores); lr 0.1 leaves it far from the target (median loss 6.1 after 19 steps on 4 edits). lr 1 with
a stop at loss 0.3 (target probability ≈ 0.74) takes 4.3 steps on average and gives the same Eff/Gen/Spe
(100/95/95; the published v*: 100/95/95, retention 97.6 vs 100) in 60% of the CPU time. The clamp (0.75·‖h‖)
does not bind at lr 1 (1.5 and 4 give the same edits). Layers 4-8 beat the generic choice 6-10 (95/85/95,
retention 97.6). The solve's λ (15000), the null-space threshold (2e-2) and L2 (10) stay as published."""

SHOWN_COMPLETIONS = 1_000  # every edit of the set

CORPUS_DOCUMENTS = 1_000
"""C0 of the demo: the first 1,000 leads of wiki-leads in its fixed shuffled order (≈104,000 SmolLM2 tokens, all
topics), so that the first run (conversion + C0) stays within minutes on 2 cores; ``--corpus wiki-leads`` takes
``--stats-max-tokens`` (default 200,000) of all 10,033."""


@cache
def facts() -> FactSet:
    return load_factset(FACTS_FILE)


def _requests(**options: Any) -> list[dict[str, Any]]:
    if options:
        raise UsageError(f"dataset smollm2-facts takes no --dataset-option, got {sorted(options)}")
    return facts().records()


@cache
def _corpus() -> tuple[str, ...]:
    """The 1,000 leads as a sized collection (~0.5 MB), so that the collection's progress knows its end."""
    return tuple(WIKI_LEADS.documents(limit=CORPUS_DOCUMENTS))


def _corpus_identity() -> dict[str, Any]:
    return WIKI_LEADS.identity(limit=CORPUS_DOCUMENTS)


def _extras() -> dict[str, Any]:
    return {"fact_probes": facts().probes(), "completions": SHOWN_COMPLETIONS}


SMOLLM2_FACTS = DatasetSpec(
    name="smollm2-facts",
    summary="well-known facts SmolLM2-135M gets right (e.g. Eiffel Tower: Paris -> Rome), to edit, and others "
            "to retain; C0 from 1,000 wiki-leads texts",
    load=_requests,
    corpus=_corpus,
    corpus_identity=_corpus_identity,
    model_name="smollm2-135m",
    extras=_extras,
    settings=SMOLLM2_SETTINGS,
)


@hookimpl
def editkit_register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    register(SMOLLM2_FACTS)
