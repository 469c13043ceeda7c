"""Evaluate a run's stored edits again, with other metrics, without re-editing.

The first ``--batches`` batches of a run's journal are applied to its base model (checked against the journal's
hash, as ``editkit apply`` does), and the named metrics are computed on the requests of those batches, before
and after, timed per metric. This is how teacher-forced and generation-based figures are put side by side on
runs that were made before the generation metric existed. Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/evaluate_deltas.py RUN --batches 5 \\
        --metrics counterfact,generation --out RUN-eval-500.json [--retention-probes FILE]

Writes JSON: ``{"run", "batches", "edits", "metrics": {"pre", "post"}, "seconds": {"pre", "post"}}`` (atomically).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    from editkit.api import write_json_atomic
    from editkit.config import RunConfig
    from editkit.job.artifacts import apply_selected, select_batches
    from editkit.job.launch import read_retention_probes
    from editkit.job.pipeline import evaluate
    from editkit.modelsource.resolve import load_model, resolve_model
    from editkit.plugins import PluginHost
    from editkit.requests import requests_from_records

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--batches", type=int, required=True, help="how many of the journal's batches to apply")
    parser.add_argument("--metrics", default="counterfact,generation")
    parser.add_argument("--retention-probes", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    selection = select_batches(args.run, upto=args.batches)
    manifest = selection.manifest
    model, tokenizer = load_model(resolve_model(manifest["model"], progress=False))
    edited = [r for entry in selection.entries[: args.batches] for r in entry.requests]
    requests = requests_from_records(edited, source=str(args.run))
    metrics = PluginHost().catalog.entries["metrics"]
    names = [n.strip() for n in args.metrics.split(",") if n.strip()]
    extras = {"fact_probes": read_retention_probes(args.retention_probes)} if args.retention_probes else {}
    config = RunConfig()
    figures, seconds = {}, {}
    for phase in ("pre", "post"):
        if phase == "post":
            apply_selected(model, selection)
        timings: dict[str, float] = {}
        began = time.perf_counter()
        figures[phase] = evaluate(model=model, tokenizer=tokenizer, requests=requests, metrics=metrics, names=names,
                                  extras=extras, config=config, timings=timings)
        seconds[phase] = {**timings, "total": round(time.perf_counter() - began, 1)}
        print(phase, json.dumps(figures[phase]), json.dumps(seconds[phase]), flush=True)
    write_json_atomic(args.out, {"run": str(args.run), "batches": args.batches, "edits": len(requests),
                                 "metrics": figures, "seconds": seconds, "date": time.strftime("%Y-%m-%d")})


if __name__ == "__main__":
    main()
