"""The ``editkit run`` job as a function: load, edit in batches, score, write results.

Writes ``OUT/result.json`` (config, manifest, per-batch timings and layer notes, per-request
edit success) and ``OUT/deltas.safetensors`` (``W_final − W0`` per edited module, in the
module's own storage layout), both atomically.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch

from editkit.atomic import write_json_atomic, write_safetensors_atomic
from editkit.completions import completion_probes, completion_records, greedy_completions
from editkit.config import RunConfig
from editkit.errors import InputError
from editkit.evaluation import EvalContext, run_metrics
from editkit.journal import AFTER_HASH, BASE_HASH, Journal, recorded_hash, tensor_sha256
from editkit.manifest import manifest, model_identity
from editkit.progress import Progress
from editkit.requests import EditRequest, batched
from editkit.run import EditRun
from editkit.scoring import continuation_scores


@attrs.frozen(kw_only=True)
class EditScore:
    """Per request: mean per-token log-prob of target_new (and target_true) at the prompt."""

    new_logprob: float
    true_logprob: float | None
    new_argmax: bool

    @property
    def success(self) -> bool:
        """target_new preferred over target_true (or greedily produced when there is no true target)."""
        if self.true_logprob is None:
            return self.new_argmax
        return self.new_logprob > self.true_logprob


def score_requests(model: Any, tokenizer: Any, requests: Sequence[EditRequest], device: Any = "cpu") -> list[EditScore]:
    prompts = [r.filled_prompt for r in requests]
    new = continuation_scores(model, tokenizer, prompts, [r.target_new for r in requests], device=device)
    with_true = [(i, r) for i, r in enumerate(requests) if r.target_true is not None]
    true = continuation_scores(model, tokenizer, [prompts[i] for i, _ in with_true],
                               [r.target_true for _, r in with_true], device=device)
    true_by_index = {i: float(lp.mean()) for (i, _), (lp, _) in zip(with_true, true)}
    return [
        EditScore(new_logprob=float(lp.mean()), true_logprob=true_by_index.get(i), new_argmax=bool(hit.all()))
        for i, (lp, hit) in enumerate(new)
    ]


def evaluate(
    *,
    model: Any,
    tokenizer: Any,
    requests: Sequence[EditRequest],
    metrics: Mapping[str, Any],
    names: Sequence[str],
    extras: Mapping[str, Any],
    config: RunConfig,
    timings: dict[str, float] | None = None,
) -> dict[str, float]:
    """The named metrics on ``requests`` (sampling seeded by the run's seed); seconds per metric
    go to ``timings``."""
    context = EvalContext(model=model, tokenizer=tokenizer, records=[r.to_record() for r in requests],
                          extras=extras, device=config.device, seed=config.seed)
    return {k: round(v, 4) for k, v in run_metrics(metrics, names, context, timings).items()}


def execute(
    *,
    model: Any,
    tokenizer: Any,
    requests: Sequence[EditRequest],
    config: RunConfig,
    out_dir: Path,
    model_id: str,
    key_statistics: Any = None,
    progress: Progress | None = None,
    extra_manifest: dict[str, Any] | None = None,
    metrics: Sequence[str] = (),
    eval_extras: Mapping[str, Any] | None = None,
    eval_every: int = 0,
    invocation: Mapping[str, Any] | None = None,
    resume: bool = False,
    completions: int = 0,
) -> dict[str, Any]:
    """Edit ``requests`` sequentially in batches of ``config.batch_size`` on one model (never
    restored), evaluate before and after (and every ``eval_every`` batches on the requests edited
    so far), and write the results.

    Every batch is journaled in ``out_dir/journal`` (see :mod:`editkit.journal`). With ``resume``
    the journal's complete batches are replayed exactly and the run continues after them.
    ``invocation`` (JSON) is stored in the journal so that ``editkit run --resume`` can rebuild it.
    ``completions``: record greedy completions before and after for the first N requests
    (:mod:`editkit.completions`).
    """
    torch.manual_seed(config.seed)
    journal = Journal(out_dir)
    if resume:
        manifest_data = journal.check_resumable(out_dir)
        journal.discard_incomplete()
    else:
        journal.claim_for_new_run(out_dir)
    run = EditRun(model=model, tokenizer=tokenizer, config=config, key_statistics=key_statistics,
                  progress=progress, model_id=model_id)
    device = run.device
    base_hash = tensor_sha256(run.initial_weights)
    if resume and recorded_hash(manifest_data, BASE_HASH) != base_hash:
        raise InputError(f"{out_dir}: the model's edited weights differ from the journal's base model "
                         f"({model_id}); refusing to resume on another model")
    catalog = run.catalog.entries["metrics"]
    for name in metrics:
        run.catalog.get("metrics", name)
    extras = dict(eval_extras or {})

    eval_timings: dict[str, dict[str, float]] = {"pre": {}, "post": {}}

    def measure(subset: Sequence[EditRequest], phase: str | None = None) -> dict[str, float]:
        return evaluate(model=model, tokenizer=tokenizer, requests=subset, metrics=catalog, names=metrics,
                        extras=extras, config=config, timings=eval_timings[phase] if phase else None)

    batches = list(batched(list(requests), config.batch_size))
    probes = completion_probes(requests, completions)
    curve: list[dict[str, Any]] = []
    if resume:
        before = [EditScore(**s) for s in manifest_data["pre_scores"]]
        pre_metrics = manifest_data["pre_metrics"]
        completions_before = manifest_data.get("pre_completions") or []
        run.state.update(manifest_data.get("run_state", {}))
        entries = journal.entries()
        if len(entries) > len(batches):
            raise InputError(f"{out_dir}: the journal holds {len(entries)} batches, more than this run has")
        for entry, chunk in zip(entries, batches):
            if [str(r["case_id"]) for r in entry.requests] != [r.case_id for r in chunk]:
                raise InputError(f"{entry.directory}: the journaled requests differ from the run's batch {entry.index}")
            record = json.loads((entry.directory / "entry.json").read_text())
            run.replay(entry.deltas(), entry.state(), record.get("report", {}))
            curve.extend(record.get("curve", []))
    else:
        eval_task = run.progress.task("evaluate (pre)", None)
        before = score_requests(model, tokenizer, requests, device)
        pre_metrics = measure(requests, "pre") if metrics else {}
        completions_before = greedy_completions(model, tokenizer, [p.prompt for p in probes], device=device)
        run.progress.finish(eval_task)
        # written with the first batch (below): a run that fails before then leaves no journal
        manifest_data = {
            "invocation": dict(invocation or {}),
            "config": config.to_json(),
            "model": model_id,
            "edited_modules": sorted(run.initial_weights),
            BASE_HASH: base_hash,
            "batches": len(batches),
            "requests": [r.to_record() for r in requests],
            "pre_scores": [attrs.asdict(b) for b in before],
            "pre_metrics": pre_metrics,
            "pre_completions": completions_before,
            "run_state": {},
        }
    task = run.progress.task("edit batches", len(batches), completed=len(run.reports))
    started = time.perf_counter()
    eval_seconds = 0.0
    done = sum(len(chunk) for chunk in batches[: len(run.reports)])
    for number, chunk in enumerate(batches, start=1):
        if number <= len(run.reports):
            continue  # replayed from the journal
        report = run.edit(chunk)
        if number == len(batches):
            run.finish()
        done += len(chunk)
        point = []
        if metrics and eval_every and number % eval_every == 0 and number < len(batches):
            t = time.perf_counter()
            curve_task = run.progress.task(f"evaluate (after batch {number})", None)
            point = [{"batches": number, "edits": done, **measure(requests[:done])}]
            run.progress.finish(curve_task)
            curve.extend(point)
            eval_seconds += time.perf_counter() - t
        if number == 1:
            journal.write_manifest({**manifest_data, "run_state": dict(run.state)})
        deltas, state = run.batch_artifacts()
        journal.append(number - 1, [r.to_record() for r in chunk], deltas, state,
                       extra={"report": report.to_json(), "curve": point,
                              AFTER_HASH: tensor_sha256(run.current_weights())})
        task.advance(1)
    edit_seconds = time.perf_counter() - started - eval_seconds
    eval_task = run.progress.task("evaluate (post)", None)
    after = score_requests(model, tokenizer, requests, device)
    post_metrics = measure(requests, "post") if metrics else {}
    completions_after = greedy_completions(model, tokenizer, [p.prompt for p in probes], device=device)
    run.progress.finish(eval_task)
    if metrics and eval_every:
        curve.append({"batches": len(batches), "edits": done, **post_metrics})

    per_request = [
        {
            "case_id": record_case_id(r),
            "batch": i // config.batch_size,
            "target_new": r.target_new,
            "target_true": r.target_true,
            "pre": attrs.asdict(b) | {"success": b.success},
            "post": attrs.asdict(a) | {"success": a.success},
        }
        for i, (r, b, a) in enumerate(zip(requests, before, after))
    ]
    n = len(requests)
    result = {
        "summary": {
            "requests": n,
            "batches": len(batches),
            "edit_seconds": round(edit_seconds, 3),
            "efficacy_pre": sum(b.success for b in before) / n,
            "efficacy_post": sum(a.success for a in after) / n,
            "target_logprob_rose": sum(a.new_logprob > b.new_logprob for a, b in zip(after, before)) / n,
            "skipped_records": len((extra_manifest or {}).get("skipped_records", [])),
        },
        "metrics": {"pre": pre_metrics, "post": post_metrics, "seconds": eval_timings},
        "final": run.final_report.to_json() if run.final_report is not None else None,
        "curve": curve,
        "completions": completion_records(probes, completions_before, completions_after),
        "run": run.describe(),
        "batches": [r.to_json() for r in run.reports],
        "requests": per_request,
        "state": {"prefix_templates": run.state.get("prefix_templates")},
        "manifest": manifest(
            config=config.to_json(),
            seed=config.seed,
            model=model_identity(model_id),
            key_statistics=_stats_identity(key_statistics, run),
            **(extra_manifest or {}),
        ),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_safetensors_atomic(out_dir / "deltas.safetensors", run.accumulated_deltas(),
                             metadata={"layout": "storage", "model": model_id})
    write_json_atomic(out_dir / "result.json", result)
    return result


def record_case_id(request: EditRequest) -> Any:
    """The request's ``case_id`` as its source record gives it (an int stays an int), as in the journal's
    ``requests.json``; :attr:`EditRequest.case_id` is its string form, used to tell requests apart."""
    if request.record is not None and "case_id" in request.record:
        return request.record["case_id"]
    return request.case_id


def _stats_identity(key_statistics: Any, run: EditRun) -> Any:
    if key_statistics is None or not hasattr(key_statistics, "identity"):
        return None
    try:
        if hasattr(key_statistics, "provenance"):  # the statistics used: stored identity, real tokens, file
            return {s.module: key_statistics.provenance(s) for s in run.sites}
        return {s.module: key_statistics.identity(s) for s in run.sites}
    except Exception as exc:  # identity is informative only
        return {"error": str(exc)}
