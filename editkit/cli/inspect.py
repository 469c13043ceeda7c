"""``editkit inspect``: what editkit resolved in a model (edit sites, shapes), and with
``--plan`` the peak memory one batch will need (:func:`editkit.memory.run_memory`), from the config alone."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("inspect", help="show the edit sites resolved in a model",
                       description="Resolve a model's edit sites (MLP output projections) and print them. "
                                   "With --plan, load only the config and print the memory plan.")
    p.add_argument("--model", required=True, help="registered model name (see `editkit models`), save_pretrained "
                   "directory, .gguf file or hub name")
    p.add_argument("--plan", action="store_true",
                   help="the peak memory of one batch by the documented formula (weights, C0, eigenvectors, bases, "
                        "Cp, solve) for MEMIT and AlphaEdit, and the journal's size, without loading weights")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="the weights' dtype for --plan (default float32)")
    p.add_argument("--layers", help="edited layers for --plan (default: the editor's choice)")
    p.add_argument("--editor", default="memit", help="editor whose sites --plan sizes (default memit)")
    p.add_argument("--batch-size", type=int, default=100, help="requests per batch for --plan (default 100)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _meta_model(name: str) -> Any:
    """A weightless model from the config alone (of a .gguf file: from its header, without converting it)."""
    from pathlib import Path

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from editkit.errors import InputError

    path = Path(name)
    try:
        if path.is_file():
            config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
            if hasattr(config, "quantization_config"):
                del config.quantization_config
        else:
            config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load the config of {name!r}: {str(exc).splitlines()[0]}") from None
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def plan(model: Any, layout: Any, layers: tuple[int, ...], batch_size: int, weight_dtype: str = "float32",
         null_share: float | None = None, posthoc: bool = False) -> dict[str, Any]:
    """The memory formula (:func:`editkit.memory.run_memory`) for one batch of ``batch_size`` edits at ``layers``:
    MEMIT, and MEMIT + the null-space constraint with a null space of ``null_share`` of each layer, or by default
    the worst case: a null space just over half of each layer (its complement, one column short of half, is stored
    and solved in a ``d_in²`` matrix; at exactly half the smaller ``m × m`` system is solved). ``posthoc``: the
    editor's constraints act post hoc (every layer's solved update is kept until they do)."""
    import torch

    from editkit.memory import SiteShape, run_memory

    element = torch.empty(0, dtype=getattr(torch, weight_dtype)).element_size()
    weights = sum(p.numel() for p in model.parameters()) * element
    sites = [layout.site(layer) for layer in layers]
    d_in, d_out = sites[0].d_in, sites[0].d_out

    def estimate(null: int | None) -> Any:
        shapes = [SiteShape(d_in=s.d_in, d_out=s.d_out, null=null) for s in sites]
        return run_memory(weights=weights, weight_element=element, sites=shapes, edits=batch_size,
                          background=null is None, posthoc=posthoc)

    candidates = ([round(null_share * d_in)] if null_share is not None
                  else sorted({min(d_in // 2 + i, min(s.d_in for s in sites)) for i in (0, 1)}))
    null = max(candidates, key=lambda n: estimate(n).peak)
    estimates = {}
    for name, e in (("memit", estimate(None)), ("memit+nullspace", estimate(null))):
        estimates[name] = {"peak_bytes": e.peak, "peak_stage": e.peak_stage, "held": e.held}
    journal_batch = len(sites) * d_in * d_out * 8 + len(sites) * d_in * batch_size * 8
    return {
        "layers": list(layers),
        "d_in": d_in,
        "d_out": d_out,
        "weight_dtype": weight_dtype,
        "null_share": null_share,
        "null_dim": null,
        "posthoc": posthoc,
        "estimates": estimates,
        "journal_bytes_per_batch": journal_batch,
        "edited_weights_bytes": len(sites) * d_in * d_out * element,
    }


def main(args: argparse.Namespace) -> int:
    from editkit.config import parse_layers
    from editkit.layout import resolve_layout
    from editkit.modelsource.resolve import load_model, resolve_model
    from editkit.plugins import PluginHost

    layers = parse_layers(args.layers) if args.layers is not None else None
    host = PluginHost()
    source = resolve_model(args.model, catalog=host.catalog, config_only=args.plan)
    model = _meta_model(source.location) if args.plan else load_model(source)[0]
    layout = resolve_layout(model, host.catalog.entries["architectures"])
    info = layout.to_json()
    info["site_shape_storage"] = list(layout.site(0).storage_shape)
    if args.plan:
        from editkit.config import RunConfig
        from editkit.run import EditRun

        # the editor's own locate stage picks the sites, on a weightless (meta) model
        run = EditRun(model=model, tokenizer=None, host=host, config=RunConfig(editor=args.editor, layers=layers))
        info["plan"] = plan(model, layout, tuple(s.layer for s in run.sites), args.batch_size, args.dtype,
                            posthoc=run.constrain_mode == "posthoc")
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        if key != "plan":
            print(f"{key:>22}: {value}")
    if args.plan:
        p = info["plan"]
        gib = 2**30
        print(f"\nmemory plan for one batch of {args.batch_size} edits at layers {p['layers']} (d_in {p['d_in']}, "
              f"d_out {p['d_out']}, weights in {p['weight_dtype']}; the formula: docs/memory.md; v*'s and the key "
              "prompts' activations, which depend on the prompts, come on top):")
        for name, estimate in p["estimates"].items():
            note = (f" (null space of {p['null_dim']} of {p['d_in']} per layer: the worst case)"
                    if name != "memit" else "")
            print(f"  {name}{note}: peak {estimate['peak_bytes'] / gib:.2f} GiB at {estimate['peak_stage']}")
            for term, size in estimate["held"].items():
                if size:
                    print(f"{term:>30}: {size / gib:8.3f} GiB")
        print(f"{'journal per batch':>30}: {p['journal_bytes_per_batch'] / gib:8.3f} GiB")
    return 0
