"""Benchmark: the peak memory of one batch of AlphaEdit (MEMIT + null space) next to editkit's memory formula.

A Llama-3-8B-shaped model (d_model 4096, d_mlp 14336, 32 heads, 8 key-value heads, vocabulary 128,256) is built from
a config with random weights, with as many layers as fit in RAM (``--n-layers``, default 6: layers 1-5 edited, layer
0 before them). Its key statistics are synthetic but of full size and stored as editkit stores them: per edited
layer ``C0 = diag(λ)`` (float32 sums) with its exact eigendecomposition (eigenvalues, and the identity as
eigenvectors, float64) in the store's cache, ``λ`` below AlphaEdit's threshold 2e-2 on ``--null-share`` of the
directions. Then one batch of ``--edits`` CounterFact requests is edited (v* with ``--v-steps`` steps: one backward
is enough to hold its activations; the step count does not change the memory), and the process's peak resident
memory during that batch (Linux VmHWM, reset just before) is printed next to the formula's peak
(:func:`editkit.memory.run_memory`; ``baseline`` is the process's resident memory before the model was built),
with the formula's terms and its stages. Tokenizer: SmolLM2's (``make setup``), its ids all inside the vocabulary.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_memory.py --json runs/bench-memory.json
    .venv/bin/python benchmarks/bench_memory.py --d-model 512 --d-mlp 1792 --heads 8 --kv-heads 2 --vocab 49152

Run it alone: at the 8B shape in bfloat16 it needs about 20 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

GIB = 2**30
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(hidden_size=args.d_model, intermediate_size=args.d_mlp, num_hidden_layers=args.n_layers,
                         num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, vocab_size=args.vocab,
                         tie_word_embeddings=False, max_position_embeddings=2048)
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=getattr(torch, args.dtype))
    return model.eval()


def write_synthetic_statistics(stats: object, sites: list, null_share: float, tokens: int) -> None:
    """``C0 = diag(λ)`` per site in the store, its eigendecomposition cached: ``λ`` ascending, the first
    ``null_share`` of them 1e-3 (below AlphaEdit's 2e-2), the rest from 0.1 up to 10 (geometric)."""
    store = stats.store  # type: ignore[attr-defined]
    for site in sites:
        d = site.d_in
        n_null = round(null_share * d)
        values = torch.cat([torch.full((n_null,), 1e-3, dtype=torch.float64),
                            torch.logspace(-1, 1, d - n_null, dtype=torch.float64)])
        total = torch.zeros(d, d, dtype=torch.float32)
        total.diagonal().copy_((values * tokens).float())
        stored = store.save(stats.identity(site), total, tokens,  # type: ignore[attr-defined]
                            {"corpus": "synthetic diag(λ) for benchmarks/bench_memory.py"})
        del total
        vectors = torch.eye(d, dtype=torch.float64)
        store.save_eigh(stored, (stored.total.double() / tokens).diagonal().clone(), vectors)
        del vectors, stored


def counterfact_requests(path: Path, n: int) -> list:
    from editkit import EditRequest

    records = json.loads(path.read_text())[:n]
    return [EditRequest(case_id=r["case_id"], subject=r["requested_rewrite"]["subject"],
                        prompt=r["requested_rewrite"]["prompt"],
                        target_new=r["requested_rewrite"]["target_new"]["str"],
                        target_true=r["requested_rewrite"]["target_true"]["str"]) for r in records]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--d-model", type=int, default=4096)
    p.add_argument("--d-mlp", type=int, default=14336)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--n-layers", type=int, default=6, help="layers of the model (default 6)")
    p.add_argument("--layers", default="1-5", help="edited layers (default 1-5)")
    p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    p.add_argument("--edits", type=int, default=100)
    p.add_argument("--null-share", type=float, default=0.75, help="share of each layer's directions in the null "
                   "space (default 0.75: the stored basis is the complement, a quarter of d_mlp)")
    p.add_argument("--v-steps", type=int, default=2)
    p.add_argument("--requests", type=Path, default=DATA / "counterfact_portability_gpt4.json")
    p.add_argument("--tokenizer", default="smollm2-135m", help="a registered model name or directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="write the figures here too")
    args = p.parse_args()

    from editkit_memit.keys import KeyPrompts
    from memory_of_run import vm, vstar_memory  # this folder's: /proc figures; v*'s activations as MEMIT forms them
    from transformers import AutoTokenizer

    from editkit import EditRun, RunConfig
    from editkit.config import parse_layers
    from editkit.keystats import CorpusSpec, KeyStatistics
    from editkit.layout import resolve_layout
    from editkit.memory import SiteShape, run_memory
    from editkit.modelsource.resolve import resolve_model

    if not args.requests.is_file():
        sys.exit(f"bench_memory: {args.requests} not found (the shared CounterFact data); give --requests")
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model(args.tokenizer).location))
    if args.vocab < len(tokenizer):
        sys.exit(f"bench_memory: --vocab {args.vocab} is smaller than the tokenizer's {len(tokenizer)} tokens")
    requests = counterfact_requests(args.requests, args.edits)
    baseline = vm("VmRSS")

    start = time.perf_counter()
    model = build_model(args)
    weights = sum(t.numel() * t.element_size() for t in model.parameters())
    print(f"model: {args.n_layers} layers, d_model {args.d_model}, d_mlp {args.d_mlp}, vocab {args.vocab}, "
          f"{args.dtype}: {weights / GIB:.2f} GiB of weights, built in {time.perf_counter() - start:.0f} s", flush=True)
    layers = tuple(parse_layers(args.layers))
    layout = resolve_layout(model)
    sites = [layout.site(layer) for layer in layers]
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        corpus = Path(tmp) / "unused.txt"  # the statistics are synthetic: the corpus names them, it is never read
        corpus.write_text("synthetic\n")
        stats = KeyStatistics(model=model, tokenizer=tokenizer, layout=layout, corpus=CorpusSpec.parse(str(corpus)),
                              stats_dir=Path(tmp) / "stats", max_tokens=100_000, model_id="llama3-8b-shape",
                              progress=False)
        start = time.perf_counter()
        write_synthetic_statistics(stats, sites, args.null_share, 100_000)
        print(f"synthetic statistics of layers {list(layers)} stored in {time.perf_counter() - start:.0f} s",
              flush=True)
        config = RunConfig(editor="memit", constraints=("nullspace",), layers=layers, seed=args.seed,
                           overrides=(("v_steps", str(args.v_steps)),))
        run = EditRun(model=model, tokenizer=tokenizer, config=config, key_statistics=stats, undo_depth=1)
        start = time.perf_counter()
        report = run.edit(requests)
        seconds = time.perf_counter() - start
        # the run resets VmHWM as the batch begins and after each stage (its per-stage peaks): the batch's peak is
        # the largest of them and what came after the last stage
        measured = max(vm("VmHWM"), *report.peak_memory.values())

        templates = run.editor.templates or ("{}",)
        element = torch.empty(0, dtype=getattr(torch, args.dtype)).element_size()
        vstar = vstar_memory(tokenizer, requests, templates, upper_blocks=args.n_layers - 1 - max(layers),
                             d_model=args.d_model, d_mlp=args.d_mlp, vocab=args.vocab)
        subspaces = run.constraints[0][1].subspaces
        shapes = [SiteShape(d_in=s.d_in, d_out=s.d_out, null=subspaces[s.module].dim) for s in run.sites]
        prompts = KeyPrompts.build(tokenizer, requests, run.editor.templates, torch.device("cpu"))
        key_tokens = prompts.batch.input_ids.numel()  # [rows, T]
        estimate = run_memory(weights=weights, weight_element=element, sites=shapes, edits=len(requests),
                              background=False, vstar=vstar, baseline=baseline, key_tokens=key_tokens,
                              key_blocks=max(layers) - min(layers) + 1)
    ratio = measured / estimate.peak
    print(f"\none batch of {len(requests)} edits (memit + nullspace, layers {list(layers)}): {seconds:.0f} s "
          f"({seconds / len(requests):.1f} s/edit)")
    print(f"measured peak RSS  {measured / GIB:8.2f} GiB")
    print(f"formula peak       {estimate.peak / GIB:8.2f} GiB at {estimate.peak_stage}   (measured / formula "
          f"{ratio:.3f})")
    print("held at the batch's end (GiB):")
    for term, size in estimate.held.items():
        print(f"  {term:>26} {size / GIB:8.3f}")
    print("formula by stage (GiB): " + ", ".join(f"{k} {v / GIB:.2f}" for k, v in estimate.stages.items()))
    print("measured peak of each stage (GiB, since the previous stage ended): "
          + ", ".join(f"{k} {v / GIB:.2f}" for k, v in report.peak_memory.items()))
    if args.json:
        figures = {
            "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
            "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "torch": torch.__version__, "shape": vars(args) | {"requests": str(args.requests),
                                                               "json": str(args.json)},
            "weights_bytes": weights, "baseline_bytes": baseline, "measured_peak_bytes": measured,
            "formula_peak_bytes": estimate.peak, "formula_peak_stage": estimate.peak_stage,
            "measured_over_formula": ratio, "held": estimate.held, "stages": estimate.stages,
            "null_dims": [subspaces[s.module].dim for s in run.sites], "seconds": seconds,
            "seconds_per_edit": seconds / len(requests), "timings": report.timings,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
