"""A finished run's measured peak memory next to editkit's memory formula for the same batch.

Reads a run directory (``result.json`` and its journal's requests), rebuilds the formula's inputs from the model's
config (no weights loaded), the run's layers, its null-space dimensions (the ``nullspace.dim`` notes), the batch's
requests and prefix templates (v*'s activations and the key prompts' tokens, as MEMIT forms them), and prints the
formula's stages (:func:`editkit.memory.run_memory`) beside the stage peaks the run recorded
(``batches[i].peak_memory_mib``). ``baseline`` (the process before the model) is taken as this process's resident
size once torch, transformers and editkit are imported, a proxy for the run's own.

    .venv/bin/python benchmarks/memory_of_run.py runs/qwen15b/memit [--posthoc] [--batch 0] [--json FILE]
        [--largest-group FILE]

Stage peaks recorded on a Linux CPU since per-stage peaks exist are each stage's own; older runs (and other
systems) recorded the process's peak so far, which only says something for a stage that raised it.
``--posthoc`` gives the formula of a run that kept every layer's solved update to the batch's end (post hoc
constraints, and every run before inline runs dropped them).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GIB = 2**30


def vstar_groups(tokenizer: Any, requests: Sequence[Any], templates: Sequence[str], *, upper_blocks: int,
                 d_model: int, d_mlp: int, vocab: int, element: int = 4) -> list[tuple[int, list[int]]]:
    """v*'s activations (:func:`editkit.memory.vstar_bytes`) for each group of ``requests`` that MEMIT's v*
    optimises together (requests grouped by suffix width), with its rows as MEMIT forms them: (bytes, indices)."""
    from editkit_memit.targets import _rows, suffix_groups

    from editkit.memory import vstar_bytes

    figures = []
    for group in suffix_groups(tokenizer, list(requests), templates):
        rows = _rows(tokenizer, [requests[i] for i in group], templates)
        figures.append((vstar_bytes(
            tokens=sum(r.width for r in rows if not r.is_kl) + sum(1 for r in rows if r.is_kl),
            upper_blocks=upper_blocks, d_model=d_model, d_mlp=d_mlp,
            target_tokens=sum(len(r.targets) for r in rows if not r.is_kl),
            kl_rows=sum(1 for r in rows if r.is_kl), vocab=vocab, element=element), list(group)))
    return figures


def vstar_memory(tokenizer: Any, requests: Sequence[Any], templates: Sequence[str], **shape: Any) -> int:
    """v*'s activations for the largest group of ``requests`` (see :func:`vstar_groups`)."""
    return max(size for size, _ in vstar_groups(tokenizer, requests, templates, **shape))


def vm(field: str) -> int:
    """A ``/proc/self/status`` figure in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a run directory (result.json, journal/manifest.json)")
    p.add_argument("--batch", type=int, default=0, help="which batch (default the first)")
    p.add_argument("--posthoc", action="store_true", help="every layer's solved update kept to the batch's end "
                   "(implied by a run whose constraints acted post hoc)")
    p.add_argument("--dtype", default="float32", help="the edited weights' dtype in the run (default float32)")
    p.add_argument("--json", type=Path, help="write the figures here too")
    p.add_argument("--largest-group", type=Path, metavar="FILE",
                   help="write the batch's records that v* optimises together in its largest group (the group "
                        "that sets the formula's v* term) as a requests file: a run of those alone has the "
                        "batch's v* stage without the groups before it")
    args = p.parse_args()

    import torch
    from editkit_memit.keys import KeyPrompts
    from transformers import AutoTokenizer

    from editkit.cli.inspect import _meta_model
    from editkit.layout import resolve_layout
    from editkit.memory import SiteShape, run_memory
    from editkit.requests import requests_from_records

    result_path, manifest_path = args.run / "result.json", args.run / "journal" / "manifest.json"
    for path in (result_path, manifest_path):
        if not path.is_file():
            sys.exit(f"memory_of_run: {path} not found (a finished run directory is needed)")
    result = json.loads(result_path.read_text())
    manifest = json.loads(manifest_path.read_text())
    run, batches = result["run"], result["batches"]
    if not 0 <= args.batch < len(batches):
        sys.exit(f"memory_of_run: batch {args.batch} not in the run's {len(batches)} batches")
    batch = batches[args.batch]
    start = sum(b["size"] for b in batches[: args.batch])
    requests = requests_from_records(manifest["requests"])[start: start + batch["size"]]
    templates = (result.get("state") or {}).get("prefix_templates") or ["{}"]

    baseline = vm("VmRSS")
    location = result["manifest"]["model"]["name"]  # the model's directory (converted models: in the cache)
    model = _meta_model(location)
    tokenizer = AutoTokenizer.from_pretrained(location)
    layout = resolve_layout(model)
    layers = [int(site["layer"]) for site in run["sites"]]
    sites = [layout.site(layer) for layer in layers]
    element = torch.empty(0, dtype=getattr(torch, args.dtype)).element_size()
    weights = sum(t.numel() for t in model.parameters()) * element
    config = model.config
    nulls = [batch["layers"].get(str(layer), {}).get("nullspace.dim") for layer in layers]
    shapes = [SiteShape(d_in=s.d_in, d_out=s.d_out, null=null) for s, null in zip(sites, nulls)]
    vstar, group = max(vstar_groups(tokenizer, requests, templates,
                                    upper_blocks=config.num_hidden_layers - 1 - max(layers), d_model=config.hidden_size,
                                    d_mlp=sites[0].d_in, vocab=config.vocab_size, element=element))
    if args.largest_group:
        from editkit.helpers.atomic import write_json_atomic

        write_json_atomic(args.largest_group, [manifest["requests"][start + i] for i in group])
    key_tokens = KeyPrompts.build(tokenizer, requests, templates, torch.device("cpu")).batch.input_ids.numel()
    estimate = run_memory(weights=weights, weight_element=element, sites=shapes, edits=len(requests),
                          background=run["editor"] == "memit" and not run["constraints"], vstar=vstar,
                          baseline=baseline, key_tokens=key_tokens, key_blocks=max(layers) - min(layers) + 1,
                          posthoc=args.posthoc or run.get("constrain_mode") == "posthoc")
    measured = {k: float(v) * 2**20 for k, v in batch["peak_memory_mib"].items()}

    solves = [v for k, v in estimate.stages.items() if k.startswith("solve")]
    # the formula's stages and the run's (runs before the commit had a stage of its own: not measured there)
    pairs = [("v*", "compute_targets", estimate.stages["v*"]),
             ("collect keys", "collect_keys", estimate.stages["collect keys"]),
             ("solve (largest layer)", "solve", max(solves)),
             ("commit Cp", "commit_cp", estimate.stages["commit Cp"])]
    print(f"{args.run}: batch {args.batch} of {len(batches)}, {len(requests)} edits, layers {layers}, "
          f"{run['editor']}{' + ' + ' + '.join(run['constraints']) if run['constraints'] else ''}; baseline "
          f"(this process after its imports) {baseline / GIB:.2f} GiB; v* activations {vstar / GIB:.2f} GiB; key "
          f"prompts {key_tokens} tokens")
    print(f"{'stage':>24} {'formula GiB':>12} {'measured GiB':>13} {'measured/formula':>17}")
    for name, stage, predicted in pairs:
        got = measured.get(stage)
        shown = f"{got / GIB:13.2f} {got / predicted:17.3f}" if got else f"{'-':>13} {'-':>17}"
        print(f"{name:>24} {predicted / GIB:12.2f} {shown}")
    # batch_begin is left out: in runs recorded before the peak was reset as a batch begins, it holds everything
    # before the batch (loading, statistics, the evaluation before editing)
    overall = max(v for k, v in measured.items() if k != "batch_begin")
    print(f"{'peak':>24} {estimate.peak / GIB:12.2f} {overall / GIB:13.2f} {overall / estimate.peak:17.3f}"
          f"   (formula's peak at {estimate.peak_stage}; measured: the batch's stages after batch_begin)")
    print("held at the batch's end (GiB): " + ", ".join(f"{k} {v / GIB:.2f}" for k, v in estimate.held.items() if v))
    if args.json:
        args.json.write_text(json.dumps({
            "run": str(args.run), "batch": args.batch, "posthoc": args.posthoc, "baseline_bytes": baseline,
            "vstar_bytes": vstar, "largest_group": group, "key_tokens": key_tokens, "null_dims": nulls,
            "formula_stages": estimate.stages,
            "formula_peak_bytes": estimate.peak, "formula_peak_stage": estimate.peak_stage, "held": estimate.held,
            "measured_stage_bytes": measured, "measured_peak_bytes": overall,
            "measured_over_formula": overall / estimate.peak,
            "pairs": [{"formula": name, "stage": stage, "formula_bytes": predicted,
                       "measured_bytes": measured.get(stage)} for name, stage, predicted in pairs]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
