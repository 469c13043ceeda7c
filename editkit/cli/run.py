"""``editkit run``: edit a model with an editor and constraints, write result.json and deltas."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from editkit.keystats.defaults import DEFAULT_MAX_TOKENS, token_budget

DEFAULT_DATASET = "smollm2-facts"  # SmolLM2-135M and well-known facts it gets right (plugins/editkit_facts)
DEFAULT_DATASET_EDITS = 300  # sequential edits on a dataset when --num-edits is not given


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "run",
        help="edit facts in a model",
        description=f"Edit facts in a model. With no --model/--requests/--dataset, edits the {DEFAULT_DATASET!r} "
                    "dataset's facts in its model.",
    )
    p.add_argument("--model", help="registered model name (see `editkit models`), save_pretrained directory, .gguf "
                   "file or hub name (default: the dataset's model)")
    p.add_argument("--requests", type=Path, help="JSON list of CounterFact-style records")
    p.add_argument("--dataset", metavar="NAME_OR_PATH",
                   help="registered dataset name, or a local dataset file (default when no --requests: the dataset "
                        f"built for --model, else {DEFAULT_DATASET!r}; --dataset demo: the built-in demo world)")
    p.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option for the dataset loader, e.g. target=alt for zsre")
    p.add_argument("--num-edits", type=int, help="use only the first N requests (after --offset)")
    p.add_argument("--offset", type=int, default=0, help="skip the first N requests")
    p.add_argument("--shuffle", action="store_true", help="shuffle the cases with --seed before --offset/--num-edits")
    p.add_argument("--skip-invalid", action="store_true",
                   help="skip bad records (counted in result.json, one warning) instead of stopping with exit 2")
    p.add_argument("--editor", default="memit", help="editor name (see `editkit plugins`)")
    p.add_argument("--constraint", action="append", default=[], dest="constraints",
                   help="constraint name; repeatable, applied in the order given")
    p.add_argument("--layers", help="edited layers, e.g. 1,2 or 13-17 (default: the editor's choice)")
    p.add_argument("--batch-size", type=int, default=100, help="requests per batch (default 100)")
    p.add_argument("--seed", type=int, default=0, help="the one seed of the run (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--preset", help="editor hyperparameter preset, e.g. gpt2-xl, gpt-j, llama3-8b")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="hyperparameter override, e.g. --set v_lr=0.5 --set nullspace.l2=10")
    p.add_argument("--constrain-mode", choices=("inline", "posthoc"), default=None,
                   help="where delta-transforming constraints act (default: the editor's, else inline)")
    p.add_argument("--stats-dir", type=Path, help="key statistics store (C0), shared with editkit stats: reused when "
                   "stored, else computed and stored there (default $EDITKIT_STATS_DIR, else $EDITKIT_CACHE/stats)")
    p.add_argument("--no-stats-store", action="store_true",
                   help="compute key statistics in memory: neither read nor write a statistics store")
    p.add_argument("--corpus", help="text corpus for key statistics: FILE.txt, FILE.jsonl[:field], "
                   "hf:NAME[:CONFIG[:SPLIT]], or a registered dataset name (default: the corpus of the dataset built "
                   "for the model, else the dataset's own)")
    p.add_argument("--stats-max-tokens", type=token_budget, default=DEFAULT_MAX_TOKENS, metavar="N|all",
                   help=f"tokens of corpus for C0, at least (stored statistics of more tokens are reused; default "
                        f"{DEFAULT_MAX_TOKENS}, as editkit stats)")
    p.add_argument("--stats-max-length", type=int, help="max tokens per corpus text (default: the model's context)")
    p.add_argument("--metrics", help="comma list of metrics (default: counterfact,fluency,retention for datasets, "
                   "counterfact for --requests; 'none' for no evaluation); see `editkit plugins`")
    p.add_argument("--retention-probes", type=Path, metavar="FILE",
                   help="JSON list of [subject, prompt, object] facts for the retention metric (probes whose "
                        "subject is edited are left out; default: the dataset's own, if any)")
    p.add_argument("--generation-records", type=int, metavar="N",
                   help="fluency/consistency on the generation prompts of the first N edited records (0: all; "
                        "default: all, or the dataset's own choice — the demo world uses 100)")
    p.add_argument("--metric-option", action="append", default=[], dest="metric_options", metavar="METRIC.KEY=VALUE",
                   help="option of a metric, e.g. general.limit=100, general.data=DIR, perplexity.data=FILE "
                        "(see `editkit plugins` and the README)")
    p.add_argument("--completions", type=int, metavar="N",
                   help="print (and record) the greedy completions before and after editing of the rewrite prompt, "
                        "a paraphrase and a neighbour of the first N edits (default: the dataset's choice, else 0)")
    p.add_argument("--eval-every", type=int, default=0, metavar="K",
                   help="also evaluate the requests edited so far every K batches (a curve in result.json)")
    p.add_argument("--out", type=Path, help="output directory (default runs/run-<date>-<time>)")
    p.add_argument("--report", action="store_true", help="also write OUT/report.html (see `editkit report`)")
    p.add_argument("--resume", type=Path, metavar="DIR",
                   help="continue the interrupted run in DIR from its last complete batch (other options are "
                        "taken from DIR's journal)")
    p.add_argument("--quiet", action="store_true", help="no progress output (default: bars on a terminal, plain "
                   "lines otherwise)")
    return p


def main(args: argparse.Namespace) -> int:
    import attrs

    from editkit.cli.completions import print_completions, shown_completions
    from editkit.config import RunConfig, parse_layers
    from editkit.context import screen_requests
    from editkit.datasetdefaults import default_dataset_name, run_defaults
    from editkit.devices import check_device
    from editkit.errors import InputError, UsageError
    from editkit.hparams import parse_assignments
    from editkit.journal import Journal
    from editkit.metricoptions import EXTRAS_KEY as METRIC_OPTIONS
    from editkit.metricoptions import build_metric_options, parse_metric_options
    from editkit.models import load_model, resolve_model
    from editkit.outputs import check_output_dir, check_run_directory
    from editkit.pipeline import execute
    from editkit.plugins import PluginHost
    from editkit.progress import model_loading, progress_display
    from editkit.requests import parse_records, read_json_records, requests_from_records

    host = PluginHost()  # plugin failures were reported by the CLI's entry point

    if args.resume is not None:
        check_run_directory(args.resume, "--resume")
        manifest = Journal(args.resume).check_resumable(args.resume)
        invocation = manifest["invocation"]
        saved = manifest["config"]
        config = RunConfig(**{**saved, "constraints": tuple(saved["constraints"]),
                              "layers": tuple(saved["layers"]) if saved["layers"] is not None else None,
                              "overrides": saved["overrides"].items(),
                              "defaults": saved.get("defaults", {}).items()})
        requests = requests_from_records(manifest["requests"], source=f"{args.resume}/journal/manifest.json")
        out_dir = Path(args.resume)
        check_device(config.device)  # the journal's device may not exist on this machine
    else:
        if args.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
        layers = parse_layers(args.layers) if args.layers is not None else None
        check_device(args.device)
        config = RunConfig(
            editor=args.editor, constraints=tuple(args.constraints), layers=layers, batch_size=args.batch_size,
            seed=args.seed, device=args.device, preset=args.preset,
            overrides=parse_assignments(args.overrides).items(), constrain_mode=args.constrain_mode,
        )
        invocation = {
            "dataset": None if args.requests is not None else (
                args.dataset or default_dataset_name(host.catalog.entries["datasets"], args.model, DEFAULT_DATASET)),
            "model": args.model,
            "corpus": args.corpus,
            "stats_dir": stats_store_dir(args),
            "stats_max_length": args.stats_max_length,
            "stats_max_tokens": args.stats_max_tokens,
            "metrics": args.metrics,
            "eval_every": args.eval_every,
            "generation_records": args.generation_records,
            "metric_options": list(args.metric_options),
            "completions": args.completions,
            "retention_probes": str(args.retention_probes) if args.retention_probes else None,
            "skip_invalid": args.skip_invalid,
        }
        requests = None
        out_dir = check_output_dir(args.out or Path("runs") / time.strftime("run-%Y%m%d-%H%M%S"))
        Journal(out_dir).check_new_run(out_dir)  # before any work (a journal without a complete batch is replaced)

    dataset = None
    dataset_file = None
    if invocation["dataset"] is not None:
        if Path(invocation["dataset"]).is_file():
            dataset_file = invocation["dataset"]
            dataset = next((d for name, d in sorted(host.catalog.entries["datasets"].items())
                            if d.load is not None and d.model is None and d.model_name is None), None)
            if dataset is None:
                raise UsageError("no installed dataset plugin reads dataset files")
        else:
            dataset = host.catalog.get("datasets", invocation["dataset"])
        if dataset.load is None:
            raise UsageError(f"dataset {dataset.name!r} provides no edit requests")
    # validate names before any heavy work
    host.catalog.get("editors", config.editor)
    for name in config.constraints:
        host.catalog.get("constraints", name)
    metrics = invocation["metrics"]
    if metrics is None:
        metric_names = ["counterfact", "fluency", "retention"] if dataset is not None else ["counterfact"]
    elif metrics.strip().lower() == "none":
        metric_names = []
    else:
        metric_names = [m.strip() for m in metrics.split(",") if m.strip()]
    for name in metric_names:
        host.catalog.get("metrics", name)
    metric_options = parse_metric_options(invocation.get("metric_options") or [], host.catalog.entries["metrics"],
                                          metric_names)
    if invocation["eval_every"] < 0:
        raise UsageError("--eval-every must be >= 0")
    if (invocation.get("generation_records") or 0) < 0:
        raise UsageError("--generation-records must be >= 0")
    if (invocation.get("completions") or 0) < 0:
        raise UsageError("--completions must be >= 0")

    skipped: list[str] = []
    if requests is None:
        if args.requests is not None:
            records = read_json_records(args.requests)
            source = str(args.requests)
        else:
            options = parse_assignments(args.dataset_option)
            records = dataset.load(source=dataset_file, **options) if dataset_file else dataset.load(**options)
            source = dataset_file or f"dataset {dataset.name}"
        requests, skipped = parse_records(records)
        if skipped and not args.skip_invalid:
            shown = "\n  ".join(skipped[:50])
            more = f"\n  ... and {len(skipped) - 50} more" if len(skipped) > 50 else ""
            raise InputError(f"{source}: {len(skipped)} bad record(s) (--skip-invalid skips them):\n  {shown}{more}")
        if skipped:
            warnings.warn(f"{source}: skipped {len(skipped)} bad record(s); they are listed in result.json",
                          stacklevel=1)
        if args.offset < 0 or (args.num_edits is not None and args.num_edits < 1):
            raise UsageError("--offset must be >= 0 and --num-edits >= 1")
        if args.shuffle:
            order = torch_free_permutation(len(requests), config.seed)
            requests = [requests[i] for i in order]
        requests = requests[args.offset :]
        if args.num_edits is not None:
            requests = requests[: args.num_edits]
        elif dataset is not None and args.requests is None:
            requests = requests[:DEFAULT_DATASET_EDITS]
        if not requests:
            raise InputError("no requests left after --offset/--num-edits")

    defaults = run_defaults(host.catalog.entries["datasets"], dataset, model=invocation["model"],
                            corpus=invocation["corpus"])
    model_id = invocation["model"] = defaults.model
    if args.resume is None:  # a resumed run keeps its journaled config
        config = attrs.evolve(config, defaults=defaults.settings)  # calibrated for this model
    corpus = defaults.corpus
    if corpus is not None:
        from editkit.keystats import CorpusSpec

        CorpusSpec.parse(corpus).identity(host)  # a missing corpus file or package: exit 2 before loading anything
        if invocation["stats_dir"] is not None:
            from editkit.keystats.store import StatsStore

            StatsStore(root=invocation["stats_dir"]).check_writable(  # a file, a read-only folder: exit 2 before work
                "; give another with --stats-dir, or --no-stats-store to keep statistics in memory")
    model_source = resolve_model(model_id, catalog=host.catalog, progress=not args.quiet and sys.stderr.isatty())
    model_id = model_source.location  # a registered name or .gguf: its converted directory, the weights' identity
    with model_loading(model_id, enabled=not args.quiet):
        model, tokenizer = load_model(model_source, device=config.device)
    if args.resume is None:  # now that the tokenizer and the model's context length are known
        requests, skipped = screen_requests(requests, records, skipped, tokenizer, model, source=source,
                                            skip_invalid=args.skip_invalid)
    extras = dict(dataset.extras()) if dataset is not None and dataset.extras is not None else {}
    if invocation.get("generation_records") is not None:
        extras["generation_records"] = invocation["generation_records"]
    if invocation.get("retention_probes"):
        extras["fact_probes"] = read_retention_probes(Path(invocation["retention_probes"]))
    if metric_options:
        extras[METRIC_OPTIONS] = build_metric_options(metric_options, host.catalog.entries["metrics"])

    show = not args.quiet  # bars on a terminal, plain lines otherwise (editkit.progress)
    with progress_display(enabled=show) as progress:
        key_statistics = None
        if corpus is not None:
            from editkit.keystats import KeyStatistics
            from editkit.keystats.defaults import corpus_selection
            from editkit.layout import resolve_layout

            key_statistics = KeyStatistics(
                model=model, tokenizer=tokenizer,
                layout=resolve_layout(model, host.catalog.entries["architectures"]),
                corpus=corpus_selection(corpus, max_tokens=invocation["stats_max_tokens"]),
                stats_dir=invocation["stats_dir"], max_length=invocation["stats_max_length"],
                max_tokens=invocation["stats_max_tokens"], model_id=model_id, progress=show,
                report=lambda line: print(line, file=sys.stderr),
            )
        result = execute(
            model=model, tokenizer=tokenizer, requests=requests, config=config, out_dir=out_dir,
            model_id=model_id, key_statistics=key_statistics, progress=progress,
            metrics=metric_names, eval_extras=extras, eval_every=invocation["eval_every"],
            invocation=invocation, resume=args.resume is not None,
            completions=shown_completions(invocation.get("completions"), extras),
            extra_manifest={"skipped_records": skipped} if skipped else None,
        )
    print_completions(result.get("completions", []), len(requests))
    print_table(result)
    summary = result["summary"]
    print(
        f"edited {summary['requests']} requests in {summary['batches']} batch(es), {summary['edit_seconds']:.1f} s; "
        f"efficacy {summary['efficacy_pre']:.3f} -> {summary['efficacy_post']:.3f}; wrote {out_dir}/result.json, "
        f"{out_dir}/deltas.safetensors and the journal {out_dir}/journal"
    )
    if args.report:
        from editkit.cli.report import report_run

        report_run(out_dir)
    return 0


def stats_store_dir(args: argparse.Namespace) -> str | None:
    """The statistics store of a new run: --stats-dir, else the default one editkit stats writes; None: in memory."""
    from editkit.errors import UsageError
    from editkit.keystats.defaults import default_stats_dir

    if args.no_stats_store and args.stats_dir is not None:
        raise UsageError("--no-stats-store and --stats-dir contradict each other: give one")
    if args.no_stats_store:
        return None
    return str(args.stats_dir if args.stats_dir is not None else default_stats_dir())


def read_retention_probes(path: Path) -> list[tuple[str, str, str]]:
    """``[subject, prompt, object]`` triples from a JSON file; a bad entry stops the run (exit 2) naming it."""
    from editkit.errors import InputError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"--retention-probes {path}: cannot read a JSON list ({error})") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"--retention-probes {path}: expected a non-empty JSON list of [subject, prompt, object]")
    bad = [i for i, p in enumerate(data)
           if not (isinstance(p, list) and len(p) == 3 and all(isinstance(x, str) for x in p) and p[1] and p[2])]
    if bad:
        raise InputError(f"--retention-probes {path}: entries {bad[:20]}{' ...' if len(bad) > 20 else ''} are not "
                         "[subject, prompt, object] with a non-empty prompt and object")
    return [(s, p, o) for s, p, o in data]


def print_table(result: dict[str, Any]) -> None:
    """A compact pre/post table of the metrics on stdout."""
    from rich.console import Console
    from rich.table import Table

    pre, post = result["metrics"]["pre"], result["metrics"]["post"]
    if not post:
        return
    table = Table(title=f"{result['run']['editor']} + {', '.join(result['run']['constraints']) or 'no constraint'}: "
                  f"{result['summary']['requests']} edits")
    table.add_column("metric")
    table.add_column("pre", justify="right")
    table.add_column("post", justify="right")
    for key in post:
        table.add_row(key, f"{pre.get(key, float('nan')):.2f}", f"{post[key]:.2f}")
    Console().print(table)


def torch_free_permutation(n: int, seed: int) -> list[int]:
    """A permutation of ``range(n)`` determined by the run's seed."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order
