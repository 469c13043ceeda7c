"""Benchmark: the heap policies of an ``editkit`` run on glibc, in time and peak memory, on a real model by name.

* ``trim``: editkit's default, glibc's dynamic mmap threshold with the heap's free pages handed back after each
  stage and each v* group (:mod:`editkit.allocator`);
* ``glibc``: glibc's default alone (``EDITKIT_MALLOC_TRIM=0``);
* ``threshold``: every block of 128 KiB or more mapped afresh (``MALLOC_MMAP_THRESHOLD_=131072``, no trimming).

Each repeat runs every policy as a fresh ``editkit`` process, one after the other, in alternating order (ABC,
CBA, ...), over the workloads:

* ``edit``: ``editkit run`` of one batch of ``--requests`` CounterFact edits (MEMIT + null space, the model's
  defaults, no evaluation; C0 from the statistics store, collected there once before the timing starts). Its
  seconds are the run's own ``edit_seconds``; its peak is the run's (``peak_memory_mib``: every stage's peak).
* ``stats``: ``editkit stats`` collecting C0 of ``--layers`` over ``--stats-tokens`` tokens of ``wiki-leads``
  into a fresh store. Seconds and peak resident memory of the whole process (``ru_maxrss``).
  The collection has no stages to trim after, so there ``trim`` is ``glibc`` run again.

Prints each policy's median and its ratio to glibc's of the medians; ``--json`` also writes them.
Usage (nothing else heavy running; ~10 min for SmolLM2 with the defaults)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_allocator.py --model smollm2-135m --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from editkit.allocator import GLIBC_THRESHOLD_VARIABLE, TRIM_VARIABLE

ROOT = Path(__file__).resolve().parent.parent
EDITKIT = str(Path(sys.executable).with_name("editkit"))
POLICIES = {  # name: environment
    "trim": {},  # editkit's default: glibc's dynamic threshold, free pages handed back after each stage
    "glibc": {TRIM_VARIABLE: "0"},  # glibc's default alone
    "threshold": {TRIM_VARIABLE: "0", GLIBC_THRESHOLD_VARIABLE: "131072"},  # every block >= 128 KiB mapped
}


def _environment(policy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (GLIBC_THRESHOLD_VARIABLE, TRIM_VARIABLE)}
    return {**env, **POLICIES[policy]}


def _timed(command: list[str], policy: str) -> tuple[float, float]:
    """Wall seconds and the process's peak resident MiB (``ru_maxrss``, from ``wait4``) of one command."""
    with tempfile.TemporaryFile(mode="w+") as stderr:
        began = time.perf_counter()
        process = subprocess.Popen(command, env=_environment(policy), cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - began
        if os.waitstatus_to_exitcode(status):
            stderr.seek(0)
            raise SystemExit(f"{' '.join(command)} failed under {policy}:\n{stderr.read()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def edit(args: argparse.Namespace, policy: str, scratch: Path) -> dict[str, float]:
    out = scratch / f"edit-{policy}"
    command = [EDITKIT, "run", "--model", args.model, "--requests", str(args.data), "--num-edits", str(args.requests),
               "--batch-size", str(args.requests), "--editor", "memit", "--constraint", "nullspace",
               "--metrics", "none", "--quiet", "--out", str(out)]
    if args.stats_dir is not None:
        command += ["--stats-dir", str(args.stats_dir)]
    wall, _ = _timed(command, policy)
    summary = json.loads((out / "result.json").read_text())["summary"]
    shutil.rmtree(out)
    return {"seconds": summary["edit_seconds"], "wall_seconds": wall, "peak_mib": summary["peak_memory_mib"],
            "efficacy_post": summary["efficacy_post"]}


def stats(args: argparse.Namespace, policy: str, scratch: Path) -> dict[str, float]:
    store = scratch / f"stats-{policy}"
    command = [EDITKIT, "stats", "--model", args.model, "--layers", args.layers, "--corpus", "wiki-leads",
               "--max-tokens", str(args.stats_tokens), "--stats-dir", str(store), "--no-progress"]
    wall, peak = _timed(command, policy)
    shutil.rmtree(store)
    return {"seconds": wall, "peak_mib": peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--layers", default="4-8", help="the statistics workload's layers (the model's edited ones)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/real/counterfact_portability_gpt4.json")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--stats-tokens", type=int, default=20_000)
    parser.add_argument("--stats-dir", type=Path, help="the edit's statistics store (default: editkit's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", default="edit", help="comma list of edit, stats")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.data.is_file():
        raise SystemExit(f"no CounterFact file at {args.data} (give --data)")
    workloads = {"edit": edit, "stats": stats}
    chosen = [w.strip() for w in args.workloads.split(",")]
    unknown = sorted(set(chosen) - set(workloads))
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; choose from {sorted(workloads)}")
    figures: dict[str, dict[str, list[dict[str, float]]]] = {w: {p: [] for p in POLICIES} for w in chosen}
    with tempfile.TemporaryDirectory(prefix="bench-allocator-") as tmp:
        scratch = Path(tmp)
        if "edit" in chosen:  # C0 into the store first, untimed
            edit(argparse.Namespace(**{**vars(args), "requests": 1}), "trim", scratch)
        for repeat in range(args.repeats):
            order = list(POLICIES) if repeat % 2 == 0 else list(reversed(POLICIES))  # ABC, CBA, ...
            for workload in chosen:
                for policy in order:
                    figure = workloads[workload](args, policy, scratch)
                    figures[workload][policy].append(figure)
                    print(f"repeat {repeat + 1} {workload:5s} {policy:9s} "
                          + " ".join(f"{k} {v:.1f}" for k, v in figure.items()), flush=True)
    summary: dict[str, Any] = {"model": args.model, "requests": args.requests, "stats_tokens": args.stats_tokens,
                               "repeats": args.repeats, "threads": os.environ.get("OMP_NUM_THREADS"), "runs": figures}
    for workload, by_policy in figures.items():
        medians = {p: {k: statistics.median(f[k] for f in runs) for k in runs[0]} for p, runs in by_policy.items()}
        ratios = {p: {k: medians[p][k] / medians["glibc"][k] for k in ("seconds", "peak_mib")} for p in medians}
        summary[workload] = {"median": medians, "ratio_to_glibc": ratios}
        for policy in medians:
            print(f"{workload} {policy:9s}: median {medians[policy]['seconds']:.1f} s ({ratios[policy]['seconds']:.3f}"
                  f" of glibc's), peak {medians[policy]['peak_mib']:.0f} MiB ({ratios[policy]['peak_mib']:.3f})",
                  flush=True)
    if args.json is not None:
        tmp_json = args.json.with_suffix(".tmp")
        tmp_json.write_text(json.dumps(summary, indent=2))
        tmp_json.replace(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
