"""What a run takes from the registered datasets when the user does not say: requests, model, corpus, settings.

A dataset (:class:`~editkit.catalog.DatasetSpec`) is *built for a model* when it ships one
(``model()``, e.g. the demo world's) or names one (``model_name``, e.g. a model that a model plugin
registers). Such a dataset supplies the defaults of a run on that model:

* the model, when ``--model`` is not given;
* the edit requests, when neither ``--requests`` nor ``--dataset`` is given and ``--model`` names
  the model of a registered dataset (else the default dataset is used);
* the corpus of the key statistics C0, when ``--corpus`` is not given: the corpus of the dataset
  built for the run's model, else the corpus of the run's dataset;
* the hyperparameters calibrated for the model (``settings``), but only when the run edits that very
  dataset (``--dataset NAME``, or the default dataset): requests from a file (``--requests``) or from
  another dataset on the same model are not what the settings were calibrated on
  (:meth:`RunDefaults.settings_for`); and with ``--preset`` the editor takes none of them (a preset is
  complete; :func:`editkit.methods.without_editor_defaults`);
* whether its C0 is cached in the user cache (the dataset's own model and corpus).

A model registered by name (:class:`~editkit.catalog.ModelSpec`) may carry hyperparameters calibrated for it on
held-out cases (``settings``, e.g. its edited layers); they are the defaults of any run that edits it, requests
from a file included, unless a dataset's calibrated settings apply (:func:`calibrated_settings`).

The kernel names no model: a model is matched by the string ``--model`` gives and ``model_name``
holds. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from editkit.catalog import DatasetSpec, ModelSpec
from editkit.errors import UsageError


def dataset_for_model(datasets: Mapping[str, DatasetSpec], model: str | None) -> DatasetSpec | None:
    """The registered dataset whose ``model_name`` is ``model`` (the first by name when several are)."""
    if model is None:
        return None
    return next((spec for _, spec in sorted(datasets.items()) if spec.model_name == model), None)


def default_dataset_name(datasets: Mapping[str, DatasetSpec], model: str | None, fallback: str) -> str:
    """The dataset of a run given neither ``--requests`` nor ``--dataset``: the one built for ``--model``
    (when it has requests), else ``fallback``."""
    spec = dataset_for_model(datasets, model)
    return spec.name if spec is not None and spec.load is not None else fallback


@attrs.frozen(kw_only=True)
class RunDefaults:
    """``model``: the model to load; ``corpus``: the ``--corpus`` value to use (None: no C0 source);
    ``settings``: the hyperparameters calibrated for the model (``--set`` form) by the dataset
    ``settings_from``; ``cache_stats``: keep C0 in the user cache."""

    model: str
    corpus: str | None
    settings: tuple[tuple[str, str], ...] = ()
    cache_stats: bool = False
    settings_from: str | None = None

    def settings_for(self, dataset: DatasetSpec | None) -> tuple[tuple[str, str], ...]:
        """The calibrated settings a run on ``dataset`` (None: ``--requests``) applies: :attr:`settings` when
        ``dataset`` is the dataset they were calibrated on, else none."""
        if dataset is None or self.settings_from is None or dataset.name != self.settings_from:
            return ()
        return self.settings


def dataset_reader(datasets: Mapping[str, DatasetSpec]) -> DatasetSpec | None:
    """The dataset plugin that reads a dataset file (``--dataset FILE``): the first by name that loads requests
    and is not built for a model."""
    return next((d for _, d in sorted(datasets.items()) if d.load is not None and d.model is None
                 and d.model_name is None), None)


def calibrated_settings(defaults: RunDefaults, dataset: DatasetSpec | None,
                        models: Mapping[str, ModelSpec]) -> tuple[tuple[str, str], ...]:
    """The calibrated settings a run applies: those of the dataset it edits when that dataset was calibrated for
    the run's model (:meth:`RunDefaults.settings_for`), else those the run's model is registered with (none for a
    model given by path or hub name)."""
    settings = defaults.settings_for(dataset)
    if settings:
        return settings
    spec = models.get(defaults.model)
    return spec.settings if spec is not None else ()


def defaults_origin(datasets: Mapping[str, DatasetSpec], dataset: str | None, defaults: Mapping[str, str], *,
                    models: Mapping[str, ModelSpec] | None = None, model: str | None = None) -> str:
    """Where a run's calibrated defaults came from, in words: ``"dataset default (NAME)"`` when they are the
    calibrated settings of the run's dataset ``NAME`` (all, or those left with a preset), ``"model default
    (NAME)"`` when they are those of the registered model ``NAME`` the run edits, else ``"calibrated defaults"``
    (given as such, e.g. ``RunJob(hparam_defaults=...)``)."""
    given = set(dict(defaults).items())
    spec = datasets.get(dataset) if dataset is not None else None
    if spec is not None and given <= set(spec.settings):
        return f"dataset default ({spec.name})"
    model_spec = (models or {}).get(model) if model is not None else None
    if model_spec is not None and given <= set(model_spec.settings):
        return f"model default ({model_spec.name})"
    return "calibrated defaults"


def run_defaults(datasets: Mapping[str, DatasetSpec], dataset: DatasetSpec | None, *, model: str | None,
                 corpus: str | None) -> RunDefaults:
    """The defaults of a run on ``dataset`` (None: ``--requests``) with the user's ``--model`` and ``--corpus``.

    Calls ``dataset.model()`` only when ``--model`` is not given (it may build the model).
    """
    own = model is None
    if own:
        if dataset is None or (dataset.model is None and dataset.model_name is None):
            raise UsageError("--model is required with --requests (only built-in datasets ship a model)")
        model = dataset.model_name if dataset.model_name is not None else str(dataset.model())  # type: ignore[misc]
    built_for = dataset_for_model(datasets, model)
    settings: tuple[tuple[str, str], ...] = ()
    settings_from = None
    if built_for is not None:
        settings, settings_from = built_for.settings, built_for.name
    elif own and dataset is not None:
        settings, settings_from = dataset.settings, dataset.name
    chosen = corpus
    if chosen is None:
        if built_for is not None and built_for.corpus is not None:
            chosen = built_for.name
        elif dataset is not None and dataset.corpus is not None:
            chosen = dataset.name
    cache = corpus is None and chosen is not None and (built_for is not None or own)
    return RunDefaults(model=str(model), corpus=chosen, settings=settings, cache_stats=cache,
                       settings_from=settings_from if settings else None)

