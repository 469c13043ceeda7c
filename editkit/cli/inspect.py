"""``editkit inspect``: what editkit resolved in a model (edit sites, shapes)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("inspect", help="show the edit sites resolved in a model",
                       description="Resolve a model's edit sites (MLP output projections) and print them.")
    p.add_argument("--model", required=True, help="local save_pretrained directory or hub name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def main(args: argparse.Namespace) -> int:
    from editkit.layout import resolve_layout
    from editkit.models import load_model
    from editkit.plugins import PluginHost

    model, _ = load_model(args.model)
    layout = resolve_layout(model, PluginHost().catalog.entries["architectures"])
    info = layout.to_json()
    site = layout.site(0)
    info["site_shape_storage"] = list(site.storage_shape)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>22}: {value}")
    return 0
