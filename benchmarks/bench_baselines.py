"""The published baselines side by side on the built-in demo world: MEMIT, PRUNE and RECT, each
without and with AlphaEdit's null-space constraint, RECT followed by the projection (the
AlphaEdit paper's "RECT + P" plug-in, the order that keeps ΔP = Δ: Fang et al. 2025, AlphaEdit,
arXiv 2410.02355, its results for existing methods with P added), and RECT followed by the null space's
``joint`` mode (the projection onto range(P) ∩ RECT's support, which keeps both).

Each configuration is one ``editkit run`` (in this process, one after another, same seed, same
requests, a fresh copy of the model each time) with ``--num-edits N --batch-size B --metrics
counterfact,fluency,retention``; the script prints one table of efficacy, generalisation,
specificity (CounterFact, %), fluency (weighted n-gram entropy ×100) and retention (%, facts not
edited), the unedited model first, plus edit time and whether each constraint's invariant held on
every written update. ``--constrain-mode posthoc`` (default here) is the published baselines'
behaviour. Runs land in ``OUT/<configuration>/`` (result.json, deltas.safetensors; OUT defaults to
``runs/baselines/<date-time>``) and the table in ``OUT/baselines.json``.

Usage: ``python benchmarks/bench_baselines.py [--num-edits 200] [--batch-size 50] [--out runs/baselines]
[--only memit,rect+nullspace] [--out DIR] [--constrain-mode posthoc|inline] [--set nullspace.threshold=...]``.
Needs the demo world (``editkit run`` with no ``--model``/``--requests``); exits 2 with a message when
it is not installed. ``--model M --requests R.json --corpus C`` runs the same table on another model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from editkit import run_job
from editkit.cli.run import job_from_argv
from editkit.errors import EditkitError

CONFIGURATIONS: dict[str, list[str]] = {
    "memit": ["--editor", "memit"],
    "memit+nullspace": ["--editor", "memit", "--constraint", "nullspace"],  # = AlphaEdit
    "prune": ["--editor", "prune"],
    "prune+nullspace": ["--editor", "prune", "--constraint", "nullspace"],
    "rect": ["--editor", "rect"],
    "rect+nullspace": ["--editor", "rect", "--constraint", "nullspace"],  # null space, then mask: breaks ΔP = Δ
    "rect→P": ["--editor", "rect", "--constraint", "rect", "--constraint", "nullspace",
               "--set", "nullspace.mode=project"],  # mask, then project: keeps ΔP = Δ, not the sparsity
    # mask, then project onto range(P) ∩ the mask's support: keeps both (rows with |S_i| + r ≤ d_in become 0)
    "rect+P(joint)": ["--editor", "rect", "--constraint", "rect", "--constraint", "nullspace",
                      "--set", "nullspace.mode=joint"],
}
COLUMNS = ("efficacy", "generalisation", "specificity", "fluency", "retention")


def invariants_held(result: dict[str, Any]) -> dict[str, bool]:
    """Per constraint: did its measured invariant hold on every layer of every batch (and the end)?"""
    held: dict[str, bool] = {}
    reports = [*result.get("batches", []), *([result["final"]] if result.get("final") else [])]
    for report in reports:
        for notes in report.get("layers", {}).values():
            for key, figures in notes.items():
                if key.endswith(".invariant") and isinstance(figures, dict):
                    name = key.removesuffix(".invariant")
                    held[name] = held.get(name, True) and bool(figures.get("holds", True))
    return held


def run_one(name: str, method: list[str], args: argparse.Namespace, host: Any = None) -> dict[str, Any]:
    """One configuration as ``editkit run`` options, run as a job in this process (``host``: the plugin
    host to share; a fresh one by default); its row of the table."""
    out = args.out / name.replace("→", "-then-")
    metrics = getattr(args, "metrics", "counterfact,fluency,retention")
    argv = ["--num-edits", str(args.num_edits), "--batch-size", str(args.batch_size),
            "--metrics", metrics, "--seed", str(args.seed), "--device", args.device,
            "--constrain-mode", args.constrain_mode, "--out", str(out), "--quiet", *args.source, *method]
    present = {method[i + 1] for i, flag in enumerate(method[:-1]) if flag in ("--editor", "--constraint")}
    for assignment in args.overrides:  # NAME.field only where NAME runs (the rect/prune editors imply theirs)
        owner, dot, _ = assignment.partition("=")[0].partition(".")
        if not dot or owner in present:
            argv += ["--set", assignment]
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = run_job(job_from_argv(argv), host=host)
        except EditkitError as error:
            print(f"{name}: error: {error}", file=sys.stderr)
            return {"name": name, "error": f"exit {error.exit_code} (see stderr)",
                    "seconds": time.perf_counter() - started}
    seconds = time.perf_counter() - started
    return {
        "name": name,
        "pre": result["metrics"]["pre"],
        "post": result["metrics"]["post"],
        "edit_seconds": result["summary"]["edit_seconds"],
        "seconds": seconds,
        "invariants": invariants_held(result),
        "warnings": sorted({str(w.message).split(":")[0] for w in caught if "invariant" in str(w.message)}),
    }


def cell(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else "-"


def table(rows: list[dict[str, Any]]) -> str:
    header = ["configuration", *COLUMNS, "edit s", "invariants"]
    lines = []
    pre = next((r["pre"] for r in rows if "pre" in r), None)
    if pre is not None:
        lines.append(["(unedited)", *(cell(pre.get(c)) for c in COLUMNS), "-", "-"])
    for r in rows:
        if "error" in r:
            lines.append([r["name"], *(["-"] * len(COLUMNS)), "-", r["error"]])
            continue
        held = ", ".join(f"{k} {'ok' if v else 'BROKEN'}" for k, v in sorted(r["invariants"].items())) or "-"
        lines.append([r["name"], *(cell(r["post"].get(c)) for c in COLUMNS), f"{r['edit_seconds']:.1f}", held])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" if i in (0, len(header) - 1) else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*x) for x in lines)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-edits", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--constrain-mode", choices=("inline", "posthoc"), default="posthoc")
    parser.add_argument("--only", help=f"comma list of configurations (default all: {', '.join(CONFIGURATIONS)})")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="passed to every run (qualify per method, e.g. nullspace.threshold=0.1)")
    parser.add_argument("--out", type=Path, default=Path("runs/baselines") / time.strftime("%Y%m%d-%H%M%S"),
                        help="a fresh directory (default runs/baselines/<date-time>)")
    parser.add_argument("--model", help="instead of the demo world: a saved model (with --requests and --corpus)")
    parser.add_argument("--requests", help="CounterFact-style JSON records for --model")
    parser.add_argument("--corpus", help="key-statistics corpus for --model")
    args = parser.parse_args()
    args.source = [arg for flag in ("model", "requests", "corpus") if getattr(args, flag)
                   for arg in (f"--{flag}", getattr(args, flag))]

    from editkit.plugins import PluginHost

    host = PluginHost()  # one for every configuration
    catalog = host.catalog
    if args.model is None and "demo" not in catalog.entries["datasets"]:
        print("bench_baselines: the demo world (dataset 'demo') is not installed yet; nothing to run", file=sys.stderr)
        return 2
    chosen = list(CONFIGURATIONS) if not args.only else [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CONFIGURATIONS]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; known: {', '.join(CONFIGURATIONS)}")
    rows = []
    for name in chosen:
        print(f"[{len(rows) + 1}/{len(chosen)}] {name}: editkit run {' '.join(CONFIGURATIONS[name])}", file=sys.stderr)
        rows.append(run_one(name, CONFIGURATIONS[name], args, host))
    print(f"{args.num_edits} edits in batches of {args.batch_size}, constrain mode {args.constrain_mode}, "
          f"seed {args.seed}")
    print(table(rows))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "baselines.json").write_text(json.dumps({"settings": vars(args) | {"out": str(args.out)},
                                                         "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
