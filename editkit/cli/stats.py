"""``editkit stats``: collect and cache the key statistics C0 of edit sites, or show them.

Examples::

    editkit stats --model gpt2-xl --layers 13-17 --corpus hf:wikimedia/wikipedia:20231101.en --max-tokens all
                                                # the reference's C0: 100,000 articles (--samples to change)
    editkit stats --model ./tiny --layers 1,2 --corpus leads.jsonl:text --max-tokens 100000
    editkit stats --show                                        # everything stored, no model needed
    editkit stats export --model smollm2-135m --layers 4-8 --out c0.safetensors   # one portable file
    editkit stats import c0.safetensors --model smollm2-135m    # into this machine's store, identity checked
    editkit stats adopt                          # keep the files an older editkit wrote here (you vouch for them)
    torchrun --nproc-per-node 4 -m editkit stats --model ... --layers ...   # sharded over ranks

Statistics go to the store ``editkit run`` reads: ``--stats-dir``, else ``$EDITKIT_STATS_DIR``,
else ``$EDITKIT_CACHE/stats``; the default token budget is ``editkit run``'s (200,000), and a run
reuses stored statistics of at least the tokens it asks for (:mod:`editkit.keystats.reuse`).

Exit codes: 0 success, 2 bad usage or input (nothing written; an unknown or absent --device too), 1 runtime
failure (a write that fails, e.g. on a full disk, says which file and why, and leaves nothing partial).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from editkit.errors import UsageError
from editkit.keystats.defaults import DEFAULT_MAX_TOKENS, HF_DEFAULT_SAMPLES, default_stats_dir, token_budget

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_layers(text: str) -> list[int]:
    """``"1,2"``, ``"1-3"``, ``"1,3-5"`` → sorted distinct layer indices."""
    layers: set[int] = set()
    for part in text.replace(" ", "").split(","):
        match = _RANGE.match(part)
        if not match:
            raise UsageError(f"--layers {text!r}: expected comma-separated layers or ranges, e.g. 3,4 or 3-7")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise UsageError(f"--layers {text!r}: range {part} is empty")
        layers.update(range(low, high + 1))
    return sorted(layers)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "stats",
        help="collect, cache and show key statistics (C0 = E[k kᵀ]) for MEMIT / AlphaEdit",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", nargs="?", choices=("export", "import", "adopt"),
                   help="export: write the stored C0 (and eigenbasis) of --model at --layers to --out as one "
                        "portable file; import FILE: add such a file to the store, after checking that it was made "
                        "for --model's weights, config and tokenizer; adopt: keep the files an older editkit wrote "
                        "in the store (no header checksum; you vouch for their token count and identity), so runs "
                        "reuse them instead of computing them again")
    p.add_argument("file", nargs="?", type=Path, help="the bundle to import")
    p.add_argument("--out", type=Path, help="export: the bundle to write (safetensors)")
    p.add_argument("--no-eigh", action="store_true", help="export: leave the eigenbases out (a smaller file; "
                   "they are computed again on first use)")
    p.add_argument("--model", help="registered model name (see `editkit models`), save_pretrained directory, .gguf "
                   "file or hub name")
    p.add_argument("--model-id", help="the model's name in the store and in identities (default: --model; for a "
                   "registered name or .gguf, its converted directory, as `editkit run` uses)")
    p.add_argument("--layers", help="layers to collect, e.g. 13,14 or 13-17")
    p.add_argument(
        "--corpus", default=None,
        help="PATH.txt (a document per line), PATH.json[l][:FIELD], hf:NAME[:CONFIG[:SPLIT]] or a registered "
             "dataset name (e.g. demo, wiki-leads); default: the corpus of the dataset built for --model (e.g. "
             "wiki-leads for smollm2-135m), else hf:wikimedia/wikipedia:20231101.en",
    )
    p.add_argument("--text-field", help="record field holding the text (json/hf/registered; default text)")
    p.add_argument("--samples", type=int, help="use the first N documents (after --seed shuffling); "
                   f"default {HF_DEFAULT_SAMPLES} for hf: corpora with --max-tokens all, else all")
    p.add_argument("--seed", type=int, help="shuffle the documents with this seed first (default: corpus order)")
    p.add_argument("--max-tokens", type=token_budget, default=DEFAULT_MAX_TOKENS, metavar="N|all",
                   help=f"stop after exactly N tokens, or 'all' documents (default {DEFAULT_MAX_TOKENS}, as "
                        "editkit run's --stats-max-tokens)")
    p.add_argument("--max-length", type=int,
                   help="truncate each document to N tokens (default: model context, at most 4096)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="accumulation dtype")
    p.add_argument("--batch-tokens", type=int,
                   help="padded tokens per forward batch (default max(3 × max length, 8192))")
    p.add_argument("--stats-dir", type=Path, default=None,
                   help="statistics store, the one editkit run reads (default $EDITKIT_STATS_DIR, else "
                        "$EDITKIT_CACHE/stats)")
    p.add_argument("--checkpoint-every", type=float, default=300.0, metavar="SECONDS",
                   help="checkpoint partial sums this often (default 300)")
    p.add_argument("--device", help="torch device (default: cuda if available, per rank under torchrun)")
    p.add_argument("--show", action="store_true",
                   help="print token count, eigenvalue spectrum and null-space size per layer; without --model, "
                        "of every file in the store")
    p.add_argument("--threshold", type=float, default=2e-2, help="null-space threshold on C0's eigenvalues")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _stats_dir(args: argparse.Namespace) -> Path:
    return Path(args.stats_dir) if args.stats_dir is not None else default_stats_dir()


def main(args: argparse.Namespace) -> int:
    from editkit.keystats.distributed import DistContext, shutdown

    if args.device is not None:
        from editkit.job.devices import check_device

        check_device(args.device)  # a device this machine has (exit 2), before loading anything, as run and trace
    backend = "gloo" if args.device and args.device.startswith("cpu") else None
    dist, owned = DistContext.init_from_env(backend)
    try:
        if args.action is not None:
            return {"export": _export, "import": _import, "adopt": _adopt}[args.action](args)
        if args.file is not None:
            raise UsageError(f"unexpected argument {str(args.file)!r} (did you mean `editkit stats import FILE`?)")
        if args.show and not args.model:
            return _show_store(args)
        return _collect(args, dist)
    finally:
        if owned:
            shutdown()


def _corpus(args: argparse.Namespace, host: Any = None) -> Any:
    from editkit.job.datasetdefaults import dataset_for_model
    from editkit.keystats.corpus import WIKIPEDIA
    from editkit.keystats.defaults import corpus_selection

    for flag in ("samples", "max_tokens", "max_length", "batch_tokens", "seed"):
        value = getattr(args, flag)
        if value is not None and value < (0 if flag == "seed" else 1):
            raise UsageError(f"--{flag.replace('_', '-')} must be {'non-negative' if flag == 'seed' else 'positive'}")
    built_for = dataset_for_model(host.catalog.entries["datasets"], args.model) if host is not None else None
    default = built_for.name if built_for is not None and built_for.corpus is not None else WIKIPEDIA
    return corpus_selection(args.corpus or default, max_tokens=args.max_tokens, samples=args.samples,
                            seed=args.seed, text_field=args.text_field)


def _collect(args: argparse.Namespace, dist: Any) -> int:
    import torch

    from editkit.keystats.statistics import DTYPES, KeyStatistics
    from editkit.keystats.store import StatsStore
    from editkit.layout import resolve_layout
    from editkit.modelsource.resolve import load_model, resolve_model
    from editkit.plugins import PluginHost

    if not args.model or not args.layers:
        raise UsageError("give --model and --layers (or --show alone to list the store)")
    layers = parse_layers(args.layers)
    StatsStore(root=_stats_dir(args)).check_writable("; give another with --stats-dir")  # exit 2 before any work
    host = PluginHost()
    corpus = _corpus(args, host)  # default: the corpus of the dataset built for --model
    corpus.check(host)  # unreadable / empty / missing text field: exit 2 before loading anything
    device = torch.device(args.device) if args.device else dist.device()
    if dist.active and device.type == "cuda" and device.index is None:
        device = dist.device()  # one GPU per rank
    source = resolve_model(args.model, catalog=host.catalog, progress=False if args.no_progress else None)
    model, tokenizer = load_model(source, device=str(device))
    model_id = args.model_id or source.location  # a registered name or .gguf: its converted directory, as in run
    layout = resolve_layout(model, host.catalog.entries["architectures"])
    sites = [layout.site(layer) for layer in layers]
    stats = KeyStatistics(
        model=model, tokenizer=tokenizer, layout=layout, corpus=corpus, stats_dir=_stats_dir(args),
        max_length=args.max_length, max_tokens=args.max_tokens, dtype=DTYPES[args.dtype],
        model_id=model_id, progress=not args.no_progress, batch_tokens=args.batch_tokens,
        checkpoint_seconds=args.checkpoint_every, host=host, distributed=dist,
        report=lambda line: print(line, file=sys.stderr),
    )
    stats.prepare(sites)
    if not dist.is_main:
        return 0
    rows = []
    for site in sites:
        stored = stats.stored(site)
        row: dict[str, Any] = {"layer": site.layer, "module": site.module, "tokens": stored.count,
                               "path": str(stored.path) if stored.path else None}
        if args.show:
            row["spectrum"] = stats.summary(site, args.threshold).to_json()
        rows.append(row)
    collected = stats.last_collection
    _print(rows, args, title=f"key statistics of {args.model_id or args.model} over {corpus.describe()}",
           note=None if collected is None else
           f"collected {collected.tokens:,} tokens from {collected.documents:,} documents"
           + (f" (resumed at document {collected.resumed_from:,})" if collected.resumed_from is not None else ""))
    return 0


def _local_model(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The identity of --model as `editkit run` computes it (its weights hashed), and its store name."""
    from editkit.keystats.identity import model_identity
    from editkit.modelsource.resolve import load_model, resolve_model
    from editkit.plugins import PluginHost

    host = PluginHost()
    source = resolve_model(args.model, catalog=host.catalog, progress=False if args.no_progress else None)
    model, tokenizer = load_model(source, device="cpu")
    model_id = args.model_id or source.location
    return model_identity(model, tokenizer, model_id), model_id


def _export(args: argparse.Namespace) -> int:
    from editkit.keystats import bundle
    from editkit.keystats.store import StatsStore

    if args.file is not None:
        raise UsageError("stats export takes no FILE: give the bundle to write with --out")
    if not args.model or not args.layers or args.out is None:
        raise UsageError("stats export needs --model, --layers and --out")
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give the bundle's file name")
    store = StatsStore(root=_stats_dir(args))
    if out.resolve().is_relative_to(store.root.resolve()):
        raise UsageError(f"--out {out} is inside the statistics store {store.root}; write the bundle elsewhere")
    layers = parse_layers(args.layers)
    model, _ = _local_model(args)
    chosen = bundle.select(store, model, layers)
    missing = sorted(set(layers) - {s.identity.get("layer") for s in chosen})
    if missing:
        raise UsageError(f"no key statistics of {args.model} stored in {store.root} for layer(s) "
                         f"{', '.join(map(str, missing))}; collect them first with `editkit stats --model "
                         f"{args.model} --layers {args.layers}`")
    size = bundle.export(store, chosen, out, with_eigh=not args.no_eigh)
    rows = [{"layer": s.identity.get("layer"), "module": s.identity.get("module"), "tokens": s.count,
             "path": str(s.path)} for s in chosen]
    _print(rows, args, title=f"exported to {out} ({size / 1e6:,.1f} MB)", note=None)
    return 0


def _import(args: argparse.Namespace) -> int:
    from editkit.keystats import bundle
    from editkit.keystats.store import StatsStore

    if args.file is None or not args.model:
        raise UsageError("stats import needs the bundle and --model: editkit stats import FILE --model M")
    if args.layers or args.out is not None:
        raise UsageError("stats import takes every layer of the bundle: give FILE and --model only")
    store = StatsStore(root=_stats_dir(args))
    store.check_writable("; give another with --stats-dir")
    entries = bundle.read(Path(args.file))  # checksum first: nothing is loaded for a damaged file
    model, _ = _local_model(args)
    bundle.check_model(Path(args.file), entries, model, f"--model {args.model}")
    written = bundle.import_entries(store, entries, model, Path(args.file),
                                    say=lambda line: print(line, file=sys.stderr))
    rows = [{"layer": s.identity.get("layer"), "module": s.identity.get("module"), "tokens": s.count,
             "path": str(s.path)} for s in written]
    _print(rows, args, title=f"imported {len(written)} layer(s) from {args.file} into {store.root}", note=None)
    return 0


def _adopt(args: argparse.Namespace) -> int:
    from editkit.keystats.store import StatsStore

    if args.file is not None or args.model or args.layers or args.out is not None:
        raise UsageError("stats adopt takes only --stats-dir: it adopts every older file in the store")
    store = StatsStore(root=_stats_dir(args))
    if not store.root.is_dir():
        raise UsageError(f"key statistics store {store.root} is not a directory; give another with --stats-dir")
    adopted, refused = store.adopt_older()
    for path, why in refused:
        print(f"not adopted: {path}: {why}", file=sys.stderr)
    for path in adopted:
        print(f"adopted {path}", file=sys.stderr)
    print(f"{len(adopted)} file(s) from an older editkit adopted in {store.root}"
          + (f"; {len(refused)} refused" if refused else ""))
    return 1 if refused else 0


def _show_store(args: argparse.Namespace) -> int:
    from editkit.keystats.spectrum import SpectrumSummary
    from editkit.keystats.statistics import cached_eigendecomposition
    from editkit.keystats.store import StatsStore

    store = StatsStore(root=_stats_dir(args))
    if store.root.exists() and not store.root.is_dir():
        raise UsageError(f"key statistics store {store.root} is not a directory; give another with --stats-dir")
    wanted = set(parse_layers(args.layers)) if args.layers else None
    rows = []
    for path in store.entries():
        stored = store.read(path)
        assert stored is not None  # no identity given: never a mismatch
        identity = stored.identity
        if wanted is not None and identity.get("layer") not in wanted:
            continue
        eigenvalues, _ = cached_eigendecomposition(stored, store)
        summary = SpectrumSummary.from_eigenvalues(eigenvalues, tokens=stored.count, threshold=args.threshold)
        rows.append({"model": identity["model"]["name"], "layer": identity.get("layer"), "module": identity["module"],
                     "tokens": stored.count, "dtype": identity.get("dtype"), "max_length": identity.get("max_length"),
                     "corpus": stored.info.get("corpus"), "path": str(path), "spectrum": summary.to_json()})
    if not rows:
        print(f"no key statistics stored under {store.root}", file=sys.stderr)
    _print(rows, args, title=f"key statistics in {store.root}", note=None)
    return 0


def _print(rows: list[dict[str, Any]], args: argparse.Namespace, *, title: str, note: str | None) -> None:
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    show = any("spectrum" in r for r in rows)
    for column in ("model", "layer", "module", "tokens"):
        if column != "model" or any("model" in r for r in rows):
            table.add_column(column, justify="right" if column in ("layer", "tokens") else "left")
    if show:
        for column in ("λ min", "λ median", "λ max", f"null space (λ < {args.threshold:g})"):
            table.add_column(column, justify="right")
    else:
        table.add_column("file")
    for r in rows:
        cells = ([r["model"]] if "model" in r else []) + [str(r["layer"]), r["module"], f"{r['tokens']:,}"]
        if show:
            s = r["spectrum"]
            cells += [f"{s['minimum']:.3g}", f"{s['median']:.3g}", f"{s['maximum']:.3g}",
                      f"{s['null_space']} / {s['d_in']}"]
        else:
            cells.append(r["path"] or "(memory)")
        table.add_row(*cells)
    console = Console()
    if not console.is_terminal:  # logs and pipes: don't truncate module names and paths
        console = Console(width=200)
    console.print(table)
    if note:
        console.print(note)
