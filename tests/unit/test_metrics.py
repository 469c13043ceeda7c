"""Metrics against hand-computed values on a bigram "model" whose distributions are known."""

from __future__ import annotations

import math

import pytest
import torch
from editkit_metrics.counterfact import counterfact_scores
from editkit_metrics.fluency import fluency_of, ngram_entropy
from editkit_metrics.retention import retention
from editkit_metrics.zsre import zsre_accuracy

from editkit.evaluation import EvalContext
from editkit.helpers.tokens import tokenize
from editkit.testing.tiny import tiny_tokenizer


class Bigram(torch.nn.Module):
    """logits[b, t] = table[input_ids[b, t]]: P(next | prefix) depends on the last token only."""

    def __init__(self, vocab: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=g) * 3)

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        return type("Out", (), {"logits": self.table[input_ids]})()


@pytest.fixture(scope="module")
def world():
    tok = tiny_tokenizer()
    return Bigram(len(tok)), tok


def nll(model, tok, prompt, target):
    """Mean per-token NLL of target after prompt, straight from the table."""
    ids = tokenize(tok, prompt + target).ids
    n_prompt = len(tokenize(tok, prompt).ids)
    logp = torch.log_softmax(model.table.detach(), dim=-1)
    return -sum(float(logp[ids[t - 1], ids[t]]) for t in range(n_prompt, len(ids))) / (len(ids) - n_prompt)


def record(subject, new, true, paraphrases, neighbours, case_id=0):
    return {"case_id": case_id,
            "requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": subject,
                                  "target_new": {"str": new}, "target_true": {"str": true}},
            "paraphrase_prompts": paraphrases, "neighborhood_prompts": neighbours}


def test_counterfact_scores_match_hand_computation(world):
    model, tok = world
    recs = [
        record("Danielle Darrieux", "English", "French", ["Danielle Darrieux speaks", "Darrieux was born"],
               ["The mother tongue of Paris is", "Toko Yasuda speaks", "Apple was founded in"]),
        record("Edwin Hubble", "German Italian", "Dutch", ["Hubble speaks"], ["Steve Jobs speaks"], case_id=1),
    ]
    got = counterfact_scores(EvalContext(model=model, tokenizer=tok, records=recs))
    expected = {"efficacy": [], "generalisation": [], "specificity": []}
    magnitudes = {"efficacy": [], "generalisation": [], "specificity": []}
    for r in recs:
        rw = r["requested_rewrite"]
        new, true = " " + rw["target_new"]["str"], " " + rw["target_true"]["str"]
        groups = {"efficacy": [rw["prompt"].format(rw["subject"])], "generalisation": r["paraphrase_prompts"],
                  "specificity": r["neighborhood_prompts"]}
        for kind, prompts in groups.items():
            pairs = [(nll(model, tok, p, new), nll(model, tok, p, true)) for p in prompts]
            if kind == "specificity":
                expected[kind].append(sum(t < n for n, t in pairs) / len(pairs))
                magnitudes[kind].append(sum(math.exp(-t) - math.exp(-n) for n, t in pairs) / len(pairs))
            else:
                expected[kind].append(sum(t > n for n, t in pairs) / len(pairs))
                magnitudes[kind].append(sum(math.exp(-n) - math.exp(-t) for n, t in pairs) / len(pairs))
    for kind in expected:
        assert got[kind] == pytest.approx(100 * sum(expected[kind]) / 2, abs=1e-9)
        assert got[f"{kind}_magnitude"] == pytest.approx(100 * sum(magnitudes[kind]) / 2, rel=1e-5, abs=1e-9)
    # the multi-token target really is scored over two tokens or more
    assert len(tokenize(tok, "The mother tongue of Edwin Hubble is German Italian").ids) - len(
        tokenize(tok, "The mother tongue of Edwin Hubble is").ids) >= 2


def test_zsre_accuracy_and_retention_use_argmax_per_token(world):
    _, tok = world
    model = Bigram(len(tok), seed=1)
    prompt = "The mother tongue of Danielle Darrieux is"
    n_prompt = len(tokenize(tok, prompt).ids)
    forced = tokenize(tok, prompt + " English").ids
    with torch.no_grad():  # make " English" the greedy continuation, token by token
        for t in range(n_prompt, len(forced)):
            model.table[forced[t - 1], forced[t]] = 1e3
    other = tokenize(tok, prompt + " French").ids
    logits = model.table.detach()
    hits = [int(logits[other[t - 1]].argmax()) == other[t] for t in range(n_prompt, len(other))]
    expected_french = 100.0 * sum(hits) / len(hits)
    rec = {"requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux",
                                 "target_new": {"str": "English"}},
           "paraphrase_prompts": [prompt],
           "locality": [{"prompt": prompt, "answer": "French"}]}
    got = zsre_accuracy(EvalContext(model=model, tokenizer=tok, records=[rec]))
    assert got["zsre_efficacy"] == 100.0 and got["zsre_generalisation"] == 100.0
    assert got["zsre_specificity"] == pytest.approx(expected_french)
    assert expected_french < 100.0  # the test can tell the two apart
    ctx = EvalContext(model=model, tokenizer=tok, records=[],
                      extras={"fact_probes": [("X", prompt, "English"), ("Y", prompt, "French")]})
    out = retention(ctx)
    assert out["retention"] == 50.0 and out["retention_probes"] == 2.0
    edited = [{"requested_rewrite": {"subject": "X"}}]
    assert retention(EvalContext(model=model, tokenizer=tok, records=edited, extras=ctx.extras))["retention"] == 0.0


def test_ngram_entropy_by_hand():
    # bigrams of a b a b: (a,b) twice, (b,a) once
    expected = -(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3)
    assert ngram_entropy(["a", "b", "a", "b"], 2) == pytest.approx(expected)
    assert ngram_entropy(["a", "a", "a"], 3) == 0.0
    text = "the cat the cat the cat"
    h2 = ngram_entropy(["the", "cat"] * 3, 2)
    h3 = ngram_entropy(["the", "cat"] * 3, 3)
    assert fluency_of(text) == pytest.approx(h2 / 3 + 2 * h3 / 3)
