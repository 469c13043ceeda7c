"""Build configuration: tags name the cache entry, configs round-trip through dicts."""

from __future__ import annotations

import attrs
import pytest
from editkit_world import BuildConfig, ModelConfig, TrainConfig, WorldConfig
from editkit_world.config import FORMAT_VERSION


def test_tag_is_stable_and_sensitive() -> None:
    config = BuildConfig()
    assert config.tag() == BuildConfig().tag()
    assert config.tag().startswith(f"v{FORMAT_VERSION}-s0-")
    variants = [
        attrs.evolve(config, world=WorldConfig(seed=1)),
        attrs.evolve(config, model=attrs.evolve(config.model, n_layer=4)),
        attrs.evolve(config, train=attrs.evolve(config.train, threads=2)),
    ]
    assert len({config.tag(), *(v.tag() for v in variants)}) == 4
    assert variants[0].tag().startswith(f"v{FORMAT_VERSION}-s1-")


def test_dict_round_trip() -> None:
    for config in (BuildConfig(), BuildConfig.tiny(seed=3)):
        assert BuildConfig.from_dict(config.to_dict()) == config
    assert BuildConfig.tiny(seed=3).seed == 3


def test_default_architecture() -> None:
    model = BuildConfig().model
    assert (model.n_layer, model.n_embd, model.n_inner, model.n_head) == (6, 128, 512, 4)


def test_validation() -> None:
    with pytest.raises(ValueError, match="n_head"):
        ModelConfig(n_embd=100, n_head=8)
    with pytest.raises(ValueError):
        TrainConfig(lr=0)
    with pytest.raises(TypeError):
        TrainConfig(32)  # type: ignore[misc]  # keyword-only
