"""Which layers' updates cost retention: two finished runs' deltas, applied layer by layer.

    python benchmarks/delta_attribution.py --model smollm2-135m --probes OUT/known_probes.json \
        --requests ../shared/data/real/counterfact_portability_gpt4.json OUT/cf/memit OUT/cf/memit+nullspace

Each run's ``deltas.safetensors`` holds ``W_final − W0`` per edited module. From the unedited weights this
applies, and scores retention (greedy recall of the probes, as the ``retention`` metric does, leaving out
the probes whose subject either run edited) for:

- each run's whole update (must match the runs' own final retention: a check);
- each run's update at one layer only;
- run A's update with one layer's update taken from run B instead (the swap that says which layers make
  the difference between the two).

A knowledge-loss attribution is not additive (the layers' changes compound through the stack); the
one-layer and swap rows bound it from the two sides. One model load; each configuration is one scoring
pass over the probes.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from editkit.api import continuation_scores
from editkit.modelsource.resolve import load_resolved, resolve_model
from editkit.updates import add_exactly


def layer_of(module: str) -> int:
    """``model.layers.7.mlp.down_proj`` → 7 (the first integer component of the module path)."""
    found = re.search(r"\.(\d+)\.", f".{module}.")
    if found is None:
        raise SystemExit(f"cannot tell the layer of module {module!r}")
    return int(found.group(1))


def edited_subjects(run: Path, records: dict[int, str]) -> set[str]:
    """The subjects a run edited, by case id (``result.json``'s requests) in the dataset file."""
    requests = json.loads((run / "result.json").read_text())["requests"]
    missing = [r["case_id"] for r in requests if r["case_id"] not in records]
    if missing:
        raise SystemExit(f"{run}: case ids {missing[:5]} are not in --requests")
    return {records[r["case_id"]] for r in requests}


def configurations(layers: list[int]) -> list[tuple[str, dict[int, str]]]:
    """The rows: (name, layer → run "A" or "B"); layers not named stay unedited."""
    rows = [("unedited", {}), ("A, all layers", dict.fromkeys(layers, "A")),
            ("B, all layers", dict.fromkeys(layers, "B"))]
    rows += [(f"A at layer {layer} only", {layer: "A"}) for layer in layers]
    rows += [(f"B at layer {layer} only", {layer: "B"}) for layer in layers]
    rows += [(f"A with layer {layer} from B", {**dict.fromkeys(layers, "A"), layer: "B"}) for layer in layers]
    rows += [(f"B with layer {layer} from A", {**dict.fromkeys(layers, "B"), layer: "A"}) for layer in layers]
    return rows


def attribution(model: torch.nn.Module, tokenizer: Any, probes: list[tuple[str, str]],
                runs: dict[str, dict[str, torch.Tensor]], *, batch_size: int = 32) -> Iterator[tuple[str, float]]:
    """Yield (row name, retention in %) per :func:`configurations` row. ``runs``: "A" and "B" → module →
    ``W_final − W0`` in the parameter's layout; ``probes``: (prompt, " object"). The model's weights are
    restored when the generator finishes or is closed."""
    if set(runs["A"]) != set(runs["B"]):
        raise SystemExit(f"the runs edited different modules: {sorted(runs['A'])} and {sorted(runs['B'])}")
    params = dict(model.named_parameters())
    by_layer = {layer_of(m): m for m in runs["A"]}
    if len(by_layer) != len(runs["A"]):
        raise SystemExit(f"more than one edited module per layer ({sorted(runs['A'])}): not supported")
    w0 = {m: params[m + ".weight"].detach().clone() for m in runs["A"]}

    def apply(choice: dict[int, str]) -> None:
        with torch.no_grad():
            for layer, module in by_layer.items():
                weight = params[module + ".weight"]
                weight.copy_(w0[module])
                if layer in choice:  # W0 + Δ rounded once, as the kernel writes an update
                    add_exactly(weight, runs[choice[layer]][module])

    try:
        for name, choice in configurations(sorted(by_layer)):
            apply(choice)
            with torch.no_grad():
                scores = continuation_scores(model, tokenizer, [p for p, _ in probes], [o for _, o in probes],
                                             batch_size=batch_size)
            yield name, 100.0 * sum(bool(hits.all()) for _, hits in scores) / len(scores)
    finally:
        apply({})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--model", required=True)
    parser.add_argument("--probes", type=Path, required=True, help="[subject, prompt, object] list "
                        "(benchmarks/known_probes.py)")
    parser.add_argument("--requests", type=Path, required=True, help="the CounterFact file both runs edited from")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    records = {int(r["case_id"]): r["requested_rewrite"]["subject"] for r in json.loads(args.requests.read_text())}
    edited = edited_subjects(args.run_a, records) | edited_subjects(args.run_b, records)
    every = json.loads(args.probes.read_text())
    probes = [(p, o if o.startswith(" ") else " " + o) for s, p, o in every if s not in edited]
    runs = {name: load_file(str(run / "deltas.safetensors")) for name, run in (("A", args.run_a), ("B", args.run_b))}
    model, tok = load_resolved(resolve_model(args.model))
    print(f"A = {args.run_a}, B = {args.run_b}; {len(probes)} probes ({len(every) - len(probes)} left out: their "
          f"subject was edited); layers {sorted(layer_of(m) for m in runs['A'])}")
    for name, value in attribution(model, tok, probes, runs, batch_size=args.batch_size):
        print(f"{name:<28} retention {value:6.2f}", flush=True)


if __name__ == "__main__":
    main()
