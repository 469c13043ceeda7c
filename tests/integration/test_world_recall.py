"""Probe scoring against an oracle: per-probe forward passes and greedy generation."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from editkit_world import World, WorldConfig, score_probes
from editkit_world.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def setup():
    world = World.generate(WorldConfig(seed=0, n_subjects=30, train_filler=20, background_filler=200))
    tokenizer = train_tokenizer(world.background_corpus(), vocab_size=400)
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                     n_inner=64, pad_token_id=tokenizer.pad_token_id)
    model = transformers.GPT2LMHeadModel(config).eval()
    return world, tokenizer, model


def _greedy(model, ids: list[int], n: int) -> list[int]:
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            logits = model(input_ids=torch.tensor([out])).logits
            out.append(int(logits[0, -1].argmax()))
    return out[len(ids):]


def test_scores_match_one_probe_at_a_time(setup) -> None:
    world, tokenizer, model = setup
    probes = world.fact_probes()[::23][:12]
    prompts = [p.prompt for p in probes]
    targets = [p.target for p in probes]
    # add targets the model itself produces greedily, so some probes are hits
    for prompt in prompts[:6]:
        ids = tokenizer(prompt)["input_ids"]
        text = tokenizer.decode(_greedy(model, ids, 2))
        if tokenizer(text)["input_ids"] == _greedy(model, ids, 2) and text.startswith(" "):
            prompts.append(prompt)
            targets.append(text)
    scores = score_probes(model, tokenizer, prompts, targets, batch_size=5)
    assert any(scores.hits)
    for prompt, target, hit, logprob in zip(prompts, targets, scores.hits, scores.logprobs):
        p_ids, t_ids = tokenizer(prompt)["input_ids"], tokenizer(target)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([p_ids + t_ids])).logits[0], dim=-1)
        expected = sum(float(logp[len(p_ids) - 1 + k, tok]) for k, tok in enumerate(t_ids))
        assert math.isclose(logprob, expected, rel_tol=1e-4, abs_tol=1e-4)
        assert hit == (_greedy(model, p_ids, len(t_ids)) == t_ids)


def test_empty_and_mismatched(setup) -> None:
    _, tokenizer, model = setup
    assert score_probes(model, tokenizer, [], []).hits == ()
    with pytest.raises(ValueError):
        score_probes(model, tokenizer, ["a"], [])
