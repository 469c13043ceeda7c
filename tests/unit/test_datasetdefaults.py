"""What a run takes from registered datasets when the user does not say (editkit.job.datasetdefaults)."""

from __future__ import annotations

import pytest

from editkit.catalog import DatasetSpec, ModelSpec
from editkit.cli.run import DEFAULT_DATASET
from editkit.errors import UsageError
from editkit.job.datasetdefaults import (
    calibrated_settings,
    dataset_for_model,
    default_dataset_name,
    defaults_origin,
    run_defaults,
)
from editkit.plugins import PluginHost

built: list[str] = []


def _ship() -> str:
    built.append("built")
    return "/cache/world-model"


WORLD = DatasetSpec(name="world", summary="ships a model", load=list, corpus=list, model=_ship,
                    settings={"v_lr": "1.0"})
FACTS = DatasetSpec(name="facts", summary="names a model", load=list, corpus=list, model_name="real-model",
                    settings={"v_lr": "0.5"})
TEXTS = DatasetSpec(name="texts", summary="only texts", corpus=list)
FILES = DatasetSpec(name="files", summary="reads files", load=list)
DATASETS = {d.name: d for d in (WORLD, FACTS, TEXTS, FILES)}


def test_dataset_spec_takes_a_model_function_or_a_model_name_not_both():
    with pytest.raises(ValueError, match="not both"):
        DatasetSpec(name="x", summary="", load=list, model=_ship, model_name="m")
    with pytest.raises(ValueError, match="corpus_identity without a corpus"):
        DatasetSpec(name="x", summary="", load=list, corpus_identity=dict)


def test_the_dataset_built_for_a_model_is_found_by_its_name():
    assert dataset_for_model(DATASETS, "real-model") is FACTS
    assert dataset_for_model(DATASETS, "/cache/world-model") is None and dataset_for_model(DATASETS, None) is None
    assert default_dataset_name(DATASETS, "real-model", "world") == "facts"
    assert default_dataset_name(DATASETS, "gpt2", "world") == "world"
    assert default_dataset_name(DATASETS, None, "world") == "world"


def test_a_dataset_that_names_its_model_gives_model_corpus_settings_and_cache():
    d = run_defaults(DATASETS, FACTS, model=None, corpus=None)
    assert (d.model, d.corpus, dict(d.settings), d.cache_stats) == ("real-model", "facts", {"v_lr": "0.5"}, True)
    assert run_defaults(DATASETS, FACTS, model="real-model", corpus=None) == d  # --model NAME: the same


def test_a_shipped_model_is_built_only_when_no_model_is_given():
    built.clear()
    d = run_defaults(DATASETS, WORLD, model=None, corpus=None)
    assert (d.model, d.corpus, dict(d.settings), d.cache_stats) == ("/cache/world-model", "world", {"v_lr": "1.0"},
                                                                   True)
    d = run_defaults(DATASETS, WORLD, model="gpt2", corpus=None)
    assert (d.model, d.corpus, d.settings, d.cache_stats) == ("gpt2", "world", (), False)
    assert built == ["built"]


def test_requests_on_a_registered_model_take_its_datasets_corpus_and_settings():
    d = run_defaults(DATASETS, None, model="real-model", corpus=None)
    assert (d.corpus, dict(d.settings), d.cache_stats) == ("facts", {"v_lr": "0.5"}, True)
    d = run_defaults(DATASETS, WORLD, model="real-model", corpus=None)  # another dataset's facts on that model
    assert (d.corpus, dict(d.settings)) == ("facts", {"v_lr": "0.5"})


def test_the_users_corpus_wins_and_is_not_cached_by_default():
    d = run_defaults(DATASETS, FACTS, model=None, corpus="mine.txt")
    assert (d.corpus, d.cache_stats) == ("mine.txt", False)
    d = run_defaults(DATASETS, None, model="gpt2", corpus=None)
    assert (d.corpus, d.settings, d.cache_stats) == (None, (), False)


def test_requests_without_a_model_are_refused():
    with pytest.raises(UsageError, match="--model is required"):
        run_defaults(DATASETS, None, model=None, corpus=None)
    with pytest.raises(UsageError, match="--model is required"):
        run_defaults(DATASETS, FILES, model=None, corpus=None)


def test_the_default_run_is_the_smollm2_demo():
    datasets = PluginHost().catalog.entries["datasets"]
    assert DEFAULT_DATASET == "smollm2-facts" and DEFAULT_DATASET in datasets
    d = run_defaults(datasets, datasets[DEFAULT_DATASET], model=None, corpus=None)
    assert (d.model, d.corpus, d.cache_stats) == ("smollm2-135m", "smollm2-facts", True)
    assert default_dataset_name(datasets, "smollm2-135m", "demo") == "smollm2-facts"


def test_stats_defaults_to_the_corpus_of_the_dataset_built_for_the_model():
    import argparse

    from editkit.cli.main import build_parser
    from editkit.cli.stats import _corpus

    parser = build_parser()
    host = PluginHost()
    for model, expected in (("smollm2-135m", "smollm2-facts"), ("gpt2", "wikimedia/wikipedia")):
        args = parser.parse_args(["stats", "--model", model, "--layers", "1"])
        assert isinstance(args, argparse.Namespace)
        assert _corpus(args, host).name == expected


def _model(name: str, settings: dict[str, str]) -> ModelSpec:
    return ModelSpec(name=name, summary="", licence="", source="", size_bytes=0, install="", installed=lambda: True,
                     path=lambda: "/nowhere", settings=settings)


MODELS = {m.name: m for m in (_model("real-model", {"v_lr": "0.1", "layers": "4-8"}),
                               _model("tuned", {"layers": "3-7", "mom2_weight": "5000"}))}


def test_a_registered_models_settings_apply_to_requests_from_a_file():
    d = run_defaults(DATASETS, None, model="tuned", corpus="c.txt")
    assert dict(calibrated_settings(d, None, MODELS)) == {"layers": "3-7", "mom2_weight": "5000"}
    assert defaults_origin(DATASETS, None, {"layers": "3-7"}, models=MODELS, model="tuned") == "model default (tuned)"
    d = run_defaults(DATASETS, TEXTS, model="tuned", corpus=None)  # another dataset's requests on that model
    assert dict(calibrated_settings(d, TEXTS, MODELS)) == {"layers": "3-7", "mom2_weight": "5000"}


def test_a_dataset_calibrated_for_the_model_wins_over_the_models_settings_when_it_is_edited():
    d = run_defaults(DATASETS, FACTS, model="real-model", corpus=None)
    assert dict(calibrated_settings(d, FACTS, MODELS)) == {"v_lr": "0.5"}
    assert defaults_origin(DATASETS, "facts", {"v_lr": "0.5"}, models=MODELS, model="real-model") == \
        "dataset default (facts)"
    d = run_defaults(DATASETS, None, model="real-model", corpus=None)  # --requests: the model's own
    assert dict(calibrated_settings(d, None, MODELS)) == {"v_lr": "0.1", "layers": "4-8"}


def test_a_model_given_by_path_or_without_settings_has_no_calibrated_defaults():
    d = run_defaults(DATASETS, None, model="/models/gpt2", corpus=None)
    assert calibrated_settings(d, None, MODELS) == ()
    assert calibrated_settings(run_defaults(DATASETS, None, model="plain", corpus=None), None,
                               {"plain": _model("plain", {})}) == ()
    # values that are neither the dataset's nor the model's were given as such
    assert defaults_origin(DATASETS, None, {"v_lr": "9"}, models=MODELS, model="tuned") == "calibrated defaults"


def test_a_models_settings_are_listed_and_kept_sorted():
    spec = _model("m", {"v_lr": 0.5, "layers": "4-8"})
    assert spec.settings == (("layers", "4-8"), ("v_lr", "0.5"))
    assert spec.to_json()["settings"] == {"layers": "4-8", "v_lr": "0.5"}
