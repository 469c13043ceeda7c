"""Synthetic ``result.json`` documents in :mod:`editkit.job.pipeline`'s layout, for tests of tools that read
finished runs (``editkit report``) without running an edit. Values follow simple formulas, no randomness."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["synthetic_result", "write_run"]

STAGES = ("collect_keys", "compute_residual", "solve", "apply", "constraints", "update_cp", "batch_end")


def synthetic_result(
    *,
    editor: str = "memit",
    constraints: Sequence[str] = (),
    layers: Sequence[int] = (4, 5),
    batches: int = 3,
    batch_size: int = 2,
    metrics: bool = True,
    eval_every: int = 1,
    replayed: int = 0,
    broken: Sequence[tuple[int, int]] = (),
    d_in: int = 64,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """A finished run's result: ``batches`` batches over ``layers``; with ``metrics`` a pre/post table and
    (``eval_every`` > 0) a curve; ``"nullspace"`` in ``constraints`` adds its notes (spectrum once,
    kept key energy and the invariant per batch, the invariant after the final stage too); ``broken``
    lists (batch index, layer) whose invariant fails; the first ``replayed`` batches carry the mark of a
    resumed run."""
    nullspace = "nullspace" in constraints
    edits = batches * batch_size
    reports: list[dict[str, Any]] = []
    for b in range(batches):
        notes: dict[str, dict[str, Any]] = {}
        for position, layer in enumerate(layers):
            n: dict[str, Any] = {"update.norm": round(1.0 + 0.5 * b + 0.1 * position, 4),
                                 "update.relative": round(0.01 * (1 + b), 4)}
            if nullspace:
                if b == 0:
                    index = list(range(0, d_in, 2)) + ([d_in - 1] if (d_in - 1) % 2 else [])
                    n["nullspace.spectrum"] = {
                        "d_in": d_in, "threshold": 0.02, "null_space": d_in // 4, "index": index,
                        "eigenvalues": [float(f"{10 ** (-6 + 8 * i / (d_in - 1)):.4g}") for i in index],
                    }
                n["nullspace.dim"] = d_in // 4
                n["nullspace.kept_key_energy"] = round(0.3 - 0.02 * b, 6)
                holds = (b, layer) not in broken
                n["nullspace.invariant"] = {"invariant": "|D - DP|/|D|", "value": 1e-8 if holds else 0.2,
                                            "tolerance": 1e-6, "holds": holds}
            notes[str(layer)] = n
        last = notes[str(layers[-1])]
        last["vstar.median_final_loss"] = round(0.5 + 0.1 * b, 4)
        last["vstar.share_below_0.7"] = round(0.9 - 0.1 * b, 4)
        last["vstar.mean_steps"] = 20.0
        report = {
            "index": b, "size": batch_size, "seconds": round(0.1 * len(STAGES) * (1 + b), 4),
            "timings": {s: round(0.1 * (1 + b), 4) for s in STAGES},
            "peak_memory_mib": {s: 400.0 + 10 * b + i for i, s in enumerate(STAGES)},
            "layers": notes,
        }
        if b < replayed:
            report["replayed"] = True
        reports.append(report)
    final = None
    if constraints:
        final = {"index": batches, "size": 0, "seconds": 0.0, "timings": {}, "peak_memory_mib": {},
                 "layers": {str(layer): {"nullspace.invariant": {"invariant": "|D - DP|/|D|", "value": 1e-8,
                                                                 "tolerance": 1e-6, "holds": True}}
                            for layer in layers} if nullspace else {}}
    pre = {"efficacy": 10.0, "generalisation": 12.0, "specificity": 90.0, "retention": 95.0,
           "retention_probes": 40.0} if metrics else {}
    post = {"efficacy": 80.0, "generalisation": 60.0, "specificity": 85.0, "retention": 90.0,
            "retention_probes": 40.0} if metrics else {}
    curve = []
    if metrics and eval_every:
        for b in range(eval_every, batches + 1, eval_every):
            curve.append({"batches": b, "edits": b * batch_size, "efficacy": 100.0 - 5 * b,
                          "specificity": 90.0 - b, "retention": 95.0 - 2 * b, "retention_probes": 40.0})
        if curve[-1]["batches"] != batches:
            curve.append({"batches": batches, "edits": edits, **post})
    config = {"editor": editor, "constraints": list(constraints), "layers": list(layers), "batch_size": batch_size,
              "seed": seed, "device": device, "preset": None, "overrides": {}, "constrain_mode": None, "defaults": {}}
    hparams = {editor: {"layers": list(layers), "v_lr": 0.5, "mom2_weight": 15000.0}}
    if nullspace:
        hparams["nullspace"] = {"threshold": 0.02, "l2": 10.0, "mode": "auto", "relative": False}
    return {
        "summary": {"requests": edits, "batches": batches, "edit_seconds": round(sum(r["seconds"] for r in reports), 3),
                    "efficacy_pre": 0.0, "efficacy_post": 0.75, "target_logprob_rose": 1.0, "skipped_records": 0},
        "metrics": {"pre": pre, "post": post,
                    "seconds": {"pre": {"counterfact": 1.5} if metrics else {},
                                "post": {"counterfact": 1.6} if metrics else {}}},
        "final": final,
        "curve": curve,
        "run": {"editor": editor, "constraints": list(constraints), "hparams": hparams,
                "constraint_hparams": {k: v for k, v in hparams.items() if k != editor},
                "constrain_mode": "inline", "layout": {},
                "sites": [{"layer": layer, "module": f"transformer.h.{layer}.mlp.c_proj", "transposed": True}
                          for layer in layers]},
        "batches": reports,
        "requests": [],
        "state": {"prefix_templates": None},
        "manifest": {"versions": {"editkit": "0.1.0", "torch": "2.13.0", "transformers": "4.0", "python": "3.11.2",
                                  "platform": "Linux"},
                     "git_commit": "0123456789abcdef", "config": config, "seed": seed,
                     "model": {"name": "tiny-model"}, "key_statistics": None},
    }


def write_run(directory: str | Path, result: dict[str, Any]) -> Path:
    """Write ``result`` as ``directory/result.json`` (the directory is created); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "result.json").write_text(json.dumps(result, indent=2))
    return directory
