"""``editkit run``: edit a model with an editor and constraints, write result.json and deltas."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from editkit.job.launch import DEFAULT_DATASET
from editkit.keystats.defaults import DEFAULT_MAX_TOKENS, token_budget

if TYPE_CHECKING:
    from editkit.job.runjob import RunJob


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
                        "(see `editkit plugins` and docs/cli.md)")
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


def job_from_argv(argv: Sequence[str]) -> RunJob:
    """The job of ``editkit run ARGV`` (the options alone, without ``run``), e.g. for a script that runs
    configurations given as options; bad options exit 2 with argparse's message, as the CLI does."""
    from editkit.job.runjob import RunJob

    parser = argparse.ArgumentParser(prog="editkit")
    add_parser(parser.add_subparsers())
    return RunJob.from_args(parser.parse_args(["run", *argv]))


def main(args: argparse.Namespace) -> int:
    from editkit.job.launch import run_job
    from editkit.job.runjob import RunJob

    job = RunJob.from_args(args)
    run_dir = job.resume or job.out or Path(".")
    try:
        result = run_job(job, host=getattr(args, "_plugin_host", None))  # the host the CLI's entry point built
    except KeyboardInterrupt as exc:
        raise RunInterrupted(resume_hint(run_dir)) from exc
    print_outcome(result, run_dir, report=job.report)
    return 0


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run, with what to do next (``hint``, printed by the CLI's entry point)."""

    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.hint = hint


def resume_hint(run_dir: Path) -> str:
    """What an interrupted run in ``run_dir`` leaves to do: the command that continues it where its journal
    holds a complete batch, else starting it again."""
    from editkit.job.journal import Journal

    quoted = shlex.quote(str(run_dir))
    if Journal(run_dir).has_complete_batch():
        return f"its journaled batches are kept; continue it with: editkit run --resume {quoted}"
    return (f"nothing was journaled in {quoted} (no batch was complete), so there is nothing to resume: start "
            f"the run again (`editkit run ... --out {quoted}` replaces what it left)")


def print_outcome(result: dict[str, Any], out_dir: Path, *, report: bool) -> None:
    """The completions and metrics tables, one summary line, and the report written (``--report``)."""
    from editkit.cli.completion_table import print_completions

    summary = result["summary"]
    print_completions(result.get("completions", []), summary["requests"])
    print_table(result)
    print(
        f"edited {summary['requests']} requests in {summary['batches']} batch(es), {summary['edit_seconds']:.1f} s; "
        f"edit success {summary['efficacy_pre']:.1%} -> {summary['efficacy_post']:.1%} (new target preferred "
        f"over the true one, or generated whole where there is none); wrote {out_dir}/result.json, "
        f"{out_dir}/deltas.safetensors and the journal {out_dir}/journal"
    )
    if report:
        print(f"wrote {out_dir / 'report.html'}")


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
