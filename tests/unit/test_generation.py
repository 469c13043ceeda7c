"""The key/value-cached sampler gives the same continuations as re-running the whole sequence."""

from __future__ import annotations

import pytest
import torch

from editkit.helpers.generation import sample_continuations
from editkit.testing.tiny import tiny_model, tiny_tokenizer

PROMPTS = ["The mother tongue of", "Paris is the capital of a country where people", "A", "The the the the the"]


@pytest.mark.parametrize("family", ["gpt2", "llama", "gpt_neox"])
@pytest.mark.parametrize("bos", [False, True])
def test_cached_sampling_equals_uncached(family, bos):
    tok = tiny_tokenizer(bos=bos)
    model = tiny_model(family, vocab_size=len(tok), logit_scale=4.0).eval()
    texts = {}
    for cached in (True, False):
        texts[cached] = sample_continuations(model, tok, PROMPTS, max_new_tokens=12, top_k=3,
                                             generator=torch.Generator().manual_seed(7), batch_size=3,
                                             use_cache=cached)
    assert texts[True] == texts[False]
    assert all(t.startswith(p) and len(t) > len(p) for t, p in zip(texts[True], PROMPTS))
    # padding side is restored
    assert tok.padding_side == "right"


def test_zero_new_tokens_returns_prompts():
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok)).eval()
    out = sample_continuations(model, tok, PROMPTS[:2], max_new_tokens=0, generator=torch.Generator())
    assert out == PROMPTS[:2]


def test_fluency_limited_to_the_first_generation_records():
    from editkit_metrics.fluency import fluency_and_consistency

    from editkit.evaluation import EvalContext

    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), logit_scale=4.0).eval()
    records = [{"generation_prompts": [p], "requested_rewrite": {"target_new": {"str": "x"}}} for p in PROMPTS]

    def fluency(recs, extras):
        context = EvalContext(model=model, tokenizer=tok, records=recs, extras=extras, generation_length=8)
        return fluency_and_consistency(context)["fluency"]

    assert fluency(records, {"generation_records": 2}) == fluency(records[:2], {})
    assert fluency(records, {"generation_records": 0}) == fluency(records, {})
    assert fluency(records, {"generation_records": 2}) != fluency(records, {})
