"""Which stored key statistics a request reuses, and how a mismatch is explained."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pytest

from editkit.keystats.defaults import (
    DEFAULT_MAX_TOKENS,
    HF_DEFAULT_SAMPLES,
    corpus_selection,
    default_stats_dir,
    token_budget,
)
from editkit.keystats.identity import site_identity
from editkit.keystats.reuse import Candidate, choose, closest, judge

MODEL = {"name": "./tiny", "revision": None, "weights_sha256": "a" * 64, "config_sha256": "b" * 64,
         "tokenizer_sha256": "c" * 64, "param_dtype": "float32"}
CORPUS = {"source": "text", "sha256": "d" * 64, "samples": None, "seed": None}


def identity(max_tokens: int | None = DEFAULT_MAX_TOKENS, **changes) -> dict:
    ident = site_identity(model=copy.deepcopy(MODEL), module="transformer.h.1.mlp.c_proj", layer=1, d_in=256,
                          corpus=dict(CORPUS), max_length=64, max_tokens=max_tokens, dtype="float32")
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        target = ident
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return ident


def stored(count: int, max_tokens: int | None, name: str = "f", **changes) -> Candidate:
    return Candidate(path=Path(f"/store/tiny/{name}.safetensors"), identity=identity(max_tokens, **changes),
                     count=count)


@pytest.mark.parametrize(("count", "stored_budget", "wanted_budget", "reusable"), [
    (200_000, 200_000, 200_000, True),  # the exact key
    (288_000, None, 200_000, True),  # `editkit stats --max-tokens all` (the whole corpus), a run's default budget
    (500_000, 500_000, 200_000, True),  # more tokens than asked for: reused, its real count recorded
    (150_000, None, 200_000, True),  # the whole corpus is smaller than the budget: collecting again is the same
    (150_000, 300_000, 200_000, True),  # ran out of documents before its own budget: the whole corpus
    (100_000, 100_000, 200_000, False),  # fewer tokens than needed, and the corpus has more
    (200_000, 200_000, None, False),  # capped: not the whole corpus a run with budget 'all' asks for
    (288_000, None, None, True),
    (150_000, 300_000, None, True),
])
def test_token_budget_is_a_minimum(count, stored_budget, wanted_budget, reusable):
    verdict = judge(stored(count, stored_budget), identity(wanted_budget))
    assert verdict.reusable is reusable
    if not reusable:
        assert len(verdict.differences) == 1 and verdict.differences[0].startswith("tokens (stored ")


@pytest.mark.parametrize(("field", "value", "named"), [
    ("model.weights_sha256", "e" * 64, "model weights (stored eeeeeeeeeeee…, this run aaaaaaaaaaaa…)"),
    ("model.config_sha256", "e" * 64, "model config"),
    ("model.tokenizer_sha256", "e" * 64, "tokenizer"),
    ("model.param_dtype", "bfloat16", "model dtype (stored bfloat16, this run float32)"),
    ("corpus.sha256", "e" * 64, "corpus content"),
    ("corpus.samples", 10, "corpus samples (stored 10, this run none)"),
    ("corpus.seed", 3, "corpus seed (stored 3, this run none)"),
    ("max_length", 128, "max_length (stored 128, this run 64)"),
    ("dtype", "float64", "dtype (stored float64, this run float32)"),
    ("format", "editkit.keystats/0", "format"),
    ("module", "transformer.h.2.mlp.c_proj", "module"),
])
def test_every_key_field_is_exact_and_named(field, value, named):
    verdict = judge(stored(10**6, None, **{field: value}), identity())
    assert not verdict.reusable
    assert len(verdict.differences) == 1 and verdict.differences[0].startswith(named), verdict.differences


def test_model_name_and_revision_are_labels_not_keys():
    other_name = stored(DEFAULT_MAX_TOKENS, DEFAULT_MAX_TOKENS, **{"model.name": "/abs/tiny", "model.revision": "x"})
    assert judge(other_name, identity()).reusable


def test_choose_prefers_the_same_sums_then_the_most_tokens():
    """A larger collection added to the store later must not change the C0 a run gets when the store
    holds the run's own collection; it serves only when nothing with the same sums is stored."""
    exact = stored(DEFAULT_MAX_TOKENS, DEFAULT_MAX_TOKENS, "exact")
    bigger = stored(900_000, None, "bigger")
    capped_bigger = stored(1_000_000, 1_000_000, "capped")
    other_model = stored(5_000_000, None, "other", **{"model.weights_sha256": "e" * 64})
    assert choose([bigger, exact, capped_bigger, other_model], identity()) == exact
    assert choose([bigger, capped_bigger, other_model], identity()) == capped_bigger  # no same sums: most tokens
    assert choose([exact, other_model], identity()) == exact
    small_whole = stored(150_000, None, "small-whole")  # the whole corpus, smaller than the budget
    assert choose([capped_bigger, small_whole], identity()) == small_whole
    assert choose([stored(DEFAULT_MAX_TOKENS, None, "whole"), exact], identity()) == exact  # tie: the exact key
    assert choose([other_model], identity()) is None
    assert choose([], identity()) is None


def test_closest_names_the_fewest_differences():
    far = stored(10**6, None, "far", **{"model.weights_sha256": "e" * 64, "max_length": 32})
    near = stored(10**6, None, "near", max_length=128)
    verdict = closest([far, near], identity())
    assert verdict.candidate == near and verdict.differences == ("max_length (stored 128, this run 64)",)
    assert closest([], identity()) is None


def test_token_budget_argument():
    assert token_budget("all") is None and token_budget("ALL") is None
    assert token_budget("200000") == 200_000 and token_budget("1_000") == 1000
    for bad in ("0", "-5", "lots"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive number of tokens or 'all'"):
            token_budget(bad)


def test_both_commands_default_to_one_store_and_one_budget(monkeypatch, tmp_path):
    from editkit.cli.main import build_parser

    monkeypatch.delenv("EDITKIT_STATS_DIR", raising=False)
    monkeypatch.setenv("EDITKIT_CACHE", str(tmp_path))
    assert default_stats_dir() == tmp_path / "stats"
    monkeypatch.setenv("EDITKIT_STATS_DIR", str(tmp_path / "elsewhere"))
    assert default_stats_dir() == tmp_path / "elsewhere"
    parser = build_parser()
    run = parser.parse_args(["run"])
    stats = parser.parse_args(["stats"])
    assert run.stats_max_tokens == stats.max_tokens == DEFAULT_MAX_TOKENS


def test_corpus_selection_is_shared():
    assert corpus_selection("hf:wikitext", max_tokens=None).samples == HF_DEFAULT_SAMPLES  # 'all' of a stream
    assert corpus_selection("hf:wikitext", max_tokens=1000).samples is None
    assert corpus_selection("hf:wikitext", max_tokens=None, samples=7).samples == 7
    assert corpus_selection("c.txt", max_tokens=None).samples is None
