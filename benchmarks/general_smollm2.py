"""General-capability scores and perplexity of an unedited model, with wall times.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/general_smollm2.py --model smollm2-135m \\
        --general-data ../shared/data/real/general --limit 100 \\
        --perplexity-data ../shared/data/real/ME-PPL.json --perplexity-limit 1000 --out runs/general-smollm2.json

Runs the ``general`` and ``perplexity`` metrics exactly as ``editkit run --metrics general,perplexity``
evaluates them before editing, and prints (and writes, atomically) the figures and seconds per metric.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from editkit.evaluation import EvalContext, run_metrics
from editkit.helpers.atomic import write_json_atomic
from editkit.helpers.metricoptions import EXTRAS_KEY, build_metric_options
from editkit.modelsource.resolve import load_model
from editkit.plugins import PluginHost


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--general-data", required=True)
    p.add_argument("--limit", type=int, default=100, help="items per task (general.limit)")
    p.add_argument("--perplexity-data", required=True)
    p.add_argument("--perplexity-limit", type=int, default=1000, help="texts (perplexity.limit)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out")
    args = p.parse_args()
    host = PluginHost()
    metrics = host.catalog.entries["metrics"]
    options = build_metric_options({"general": {"data": args.general_data, "limit": str(args.limit)},
                                    "perplexity": {"data": args.perplexity_data,
                                                   "limit": str(args.perplexity_limit)}}, metrics)
    started = time.perf_counter()
    model, tokenizer = load_model(args.model, catalog=host.catalog, device=args.device)
    load_seconds = time.perf_counter() - started
    context = EvalContext(model=model, tokenizer=tokenizer, records=[], extras={EXTRAS_KEY: options},
                          device=args.device)
    seconds: dict[str, float] = {}
    figures = run_metrics(metrics, ["general", "perplexity"], context, seconds)
    result = {"model": args.model, "general_limit": args.limit, "perplexity_limit": args.perplexity_limit,
              "figures": figures, "seconds": seconds, "load_seconds": round(load_seconds, 1)}
    if args.out:
        write_json_atomic(args.out, result)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
