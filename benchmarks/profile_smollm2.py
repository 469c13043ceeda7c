"""Profile one batch of SmolLM2-135M edits: seconds per stage and per operator.

One batch of ``--requests`` (20) CounterFact requests, layers 4-8, AlphaEdit (MEMIT + null space), v* at the
llama3-8b preset's setting (lr 0.1, 25 steps; ``--steps`` fewer for a quick look: per-step costs scale), C0 reused from
the store (:mod:`smollm2_setup`). Prints the run's stage timings and torch.profiler's operator table (self
CPU time), and, with ``--trace FILE``, writes a Chrome trace.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/profile_smollm2.py --threads 1 [--steps 5] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import smollm2_setup as setup

from editkit import EditRun, RunConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="editor override k=v (repeatable)")
    parser.add_argument("--rows", type=int, default=25, help="operator rows to print")
    parser.add_argument("--no-profiler", action="store_true", help="stage timings only")
    parser.add_argument("--trace", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tokenizer, model_id = setup.load()
    stats = setup.key_statistics(model, tokenizer, model_id)
    overrides = {**setup.COMMON, **setup.PRESET_VSTAR, "v_steps": str(args.steps)}
    overrides.update(dict(item.split("=", 1) for item in args.set))
    run = EditRun(model=model, tokenizer=tokenizer, key_statistics=stats, model_id=model_id,
                  config=RunConfig(layers=setup.LAYERS, constraints=("nullspace",), overrides=overrides.items()))
    requests = setup.requests(args.requests)
    if args.no_profiler:
        start = time.perf_counter()
        report = run.edit(requests)
        total = time.perf_counter() - start
    else:
        activities = [torch.profiler.ProfilerActivity.CPU]
        with torch.profiler.profile(activities=activities) as prof:
            start = time.perf_counter()
            report = run.edit(requests)
            total = time.perf_counter() - start
    targets = run.editor._targets[1]
    print(f"SmolLM2-135M, {args.requests} requests, layers {setup.LAYERS}, {args.steps} v* steps, "
          f"threads {torch.get_num_threads()}, overrides {overrides}")
    print(f"batch {total:.2f} s; mean v* steps {sum(targets.steps) / len(targets.steps):.2f}")
    for stage, seconds in report.timings.items():
        print(f"  {stage:<18}{seconds:>9.2f} s {100 * seconds / total:>6.1f}%")
    if not args.no_profiler:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
        if args.trace is not None:
            prof.export_chrome_trace(str(args.trace))


if __name__ == "__main__":
    main()
