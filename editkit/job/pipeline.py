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

from editkit.config import RunConfig
from editkit.converters import to_tuple
from editkit.errors import InputError
from editkit.evaluation import EvalContext, run_metrics
from editkit.helpers.completions import completion_probes, completion_records, greedy_completions
from editkit.helpers.progress import Progress
from editkit.helpers.scoring import continuation_scores
from editkit.job.journal import AFTER_HASH, BASE_HASH, recorded_hash, tensor_sha256
from editkit.job.manifest import manifest, model_identity
from editkit.job.rundir import RunDirectory
from editkit.plugins import PluginHost
from editkit.requests import EditRequest, batched
from editkit.run import EditRun


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
    with_true = [(i, r.target_true) for i, r in enumerate(requests) if r.target_true is not None]
    true = continuation_scores(model, tokenizer, [prompts[i] for i, _ in with_true],
                               [target for _, target in with_true], device=device)
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


@attrs.frozen(kw_only=True)
class RunInputs:
    """What one run edits, decided and loaded: the model (and its ``model_id``), the requests, the config,
    the claimed run directory (:class:`~editkit.job.rundir.RunDirectory`: new, or resuming its journal), the key
    statistics (C0 provider, or None), the ``invocation`` journaled for ``--resume``, and the bad records
    skipped (listed in ``result.json``)."""

    model: Any
    tokenizer: Any
    model_id: str
    requests: tuple[EditRequest, ...] = attrs.field(converter=to_tuple)
    config: RunConfig
    directory: RunDirectory
    key_statistics: Any = None
    invocation: Mapping[str, Any] = attrs.field(factory=dict)
    skipped_records: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)

    @property
    def out_dir(self) -> Path:
        return self.directory.path


@attrs.frozen(kw_only=True)
class Evaluation:
    """What a run measures besides edit success: the named ``metrics`` (with ``extras``: the dataset's
    and the metric options) before and after, and every ``every`` batches on the requests edited so far;
    greedy ``completions`` of the first N requests before and after (:mod:`editkit.helpers.completions`)."""

    metrics: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    extras: Mapping[str, Any] = attrs.field(factory=dict)
    every: int = 0
    completions: int = 0


class _Evaluator:
    """The run's metrics on a subset of its requests; seconds per metric of the pre/post phases."""

    def __init__(self, inputs: RunInputs, evaluation: Evaluation, catalog: Mapping[str, Any]) -> None:
        self.inputs, self.evaluation, self.catalog = inputs, evaluation, catalog
        self.extras = dict(evaluation.extras)
        self.timings: dict[str, dict[str, float]] = {"pre": {}, "post": {}}

    def __call__(self, subset: Sequence[EditRequest], phase: str | None = None) -> dict[str, float]:
        if not self.evaluation.metrics:
            return {}
        return evaluate(model=self.inputs.model, tokenizer=self.inputs.tokenizer, requests=subset,
                        metrics=self.catalog, names=self.evaluation.metrics, extras=self.extras,
                        config=self.inputs.config, timings=self.timings[phase] if phase else None)


@attrs.define(kw_only=True)
class _Before:
    """The run before its first new batch: scores, metrics and completions before editing, the curve so far
    (all from the journal when resumed)."""

    scores: list[EditScore]
    metrics: dict[str, float]
    completions: list[str]
    curve: list[dict[str, Any]]


def execute(inputs: RunInputs, evaluation: Evaluation = Evaluation(), *, progress: Progress | None = None,
            host: PluginHost | None = None) -> dict[str, Any]:
    """Edit ``inputs.requests`` sequentially in batches of ``config.batch_size`` on one model (never
    restored), evaluate before and after (and every ``evaluation.every`` batches on the requests edited
    so far), and write the results.

    Every batch is journaled in the run directory (:class:`~editkit.job.rundir.RunDirectory`, which owns every
    file written there). When it resumes a journal, the journal's complete batches are replayed exactly and
    the run continues after them.
    ``inputs.invocation`` (JSON) is stored in the journal so that ``editkit run --resume`` can rebuild
    the job. ``host``: the plugin host whose catalog names the methods (a fresh one by default).
    """
    config = inputs.config
    torch.manual_seed(config.seed)
    directory = inputs.directory
    directory.start()
    journaled = directory.journaled
    run = EditRun(model=inputs.model, tokenizer=inputs.tokenizer, config=config, host=host,
                  key_statistics=inputs.key_statistics, progress=progress, model_id=inputs.model_id,
                  undo_depth=1)  # the journal undoes on disk; memory holds one batch's previous weights
    base_hash = tensor_sha256(run.initial_weights)
    if journaled is not None and recorded_hash(journaled, BASE_HASH) != base_hash:
        raise InputError(f"{inputs.out_dir}: the model's edited weights differ from the journal's base model "
                         f"({inputs.model_id}); refusing to resume on another model")
    for name in evaluation.metrics:
        run.catalog.get("metrics", name)
    measure = _Evaluator(inputs, evaluation, run.catalog.entries["metrics"])
    batches = list(batched(list(inputs.requests), config.batch_size))
    probes = completion_probes(inputs.requests, evaluation.completions)
    if journaled is not None:
        before = _replayed(run, directory, journaled, batches)
    else:
        before = _evaluated_before(run, inputs, measure, probes, base_hash, len(batches))
    edit_seconds = _edit_batches(run, directory, batches, before, measure)
    after, post_metrics, completions_after = _evaluated_after(run, inputs, measure, probes)
    if evaluation.metrics and evaluation.every:
        before.curve.append({"batches": len(batches), "edits": len(inputs.requests), **post_metrics})
    result = _result(run, inputs, before, after, edit_seconds, len(batches), measure.timings, post_metrics,
                     completion_records(probes, before.completions, completions_after))
    directory.write_results(result, run.accumulated_deltas(), inputs.model_id)
    return result


def _replayed(run: EditRun, directory: RunDirectory, journaled: dict[str, Any],
              batches: Sequence[Sequence[EditRequest]]) -> _Before:
    """Replay the journal's complete batches exactly; what it recorded from before the edits."""
    run.state.update(journaled.get("run_state", {}))
    entries = directory.journal.entries()
    if len(entries) > len(batches):
        raise InputError(f"{directory.path}: the journal holds {len(entries)} batches, more than this run has")
    curve: list[dict[str, Any]] = []
    for entry, chunk in zip(entries, batches):
        if [str(r["case_id"]) for r in entry.requests] != [r.case_id for r in chunk]:
            raise InputError(f"{entry.directory}: the journaled requests differ from the run's batch {entry.index}")
        record = json.loads((entry.directory / "entry.json").read_text())
        # the last batch's entry also holds what run.finish() wrote and noted ("final")
        run.replay(entry.deltas(), entry.state(), record.get("report", {}), final=record.get("final"))
        curve.extend(record.get("curve", []))
    return _Before(scores=[EditScore(**s) for s in journaled["pre_scores"]], metrics=journaled["pre_metrics"],
                   completions=journaled.get("pre_completions") or [], curve=curve)


def _evaluated_before(run: EditRun, inputs: RunInputs, measure: _Evaluator, probes: Sequence[Any],
                      base_hash: str, n_batches: int) -> _Before:
    """Scores, metrics and completions of the unedited model (handed to the run directory for the manifest)."""
    eval_task = run.progress.task("evaluate (pre)", None)
    scores = score_requests(inputs.model, inputs.tokenizer, inputs.requests, run.device)
    pre_metrics = measure(inputs.requests, "pre")
    completions = greedy_completions(inputs.model, inputs.tokenizer, [p.prompt for p in probes], device=run.device)
    run.progress.finish(eval_task)
    inputs.directory.begin_new(invocation=inputs.invocation, config=inputs.config.to_json(), model=inputs.model_id,
                               edited_modules=sorted(run.initial_weights), base_hash=base_hash, batches=n_batches,
                               requests=[r.to_record() for r in inputs.requests],
                               pre_scores=[attrs.asdict(b) for b in scores], pre_metrics=pre_metrics,
                               pre_completions=completions)
    return _Before(scores=scores, metrics=pre_metrics, completions=completions, curve=[])


def _evaluated_after(run: EditRun, inputs: RunInputs, measure: _Evaluator,
                     probes: Sequence[Any]) -> tuple[list[EditScore], dict[str, float], list[str]]:
    """Scores, metrics and completions of the edited model."""
    eval_task = run.progress.task("evaluate (post)", None)
    after = score_requests(inputs.model, inputs.tokenizer, inputs.requests, run.device)
    post_metrics = measure(inputs.requests, "post")
    completions = greedy_completions(inputs.model, inputs.tokenizer, [p.prompt for p in probes], device=run.device)
    run.progress.finish(eval_task)
    return after, post_metrics, completions


def _edit_batches(run: EditRun, directory: RunDirectory, batches: Sequence[Sequence[EditRequest]], before: _Before,
                  measure: _Evaluator) -> float:
    """Edit and journal every batch not replayed (``run.finish()`` after the last); the edit seconds of the
    whole run: this process's (evaluations along the way not counted) plus the replayed batches' own, as
    journaled. Curve points go to ``before.curve``."""
    every = measure.evaluation.every
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
        if measure.evaluation.metrics and every and number % every == 0 and number < len(batches):
            t = time.perf_counter()
            curve_task = run.progress.task(f"evaluate (after batch {number})", None)
            point = [{"batches": number, "edits": done, **measure(measure.inputs.requests[:done])}]
            run.progress.finish(curve_task)
            before.curve.extend(point)
            eval_seconds += time.perf_counter() - t
        deltas, state = run.batch_artifacts()
        final = run.final_report if number == len(batches) else None  # what run.finish() wrote, if anything
        directory.record_batch(number - 1, [r.to_record() for r in chunk], deltas, state,
                               extra={"report": report.to_json(), "curve": point,
                                      AFTER_HASH: tensor_sha256(run.current_weights()),
                                      **({"final": final.to_json()} if final is not None else {})},
                               run_state=run.state)
        task.advance(1)
    replayed = sum(r.seconds for r in run.reports if r.replayed)
    return time.perf_counter() - started - eval_seconds + replayed


def _result(run: EditRun, inputs: RunInputs, before: _Before, after: Sequence[EditScore], edit_seconds: float,
            n_batches: int, eval_timings: dict[str, dict[str, float]], post_metrics: dict[str, float],
            completions: list[dict[str, Any]]) -> dict[str, Any]:
    """``result.json`` (see the module docstring)."""
    config, requests = inputs.config, inputs.requests
    n = len(requests)
    extra_manifest = {"skipped_records": list(inputs.skipped_records)} if inputs.skipped_records else {}
    return {
        "summary": {
            "requests": n,
            "batches": n_batches,
            "edit_seconds": round(edit_seconds, 3),
            "efficacy_pre": sum(b.success for b in before.scores) / n,
            "efficacy_post": sum(a.success for a in after) / n,
            "target_logprob_rose": sum(a.new_logprob > b.new_logprob for a, b in zip(after, before.scores)) / n,
            "skipped_records": len(inputs.skipped_records),
            "peak_memory_mib": round(run.peak_memory_so_far() / 2**20, 1),  # this process's (see editkit.memory)
        },
        "metrics": {"pre": before.metrics, "post": post_metrics, "seconds": eval_timings},
        "final": run.final_report.to_json() if run.final_report is not None else None,
        "curve": before.curve,
        "completions": completions,
        "run": run.describe(),
        "batches": [r.to_json() for r in run.reports],
        "requests": _per_request(requests, before.scores, after, config.batch_size),
        "state": {"prefix_templates": run.state.get("prefix_templates")},
        "manifest": manifest(config=config.to_json(), seed=config.seed, model=model_identity(inputs.model_id),
                             key_statistics=_stats_identity(inputs.key_statistics, run),
                             **_provenance(run, inputs, metrics=list(eval_timings["post"])), **extra_manifest),
    }


def _provenance(run: EditRun, inputs: RunInputs, *, metrics: list[str]) -> dict[str, Any]:
    """The manifest's ``plugins`` (which distribution and version provided each plugin the run used) and
    ``hyperparameters`` (``"method.field"`` → the source and value of each one not at its class default)."""
    from editkit.job.datasetdefaults import defaults_origin
    from editkit.job.manifest import plugins_used
    from editkit.methods import provenance

    invocation = inputs.invocation
    dataset = invocation.get("dataset")
    plugins = plugins_used(run.host, editor=run.methods.editor_spec.name, metrics=metrics,
                           constraints=[spec.name for spec in run.methods.constraint_specs], dataset=dataset,
                           model=invocation.get("model"), corpus=invocation.get("corpus"))
    origin = defaults_origin(run.catalog.entries["datasets"], dataset, dict(run.config.defaults),
                             models=run.catalog.entries["models"], model=invocation.get("model"))
    return {"plugins": plugins, "hyperparameters": provenance(run.methods, origin)}


def _per_request(requests: Sequence[EditRequest], before: Sequence[EditScore], after: Sequence[EditScore],
                 batch_size: int) -> list[dict[str, Any]]:
    return [
        {
            "case_id": record_case_id(r),
            "batch": i // batch_size,
            "target_new": r.target_new,
            "target_true": r.target_true,
            "pre": attrs.asdict(b) | {"success": b.success},
            "post": attrs.asdict(a) | {"success": a.success},
        }
        for i, (r, b, a) in enumerate(zip(requests, before, after))
    ]


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
