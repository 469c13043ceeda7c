"""The ``editkit run`` job: everything one invocation decides, as one frozen, validated value.

A :class:`RunJob` is built from the command line (:meth:`RunJob.from_args`), from Python
(``RunJob(model=..., requests=..., ...)``), from its JSON (:meth:`RunJob.from_json`) or from the journal
of an interrupted run (:meth:`RunJob.from_manifest`); :func:`editkit.run_job` runs it. Values the job
leaves open (``None``) are decided when it runs, as ``editkit run`` decides them: the dataset built for
the model, the model and corpus of the dataset, its calibrated hyperparameters, the default statistics
store. The journal keeps the decided job in its two historical parts, ``invocation`` and ``config``
(:meth:`RunJob.invocation`, :meth:`RunJob.config`), so journals of earlier versions still resume.

Importing this module does not import torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from editkit.errors import InputError, UsageError
from editkit.keystats.defaults import DEFAULT_MAX_TOKENS

if TYPE_CHECKING:
    from editkit.config import RunConfig

Pairs = tuple[tuple[str, str], ...]


def _assignments(value: Mapping[str, Any] | Iterable[Any] | None) -> Pairs:
    """``{"k": "v"}``, ``[("k", "v")]`` or ``["k=v"]`` (``--set`` form) → sorted ``(key, value)`` pairs."""
    from editkit.hparams import parse_assignments

    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        items = dict(value)
    else:
        items = {}
        for item in value:
            items.update(parse_assignments([item]) if isinstance(item, str) else dict([item]))
    return tuple(sorted((str(k), str(v)) for k, v in items.items()))


def _optional_assignments(value: Any) -> Pairs | None:
    return None if value is None else _assignments(value)


def _names(value: str | Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _metric_names(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """``"a,b"`` / ``["a", "b"]`` → ``("a", "b")``; ``"none"`` → ``()`` (no evaluation); None: the default."""
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() == "none":
            return ()
        return tuple(m.strip() for m in value.split(",") if m.strip())
    return tuple(value)


def _layers(value: str | Iterable[int] | None) -> tuple[int, ...] | None:
    from editkit.config import parse_layers

    if value is None:
        return None
    if isinstance(value, str):
        return parse_layers(value, "layers")
    return tuple(value)


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def _at_least(minimum: int, message: str, *, optional: bool = False) -> Callable[[Any, Any, Any], None]:
    """A validator: an int ``>= minimum`` (or None when ``optional``), else :class:`UsageError` ``message``."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise UsageError(message.format(value=value))

    return check


def _kind(*types: type, optional: bool = False) -> Callable[[Any, Any, Any], None]:
    """A validator: an instance of ``types`` (or None when ``optional``), else :class:`UsageError` naming the field."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value is None and optional:
            return
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join(t.__name__ for t in types) + (" or None" if optional else "")
            raise UsageError(f"job field {attribute.name!r}: expected {expected}, got {value!r}")

    return check


def _all_names(instance: Any, attribute: attrs.Attribute, value: tuple[Any, ...] | None) -> None:
    if value is not None and any(not isinstance(v, str) or not v for v in value):
        raise UsageError(f"job field {attribute.name!r}: expected names, got {list(value)!r}")


def _layer_indices(instance: Any, attribute: attrs.Attribute, value: tuple[Any, ...] | None) -> None:
    from editkit.config import layer_problem

    problem = layer_problem(value)
    if problem is not None:
        raise UsageError(f"job field 'layers': {problem}")


@attrs.frozen(kw_only=True)
class RunJob:
    """One ``editkit run``: what to edit, how, what to measure, where the results go.

    Each field is the ``editkit run`` option of the same name (``constraints``: ``--constraint``, repeated;
    ``overrides``: ``--set``; ``dataset_options``: ``--dataset-option``; ``metric_options``:
    ``--metric-option``; ``stats_store=False``: ``--no-stats-store``; ``stats_max_tokens=None``: ``all``);
    see ``editkit run --help``. ``hparam_defaults`` are hyperparameters calibrated for the model (``--set``
    form, below ``preset``, ``layers`` and ``overrides``): None takes the dataset's for the model, as the
    CLI does; a resumed job keeps its journal's. ``resume``: continue the interrupted run in that directory;
    every other field except ``quiet`` and ``report`` is then taken from its journal.
    """

    # what to edit
    model: str | None = attrs.field(default=None, validator=_kind(str, optional=True))
    requests: Path | None = attrs.field(default=None, converter=_path)
    dataset: str | None = attrs.field(default=None, validator=_kind(str, optional=True))
    dataset_options: Pairs = attrs.field(default=(), converter=_assignments)
    num_edits: int | None = attrs.field(
        default=None, validator=_at_least(1, "--offset must be >= 0 and --num-edits >= 1", optional=True))
    offset: int = attrs.field(default=0, validator=_at_least(0, "--offset must be >= 0 and --num-edits >= 1"))
    shuffle: bool = attrs.field(default=False, validator=_kind(bool))
    skip_invalid: bool = attrs.field(default=False, validator=_kind(bool))
    # how
    editor: str = attrs.field(default="memit", validator=_kind(str))
    constraints: tuple[str, ...] = attrs.field(default=(), converter=_names, validator=_all_names)
    layers: tuple[int, ...] | None = attrs.field(default=None, converter=_layers, validator=_layer_indices)
    batch_size: int = attrs.field(default=100, validator=_at_least(1, "--batch-size must be >= 1, got {value}"))
    seed: int = attrs.field(default=0, validator=_kind(int))
    device: str = attrs.field(default="cpu", validator=_kind(str))
    preset: str | None = attrs.field(default=None, validator=_kind(str, optional=True))
    overrides: Pairs = attrs.field(default=(), converter=_assignments)
    constrain_mode: str | None = attrs.field(default=None)
    hparam_defaults: Pairs | None = attrs.field(default=None, converter=_optional_assignments)
    # key statistics (C0)
    corpus: str | None = attrs.field(default=None, validator=_kind(str, optional=True))
    stats_dir: Path | None = attrs.field(default=None, converter=_path)
    stats_store: bool = attrs.field(default=True, validator=_kind(bool))
    stats_max_tokens: int | None = attrs.field(
        default=DEFAULT_MAX_TOKENS, validator=_at_least(1, "--stats-max-tokens must be >= 1, got {value}",
                                                        optional=True))
    stats_max_length: int | None = attrs.field(
        default=None, validator=_at_least(1, "--stats-max-length must be >= 1, got {value}", optional=True))
    # evaluation
    metrics: tuple[str, ...] | None = attrs.field(default=None, converter=_metric_names, validator=_all_names)
    metric_options: tuple[str, ...] = attrs.field(default=(), converter=_names, validator=_all_names)
    retention_probes: Path | None = attrs.field(default=None, converter=_path)
    generation_records: int | None = attrs.field(
        default=None, validator=_at_least(0, "--generation-records must be >= 0", optional=True))
    completions: int | None = attrs.field(
        default=None, validator=_at_least(0, "--completions must be >= 0", optional=True))
    eval_every: int = attrs.field(default=0, validator=_at_least(0, "--eval-every must be >= 0"))
    # output
    out: Path | None = attrs.field(default=None, converter=_path)
    report: bool = attrs.field(default=False, validator=_kind(bool))
    resume: Path | None = attrs.field(default=None, converter=_path)
    quiet: bool = attrs.field(default=False, validator=_kind(bool))

    @constrain_mode.validator
    def _check_constrain_mode(self, attribute: attrs.Attribute, value: str | None) -> None:
        if value not in (None, "inline", "posthoc"):
            raise UsageError(f"job field 'constrain_mode': expected 'inline', 'posthoc' or None, got {value!r}")

    @stats_store.validator
    def _check_stats_store(self, attribute: attrs.Attribute, value: bool) -> None:
        if not value and self.stats_dir is not None:
            raise UsageError("--no-stats-store and --stats-dir contradict each other: give one")

    # ------------------------------------------------------------------ building

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunJob:
        """The job of ``editkit run``'s parsed options (``--resume DIR``: a job that resumes DIR)."""
        from editkit.config import parse_layers

        if args.resume is not None:
            return cls(resume=args.resume, quiet=args.quiet, report=args.report)
        return cls(
            model=args.model, requests=args.requests, dataset=args.dataset, dataset_options=args.dataset_option,
            num_edits=args.num_edits, offset=args.offset, shuffle=args.shuffle, skip_invalid=args.skip_invalid,
            editor=args.editor, constraints=args.constraints, batch_size=args.batch_size,
            layers=parse_layers(args.layers) if args.layers is not None else None,  # errors name --layers
            seed=args.seed, device=args.device, preset=args.preset, overrides=args.overrides,
            constrain_mode=args.constrain_mode, corpus=args.corpus, stats_dir=args.stats_dir,
            stats_store=not args.no_stats_store, stats_max_tokens=args.stats_max_tokens,
            stats_max_length=args.stats_max_length, metrics=args.metrics, metric_options=args.metric_options,
            retention_probes=args.retention_probes, generation_records=args.generation_records,
            completions=args.completions, eval_every=args.eval_every, report=args.report, quiet=args.quiet,
            out=args.out if args.out is not None else default_out_dir(),  # decided now: the CLI names it
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str = "job") -> RunJob:
        """The job :meth:`to_json` wrote; an unknown field or a bad value raises :class:`InputError` naming it."""
        if not isinstance(data, Mapping):
            raise InputError(f"{source}: expected a JSON object of job fields, got {type(data).__name__}")
        known = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{source}: unknown job field(s) {unknown}; known: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except (UsageError, TypeError, ValueError) as exc:
            raise InputError(f"{source}: {exc}") from None

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], run_dir: str | Path) -> RunJob:
        """The job of the interrupted run in ``run_dir`` as its journal manifest recorded it, resuming there
        (the manifest as :class:`~editkit.job.rundir.RunDirectory` read it when it claimed ``run_dir``)."""
        return cls.from_json({**_journaled_job(manifest["invocation"], manifest["config"]), "out": str(run_dir),
                              "resume": str(run_dir)}, source=f"{run_dir}/journal/manifest.json")

    # ------------------------------------------------------------------ views

    def to_json(self) -> dict[str, Any]:
        """JSON-able fields (paths as strings, pairs as objects); :meth:`from_json` reads it back equal."""
        out: dict[str, Any] = {}
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if isinstance(value, Path):
                value = str(value)
            elif field.name in ("dataset_options", "overrides", "hparam_defaults") and value is not None:
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out

    def config(self) -> RunConfig:
        """The :class:`~editkit.config.RunConfig` of the edit (``defaults``: :attr:`hparam_defaults`, or none)."""
        from editkit.config import RunConfig

        return RunConfig(editor=self.editor, constraints=self.constraints, layers=self.layers,
                         batch_size=self.batch_size, seed=self.seed, device=self.device, preset=self.preset,
                         overrides=self.overrides, constrain_mode=self.constrain_mode,
                         defaults=self.hparam_defaults or ())

    def invocation(self) -> dict[str, Any]:
        """The journal's ``invocation`` record (what the run needs besides its config and its requests)."""
        return {
            "dataset": self.dataset,
            "model": self.model,
            "corpus": self.corpus,
            "stats_dir": str(self.store_dir()) if self.store_dir() is not None else None,
            "stats_max_length": self.stats_max_length,
            "stats_max_tokens": self.stats_max_tokens,
            "metrics": None if self.metrics is None else (",".join(self.metrics) or "none"),
            "eval_every": self.eval_every,
            "generation_records": self.generation_records,
            "metric_options": list(self.metric_options),
            "completions": self.completions,
            "retention_probes": str(self.retention_probes) if self.retention_probes else None,
            "skip_invalid": self.skip_invalid,
        }

    def store_dir(self) -> Path | None:
        """The key statistics store: :attr:`stats_dir`, else the default one ``editkit stats`` fills;
        None: statistics in memory (``stats_store=False``)."""
        from editkit.keystats.defaults import default_stats_dir

        if not self.stats_store:
            return None
        return self.stats_dir if self.stats_dir is not None else default_stats_dir()


def default_out_dir() -> Path:
    """``runs/run-<date>-<time>`` (relative to the working directory), the run directory of a job without ``out``."""
    import time

    return Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")


def _journaled_job(invocation: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """Job fields from a journal's ``invocation`` and ``config`` (every journal format written so far)."""
    fields = {k: v for k, v in config.items() if k != "defaults"}
    fields["hparam_defaults"] = dict(config.get("defaults") or {})
    for key in ("dataset", "model", "corpus", "stats_max_length", "stats_max_tokens", "metrics", "eval_every",
                "generation_records", "completions", "retention_probes", "skip_invalid"):
        if key in invocation:
            fields[key] = invocation[key]
    fields["metric_options"] = list(invocation.get("metric_options") or [])
    fields["stats_dir"] = invocation.get("stats_dir")
    fields["stats_store"] = invocation.get("stats_dir") is not None
    return fields
