"""Summarise sequential `editkit run` outputs: one row per run, and the curves.

    python benchmarks/seq_table.py RUN_DIR [RUN_DIR ...] [--curve]

Per run directory (named after its configuration): edits, Eff / Gen / Spe (counterfact) or the ZsRE
metrics, fluency, retention, the general-capability scores present and perplexity after the run; the
unedited model first (the first run's ``pre`` metrics); then the editing seconds per edit (the batches'
own seconds, so a run finished with ``--resume`` counts its journaled batches), v*'s share of requests
whose loss ended below 0.7 and its median final loss (over batches), and for the null space the share of
C0's energy (trace) it holds and the norm ratio ‖PK1‖/‖K1‖ of the edit keys it keeps
(``nullspace.kept_key_energy``; means over batches and layers), and the largest ‖Δ − ΔP‖/‖Δ‖ it measured on
the written updates (``nullspace.invariant``) with whether ΔP = Δ held everywhere, and ‖W_n‖/‖W_0‖ per
edited layer after the last batch (``weight.growth``; in the curves after each evaluated batch).
``--curve`` adds each run's metrics after every evaluated batch (``--eval-every``). A run without a
``result.json`` (still running) is reported from its journal: its batches, its curve so far, and as its
metrics the last evaluated point, marked "running".
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

EDIT_METRICS = ("efficacy", "generalisation", "specificity", "fluency", "retention")
ZSRE_METRICS = ("zsre_efficacy", "zsre_generalisation", "zsre_specificity")
GENERAL_TASKS = ("sst2", "sentiment_analysis", "nli", "rte", "mrpc", "cola", "mmlu", "dialogue")


def _state(run: Path) -> dict[str, Any] | None:
    """A run's ``pre`` and ``post`` metrics, curve and batch reports: from ``result.json`` when finished,
    else from its journal (``post``: the last curve point, if any, marked ``running``); None without either."""
    result = run / "result.json"
    if result.exists():
        data = json.loads(result.read_text())
        return {"pre": data["metrics"]["pre"], "post": data["metrics"]["post"], "curve": data.get("curve", []),
                "batches": data["batches"], "running": False}
    manifest = run / "journal" / "manifest.json"
    if not manifest.exists():
        return None
    entries = [json.loads(p.read_text()) for p in sorted((run / "journal").glob("batch-*/entry.json"))]
    curve = [point for entry in entries for point in entry.get("curve", [])]
    return {"pre": json.loads(manifest.read_text()).get("pre_metrics") or {}, "post": curve[-1] if curve else {},
            "curve": curve, "batches": [entry.get("report", {}) for entry in entries], "running": True}


def _mean_note(batches: list[dict[str, Any]], key: str, last_only: bool = False) -> float | None:
    values = []
    for batch in batches:
        layers = batch.get("layers", {})
        items = list(layers.items())[-1:] if last_only else layers.items()
        values += [float(notes[key]) for _, notes in items if isinstance(notes.get(key), (int, float))]
    return statistics.fmean(values) if values else None


def _invariant(batches: list[dict[str, Any]]) -> str:
    """The largest ‖Δ − ΔP‖/‖Δ‖ the null-space constraint measured on the written updates (per batch and
    layer, ``nullspace.invariant``) and whether it held everywhere; "-" without the constraint."""
    values, held = [], True
    for batch in batches:
        for notes in batch.get("layers", {}).values():
            inv = notes.get("nullspace.invariant")
            if isinstance(inv, dict):
                values.append(float(inv["value"]))
                held = held and bool(inv["holds"])
    if not values:
        return "-"
    return f"max {max(values):.1e}, {'holds' if held else 'BROKEN'}"


def _growth(batch: dict[str, Any] | None) -> str:
    """‖W_n‖/‖W_0‖ per edited layer after ``batch`` (the kernel's ``weight.growth`` note), as ``layer:ratio``."""
    layers = (batch or {}).get("layers", {})
    cells = [f"{layer}:{notes['weight.growth']:.3f}" for layer, notes in layers.items()
             if isinstance(notes.get("weight.growth"), (int, float))]
    return " ".join(cells) or "-"


def _fmt(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _metric_columns(metrics: dict[str, Any]) -> list[str]:
    edit = ZSRE_METRICS if any(k in metrics for k in ZSRE_METRICS) else EDIT_METRICS
    keys = [k for k in edit if k in metrics] + ([] if "retention" in edit else ["retention"])
    general = [k for task in GENERAL_TASKS for k in sorted(metrics) if k.startswith(f"general_{task}_")]
    return list(dict.fromkeys(keys + general + (["perplexity"] if "perplexity" in metrics else [])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--curve", action="store_true", help="also print each run's metrics per evaluated batch")
    args = parser.parse_args()
    args.runs = [run for run in args.runs if run.is_dir()]  # a shell glob also matches the runs' log files
    states = {run: state for run in args.runs if (state := _state(run)) is not None}
    if not states:
        print("no run (result.json or journal) among the given directories")
        return 1
    first = next((st for st in states.values() if st["pre"]), next(iter(states.values())))
    columns = _metric_columns(first["pre"])
    extra = ["edits", "s/edit", "v* <0.7", "v* loss", "null-space share of tr C0", "‖PK1‖/‖K1‖",
             "ΔP = Δ (‖Δ − ΔP‖/‖Δ‖ written)", "‖W_n‖/‖W_0‖ per layer"]
    print("| run | " + " | ".join(columns + extra) + " |")
    print("|---|" + "---:|" * (len(columns) + len(extra)))
    print("| unedited | " + " | ".join(_fmt(first["pre"].get(c)) for c in columns) + " |" + " |" * len(extra))
    for run, state in states.items():
        batches, post = state["batches"], state["post"]
        edits = sum(int(b.get("size", 0)) for b in batches)
        seconds = sum(float(b.get("seconds", 0.0)) for b in batches)
        share = _mean_note(batches, "vstar.share_below_0.7", last_only=True)
        loss = _mean_note(batches, "vstar.median_final_loss", last_only=True)
        energy = _mean_note(batches, "nullspace.energy_share")
        kept = _mean_note(batches, "nullspace.kept_key_energy")
        name = run.name
        if state["running"]:
            name += f" (running; metrics at {post['edits']} edits)" if post else " (running)"
        cells = [_fmt(post.get(c)) for c in columns]
        cells += [str(edits), _fmt(seconds / edits if edits else None, 2), _fmt(None if share is None else 100 * share),
                  _fmt(loss, 2), _fmt(energy, 4), _fmt(kept, 3), _invariant(batches),
                  _growth(batches[-1] if batches else None)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.curve:
        for run, state in states.items():
            print(f"\n{run.name}: metrics after each evaluated batch")
            by_batch = {i + 1: b for i, b in enumerate(state["batches"])}
            for point in [{"edits": 0, **state["pre"]}, *state["curve"]]:
                growth = _growth(by_batch.get(point["batches"])) if "batches" in point else "-"
                print(f"  {point.get('edits', '?'):>5} edits: " + ", ".join(
                    f"{c} {_fmt(point.get(c))}" for c in columns if c in point) + f"; ‖W_n‖/‖W_0‖ {growth}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
