"""``editkit models``: the models plugins registered by name, installed or not, and where they come from."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("models", help="list the models registered by name (--model NAME)",
                       description="List the models that plugins registered by name: installed or not, size, "
                                   "licence, where the file comes from and how to install it.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def main(args: argparse.Namespace) -> int:
    from editkit.plugins import PluginHost

    host = PluginHost()
    for failure in host.failures:
        print(f"warning: plugin {failure.name} failed to load: {failure.error}", file=sys.stderr)
    specs = [host.catalog.entries["models"][name] for name in host.catalog.names("models")]
    rows = [{**spec.to_json(), "plugin": host.catalog.providers[("models", spec.name)]} for spec in specs]
    if args.json:
        print(json.dumps({"models": rows}, indent=2))
        return 0
    if not rows:
        print("no models registered (a plugin registers them with editkit_register_models)")
        return 0
    for row in rows:
        state = "installed" if row["installed"] else "not installed"
        print(f"{row['name']}  [{state}]  {row['size_bytes'] / 1e6:.0f} MB  licence: {row['licence']}")
        print(f"    {row['summary']}")
        print(f"    from: {row['source']}")
        if row["settings"]:
            print("    calibrated defaults: " + " ".join(f"{k}={v}" for k, v in sorted(row["settings"].items())))
        if not row["installed"]:
            print(f"    install: {row['install']}")
    print("use one with --model NAME (converted once into the editkit cache on first use)")
    return 0
