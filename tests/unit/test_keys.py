"""collect-keys: subject-last-token keys, two-level prefix average, any padding side, with or without BOS."""

from __future__ import annotations

import pytest
import torch
from editkit_memit.keys import collect_keys

from editkit.requests import EditRequest
from editkit.testing.tiny import tiny_model, tiny_tokenizer
from editkit.tokens import last_token_before, tokenize
from editkit.tracing import capture_inputs

TEMPLATES = ("{}", "The quick brown fox. {}", "Because I. {}")
REQUESTS = [
    EditRequest(case_id=0, subject="Danielle Darrieux", prompt="The mother tongue of {} is", target_new="English"),
    EditRequest(case_id=1, subject="Toko Yasuda", prompt="{} plays the", target_new="guitar"),
    EditRequest(case_id=2, subject="Paris", prompt="The Eiffel Tower in {} is", target_new="tall"),
]
MODULE = "transformer.h.1.mlp.c_proj"


def reference_keys(model, tok, request):
    """Unpadded, one prompt at a time: ½ k(bare) + ½ mean_j k(prefix_j)."""
    keys = []
    for template in TEMPLATES:
        before, _, after = template.replace("{}", request.prompt).partition("{}")
        text = before + request.subject + after
        pos = last_token_before(tok, text, len(before) + len(request.subject))
        with capture_inputs(model, [MODULE]) as cap:
            model(input_ids=torch.tensor([tokenize(tok, text).ids]))
        keys.append(cap[MODULE][0, pos])
    return 0.5 * keys[0] + 0.5 * torch.stack(keys[1:]).mean(0)


@pytest.mark.parametrize("bos", [False, True])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_keys_equal_unpadded_reference(bos, padding_side):
    tok = tiny_tokenizer(bos=bos, padding_side=padding_side)
    model = tiny_model("gpt2", vocab_size=len(tok))
    keys = collect_keys(model, tok, MODULE, REQUESTS, TEMPLATES, torch.device("cpu"))
    assert keys.shape == (64, len(REQUESTS))
    for i, request in enumerate(REQUESTS):
        ref = reference_keys(model, tok, request)
        assert torch.allclose(keys[:, i], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bos", [False, True])
def test_subject_last_token_is_the_subjects_end(bos):
    tok = tiny_tokenizer(bos=bos)
    text = "The mother tongue of Danielle Darrieux is"
    end = text.index("Darrieux") + len("Darrieux")
    t = tokenize(tok, text)
    pos = last_token_before(tok, text, end, t)
    assert tok.decode(t.ids[: pos + 1], skip_special_tokens=True).endswith("Darrieux")
    assert not tok.decode(t.ids[: pos], skip_special_tokens=True).endswith("Darrieux")
    assert (t.ids[0] == tok.bos_token_id) == bos
