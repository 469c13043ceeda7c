"""``editkit apply | revert | export``: journaled edits as artifacts (shared options live here)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registered model name (see `editkit models`), save_pretrained "
                   "directory, .gguf file or hub name")
    p.add_argument("--edits", required=True, type=Path, help="run directory holding a journal")
    p.add_argument("--out", required=True, type=Path, help="where to write the resulting model (save_pretrained)")
    p.add_argument("--force", action="store_true", help="skip the model identity check (for the brave)")


def partial(p: argparse.ArgumentParser) -> None:
    p.add_argument("--upto", type=int, metavar="K", help="apply batches 0..K-1 only (default: every batch of a "
                   "complete run)")
    p.add_argument("--allow-partial", action="store_true",
                   help="apply every complete batch of an incomplete (interrupted) run instead of refusing it")


def add_apply(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("apply", help="apply journaled edits to a base model",
                       description="Load a base model, apply the first K journaled batches, save it.")
    common(p)
    partial(p)
    return p


def add_revert(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("revert", help="undo the last K journaled batches of an edited model",
                       description="Load an edited model (all journaled batches applied), undo the last K "
                                   "batches bit-exactly, save it.")
    common(p)
    p.add_argument("--last", type=int, default=1, help="how many batches to undo (default 1)")
    return p


def add_export(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="write base model + all journaled edits as a save_pretrained model",
                       description="Load a base model, apply every journaled batch, write it with save_pretrained.")
    common(p)
    partial(p)
    return p


def register(sub: Any) -> None:
    for action, add in (("apply", add_apply), ("revert", add_revert), ("export", add_export)):
        add(sub).set_defaults(_main=lambda args, action=action: run(args, action))


def run(args: argparse.Namespace, action: str) -> int:
    from editkit.job.artifacts import (
        apply_selected,
        check_output,
        export_model,
        revert_selected,
        select_batches,
        select_revert,
    )
    from editkit.job.outputs import check_new_directory
    from editkit.modelsource.resolve import load_model

    # every check that needs no model first: the output location (never the input model or the run's own
    # files), the journal, the batches to use
    check_output(args.out, args.edits, args.model)
    check_new_directory(args.out, "--out")
    if action == "revert":
        selection = select_revert(args.edits, last=args.last)
    else:
        selection = select_batches(args.edits, upto=args.upto, allow_partial=args.allow_partial)
    model, tokenizer = load_model(args.model)
    if action == "revert":
        n = revert_selected(model, selection, force=args.force)
        what = f"reverted the last {n} batch(es)"
    else:
        n = apply_selected(model, selection, force=args.force)
        what = f"applied {n} of the run's {selection.planned or len(selection.entries)} batch(es)"
    export_model(model, tokenizer, args.out)
    print(f"{what} of {args.edits}; wrote {args.out}")
    return 0
