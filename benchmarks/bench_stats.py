"""Benchmark: one-pass key statistics against a bare forward and against one pass per layer.

Model: GPT-2 architecture (d_model 768, 12 layers, d_mlp 3072, vocab 50257), random init.
Text: the real Wikipedia leads in ``../shared`` when present, else synthetic sentences,
tokenised by a byte-level BPE trained on it (nothing is downloaded). Three measurements over
the same token stream, each the median of ``--repeats`` runs:

* **editkit**: ``KeyStatistics.prepare`` of all ``--layers`` (tokenising, one forward per
  batch stopped after the last hooked module, Σ k kᵀ accumulation);
* **bare forward**: the full model on the same padded batches, nothing hooked;
* **one pass per layer**: ``KeyStatistics.prepare`` once per layer (editkit's own accumulation, so
  this isolates what the single pass saves);
* **reference approach** (ROME/MEMIT/AlphaEdit ``layer_stats``): one pass per layer over the same
  pre-tokenised batches, the forward stopped at the hooked module (``Trace(..., stop=True)``) and
  ``mom2 += kᵀk`` as a full matrix product (``runningstats.SecondMoment``), float32.

Targets: editkit ≥ 0.8 × bare forward, ≥ 3 × the reference approach of one pass per layer. Usage::

    .venv/bin/python benchmarks/bench_stats.py [--tokens 16384] [--layers 3-7] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from editkit.cli.stats import parse_layers
from editkit.helpers.tokens import pad_batch
from editkit.helpers.tracing import capture_inputs, run_until_stopped
from editkit.keystats import CorpusSpec, KeyStatistics
from editkit.keystats.collect import CollectionPlan, _batches, _chunks
from editkit.layout import resolve_layout

SHARED_WIKI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "wikipedia_vital_leads_en.jsonl"


def corpus_texts(n: int) -> tuple[list[str], str]:
    if SHARED_WIKI.is_file():
        with SHARED_WIKI.open(encoding="utf-8") as fh:
            return [json.loads(line)["text"] for _, line in zip(range(n), fh)], "wikipedia leads"
    rng = random.Random(0)
    words = ("the", "of", "and", "a", "in", "to", "was", "is", "for", "on", "as", "by", "with", "he", "at",
             "from", "his", "that", "it", "an", "were", "are", "which")
    return [" ".join(rng.choice(words) for _ in range(rng.randint(50, 400))) for _ in range(n)], "synthetic"


def build(texts: list[str]) -> tuple[torch.nn.Module, object]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=8000, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                        model_input_names=["input_ids", "attention_mask"])
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257,
                                       bos_token_id=0, eos_token_id=0)).eval()
    return model, tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--layers", default="3-7")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-tokens", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args()

    texts, source = corpus_texts(2000)
    model, tokenizer = build(texts)
    layout = resolve_layout(model)
    sites = [layout.site(layer) for layer in parse_layers(args.layers)]
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    with tempfile.TemporaryDirectory() as tmp:
        corpus_path = Path(tmp) / "corpus.jsonl"
        corpus_path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        corpus = CorpusSpec.parse(str(corpus_path))

        def editkit(chosen) -> float:
            stats = KeyStatistics(model=model, tokenizer=tokenizer, layout=layout, corpus=corpus, stats_dir=None,
                                  max_length=args.max_length, max_tokens=args.tokens, dtype=dtype,
                                  batch_tokens=args.batch_tokens)
            start = time.perf_counter()
            stats.prepare(chosen)
            elapsed = time.perf_counter() - start
            assert stats.token_count(chosen[0]) == args.tokens
            return elapsed

        # the same padded batches the collector forms, for the bare forward
        plan = CollectionPlan(modules=(), d_in={}, max_length=args.max_length, max_tokens=args.tokens, dtype=dtype,
                              batch_tokens=args.batch_tokens, chunk_tokens=8 * args.batch_tokens)
        batches = []
        for rows, _ in _chunks(tokenizer, corpus.documents(), plan, 0):
            rows.sort(key=len, reverse=True)
            batches += [pad_batch(tokenizer, b) for b in _batches(rows, args.batch_tokens)]

        def bare() -> float:
            start = time.perf_counter()
            with torch.no_grad():
                for batch in batches:
                    model(**batch.model_inputs(), use_cache=False)
            return time.perf_counter() - start

        def per_layer() -> float:
            return sum(editkit([site]) for site in sites)

        def reference() -> float:
            start = time.perf_counter()
            for site in sites:  # one pass per layer, as layer_stats is called once per layer
                mom2 = torch.zeros(site.d_in, site.d_in, dtype=dtype)
                with torch.no_grad(), capture_inputs(model, [site.module], stop_after_last=True) as seen:
                    for batch in batches:
                        inputs = batch.model_inputs()
                        run_until_stopped(lambda inputs=inputs: model(**inputs, use_cache=False))
                        keys = seen[site.module][inputs["attention_mask"].bool()].to(dtype)  # [n, d_in], no pads
                        mom2 += keys.T.mm(keys)  # full [d_in, d_in] product, as runningstats.SecondMoment
            return time.perf_counter() - start

        editkit(sites)  # warm-up
        runs: dict[str, list[float]] = {"editkit": [], "bare": [], "per_layer": [], "reference": []}
        for _ in range(args.repeats):
            runs["editkit"].append(editkit(sites))
            runs["bare"].append(bare())
            runs["per_layer"].append(per_layer())
            runs["reference"].append(reference())

    rate = {k: args.tokens / statistics.median(v) for k, v in runs.items()}
    print(f"GPT-2 arch (d_model 768, 12 layers, random init), {torch.get_num_threads()} CPU threads, "
          f"{args.tokens:,} tokens of {source}, max length {args.max_length}, batch {args.batch_tokens} tokens, "
          f"layers {[s.layer for s in sites]}, {args.dtype}, median of {args.repeats}")
    print(f"  editkit one pass, {len(sites)} layers : {rate['editkit']:10,.0f} tokens/s")
    print(f"  bare forward (full model)     : {rate['bare']:10,.0f} tokens/s")
    print(f"  one pass per layer (editkit)  : {rate['per_layer']:10,.0f} tokens/s")
    print(f"  reference (layer_stats-style) : {rate['reference']:10,.0f} tokens/s")
    print(f"  editkit / bare forward        : {rate['editkit'] / rate['bare']:.2f}  (target >= 0.8)")
    print(f"  editkit / reference approach  : {rate['editkit'] / rate['reference']:.2f}  (target >= 3)")
    print(f"  editkit / one pass per layer with editkit's accumulation: {rate['editkit'] / rate['per_layer']:.2f}")


if __name__ == "__main__":
    main()
