"""Benchmark: collecting C0 of the edited layers against a bare forward, on a real model by name.

Both run over the same padded batches of ``--tokens`` tokens of ``--corpus``: editkit's one-pass collection of
every layer in ``--layers`` (``KeyStatistics.prepare``, nothing stored), and the model truncated after the last
of those layers with nothing hooked. Prints tokens per second of each and their ratio, the median of
``--repeats``; ``--json`` also writes them. Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/stats_rate.py --model qwen2.5-coder-1.5b --layers 4-8 \\
        --corpus ../shared/data/real/wikipedia_vital_leads_en.jsonl:text --tokens 20000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch


def stats_rate(model: Any, tokenizer: Any, layers: tuple[int, ...], corpus_text: str, n_tokens: int,
               repeats: int) -> dict[str, float]:
    """Tokens per second of the one-pass C0 collection and of the bare truncated forward, median of ``repeats``."""
    from editkit.helpers.tokens import pad_batch
    from editkit.helpers.tracing import StopForward, run_until_stopped
    from editkit.keystats import CorpusSpec, KeyStatistics
    from editkit.keystats.collect import CollectionPlan, _batches, _chunks
    from editkit.layout import resolve_layout
    from editkit.plugins import PluginHost

    layout = resolve_layout(model, PluginHost().catalog.entries["architectures"])
    sites = [layout.site(layer) for layer in layers]
    corpus = CorpusSpec.parse(corpus_text)

    def collect() -> float:
        stats = KeyStatistics(model=model, tokenizer=tokenizer, layout=layout, corpus=corpus, stats_dir=None,
                              max_tokens=n_tokens, progress=False)
        began = time.perf_counter()
        stats.prepare(sites)
        return time.perf_counter() - began

    probe = KeyStatistics(model=model, tokenizer=tokenizer, layout=layout, corpus=corpus, stats_dir=None,
                          max_tokens=n_tokens, progress=False)
    batch_tokens = probe.batch_tokens if hasattr(probe, "batch_tokens") else 8192
    plan = CollectionPlan(modules=(), d_in={}, max_length=probe.max_length, max_tokens=n_tokens,
                          dtype=torch.float32, batch_tokens=batch_tokens, chunk_tokens=8 * batch_tokens)
    batches = []
    for rows, _ in _chunks(tokenizer, corpus.documents(), plan, 0):
        rows.sort(key=len, reverse=True)
        batches += [pad_batch(tokenizer, b) for b in _batches(rows, batch_tokens)]
    last = model.get_submodule(layout.blocks[max(layers)])

    def bare() -> float:
        def stop(*_: Any) -> None:
            raise StopForward

        handle = last.register_forward_hook(stop)
        began = time.perf_counter()
        try:
            with torch.no_grad():
                for batch in batches:
                    run_until_stopped(lambda batch=batch: model(**batch.model_inputs(), use_cache=False))
        finally:
            handle.remove()
        return time.perf_counter() - began

    runs: dict[str, list[float]] = {"collect": [], "bare": []}
    for _ in range(repeats):
        runs["collect"].append(collect())
        runs["bare"].append(bare())
    rate = {k: n_tokens / statistics.median(v) for k, v in runs.items()}
    print(f"== key statistics: {n_tokens:,} tokens, layers {list(layers)} in one pass, batch {batch_tokens} tokens, "
          f"median of {repeats}, {torch.get_num_threads()} thread(s)")
    print(f"  editkit C0 collection         : {rate['collect']:10,.0f} tokens/s")
    print(f"  bare forward to block {max(layers):<8}: {rate['bare']:10,.0f} tokens/s")
    print(f"  collection / bare forward     : {rate['collect'] / rate['bare']:.2f}")
    return {"collect_tokens_per_s": rate["collect"], "bare_tokens_per_s": rate["bare"],
            "ratio": rate["collect"] / rate["bare"], "tokens": n_tokens, "repeats": repeats,
            "batch_tokens": batch_tokens, "threads": torch.get_num_threads()}


def main() -> None:
    from editkit.cli.stats import parse_layers
    from editkit.modelsource.resolve import load_model, resolve_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layers", default="4-8")
    parser.add_argument("--corpus", default="../shared/data/real/wikipedia_vital_leads_en.jsonl:text")
    parser.add_argument("--tokens", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    model, tokenizer = load_model(resolve_model(args.model, progress=False))
    figures = stats_rate(model, tokenizer, tuple(parse_layers(args.layers)), args.corpus, args.tokens, args.repeats)
    if args.json is not None:
        args.json.write_text(json.dumps({"model": args.model, "layers": args.layers, **figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
