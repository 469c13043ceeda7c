"""The SmolLM2-135M editing set-up shared by the speed benchmark and the profile.

Model ``smollm2-135m`` (installed by ``make``; converted once into ``$EDITKIT_CACHE``), the first N CounterFact
requests of ``counterfact_portability_gpt4.json``, layers 4-8, AlphaEdit (MEMIT + null space), and C0 over the
first 100,000 tokens of the Wikipedia leads (``wikipedia_vital_leads_en.jsonl:text``), collected once into the
statistics store and reused afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
REQUESTS = REAL / "counterfact_portability_gpt4.json"
CORPUS = f"{REAL / 'wikipedia_vital_leads_en.jsonl'}:text"
MODEL = "smollm2-135m"
LAYERS = (4, 5, 6, 7, 8)
STATS_TOKENS = 100_000
PRESET_VSTAR = {"v_lr": "0.1", "v_steps": "25"}  # the llama3-8b preset's v* settings
DEMO = {"v_lr": "0.5", "v_steps": "25"}  # the demo's / editors table's v* setting
COMMON = {"clamp_norm": "0.75", "kl_factor": "0.0625", "v_weight_decay": "0.5", "early_stop_loss": "0.05",
          "mom2_weight": "15000", "nullspace.l2": "10", "nullspace.threshold": "2e-2"}


def load() -> tuple[Any, Any, str]:
    """``(model, tokenizer, model_id)`` of SmolLM2-135M in float32 on the CPU."""
    from editkit.modelsource.resolve import load_model, resolve_model

    source = resolve_model(MODEL, progress=False)
    model, tokenizer = load_model(source)
    return model, tokenizer, source.location


def requests(n: int) -> list[Any]:
    from editkit.requests import load_requests

    return load_requests(REQUESTS)[:n]


def key_statistics(model: Any, tokenizer: Any, model_id: str, *, report: Any = None) -> Any:
    """C0 of :data:`LAYERS` over :data:`STATS_TOKENS` tokens, from the default store (collected there once)."""
    from editkit.keystats import KeyStatistics
    from editkit.keystats.defaults import corpus_selection, default_stats_dir
    from editkit.layout import resolve_layout
    from editkit.plugins import PluginHost

    layout = resolve_layout(model, PluginHost().catalog.entries["architectures"])
    stats = KeyStatistics(model=model, tokenizer=tokenizer, layout=layout,
                          corpus=corpus_selection(CORPUS, max_tokens=STATS_TOKENS), stats_dir=default_stats_dir(),
                          max_tokens=STATS_TOKENS, model_id=model_id, report=report)
    stats.prepare([layout.site(layer) for layer in LAYERS])
    return stats
