"""``editkit plugins``: installed plugins, their distributions, hooks and what they provide."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("plugins", help="list installed plugins", description="List installed editkit plugins.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def main(args: argparse.Namespace) -> int:
    from editkit.plugins import PluginHost

    host = PluginHost()
    infos = host.info()
    if args.json:
        print(json.dumps({
            "plugins": [i.to_json() for i in infos],
            "failed": [{"name": f.name, "entry_point": f.entry_point, "error": f.error, "phase": f.phase,
                        "distribution": f.distribution} for f in host.failures],
            "blocked": sorted(host.blocked),
        }, indent=2))
        return 0
    for info in infos:
        dist = f"{info.distribution} {info.version}" if info.distribution else "(registered in-process)"
        provides = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.provides.items()) or "-"
        print(f"{info.name}  [{dist}]  module {info.module}")
        print(f"    hooks: {', '.join(info.hooks) or '-'}")
        print(f"    provides: {provides}")
    for failure in host.failures:
        print(f"{failure.name}  FAILED: {failure.describe()}")
    if host.blocked:
        print(f"blocked by EDITKIT_DISABLE_PLUGINS: {', '.join(sorted(host.blocked))}")
    return 0
