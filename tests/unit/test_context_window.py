"""Texts longer than the model's context: bad records before editing, skipped and
counted evaluation prompts, MEMIT's prefix templates cut from the left."""

from __future__ import annotations

import types
import warnings

import pytest
import torch
from editkit_memit.keys import collect_keys, subject_prompts
from editkit_memit.targets import _build_prompts
from editkit_metrics.counterfact import counterfact_scores
from editkit_metrics.retention import retention
from editkit_metrics.zsre import zsre_accuracy

from editkit.errors import InputError
from editkit.evaluation import EvalContext
from editkit.helpers.contextwindow import ContextWarning, clip_left, max_positions, over_long_requests, screen_requests
from editkit.helpers.tokens import TokenizedText, tokenize
from editkit.requests import EditRequest
from editkit.testing.tiny import tiny_config, tiny_model, tiny_tokenizer

LONG = "The quick brown fox jumps over the lazy dog. " * 6  # 121 tokens with the tiny tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


class Bigram(torch.nn.Module):
    """``logits[b, t] = table[input_ids[b, t]]`` with a GPT-2-like context of ``n_positions``: a longer input
    fails the way a learned position embedding does."""

    def __init__(self, vocab: int, n_positions: int):
        super().__init__()
        self.config = types.SimpleNamespace(n_positions=n_positions)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0)) * 3)

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        if input_ids.shape[1] > self.config.n_positions:
            raise IndexError("index out of range in self")
        return types.SimpleNamespace(logits=self.table[input_ids])


@pytest.mark.parametrize(("family", "expected"), [("gpt2", 128), ("llama", 128), ("gpt_neox", 128), ("opt", 128)])
def test_max_positions_reads_each_family_s_config(family, expected):
    assert max_positions(tiny_config(family, 100)) == expected


def test_max_positions_of_a_model_a_composite_config_and_none():
    model = types.SimpleNamespace(config=types.SimpleNamespace(n_ctx=64))
    assert max_positions(model) == 64
    composite = types.SimpleNamespace(text_config=types.SimpleNamespace(max_position_embeddings=4096))
    assert max_positions(composite) == 4096
    assert max_positions(types.SimpleNamespace()) is None
    assert max_positions(types.SimpleNamespace(n_positions=None, n_ctx=True)) is None


def test_over_long_requests_are_named_with_record_field_and_both_lengths(tok):
    short = EditRequest(case_id="a", subject="Paris", prompt="{} is in", target_new="France")
    long = EditRequest(case_id="b", subject="Paris", prompt=LONG + "{} is in", target_new="France",
                       target_true="Germany")
    need = max(len(tokenize(tok, long.filled_prompt + t).ids) for t in (long.target_new, long.target_true))
    field = "target_new" if len(tokenize(tok, long.filled_prompt + long.target_new).ids) == need else "target_true"
    problems = over_long_requests(tok, [short, long], 64, {"a": 0, "b": 7})
    assert problems == {"b": f"record 7 (case_id b): requested_rewrite.prompt + {field}.str: {need} tokens, "
                             "longer than the model's context of 64 positions"}
    assert over_long_requests(tok, [short, long], need, {}) == {}  # exactly full fits
    assert over_long_requests(tok, [long], None) == {}  # no known context: no check


def test_screen_requests_raises_naming_every_record_or_skips_them(tok):
    records = [{"case_id": i} for i in range(3)]
    requests = [EditRequest(case_id=i, subject="Paris", prompt=(LONG if i else "") + "{} is in", target_new="France")
                for i in range(3)]
    model = types.SimpleNamespace(config=types.SimpleNamespace(n_positions=32))
    with pytest.raises(InputError, match=r"requests.json: 2 record\(s\) too long .* 32 positions") as info:
        screen_requests(requests, records, [], tok, model, source="requests.json", skip_invalid=False)
    assert "record 1 (case_id 1)" in str(info.value) and "record 2 (case_id 2)" in str(info.value)
    with pytest.warns(ContextWarning, match="skipped 2 record"):
        kept, skipped = screen_requests(requests, records, ["earlier"], tok, model, source="r", skip_invalid=True)
    assert [r.case_id for r in kept] == ["0"] and len(skipped) == 3 and skipped[0] == "earlier"
    with pytest.raises(InputError, match="no request fits"):
        screen_requests(requests[1:], records, [], tok, model, source="r", skip_invalid=True)


def test_clip_left_keeps_leading_special_tokens_and_what_must_stay():
    tok = TokenizedText(ids=(1, 10, 11, 12, 13, 14), offsets=None, special=(True, False, False, False, False, False))
    assert clip_left(tok, 10, keep_from=3) == ([1, 10, 11, 12, 13, 14], 0)
    assert clip_left(tok, 4, keep_from=3) == ([1, 12, 13, 14], 2)  # BOS stays, 10 and 11 (the prefix) go
    with pytest.raises(ValueError, match="4 tokens do not fit in the model's context of 3 positions"):
        clip_left(tok, 3, keep_from=3)
    assert clip_left(tok, None, keep_from=0) == ([1, 10, 11, 12, 13, 14], 0)


@pytest.mark.parametrize("bos", [False, True])
def test_memit_prefixed_prompts_lose_prefix_tokens_only(bos):
    tok = tiny_tokenizer(bos=bos)
    request = EditRequest(case_id=0, subject="Danielle Darrieux", prompt="The mother tongue of {} is",
                          target_new="English")
    templates = ("{}", LONG + ". {}")
    full_ids, full_pos = subject_prompts(tok, [request], templates)
    limit = len(full_ids[0]) + 3  # the bare prompt fits; the prefixed one is far too long
    ids, pos = subject_prompts(tok, [request], templates, limit=limit)
    assert ids[0] == full_ids[0] and pos[0] == full_pos[0]
    assert len(ids[1]) == limit and ids[1][-(limit - int(bos)):] == full_ids[1][-(limit - int(bos)):]
    assert ids[1][pos[1]] == full_ids[1][full_pos[1]] and len(ids[1]) - pos[1] == len(full_ids[1]) - full_pos[1]
    if bos:
        assert ids[1][0] == full_ids[1][0] == tok.bos_token_id

    prompts = _build_prompts(tok, [request], templates, torch.device("cpu"), limit=limit)
    assert prompts.batch.input_ids.shape[1] <= limit
    whole = tokenize(tok, templates[1].replace("{}", request.prompt).replace("{}", request.subject)
                     + request.target_new).ids
    rows = prompts.tok_row == 1
    n_target = int(rows.sum())
    for col, token, t in zip(prompts.tok_col[rows], prompts.tok_id[rows], range(len(whole) - n_target, len(whole))):
        assert int(token) == whole[t] and int(prompts.batch.input_ids[1, col]) == whole[t - 1]
    with pytest.raises(InputError, match=r"case 0: .* do not fit in the model.s context of 4 positions"):
        subject_prompts(tok, [request], templates, limit=4)


def test_memit_keys_on_a_model_whose_context_the_prefixes_overflow(tok):
    model = tiny_model("gpt2", vocab_size=len(tok))  # 128 positions
    request = EditRequest(case_id=0, subject="Paris", prompt=LONG + "{} is in", target_new="France")
    assert len(tokenize(tok, request.filled_prompt + request.target_new).ids) <= 128  # the request fits
    keys = collect_keys(model, tok, "transformer.h.1.mlp.c_proj", [request], ("{}", LONG + ". {}"), torch.device("cpu"))
    assert keys.shape == (64, 1) and torch.isfinite(keys).all()


def cf_record(paraphrases, neighbours, case_id=0):
    return {"case_id": case_id,
            "requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux",
                                  "target_new": {"str": "English"}, "target_true": {"str": "French"}},
            "paraphrase_prompts": paraphrases, "neighborhood_prompts": neighbours}


def test_counterfact_skips_and_counts_prompts_that_do_not_fit(tok):
    model = Bigram(len(tok), n_positions=40)
    fitting = cf_record(["Danielle Darrieux speaks"], ["Toko Yasuda speaks"])
    long = cf_record(["Danielle Darrieux speaks", LONG + "Danielle Darrieux speaks"], [LONG, "Toko Yasuda speaks"])
    with pytest.warns(ContextWarning, match="counterfact: skipped 2 of 5 evaluation prompt"):
        got = counterfact_scores(EvalContext(model=model, tokenizer=tok, records=[long]))
    reference = counterfact_scores(EvalContext(model=model, tokenizer=tok, records=[fitting]))
    assert got == {**reference, "counterfact_skipped_prompts": 2.0}  # exactly as if they were absent
    assert "counterfact_skipped_prompts" not in reference
    only_long = cf_record([LONG], [LONG])
    with pytest.warns(ContextWarning):
        out = counterfact_scores(EvalContext(model=model, tokenizer=tok, records=[only_long]))
    assert set(out) == {"efficacy", "efficacy_magnitude", "counterfact_skipped_prompts"}


def test_zsre_and_retention_skip_and_count_prompts_that_do_not_fit(tok):
    model = Bigram(len(tok), n_positions=40)
    base = {"requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux",
                                  "target_new": {"str": "English"}},
            "paraphrase_prompts": ["Danielle Darrieux speaks"], "locality": [{"prompt": "Paris is", "answer": "big"}]}
    longer = {**base, "paraphrase_prompts": ["Danielle Darrieux speaks", LONG],
              "locality": [{"prompt": "Paris is", "answer": "big"}, {"prompt": LONG, "answer": "x"}]}
    with pytest.warns(ContextWarning, match="zsre: skipped 2"):
        got = zsre_accuracy(EvalContext(model=model, tokenizer=tok, records=[longer]))
    assert got == {**zsre_accuracy(EvalContext(model=model, tokenizer=tok, records=[base])),
                   "zsre_skipped_prompts": 2.0}
    probes = [("X", "Paris is", "big"), ("Y", LONG, "big")]
    with pytest.warns(ContextWarning, match="retention: skipped 1"):
        out = retention(EvalContext(model=model, tokenizer=tok, records=[], extras={"fact_probes": probes}))
    assert out["retention_probes"] == 1.0 and out["retention_skipped_probes"] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped: no warning, no extra figure
        plain = retention(EvalContext(model=model, tokenizer=tok, records=[], extras={"fact_probes": probes[:1]}))
    assert set(plain) == {"retention", "retention_probes"}
