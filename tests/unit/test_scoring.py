"""continuation_scores against an independent reference: each pair alone, unpadded, the whole vocabulary.

The batched path sorts rows by length and evaluates the output head only at the columns that predict a
target token (``logits_to_keep``); in float64 it must give the reference's log-probabilities to rounding
(1e-10: the only differences are summation orders inside matrix products, ~1e-16 relative, on values of
order 10), the same argmax flags, and the pairs in the order given.
"""

from __future__ import annotations

import pytest
import torch

from editkit.helpers.scoring import continuation_scores
from editkit.testing.tiny import tiny_model, tiny_tokenizer

PAIRS = [
    ("The mother tongue of Danielle Darrieux is", " French"),
    ("Paris is", " the capital of France"),
    ("Toko Yasuda plays the", " guitar"),
    ("Apple was founded by", " Steve Jobs"),
    ("The", " quick brown fox jumps over the lazy dog"),
    ("Edwin Hubble was an", " astronomer"),
    ("Lionel Messi plays", " football"),
]


def reference(model, tokenizer, prompt: str, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    ids = tokenizer(prompt + target)["input_ids"]
    first = len(tokenizer(prompt)["input_ids"])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids[:-1]])).logits[0]  # [T-1, V]
    logp = torch.log_softmax(logits, dim=-1)
    wanted = torch.tensor(ids[first:])
    rows = logp[first - 1 :]
    return rows.gather(1, wanted[:, None])[:, 0], rows.argmax(-1) == wanted


class NoKeepArgument(torch.nn.Module):
    """A model whose forward does not take ``logits_to_keep`` (the full-logits path)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("wrapped", [False, True])
def test_batched_scores_equal_the_unpadded_reference(family, wrapped):
    tokenizer = tiny_tokenizer(bos=family == "llama")
    model = tiny_model(family, logit_scale=20.0).double()
    scored = NoKeepArgument(model) if wrapped else model
    got = continuation_scores(scored, tokenizer, [p for p, _ in PAIRS], [t for _, t in PAIRS], batch_size=3)
    assert len(got) == len(PAIRS)
    for (prompt, target), (logp, hits) in zip(PAIRS, got):
        ref_logp, ref_hits = reference(model, tokenizer, prompt, target)
        assert logp.shape == ref_logp.shape, (prompt, target)
        torch.testing.assert_close(logp, ref_logp, rtol=0, atol=1e-10)
        assert torch.equal(hits, ref_hits), (prompt, target)
