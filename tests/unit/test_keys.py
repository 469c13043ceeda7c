"""collect-keys: subject-last-token keys, two-level prefix average, any padding side, with or without BOS."""

from __future__ import annotations

import pytest
import torch
from editkit_memit.keys import collect_keys

from editkit.helpers.tokens import last_token_before, tokenize
from editkit.helpers.tracing import capture_inputs
from editkit.requests import EditRequest
from editkit.testing.tiny import tiny_model, tiny_tokenizer

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


def _edit(model, module, seed):
    """Write a random update into ``module``'s weight in place, as ``editkit_apply`` does."""
    weight = model.get_submodule(module).weight
    with torch.no_grad():
        weight.add_(0.3 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_batch_keys_follow_edits_in_layer_order(family):
    """The edit loop's pattern: keys at layer 1, edit it, keys at layer 2, edit it, then keys again for Cp.
    Each equals a fresh full-forward collection on the model as it is at that moment; the keys of a site
    whose lower layers are unchanged are the kept ones, and a stale site restarts from a recorded block."""
    from editkit_memit.keys import BatchKeys

    from editkit.layout import resolve_layout

    tok = tiny_tokenizer()
    model = tiny_model(family, vocab_size=len(tok), n_layers=4)
    layout = resolve_layout(model)
    sites = [layout.site(1), layout.site(2)]
    keys = BatchKeys(model, tok, layout.blocks, sites[-1].layer, REQUESTS, TEMPLATES, torch.device("cpu"))
    embeddings = []

    def counted(site):  # the keys, and whether that call ran the embeddings (a forward from the start)
        handle = model.get_input_embeddings().register_forward_hook(lambda *a: embeddings.append(site.layer))
        try:
            return keys(site.layer, site.module)
        finally:
            handle.remove()

    seen = []
    for i, site in enumerate(sites):
        k = counted(site)
        fresh = collect_keys(model, tok, site.module, REQUESTS, TEMPLATES, torch.device("cpu"))
        assert torch.allclose(k, fresh, rtol=1e-5, atol=1e-6)
        seen.append(k)
        _edit(model, site.module, i)
    assert embeddings == [1]  # layer 2's keys started from the recorded input of block 1
    for site, k in zip(sites, seen):  # Cp's keys on the edited model: kept, and still right
        again = counted(site)
        assert again is k
        fresh = collect_keys(model, tok, site.module, REQUESTS, TEMPLATES, torch.device("cpu"))
        assert torch.allclose(again, fresh, rtol=1e-5, atol=1e-6)
    assert embeddings == [1]
    _edit(model, layout.blocks[0] + (".mlp.c_proj" if family == "gpt2" else ".mlp.down_proj"), 7)
    for site in sites:  # an edit below every site: each is recomputed (from block 0's recorded input on)
        fresh = collect_keys(model, tok, site.module, REQUESTS, TEMPLATES, torch.device("cpu"))
        assert torch.allclose(counted(site), fresh, rtol=1e-5, atol=1e-6)
    assert embeddings == [1]
    with torch.no_grad():  # below every block: everything recorded is stale, the forward starts again
        model.get_input_embeddings().weight.mul_(1.5)
    for site in sites:
        fresh = collect_keys(model, tok, site.module, REQUESTS, TEMPLATES, torch.device("cpu"))
        assert torch.allclose(counted(site), fresh, rtol=1e-5, atol=1e-6)
    assert embeddings == [1, 1]  # layer 1 from the embeddings; layer 2 from block 1's input recorded then

    # from the lowest edited layer up only: no input below it is kept ([rows, T, d_model] each), same keys
    lean = BatchKeys(model, tok, layout.blocks, sites[-1].layer, REQUESTS, TEMPLATES, torch.device("cpu"),
                     first_layer=sites[0].layer)
    for site in sites:
        assert torch.equal(lean(site.layer, site.module), keys(site.layer, site.module))
    assert sorted(lean.inputs) == [site.layer for site in sites]


def test_keys_are_cut_after_the_subject():
    """Tokens after the subject cannot change its key (attention is causal): the prompts end there."""
    from editkit_memit.keys import KeyPrompts

    tok = tiny_tokenizer()
    prompts = KeyPrompts.build(tok, REQUESTS, TEMPLATES, torch.device("cpu"))
    lengths = prompts.batch.attention_mask.sum(dim=1)
    assert torch.equal(prompts.cols + 1, lengths)  # right-padded: the subject's last token ends every row
