"""Editing SmolLM2-135M on a CPU: seconds per stage and per edit, and the ratio to the reference.

One command, every ratio measured in this one process:

1. **editkit (default settings)** edits the first ``--requests`` (100) CounterFact requests of
   ``counterfact_portability_gpt4.json`` sequentially in batches of ``--batch-size`` (20): MEMIT + null space
   (AlphaEdit: L2 10, threshold 2e-2), layers 4-8, λ 15,000, v* at the llama3-8b preset's setting (lr 0.1, 25 steps,
   clamp 0.75, KL 0.0625, decay 0.5, early stop 0.05). Per stage: seconds summed over the batches, and per
   edit; seconds per edit: the median over the batches and the total / N; efficacy (new target preferred to
   the true one) before and after.
2. **The reference algorithm** (``bench_suite.py``'s mode "one-at-a-time, full forward": each request's v*
   alone, the whole model every step, the model's own activation modules) on the first
   ``--reference-requests`` (20) requests, as the first batches of (1): the speed-up is the reference's
   seconds per edit over editkit's on those same batches; z and efficacy are compared.
3. **Options** on the first batch against the default (float32) run of that batch: ``vstar_autocast=bfloat16``
   (the blocks of each v* step under bf16 autocast); seconds per edit, max / median relative z difference,
   efficacy. Thread counts: run the command with another ``--threads``.
4. **The demo's v* setting** (lr 0.5, 25 steps) on all N requests (``--no-demo-setting`` skips it).
5. **Key statistics** (``--stats-tokens``, default 20,000; 0 skips): collecting C0 of the five layers in one
   pass against a bare forward of the model truncated after the last edited layer on the same padded batches,
   tokens per second. The C0 the edits use (100,000 tokens of ``wikipedia_vital_leads_en.jsonl:text``) comes
   from the statistics store (collected there once, the first time, not timed).

Usage (one command; ~15-20 min on 2 quiet cores)::

    .venv/bin/python benchmarks/bench_smollm2_speed.py --threads 2 [--requests 100] [--reference-requests 20]

Each edit is undone (bit-exactly) before the next mode, so all modes start from the same model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_suite import MODES, REFERENCE  # the five v* modes; the reference algorithm is one of them
from smollm2_setup import COMMON, DEMO, LAYERS, PRESET_VSTAR, STATS_TOKENS, key_statistics, load, requests

from editkit import EditRun, RunConfig
from editkit.job.pipeline import score_requests


def edit_all(model: Any, tokenizer: Any, stats: Any, model_id: str, chunk: Sequence[Any], batch_size: int,
             overrides: dict[str, str]) -> dict[str, Any]:
    """Edit ``chunk`` in batches, score it, undo everything; timings per batch and stage, z of every request."""
    run = EditRun(model=model, tokenizer=tokenizer, key_statistics=stats, model_id=model_id,
                  config=RunConfig(layers=LAYERS, constraints=("nullspace",), overrides=overrides.items()))
    began = time.perf_counter()
    run.editor.prefix_templates(run)  # once per run (45 one-token forwards): timed on its own
    templates = time.perf_counter() - began
    batches, z, steps = [], [], []
    for start in range(0, len(chunk), batch_size):
        part = chunk[start : start + batch_size]
        began = time.perf_counter()
        report = run.edit(part)
        batches.append({"seconds": time.perf_counter() - began, "size": len(part), "timings": dict(report.timings)})
        targets = run.editor._targets[1]
        z.append(targets.z)
        steps += list(targets.steps)
    after = score_requests(model, tokenizer, chunk)
    run.undo_last(len(run.reports))
    return {"batches": batches, "z": torch.cat(z), "steps": steps, "templates": templates,
            "efficacy": sum(a.success for a in after) / len(after)}


def per_edit(result: dict[str, Any], n_batches: int | None = None) -> float:
    """Seconds per edit over the first ``n_batches`` (all): the batches' edit time, the run's one-off prefix
    templates included."""
    batches = result["batches"][:n_batches]
    return (result["templates"] + sum(b["seconds"] for b in batches)) / sum(b["size"] for b in batches)


def z_difference(z: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    rel = (z - reference).norm(dim=-1) / reference.norm(dim=-1)
    return float(rel.max()), float(rel.median())


def stage_table(name: str, result: dict[str, Any]) -> None:
    batches = result["batches"]
    n = sum(b["size"] for b in batches)
    total = sum(b["seconds"] for b in batches)
    stages: dict[str, float] = {}
    for b in batches:
        for stage, seconds in b["timings"].items():
            stages[stage] = stages.get(stage, 0.0) + seconds
    median = statistics.median(b["seconds"] / b["size"] for b in batches)
    print(f"\n{name}: {n} edits in {len(batches)} batches, {total:.1f} s (+ prefix templates once per run "
          f"{result['templates']:.1f} s); seconds per edit: median over batches {median:.2f}, all in / N "
          f"{per_edit(result):.2f}; mean v* steps {sum(result['steps']) / n:.1f}; "
          f"efficacy after {100 * result['efficacy']:.1f}%")
    print(f"  {'stage':<18}{'s (sum)':>9}{'s/edit':>9}{'share':>8}")
    for stage, seconds in stages.items():
        print(f"  {stage:<18}{seconds:>9.2f}{seconds / n:>9.3f}{100 * seconds / total:>7.1f}%")
    other = total - sum(stages.values())
    print(f"  {'(outside stages)':<18}{other:>9.2f}{other / n:>9.3f}{100 * other / total:>7.1f}%")


def stats_benchmark(model: Any, tokenizer: Any, n_tokens: int, repeats: int) -> None:
    """C0 of the five layers in one pass vs the model truncated after the last edited layer (bare forward)."""
    from smollm2_setup import CORPUS
    from stats_rate import stats_rate

    print()
    stats_rate(model, tokenizer, LAYERS, CORPUS, n_tokens, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--reference-requests", type=int, default=20,
                        help="requests the slow reference algorithm edits (the first batches; default 20)")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-demo-setting", action="store_true", help="skip the lr 0.5 run")
    parser.add_argument("--no-options", action="store_true", help="skip the numerical options")
    parser.add_argument("--stats-tokens", type=int, default=20_000, help="tokens of the C0 rate measurement (0: skip)")
    parser.add_argument("--stats-repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--only-lr", type=float, default=None, metavar="LR",
                        help="only editkit's run with v* at this learning rate (25 steps, the rest as the default "
                             "run): whether early stopping fires, e.g. at the calibrated lr 1.0")
    args = parser.parse_args()
    if args.reference_requests % args.batch_size or not args.batch_size <= args.reference_requests <= args.requests:
        parser.error("--reference-requests must be a multiple of --batch-size, at most --requests: the speed-up "
                     "compares the same batches")
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    model, tokenizer, model_id = load()
    stats = key_statistics(model, tokenizer, model_id)  # reused from the store (collected once, not timed)
    chunk = requests(args.requests)
    pre = score_requests(model, tokenizer, chunk)
    print(f"SmolLM2-135M (float32, CPU), {torch.get_num_threads()} threads, layers {LAYERS}, AlphaEdit, "
          f"{args.requests} CounterFact requests in batches of {args.batch_size}; C0 {STATS_TOKENS:,} tokens; "
          f"efficacy before {100 * sum(p.success for p in pre) / len(pre):.1f}%")
    preset = {**COMMON, **PRESET_VSTAR}
    if args.only_lr is not None:
        only = edit_all(model, tokenizer, stats, model_id, chunk, args.batch_size,
                        {**preset, "v_lr": str(args.only_lr)})
        stage_table(f"editkit, v* lr {args.only_lr:g}, 25 steps", only)
        return 0
    results: dict[str, Any] = {"default": edit_all(model, tokenizer, stats, model_id, chunk, args.batch_size, preset)}
    stage_table("editkit, default settings (v* lr 0.1, 25 steps)", results["default"])

    m = args.reference_requests
    ref_batches = m // args.batch_size
    results["reference"] = edit_all(model, tokenizer, stats, model_id, chunk[:m], args.batch_size,
                                    {**preset, **MODES[REFERENCE]})
    stage_table(f"reference algorithm ({REFERENCE})", results["reference"])
    ours = per_edit(results["default"], ref_batches)
    theirs = per_edit(results["reference"])
    dz_max, dz_med = z_difference(results["default"]["z"][:m], results["reference"]["z"])
    print(f"\n== speed-up over the reference on the same {m} requests: {theirs:.2f} / {ours:.2f} s per edit = "
          f"{theirs / ours:.1f}x; z vs reference: max rel {dz_max:.1e}, median {dz_med:.1e}")

    if not args.no_options:
        first = chunk[: args.batch_size]
        base = edit_all(model, tokenizer, stats, model_id, first, args.batch_size, preset)
        print(f"\n== options on the first {len(first)} requests, against the default run (float32) of the same batch")
        print(f"  {'option':<28}{'s/edit':>8}{'speed-up':>10}{'max rel dz':>12}{'median':>10}{'efficacy':>10}")
        print(f"  {'(default, float32)':<28}{per_edit(base):>8.2f}{1.0:>9.2f}x{0.0:>12.1e}{0.0:>10.1e}"
              f"{100 * base['efficacy']:>9.1f}%")
        for name, extra in {"vstar_autocast=bfloat16": {"vstar_autocast": "bfloat16"}}.items():
            out = edit_all(model, tokenizer, stats, model_id, first, args.batch_size, {**preset, **extra})
            results[name] = out
            dz_max, dz_med = z_difference(out["z"], base["z"])
            print(f"  {name:<28}{per_edit(out):>8.2f}{per_edit(base) / per_edit(out):>9.2f}x{dz_max:>12.1e}"
                  f"{dz_med:>10.1e}{100 * out['efficacy']:>9.1f}%")

    if not args.no_demo_setting:
        results["demo"] = edit_all(model, tokenizer, stats, model_id, chunk, args.batch_size, {**COMMON, **DEMO})
        stage_table("editkit, the demo's v* setting (lr 0.5, 25 steps)", results["demo"])

    if args.stats_tokens:
        stats_benchmark(model, tokenizer, args.stats_tokens, args.stats_repeats)
    print(f"\n(whole benchmark {time.perf_counter() - began:.0f} s)")
    if args.json is not None:
        figures = {k: {"per_edit": per_edit(v), "efficacy": v["efficacy"], "batches": v["batches"],
                       "mean_steps": sum(v["steps"]) / len(v["steps"])} for k, v in results.items()}
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
