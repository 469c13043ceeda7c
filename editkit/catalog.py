"""The catalog: what plugins registered through the catalog hooks, and who registered it.

Entries are frozen attrs value objects. The :class:`Catalog` is built per plugin manager
(never a module global); its ``register`` callbacks record the providing plugin for every
entry, so ``editkit plugins`` can say who provides what.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from editkit.converters import to_settings, to_tuple
from editkit.errors import UsageError

_NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")
_MODEL_NAME = re.compile(r"^[a-z][a-z0-9_\-]*(\.[a-z0-9_\-]+)*$")  # a version may have dots: qwen2.5-coder-1.5b


def _valid_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"{type(instance).__name__}.{attribute.name} must be a lower-case identifier "
            f"(letters, digits, '-', '_'), got {value!r}"
        )


def _valid_model_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not _MODEL_NAME.match(value) or value.endswith((".gguf", ".safetensors")):
        raise ValueError(
            f"{type(instance).__name__}.{attribute.name} must be a lower-case name (letters, digits, '-', '_', "
            f"and '.' between them, not a file name), got {value!r}"
        )


def _str_dict(value: Mapping[str, str]) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(value).items()}


def _callable(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not callable(value):
        raise TypeError(f"{type(instance).__name__}.{attribute.name} must be callable, got {value!r}")


@attrs.frozen(kw_only=True)
class EditorSpec:
    """An editor selectable with ``--editor NAME``.

    ``factory(hparams)`` returns a fresh *stage plugin* object for one run: an object whose
    methods are marked with ``@editkit.hookimpl`` and implement the stage hooks (locate,
    collect-keys, compute-residual, solve, batch-end). Per-run method state lives on it.
    ``hparams`` is an attrs class whose defaults are the generic defaults; ``presets`` maps a
    preset name (e.g. ``"gpt2-xl"``) to field overrides. ``implied_constraints`` are
    constraints the editor always runs last (e.g. the ``prune`` editor = MEMIT + prune).
    ``computes_targets``: its stages implement ``editkit_compute_targets`` (constraints that act on target
    values need it). ``conflicts``: constraint name → why this editor cannot run with it (refused, exit 2).
    """

    name: str = attrs.field(validator=_valid_name)
    summary: str = attrs.field(validator=attrs.validators.instance_of(str))
    factory: Callable[[Any], object] = attrs.field(validator=_callable)
    hparams: type = attrs.field(validator=attrs.validators.instance_of(type))
    presets: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    implied_constraints: tuple[str, ...] = attrs.field(default=(), converter=to_tuple)
    has_solver: bool = True
    default_constrain_mode: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(("inline", "posthoc")))
    )
    computes_targets: bool = False
    conflicts: Mapping[str, str] = attrs.field(factory=dict, converter=_str_dict)


@attrs.frozen(kw_only=True)
class ConstraintSpec:
    """A constraint selectable (repeatably, ordered) with ``--constraint NAME``.

    ``factory(hparams)`` returns a fresh stage plugin implementing ``editkit_constrain_update``
    (and optionally ``editkit_batch_end``). ``invariant`` says in words what the constraint
    guarantees on the update it returns; ``linear`` whether ``T(aΔ + bΔ') = aT(Δ) + bT(Δ')``.
    ``needs_targets``: it acts on the target values (``TargetProposal``), so it needs an editor that computes
    them. ``conflicts``: another constraint's or an editor's name → why the two cannot run together.
    """

    name: str = attrs.field(validator=_valid_name)
    summary: str = attrs.field(validator=attrs.validators.instance_of(str))
    factory: Callable[[Any], object] = attrs.field(validator=_callable)
    hparams: type = attrs.field(validator=attrs.validators.instance_of(type))
    invariant: str = attrs.field(validator=attrs.validators.instance_of(str))
    linear: bool = attrs.field(validator=attrs.validators.instance_of(bool))
    needs_targets: bool = False
    conflicts: Mapping[str, str] = attrs.field(factory=dict, converter=_str_dict)


@attrs.frozen(kw_only=True)
class ArchitectureSpec:
    """Where a ``transformers`` family keeps the modules editing needs.

    Module paths are dotted names for ``model.get_submodule``; ``{}`` stands for the layer index.
    """

    model_type: str = attrs.field(validator=_valid_name)
    layers: str = attrs.field(validator=attrs.validators.instance_of(str))
    mlp_out: str = attrs.field(validator=attrs.validators.instance_of(str))
    final_norm: str = attrs.field(validator=attrs.validators.instance_of(str))
    unembed: str = attrs.field(default="lm_head", validator=attrs.validators.instance_of(str))

    def __attrs_post_init__(self) -> None:
        if "{}" not in self.mlp_out:
            raise ValueError(f"ArchitectureSpec.mlp_out must contain '{{}}' for the layer, got {self.mlp_out!r}")


@attrs.frozen(kw_only=True)
class DatasetSpec:
    """A named dataset: edit requests and/or a text corpus.

    ``load(**options)`` returns CounterFact-style request records (``--dataset NAME``);
    ``corpus(**options)`` returns an iterable of texts for key statistics (``--corpus NAME``);
    ``corpus_identity()`` (optional) returns what those texts are (JSON, e.g. a content hash), so
    that cached statistics follow a change of the texts; ``model()`` (optional) returns the path
    of a ``save_pretrained`` model that knows the dataset's facts (the built-in demo world ships one);
    ``model_name`` (instead of ``model``) names a model that ``--model`` accepts (e.g. one registered
    by a model plugin) for which the dataset was built; ``extras()`` (optional) returns evaluation
    inputs by name (``fact_probes``, ``reference_texts``; see :class:`editkit.evaluation.EvalContext`).
    ``settings`` are hyperparameters calibrated for that model (``--set`` form, e.g.
    ``{"v_lr": "1", "nullspace.l2": "3"}``), used as a run's defaults when it edits that model
    (see :class:`editkit.config.RunConfig`). A run on the model named by ``model_name`` also takes
    the dataset's requests, corpus and settings as its defaults (see :mod:`editkit.job.datasetdefaults`).
    At least one of load/corpus is given.
    """

    name: str = attrs.field(validator=_valid_name)
    summary: str = attrs.field(validator=attrs.validators.instance_of(str))
    load: Callable[..., Any] | None = attrs.field(default=None)
    corpus: Callable[..., Any] | None = attrs.field(default=None)
    model: Callable[[], Any] | None = attrs.field(default=None)
    model_name: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    extras: Callable[[], Any] | None = attrs.field(default=None)
    corpus_identity: Callable[[], Any] | None = attrs.field(default=None)
    settings: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=to_settings)

    def __attrs_post_init__(self) -> None:
        if self.load is None and self.corpus is None:
            raise ValueError(f"DatasetSpec {self.name!r}: give load (requests) or corpus (texts), or both")
        for field in ("load", "corpus", "model", "extras", "corpus_identity"):
            value = getattr(self, field)
            if value is not None and not callable(value):
                raise TypeError(f"DatasetSpec.{field} must be callable, got {value!r}")
        if self.model is not None and self.model_name is not None:
            raise ValueError(f"DatasetSpec {self.name!r}: give model (a function) or model_name, not both")
        if self.model_name is not None and not self.model_name.strip():
            raise ValueError(f"DatasetSpec {self.name!r}: model_name must not be empty")
        if self.corpus_identity is not None and self.corpus is None:
            raise ValueError(f"DatasetSpec {self.name!r}: corpus_identity without a corpus")


def _options_class(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not attrs.has(value):
        raise TypeError(f"{type(instance).__name__}.{attribute.name} must be an attrs class or None, got {value!r}")


@attrs.frozen(kw_only=True)
class MetricSpec:
    """An evaluation metric; ``compute(...)`` signature is the metric family's own.

    ``options`` (optional): an attrs class of the metric's options, each with a default; ``editkit run
    --metric-option NAME.KEY=VALUE`` fills it (validated before any work; see :mod:`editkit.helpers.metricoptions`)
    and the metric reads it with :func:`editkit.helpers.metricoptions.metric_options`. Its module must not
    import torch (``editkit --help`` loads it).
    """

    name: str = attrs.field(validator=_valid_name)
    summary: str = attrs.field(validator=attrs.validators.instance_of(str))
    compute: Callable[..., Any] = attrs.field(validator=_callable)
    options: type | None = attrs.field(default=None, validator=_options_class)


@attrs.frozen(kw_only=True)
class CommandSpec:
    """An ``editkit NAME`` subcommand: ``add_arguments(parser)`` fills its argparse parser,
    ``main(args) -> int`` runs it (import heavy modules inside ``main``)."""

    name: str = attrs.field(validator=_valid_name)
    help: str = attrs.field(validator=attrs.validators.instance_of(str))
    add_arguments: Callable[[Any], None] = attrs.field(validator=_callable)
    main: Callable[[Any], int] = attrs.field(validator=_callable)


@attrs.frozen(kw_only=True)
class ModelSpec:
    """A model selectable by name wherever ``--model`` is taken (``--model smollm2-135m``).

    ``path()`` returns the model's weights on this machine: a ``.gguf`` file (editkit converts it
    once into its cache, see :mod:`editkit.modelsource.gguf`) or a ``save_pretrained`` directory; it is called
    only when ``installed()`` is true, and may do one-off work (e.g. assemble chunks into a file).
    ``install`` is the exact command that installs the model (shown when it is missing); ``source``
    says where the file comes from, ``licence`` under which terms, ``size_bytes`` how large the
    download is. ``installed()`` and ``path()`` must not import torch (``editkit models`` lists
    models without it). ``settings`` are hyperparameters calibrated for this model on held-out cases (``--set``
    form, e.g. ``{"layers": "4-8", "v_lr": "0.5"}``): the defaults of a run that edits it whatever its requests,
    unless the run edits a dataset built for the model, whose own calibrated settings then apply (see
    :mod:`editkit.job.datasetdefaults`).
    """

    name: str = attrs.field(validator=_valid_model_name)
    summary: str = attrs.field(validator=attrs.validators.instance_of(str))
    licence: str = attrs.field(validator=attrs.validators.instance_of(str))
    source: str = attrs.field(validator=attrs.validators.instance_of(str))
    size_bytes: int = attrs.field(validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)])
    install: str = attrs.field(validator=attrs.validators.instance_of(str))
    installed: Callable[[], bool] = attrs.field(validator=_callable)
    path: Callable[[], Any] = attrs.field(validator=_callable)
    settings: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=to_settings)

    def to_json(self) -> dict[str, Any]:
        """What ``editkit models --json`` shows (``installed()`` is called)."""
        return {"name": self.name, "summary": self.summary, "installed": bool(self.installed()),
                "size_bytes": self.size_bytes, "licence": self.licence, "source": self.source,
                "install": self.install, "settings": dict(self.settings)}


_KINDS: dict[str, type] = {
    "editors": EditorSpec,
    "constraints": ConstraintSpec,
    "architectures": ArchitectureSpec,
    "datasets": DatasetSpec,
    "metrics": MetricSpec,
    "commands": CommandSpec,
    "models": ModelSpec,
}


def _key(entry: Any) -> str:
    return entry.model_type if isinstance(entry, ArchitectureSpec) else entry.name


@attrs.define
class Catalog:
    """Entries by kind and name, with the plugin that registered each."""

    entries: dict[str, dict[str, Any]] = attrs.field(factory=lambda: {k: {} for k in _KINDS})
    providers: dict[tuple[str, str], str] = attrs.field(factory=dict)
    _outer: Catalog | None = attrs.field(default=None, repr=False, eq=False, init=False)

    def register_callback(self, kind: str, plugin_name: str) -> Callable[[Any], None]:
        """A ``register`` callback for one catalog hook, bound to the calling plugin."""
        expected = _KINDS[kind]

        def register(entry: Any) -> None:
            if not isinstance(entry, expected):
                raise TypeError(
                    f"plugin {plugin_name!r} registered {entry!r} as one of {kind}; "
                    f"expected an editkit.catalog.{expected.__name__}"
                )
            key = _key(entry)
            for catalog in (self, self._outer):
                if catalog is not None and key in catalog.entries[kind]:
                    other = catalog.providers[(kind, key)]
                    raise ValueError(f"{kind[:-1]} {key!r} registered twice: by {other!r} and by {plugin_name!r}")
            self.entries[kind][key] = entry
            self.providers[(kind, key)] = plugin_name

        return register

    def staging(self) -> Catalog:
        """An empty catalog that sees this one's entries for duplicate checks; :meth:`merge` it back."""
        staged = Catalog()
        staged._outer = self
        return staged

    def merge(self, staged: Catalog) -> None:
        """Add a staging catalog's entries (checked against this one's when they were registered)."""
        for kind, entries in staged.entries.items():
            for key, entry in entries.items():
                self.register_callback(kind, staged.providers[(kind, key)])(entry)

    def get(self, kind: str, name: str) -> Any:
        try:
            return self.entries[kind][name]
        except KeyError:
            available = ", ".join(sorted(self.entries[kind])) or "none installed"
            raise UsageError(f"unknown {kind[:-1]} {name!r}; available: {available}") from None

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def provided_by(self, plugin_name: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for (kind, key), provider in self.providers.items():
            if provider == plugin_name:
                out.setdefault(kind, []).append(key)
        return {k: sorted(v) for k, v in out.items()}
