"""``run_job``: a :class:`~editkit.job.runjob.RunJob` from its options to ``OUT/result.json``.

The steps ``editkit run`` takes, in its order, each a function: claim the run directory
(:class:`~editkit.job.rundir.RunDirectory`, its one owner from here on) and check the device; resolve the
dataset, the method and metric names; read and select the requests; decide the model, its corpus and
calibrated settings; resolve the hyperparameters (and say where each came from); check the corpus and the
statistics store; load the model; screen the requests against its context; then edit
(:func:`editkit.job.pipeline.execute`). Every check of the user's input comes before the model is loaded and
raises :class:`~editkit.errors.UsageError` or :class:`~editkit.errors.InputError`; nothing is written before
the first batch is journaled (the claim's lock file is removed again, and the directory with it when the claim
created it). Nothing is printed on stdout (the hyperparameters' sources and progress go to stderr unless
``job.quiet``).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from editkit.errors import InputError, UsageError
from editkit.job.runjob import RunJob, default_out_dir

if TYPE_CHECKING:
    from editkit.catalog import DatasetSpec
    from editkit.job.rundir import RunDirectory
    from editkit.plugins import PluginHost

DEFAULT_DATASET = "smollm2-facts"  # SmolLM2-135M and well-known facts it gets right (plugins/editkit_facts)
DEFAULT_DATASET_EDITS = 300  # sequential edits on a dataset when --num-edits is not given


@attrs.frozen(kw_only=True)
class _Source:
    """Where the requests come from: a registered dataset (``dataset``, reading ``file`` when given) or
    ``job.requests`` (``dataset`` None)."""

    dataset: DatasetSpec | None = None
    file: str | None = None


@attrs.frozen(kw_only=True)
class _Requests:
    """The selected requests, the records they came from, the bad records skipped, and what to call their source."""

    requests: tuple[Any, ...]
    records: tuple[Any, ...] = ()
    skipped: tuple[str, ...] = ()
    source: str = ""


def run_job(job: RunJob, *, host: PluginHost | None = None) -> dict[str, Any]:
    """Run ``job`` as ``editkit run`` does, without printing: ``OUT/result.json``, ``OUT/deltas.safetensors``
    and the journal are written, and the result (``result.json``'s content) is returned.

    ``host``: the plugin host that names the methods, datasets and models (one for the whole job; a fresh
    one by default). A job with ``resume`` continues the run its journal describes.
    """
    from editkit.plugins import PluginHost

    host = host if host is not None else PluginHost()
    directory = _claimed_directory(job)  # the run directory's one owner, locked for this process
    with directory:
        resuming = directory.resume
        if resuming:
            assert directory.journaled is not None
            job = attrs.evolve(RunJob.from_manifest(directory.journaled, directory.path), quiet=job.quiet,
                               report=job.report)
        _check_device(job)
        if not resuming:
            job = attrs.evolve(job, dataset=_dataset_name(job, host))
        source = _source(job.dataset, host)
        metric_names, metric_options = _check_names(job, source.dataset is not None, host)
        chosen = _journaled_requests(directory) if resuming else _read_requests(job, source)
        job = _decided(job, source.dataset, host)
        _report_hyperparameters(job, host)
        _check_statistics_inputs(job, host)
        model, tokenizer, model_id = _load_model(job, host)
        if not resuming:  # now that the tokenizer and the model's context length are known
            chosen = _screened(chosen, tokenizer, model, job.skip_invalid)
        result = _execute(job, host, directory=directory, model=model, tokenizer=tokenizer, model_id=model_id,
                          chosen=chosen, metric_names=metric_names, metric_options=metric_options,
                          dataset=source.dataset)
    if job.report:
        from editkit.report import write_report

        write_report([directory.path], directory.path / "report.html")
    return result


# ---------------------------------------------------------------------- before anything is loaded


def _claimed_directory(job: RunJob) -> RunDirectory:
    """The run directory, claimed: ``--resume``'s (it must hold a resumable journal) or ``--out``'s (it must
    hold no journal with a complete batch)."""
    from editkit.job.rundir import RunDirectory

    if job.resume is not None:
        return RunDirectory.claim(job.resume, resume=True)
    return RunDirectory.claim(job.out if job.out is not None else default_out_dir(), resume=False)


def _check_device(job: RunJob) -> None:
    from editkit.job.devices import check_device

    check_device(job.device)  # a resumed journal's device may not exist on this machine


def _dataset_name(job: RunJob, host: PluginHost) -> str | None:
    """The dataset of a new run: none with ``requests``, else the one given, else the one built for the model."""
    from editkit.job.datasetdefaults import default_dataset_name

    if job.requests is not None:
        return None
    return job.dataset or default_dataset_name(host.catalog.entries["datasets"], job.model, DEFAULT_DATASET)


def _source(name: str | None, host: PluginHost) -> _Source:
    """The dataset plugin that reads ``name``: a registered dataset, or (for a local file) the first
    plugin that reads dataset files."""
    if name is None:
        return _Source()
    if Path(name).is_file():
        from editkit.job.datasetdefaults import dataset_reader

        reader = dataset_reader(host.catalog.entries["datasets"])
        if reader is None:
            raise UsageError("no installed dataset plugin reads dataset files")
        return _Source(dataset=reader, file=name)
    dataset = host.catalog.get("datasets", name)
    if dataset.load is None:
        raise UsageError(f"dataset {dataset.name!r} provides no edit requests")
    return _Source(dataset=dataset)


def _check_names(job: RunJob, on_dataset: bool, host: PluginHost) -> tuple[list[str], dict[str, Any]]:
    """The editor, constraint and metric names exist (before any heavy work); the metric names (the
    default for the source when the job names none) and the parsed metric options."""
    from editkit.helpers.metricoptions import parse_metric_options

    host.catalog.get("editors", job.editor)
    for name in job.constraints:
        host.catalog.get("constraints", name)
    if job.metrics is not None:
        metric_names = list(job.metrics)
    else:
        # teacher-forced and generation-based figures side by side (docs/metrics.md)
        metric_names = ["counterfact", "generation", *(("fluency", "retention") if on_dataset else ())]
    for name in metric_names:
        host.catalog.get("metrics", name)
    options = parse_metric_options(list(job.metric_options), host.catalog.entries["metrics"], metric_names)
    return metric_names, options


def _journaled_requests(directory: RunDirectory) -> _Requests:
    from editkit.requests import requests_from_records

    assert directory.journaled is not None
    records = directory.journaled["requests"]
    source = f"{directory.journal.manifest_path}"
    return _Requests(requests=tuple(requests_from_records(records, source=source)))


def _read_requests(job: RunJob, source: _Source) -> _Requests:
    """The job's requests: every record parsed (bad ones stop the run unless ``skip_invalid``), then
    shuffled, offset and cut to ``num_edits`` (a dataset's first :data:`DEFAULT_DATASET_EDITS` by default)."""
    from editkit.requests import parse_records, read_json_records

    if job.requests is not None:
        records, where = read_json_records(job.requests), str(job.requests)
    else:
        assert source.dataset is not None
        options = dict(job.dataset_options)
        dataset = source.dataset
        assert dataset.load is not None
        records = dataset.load(source=source.file, **options) if source.file else dataset.load(**options)
        where = source.file or f"dataset {dataset.name}"
    requests, skipped = parse_records(records)
    if skipped and not job.skip_invalid:
        shown = "\n  ".join(skipped[:50])
        more = f"\n  ... and {len(skipped) - 50} more" if len(skipped) > 50 else ""
        raise InputError(f"{where}: {len(skipped)} bad record(s) (--skip-invalid skips them):\n  {shown}{more}")
    if skipped:
        warnings.warn(f"{where}: skipped {len(skipped)} bad record(s); they are listed in result.json", stacklevel=1)
    if job.shuffle:
        order = torch_free_permutation(len(requests), job.seed)
        requests = [requests[i] for i in order]
    requests = requests[job.offset :]
    if job.num_edits is not None:
        requests = requests[: job.num_edits]
    elif source.dataset is not None:
        requests = requests[:DEFAULT_DATASET_EDITS]
    if not requests:
        raise InputError("no requests left after --offset/--num-edits")
    return _Requests(requests=tuple(requests), records=tuple(records), skipped=tuple(skipped), source=where)


def torch_free_permutation(n: int, seed: int) -> list[int]:
    """A permutation of ``range(n)`` determined by the run's seed."""
    import random

    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def _decided(job: RunJob, dataset: DatasetSpec | None, host: PluginHost) -> RunJob:
    """The job with the model, corpus and calibrated settings its dataset or its model gives it (a resumed job
    keeps its journaled settings, a job that names ``hparam_defaults`` its own).

    A dataset's calibrated settings apply only when the job edits that dataset (not ``--requests FILE`` on its
    model); otherwise a registered model's own calibrated settings apply; with ``--preset`` either applies only to
    the constraints: a preset is complete (:mod:`editkit.job.datasetdefaults`)."""
    from editkit.job.datasetdefaults import calibrated_settings, run_defaults
    from editkit.methods import without_editor_defaults

    defaults = run_defaults(host.catalog.entries["datasets"], dataset, model=job.model, corpus=job.corpus)
    settings = job.hparam_defaults
    if settings is None:
        settings = calibrated_settings(defaults, dataset, host.catalog.entries["models"])
        if job.preset is not None and settings:
            settings = tuple(without_editor_defaults(host.catalog, job.config(), dict(settings)).items())
    return attrs.evolve(job, model=defaults.model, corpus=defaults.corpus, hparam_defaults=settings)


def _report_hyperparameters(job: RunJob, host: PluginHost) -> None:
    """Resolve the methods' hyperparameters before anything is loaded (a bad ``--set`` stops the run here, exit
    2) and, unless ``job.quiet``, say on stderr where each value that is not a class default came from: one line
    per source (the dataset's calibrated defaults, the preset, ``--layers``, ``--set``)."""
    from editkit.job.datasetdefaults import defaults_origin
    from editkit.methods import RunMethods, provenance_lines

    methods = RunMethods.resolve(host.catalog, job.config())
    if job.quiet:
        return
    origin = defaults_origin(host.catalog.entries["datasets"], job.dataset, dict(job.hparam_defaults or ()),
                             models=host.catalog.entries["models"], model=job.model)
    for line in provenance_lines(methods, origin):
        print(line, file=sys.stderr)


def _check_statistics_inputs(job: RunJob, host: PluginHost) -> None:
    """A missing corpus file or package, an unwritable statistics store: exit 2 before loading anything."""
    if job.corpus is None:
        return
    from editkit.keystats import CorpusSpec

    CorpusSpec.parse(job.corpus).identity(host)
    store = job.store_dir()
    if store is not None:
        from editkit.keystats.store import StatsStore

        StatsStore(root=str(store)).check_writable(
            "; give another with --stats-dir, or --no-stats-store to keep statistics in memory")


# ---------------------------------------------------------------------- the model and the edit


def _load_model(job: RunJob, host: PluginHost) -> tuple[Any, Any, str]:
    """``(model, tokenizer, model_id)``; ``model_id`` is where the weights are (a registered name or .gguf:
    its converted directory)."""
    from editkit.helpers.progress import model_loading
    from editkit.modelsource.resolve import load_model, resolve_model

    assert job.model is not None
    model_source = resolve_model(job.model, catalog=host.catalog, progress=not job.quiet and sys.stderr.isatty())
    with model_loading(model_source.location, enabled=not job.quiet):
        model, tokenizer = load_model(model_source, device=job.device)
    return model, tokenizer, model_source.location


def _screened(chosen: _Requests, tokenizer: Any, model: Any, skip_invalid: bool) -> _Requests:
    """The requests that fit in the model's context (over-long ones are bad records)."""
    from editkit.helpers.contextwindow import screen_requests

    requests, skipped = screen_requests(chosen.requests, chosen.records, chosen.skipped, tokenizer, model,
                                        source=chosen.source, skip_invalid=skip_invalid)
    return attrs.evolve(chosen, requests=tuple(requests), skipped=tuple(skipped))


def _eval_extras(job: RunJob, dataset: DatasetSpec | None, metric_options: dict[str, Any],
                 host: PluginHost) -> dict[str, Any]:
    """What the metrics read besides the records: the dataset's extras, ``generation_records``, the
    retention probes, the metric options."""
    from editkit.helpers.metricoptions import EXTRAS_KEY as METRIC_OPTIONS
    from editkit.helpers.metricoptions import build_metric_options

    extras = dict(dataset.extras()) if dataset is not None and dataset.extras is not None else {}
    if job.generation_records is not None:
        extras["generation_records"] = job.generation_records
    if job.retention_probes:
        extras["fact_probes"] = read_retention_probes(job.retention_probes)
    if metric_options:
        extras[METRIC_OPTIONS] = build_metric_options(metric_options, host.catalog.entries["metrics"])
    return extras


def _execute(job: RunJob, host: PluginHost, *, directory: RunDirectory, model: Any, tokenizer: Any, model_id: str,
             chosen: _Requests, metric_names: list[str], metric_options: dict[str, Any],
             dataset: DatasetSpec | None) -> dict[str, Any]:
    """Collect (or reuse) the key statistics and edit, with the progress display of the job."""
    from editkit.helpers.completions import shown_completions
    from editkit.helpers.progress import progress_display
    from editkit.job.pipeline import Evaluation, RunInputs, execute

    extras = _eval_extras(job, dataset, metric_options, host)
    evaluation = Evaluation(metrics=metric_names, extras=extras, every=job.eval_every,
                            completions=shown_completions(job.completions, extras))
    with progress_display(enabled=not job.quiet) as progress:
        inputs = RunInputs(model=model, tokenizer=tokenizer, model_id=model_id, requests=chosen.requests,
                           config=job.config(), directory=directory, invocation=job.invocation(),
                           key_statistics=_key_statistics(job, host, model, tokenizer, model_id),
                           skipped_records=chosen.skipped)
        return execute(inputs, evaluation, progress=progress, host=host)


def _key_statistics(job: RunJob, host: PluginHost, model: Any, tokenizer: Any, model_id: str) -> Any:
    """The C0 provider of the job's corpus (None without one)."""
    if job.corpus is None:
        return None
    from editkit.keystats import KeyStatistics
    from editkit.keystats.defaults import corpus_selection
    from editkit.layout import resolve_layout

    store = job.store_dir()
    return KeyStatistics(
        model=model, tokenizer=tokenizer, layout=resolve_layout(model, host.catalog.entries["architectures"]),
        corpus=corpus_selection(job.corpus, max_tokens=job.stats_max_tokens),
        stats_dir=str(store) if store is not None else None, max_length=job.stats_max_length,
        max_tokens=job.stats_max_tokens, model_id=model_id, progress=not job.quiet,
        report=lambda line: print(line, file=sys.stderr), host=host,
    )


def read_retention_probes(path: Path) -> list[tuple[str, str, str]]:
    """``[subject, prompt, object]`` triples from a JSON file; a bad entry stops the run (exit 2) naming it."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"--retention-probes {path}: cannot read a JSON list ({error})") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"--retention-probes {path}: expected a non-empty JSON list of [subject, prompt, object]")
    bad = [i for i, p in enumerate(data)
           if not (isinstance(p, list) and len(p) == 3 and all(isinstance(x, str) for x in p) and p[1] and p[2])]
    if bad:
        raise InputError(f"--retention-probes {path}: entries {bad[:20]}{' ...' if len(bad) > 20 else ''} are not "
                         "[subject, prompt, object] with a non-empty prompt and object")
    return [(s, p, o) for s, p, o in data]
