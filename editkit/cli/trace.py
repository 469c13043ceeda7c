"""``editkit trace``: ROME's causal trace per layer, to choose the layers to edit.

Examples::

    editkit trace --model smollm2-135m --requests known_1000.json --num-facts 100 --out trace.json
    editkit trace --model ./tiny --dataset counterfact --num-facts 50 --kinds mlp --window 10 --json

Reads facts (CounterFact records' true objects, or ROME's known facts ``{subject, prompt,
attribute}``), keeps the first ``--num-facts`` the model gets right (every object token the argmax),
and for each layer measures the indirect effect of restoring its MLP output (and the block's hidden
state) at the subject's last token on the object's probability, with the subject's embeddings
corrupted by noise (:mod:`editkit.job.causaltrace`). Prints a table per layer; ``--out FILE`` writes the
results as JSON (atomically), ``--json`` prints them instead of the table.

Exit codes: 0 success, 2 bad usage or input (nothing written), 1 runtime failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from editkit.errors import InputError, UsageError


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("trace", help="causal trace (ROME): which layers' MLPs carry known facts",
                       description=__doc__.split("\n\n")[0] + "\n\n" + __doc__.split("\n\n")[2],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registered model name (see `editkit models`), save_pretrained "
                   "directory, .gguf file or hub name")
    p.add_argument("--requests", type=Path, metavar="FILE",
                   help="JSON list of CounterFact records (the true object is traced) or known facts "
                        "{subject, prompt, attribute} (ROME's known_1000.json)")
    p.add_argument("--dataset", metavar="NAME_OR_PATH", help="registered dataset name, or a dataset file read by "
                   "the dataset plugins (CounterFact, EasyEdit, KnowEdit formats)")
    p.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option for the dataset loader")
    p.add_argument("--skip-invalid", action="store_true", help="skip bad records (counted) instead of exit 2")
    p.add_argument("--num-facts", type=int, default=100, help="trace the first N facts the model gets right "
                   "(default 100)")
    p.add_argument("--samples", type=int, default=10, help="noise draws per fact (default 10, as ROME)")
    p.add_argument("--noise", type=float, default=3.0, help="noise standard deviation in units of the subject "
                   "embeddings' standard deviation (default 3, as ROME)")
    p.add_argument("--window", type=int, default=1, help="restore this many adjacent MLP layers together, "
                   "centred on the layer (default 1; ROME's figures use 10)")
    p.add_argument("--kinds", default="mlp,hidden", help="what is restored: mlp (the MLP output), hidden (the "
                   "block output); comma list, default mlp,hidden")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws (default 0)")
    p.add_argument("--rows", type=int, default=128, help="sequences per forward pass (default 128; memory)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the results as JSON to FILE (atomically)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _settings(args: argparse.Namespace) -> Any:
    from editkit.job.causaltrace import TraceSettings

    for flag in ("num_facts", "samples", "window", "rows"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if not args.noise > 0:
        raise UsageError(f"--noise must be > 0, got {args.noise}")
    try:
        return TraceSettings(samples=args.samples, noise=args.noise, seed=args.seed, window=args.window,
                             kinds=tuple(k.strip() for k in args.kinds.split(",") if k.strip()), rows=args.rows)
    except ValueError as exc:
        raise UsageError(f"--kinds {args.kinds!r}: expected a comma list of mlp, hidden ({exc})") from None


def _records(args: argparse.Namespace, host: Any) -> tuple[list[Any], str]:
    from editkit.hparams import parse_assignments
    from editkit.requests import read_json_records

    if (args.requests is None) == (args.dataset is None):
        raise UsageError("give the facts with --requests FILE or --dataset NAME_OR_PATH (one of them)")
    if args.requests is not None:
        return read_json_records(args.requests), str(args.requests)
    options = parse_assignments(args.dataset_option)
    if Path(args.dataset).is_file():
        reader = next((d for _, d in sorted(host.catalog.entries["datasets"].items())
                       if d.load is not None and d.model is None), None)
        if reader is None:
            raise UsageError("no installed dataset plugin reads dataset files; give the file with --requests")
        return list(reader.load(source=args.dataset, **options)), args.dataset
    dataset = host.catalog.get("datasets", args.dataset)
    if dataset.load is None:
        raise UsageError(f"dataset {dataset.name!r} provides no facts (it is a corpus)")
    return list(dataset.load(**options)), f"dataset {dataset.name}"


def _check_out(path: Path | None) -> None:
    from editkit.job.outputs import check_writable_directory

    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"--out {path}: is a directory; give a file name, e.g. {path / 'trace.json'}")
    check_writable_directory(path.parent, "--out", shown=path)


def main(args: argparse.Namespace) -> int:
    import warnings

    from editkit.helpers.progress import clock_text, model_loading
    from editkit.job.causaltrace import known, prepare, subject_embedding_std, summarise, trace_fact
    from editkit.job.devices import check_device
    from editkit.job.facts import facts_from_records
    from editkit.layout import resolve_layout
    from editkit.modelsource.resolve import load_model, resolve_model
    from editkit.plugins import PluginHost

    settings = _settings(args)
    _check_out(args.out)
    check_device(args.device)
    host = PluginHost()
    records, source = _records(args, host)
    facts, skipped = facts_from_records(records, source=source, skip_invalid=args.skip_invalid)
    if skipped:
        warnings.warn(f"{source}: skipped {len(skipped)} bad record(s)", stacklevel=1)
    model_source = resolve_model(args.model, catalog=host.catalog, progress=not args.quiet and sys.stderr.isatty())
    with model_loading(model_source.location, enabled=not args.quiet):
        model, tokenizer = load_model(model_source, device=args.device)
    layout = resolve_layout(model, host.catalog.entries["architectures"])

    prepared, unusable = [], []
    for fact in facts:
        try:
            prepared.append(prepare(tokenizer, fact))
        except ValueError as exc:
            unusable.append(f"record {fact.index}: {exc}")
    if unusable and not args.skip_invalid:
        shown = "\n  ".join(unusable[:50])
        raise InputError(f"{source}: {len(unusable)} fact(s) cannot be traced with this tokenizer (--skip-invalid "
                         f"skips them):\n  {shown}")
    right = known(model, tokenizer, [p.fact for p in prepared], device=args.device) if prepared else []
    chosen = [p for p, ok in zip(prepared, right) if ok][: args.num_facts]
    if not chosen:
        raise InputError(f"{source}: the model gets none of the {len(prepared)} facts right (every object token the "
                         "argmax after the prompt); causal tracing needs facts the model knows")
    sigma = subject_embedding_std(model, chosen)
    scale = settings.noise * sigma
    started = time.monotonic()
    traces = []
    for i, prepared_fact in enumerate(chosen, start=1):
        traces.append(trace_fact(model, layout, prepared_fact, scale, settings))
        if not args.quiet:
            print(f"trace: {i}/{len(chosen)} facts, {clock_text(time.monotonic() - started)}", file=sys.stderr,
                  flush=True)
    result = {
        "model": model_source.requested,
        "model_location": str(model_source.location),
        "source": source,
        "n_layers": layout.n_layers,
        "facts": len(chosen),
        "examined": len(prepared),
        "known": sum(right),
        "skipped_records": len(skipped) + len(unusable),
        "settings": settings.to_json(),
        "noise": {"embedding_std": sigma, "scale": scale, "multiplier": settings.noise},
        "seconds": round(time.monotonic() - started, 3),
        **summarise(traces, settings.kinds, layout.n_layers),
        "per_fact": [t.to_json() for t in traces],
    }
    if args.out is not None:
        from editkit.helpers.atomic import write_json_atomic

        write_json_atomic(args.out, result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_trace_table(result)
    return 0


def print_trace_table(result: dict[str, Any]) -> None:
    """Per layer: the mean indirect effect of each kind ± its standard error, with a bar for the first kind."""
    kinds = result["settings"]["kinds"]
    clean, corrupted = result["clean"], result["corrupted"]
    print(f"causal trace of {result['model']}: {result['facts']} facts the model gets right (of "
          f"{result['examined']} examined, {result['known']} known), {result['settings']['samples']} noise draws "
          f"each, noise {result['noise']['multiplier']:g} × σ = {result['noise']['scale']:.4g}, seed "
          f"{result['settings']['seed']}, MLP window {result['settings']['window']}")
    print(f"P(object): clean {clean['mean']:.4f}, corrupted {corrupted['mean']:.4f}; indirect effect = P(restored "
          "at the subject's last token) − P(corrupted), mean ± standard error over facts")
    top = max((abs(row[kinds[0]]["mean"]) for row in result["layers"]), default=0.0) or 1.0
    header = f"{'layer':>5}" + "".join(f"  {kind + ' IE':>20}" for kind in kinds) + "  " + kinds[0]
    print(header)
    for row in result["layers"]:
        cells = []
        for kind in kinds:
            est = row[kind]
            se = f" ± {est['se']:.4f}" if est["se"] is not None else ""
            cells.append(f"  {est['mean']:>+11.4f}{se:>9}")
        bar = "#" * round(20 * max(row[kinds[0]]["mean"], 0.0) / top)
        print(f"{row['layer']:>5}" + "".join(cells) + "  " + bar)
