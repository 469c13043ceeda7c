"""benchmarks/delta_attribution.py: retention with two runs' updates applied layer by layer equals scoring a
model edited by hand with the same layers' updates, and the model's weights come back bit-exactly."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from editkit.api import continuation_scores
from editkit.testing.tiny import tiny_model, tiny_tokenizer

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "delta_attribution.py"
PROMPTS = ["The capital of France is", "Water is made of", "The sun rises in the", "A cat is an",
           "Paris is a city in", "The colour of grass is", "Dogs like to", "Music is played on"]


@pytest.fixture(scope="module")
def attribution(script):
    return script(SCRIPT)


def recall(model, tok, probes):
    scores = continuation_scores(model, tok, [p for p, _ in probes], [o for _, o in probes])
    return 100.0 * sum(bool(hits.all()) for _, hits in scores) / len(scores)


def test_rows_match_models_edited_by_hand_and_weights_come_back(attribution):
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=2, d_model=16, d_mlp=48, seed=1)
    with torch.no_grad():  # objects = the model's own greedy next token (those that survive decode → encode)
        probes = []
        for prompt in PROMPTS:
            ids = tok(prompt, return_tensors="pt").input_ids
            probes.append((prompt, tok.decode([int(model(ids).logits[0, -1].argmax())])))
    hits = continuation_scores(model, tok, [p for p, _ in probes], [o for _, o in probes])
    probes = [probe for probe, (_, hit) in zip(probes, hits) if bool(hit.all())]
    assert len(probes) >= 3 and recall(model, tok, probes) == 100.0
    modules = ["transformer.h.0.mlp.c_proj", "transformer.h.1.mlp.c_proj"]
    g = torch.Generator().manual_seed(0)
    runs = {"A": {m: 3.0 * torch.randn(48, 16, generator=g) for m in modules},
            "B": {m: 0.3 * torch.randn(48, 16, generator=g) for m in modules}}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    rows = dict(attribution.attribution(model, tok, probes, runs, batch_size=3))

    assert [name for name, _ in attribution.configurations([0, 1])] == list(rows)
    for name, choice in attribution.configurations([0, 1]):
        edited = copy.deepcopy(model)
        params = dict(edited.named_parameters())
        with torch.no_grad():
            for layer, run in choice.items():
                params[modules[layer] + ".weight"].add_(runs[run][modules[layer]])
        assert rows[name] == recall(edited, tok, probes), name
    assert rows["unedited"] == 100.0 and rows["A, all layers"] < 100.0  # the rows are not all alike
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())


def test_runs_on_different_modules_are_refused(attribution):
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=2, d_model=16, d_mlp=48, seed=1)
    runs = {"A": {"transformer.h.0.mlp.c_proj": torch.zeros(48, 16)},
            "B": {"transformer.h.1.mlp.c_proj": torch.zeros(48, 16)}}
    with pytest.raises(SystemExit, match="different modules"):
        list(attribution.attribution(model, tok, [("a", " b")], runs))


def test_layer_of_reads_the_layer_index(attribution):
    assert attribution.layer_of("model.layers.7.mlp.down_proj") == 7
    assert attribution.layer_of("transformer.h.0.mlp.c_proj") == 0
    with pytest.raises(SystemExit, match="cannot tell the layer"):
        attribution.layer_of("lm_head")
