"""Summarise `editkit run` outputs as the README's editors table (issue 21).

    python benchmarks/editors_table.py RUN_DIR [RUN_DIR ...]

One row per run directory (named after its configuration): Eff / Gen / Spe (the `counterfact` metric) and
retention after the run, the largest ‖Δ − ΔP‖/‖Δ‖ the null-space constraint measured on the written updates
(per batch and layer, `nullspace.invariant` in result.json) and whether it held everywhere, and the editing
seconds (the sum of the batches' own seconds, so a run finished with ``--resume`` counts its journaled
batches too). The first row is the unedited model (the first run's `pre` metrics).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def nullspace_figures(result: dict[str, Any]) -> str:
    values, held = [], True
    for batch in result["batches"]:
        for notes in batch["layers"].values():
            inv = notes.get("nullspace.invariant")
            if inv is not None:
                values.append(float(inv["value"]))
                held = held and bool(inv["holds"])
    if not values:
        return ""
    return f"max {max(values):.1e}, {'holds' if held else 'BROKEN'}"


def row(name: str, metrics: dict[str, Any], extra: list[str]) -> str:
    cells = [f"{metrics[k]:.1f}" if k in metrics else "-" for k in ("efficacy", "generalisation", "specificity",
                                                                      "retention")]
    return "| " + " | ".join([name, *cells, *extra]) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    results = [(d.name, json.loads((d / "result.json").read_text())) for d in args.runs if (d / "result.json").exists()]
    if not results:
        parser.error("no result.json under the given directories")
    print("| configuration | Eff | Gen | Spe | retention | ΔP = Δ (‖Δ − ΔP‖/‖Δ‖ written) | edit s |")
    print("|---|---|---|---|---|---|---|")
    print(row("unedited", results[0][1]["metrics"]["pre"], ["", "-"]))
    for name, result in results:
        print(row(name, result["metrics"]["post"], [nullspace_figures(result),
                                                    f"{sum(b['seconds'] for b in result['batches']):.0f}"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
