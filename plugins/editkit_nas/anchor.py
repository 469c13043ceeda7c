"""NAS's reference norm ``n̄`` of one model: measured once on the unedited model and stored with its identity.

``n̄`` = the mean of ``‖v0 + δ‖`` over sampled rewrites, each ``δ`` optimised by the run's editor on the
unedited model, after dropping the ``floor(trim·N)`` largest (the authors' ``_upper_trimmed_mean``,
``util/vstar_stats.py``). The stored file (``<stats store>/nas/<digest>.json``) names everything the number depends
on: the model (name, sha256 of its parameters), the editor and its hyperparameters, its prefix templates, the
edited module, the anchor file's sha256, the sample size, seed and trim; a file whose identity differs is never
used. It lives in the run's statistics store (``run.store_dir()``, beside C0). The authors measure with bare
prompts and MEMIT's hyperparameters; here the run's own editor settings and
prefix templates are used, so ``n̄`` is the norm of exactly the v* the run solves.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from editkit.api import (
    EditRequest,
    RunContext,
    Site,
    UsageError,
    file_sha256,
    request_from_record,
    write_json_atomic,
)
from editkit_nas.hparams import NasHParams

FORMAT = "editkit.nas/1"


def trimmed_mean(values: Sequence[float], trim: float) -> float:
    """The mean after dropping the ``floor(trim·N)`` largest values (at least one value is kept)."""
    ordered = sorted(values)
    drop = min(math.floor(trim * len(ordered)), len(ordered) - 1)
    kept = ordered[: len(ordered) - drop]
    return sum(kept) / len(kept)


def anchor_requests(path: str, samples: int, seed: int) -> list[EditRequest]:
    """``samples`` rewrites drawn from ``path`` (CounterFact records, or EasyEdit's flat form) with
    ``random.Random(seed).sample`` (all of them when the file holds fewer)."""
    try:
        records = json.loads(Path(path).read_text())
    except OSError as exc:
        raise UsageError(f"nas.anchor_data={path}: cannot read it ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"nas.anchor_data={path}: not JSON ({exc})") from None
    if not isinstance(records, list) or not records:
        raise UsageError(f"nas.anchor_data={path}: expected a non-empty JSON list of CounterFact records")
    chosen = random.Random(seed).sample(range(len(records)), min(samples, len(records)))
    requests = []
    for index in chosen:
        record = records[index]
        try:
            requests.append(request_from_record(_record_form(record, index)))
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(f"nas.anchor_data={path}: record {index}: {exc}") from None
    return requests


def _record_form(record: Any, index: int) -> Any:
    """CounterFact's ``requested_rewrite`` form of an EasyEdit-style record (``prompt``, ``subject``,
    ``target_new``, ``ground_truth``); a record already in that form is returned as it is."""
    if not isinstance(record, dict) or "requested_rewrite" in record or "target_new" not in record:
        return record
    prompt, subject = record.get("prompt"), record.get("subject")
    if isinstance(prompt, str) and isinstance(subject, str) and "{}" not in prompt and subject in prompt:
        prompt = prompt.replace(subject, "{}", 1)
    rewrite = {"prompt": prompt, "subject": subject, "target_new": {"str": record["target_new"]}}
    if "ground_truth" in record:
        rewrite["target_true"] = {"str": record["ground_truth"]}
    return {"case_id": record.get("case_id", index), "requested_rewrite": rewrite}


def identity(run: RunContext, site: Site, hp: NasHParams) -> dict[str, Any]:
    """Everything ``n̄`` depends on (JSON)."""
    assert hp.anchor_data is not None
    templates = run.state.get("prefix_templates")
    return {
        "format": FORMAT,
        "model": run.model_identity(),
        "editor": run.editor_spec.name,
        "editor_hparams": _jsonable(attrs.asdict(run.editor_hparams)) if attrs.has(type(run.editor_hparams))
        else repr(run.editor_hparams),
        "prefix_templates_sha256": hashlib.sha256(json.dumps(templates).encode()).hexdigest(),
        "module": site.module,
        "anchor_data_sha256": file_sha256(Path(hp.anchor_data)),
        "anchor_samples": hp.anchor_samples,
        "seed": hp.seed,
        "trim": hp.trim,
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def store_path(run: RunContext, ident: dict[str, Any]) -> Path | None:
    """``<store>/nas/<digest of the identity>.json`` (None: the run keeps no store)."""
    root = run.store_dir()
    if root is None:
        return None
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]
    return root / "nas" / f"{digest}.json"


def reference_norm(run: RunContext, site: Site, hp: NasHParams) -> tuple[float, str]:
    """``(n̄, where it came from)``: the stored value for this identity, else measured now (the model must be
    unedited) and stored."""
    if hp.anchor_data is None:
        raise UsageError("nas needs the reference norm n̄ of the unedited model: give the rewrites to measure it "
                         "over with --set nas.anchor_data=FILE (CounterFact records; the authors sample 1,000 of "
                         "CounterFact), or the value with --set nas.norm=N")
    ident = identity(run, site, hp)
    path = store_path(run, ident)
    if path is not None and path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            stored = {}
        if stored.get("identity") == ident and isinstance(stored.get("reference_norm"), float):
            return stored["reference_norm"], f"stored {path}"
    if run.edits_done:
        raise UsageError(f"nas: n̄ must be measured on the unedited model, and this run has edited "
                         f"{run.edits_done} requests without it (no stored value at {path})")
    requests = anchor_requests(hp.anchor_data, hp.anchor_samples, hp.seed)
    task = run.progress.task(f"nas: n̄ over {len(requests)} sampled rewrites (unedited model)", len(requests))
    norms: list[float] = []
    for start in range(0, len(requests), hp.anchor_batch):
        chunk = requests[start : start + hp.anchor_batch]
        targets = run.targets_for(chunk)
        norms.extend((targets.values.double() + targets.shift.double()).norm(dim=-1).tolist())  # ‖v0 + δ‖ [u]
        task.advance(len(chunk))
    run.progress.finish(task)
    value = trimmed_mean(norms, hp.trim)
    if path is None:
        return value, f"measured over {len(norms)} rewrites (not stored: the run keeps no statistics store)"
    write_json_atomic(path, {"identity": ident, "reference_norm": value, "mean": sum(norms) / len(norms),
                             "norms": norms})
    return value, f"measured over {len(norms)} rewrites, stored {path}"
