"""Causal tracing against an independent straightforward reimplementation in float64,
and on tiny models with a planted dependency: MLPs that output nothing have no indirect effect, and
restoring the last block's hidden state at the prompt's last token restores the clean probability."""

from __future__ import annotations

import math

import attrs
import pytest
import torch

from editkit.errors import InputError
from editkit.job.causaltrace import (
    Estimate,
    TraceSettings,
    input_embedding_name,
    noise_generator,
    prepare,
    subject_embedding_std,
    summarise,
    trace_fact,
    window_layers,
)
from editkit.job.facts import Fact, fact_from_record, facts_from_records
from editkit.layout import resolve_layout
from editkit.testing.tiny import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def llama(tok, seed: int = 3, logit_scale: float = 20):
    return tiny_model("llama", vocab_size=len(tok), n_layers=4, d_model=32, d_mlp=64, seed=seed,
                      logit_scale=logit_scale).double().eval()


def gpt2(tok, seed: int = 3, logit_scale: float = 20):
    return tiny_model("gpt2", vocab_size=len(tok), n_layers=4, d_model=32, d_mlp=64, seed=seed,
                      logit_scale=logit_scale).double().eval()


FACTS = [  # the subject ends the prompt (a random model's strongest dependency), or not
    Fact(index=0, subject="Danielle Darrieux", prompt="The mother tongue of Danielle Darrieux", object="is",
         subject_start=21),
    Fact(index=7, subject="Edwin Hubble", prompt="Edwin Hubble", object="was", subject_start=0),
    Fact(index=2, subject="Edwin Hubble", prompt="Edwin Hubble was an", object="astronomer", subject_start=0),
]


def greedy(model, tok, fact: Fact):
    """The fact prepared with the model's own greedy next token as the object (what a known fact is)."""
    prepared = prepare(tok, fact)
    with torch.no_grad():
        top = int(model(input_ids=torch.tensor([prepared.ids])).logits[0, -1].argmax())
    return attrs.evolve(prepared, object_token=top)


def reference_trace(model, prepared, noise_scale: float, samples: int, seed: int, window: int):
    """Causal tracing written out the long way: one forward per (draw, restoration), raw torch hooks."""
    fact = prepared.fact
    ids = torch.tensor([prepared.ids])
    first, last, target = prepared.subject_first, prepared.subject_last, prepared.object_token
    layers = model.model.layers if hasattr(model, "model") else model.transformer.h
    mlps = [layer.mlp.down_proj if hasattr(layer.mlp, "down_proj") else layer.mlp.c_proj for layer in layers]
    embed = model.get_input_embeddings()
    n = len(layers)

    def prob(logits):
        return float(torch.softmax(logits[0, -1].double(), dim=-1)[target])

    clean_mlp, clean_hidden = [], []
    handles = [m.register_forward_hook(lambda mod, a, out, i=i: clean_mlp.append((i, out[0, last].clone())))
               for i, m in enumerate(mlps)]
    handles += [b.register_forward_hook(lambda mod, a, out, i=i: clean_hidden.append(
        (i, (out[0] if isinstance(out, tuple) else out)[0, last].clone()))) for i, b in enumerate(layers)]
    with torch.no_grad():
        clean = prob(model(input_ids=ids).logits)
    for h in handles:
        h.remove()
    clean_mlp, clean_hidden = dict(clean_mlp), dict(clean_hidden)
    draws = torch.randn(samples, last - first + 1, model.config.hidden_size, generator=noise_generator(
        seed, fact.index), dtype=torch.float64) * noise_scale

    def run(s, restore_mlp=(), restore_hidden=()):
        def add_noise(mod, a, out):
            out = out.clone()
            out[0, first : last + 1] += draws[s]
            return out

        def put(value):
            def hook(mod, a, out):
                hidden = out[0] if isinstance(out, tuple) else out
                hidden = hidden.clone()
                hidden[0, last] = value
                return (hidden, *out[1:]) if isinstance(out, tuple) else hidden
            return hook

        hs = [embed.register_forward_hook(add_noise)]
        hs += [mlps[i].register_forward_hook(put(clean_mlp[i])) for i in restore_mlp]
        hs += [layers[i].register_forward_hook(put(clean_hidden[i])) for i in restore_hidden]
        with torch.no_grad():
            p = prob(model(input_ids=ids).logits)
        for h in hs:
            h.remove()
        return p

    corrupted = sum(run(s) for s in range(samples)) / samples
    mlp = [sum(run(s, restore_mlp=range(max(0, L - window // 2), min(n, L + (window + 1) // 2)))
               for s in range(samples)) / samples for L in range(n)]
    hidden = [sum(run(s, restore_hidden=[L]) for s in range(samples)) / samples for L in range(n)]
    return clean, corrupted, mlp, hidden


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("window", [1, 3])
def test_trace_matches_a_straightforward_reimplementation(tok, family, window):
    model = (llama if family == "llama" else gpt2)(tok)
    layout = resolve_layout(model)
    settings = TraceSettings(samples=3, noise=3.0, seed=5, window=window, rows=7)  # rows: chunks cut restorations
    scale = 3.0 * subject_embedding_std(model, [prepare(tok, f) for f in FACTS])
    for fact in FACTS:
        prepared = greedy(model, tok, fact)
        got = trace_fact(model, layout, prepared, scale, settings)
        clean, corrupted, mlp, hidden = reference_trace(model, prepared, scale, 3, 5, window)
        assert got.clean == pytest.approx(clean, abs=1e-12)
        assert got.corrupted == pytest.approx(corrupted, abs=1e-12)
        assert got.restored["mlp"] == pytest.approx(mlp, abs=1e-12)
        assert got.restored["hidden"] == pytest.approx(hidden, abs=1e-12)
        if fact.index != 2:  # the noise does something, and so do restorations: the test can tell
            assert got.clean - got.corrupted > 0.05
            assert max(abs(e) for e in got.effects("hidden")) > 0.01


def test_subject_embedding_std_is_over_the_subject_tokens_only(tok):
    model = llama(tok)
    prepared = [prepare(tok, f) for f in FACTS]
    table = model.get_input_embeddings().weight.detach()
    rows = torch.cat([table[list(p.ids[p.subject_first : p.subject_last + 1])] for p in prepared])
    assert subject_embedding_std(model, prepared) == pytest.approx(float(rows.std()), rel=1e-12)
    assert input_embedding_name(model) == "model.embed_tokens"
    # the subject's tokens are exactly those of "Danielle Darrieux" / "Edwin Hubble"
    first = prepared[0]
    assert tok.decode(list(first.ids[first.subject_first : first.subject_last + 1])).strip() == "Danielle Darrieux"
    assert prepared[1].subject_first == 0


def test_planted_dependency_only_the_live_mlp_has_an_effect(tok):
    """Every MLP but layer 2's outputs zero (clean or corrupted): restoring it changes nothing, exactly."""
    model = gpt2(tok, logit_scale=4)
    with torch.no_grad():
        for i, block in enumerate(model.transformer.h):
            if i != 2:
                block.mlp.c_proj.weight.zero_()
                block.mlp.c_proj.bias.zero_()
            else:  # and layer 2's MLP is made to matter
                block.mlp.c_fc.weight.mul_(10)
                block.mlp.c_proj.weight.mul_(10)
    layout = resolve_layout(model)
    for fact in FACTS[:2]:
        prepared = greedy(model, tok, fact)
        out = trace_fact(model, layout, prepared, 3.0 * subject_embedding_std(model, [prepared]),
                         TraceSettings(samples=4, seed=1, kinds=("mlp",)))
        effects = out.effects("mlp")
        assert [effects[i] for i in (0, 1, 3)] == [0.0, 0.0, 0.0]
        assert effects[2] > 1e-3 and effects[2] > 0.5 * out.corrupted


def test_planted_dependency_last_hidden_state_at_the_last_token_restores_the_clean_run(tok):
    """When the subject ends the prompt, the last block's output at its last token is all the logits read."""
    model = llama(tok)
    prepared = greedy(model, tok, FACTS[0])
    assert prepared.subject_last == len(prepared.ids) - 1
    out = trace_fact(model, resolve_layout(model), prepared, 3.0 * subject_embedding_std(model, [prepared]),
                     TraceSettings(samples=5, kinds=("hidden",)))
    assert out.restored["hidden"][-1] == pytest.approx(out.clean, abs=1e-12)
    assert out.clean - out.corrupted > 0.05
    assert out.effects("hidden")[-1] == pytest.approx(out.clean - out.corrupted, abs=1e-12)


def test_noise_depends_on_the_seed_and_the_fact_not_on_the_others(tok):
    model = llama(tok)
    layout = resolve_layout(model)
    prepared = greedy(model, tok, FACTS[1])
    a = trace_fact(model, layout, prepared, 0.5, TraceSettings(samples=2, seed=0, kinds=("mlp",)))
    b = trace_fact(model, layout, prepared, 0.5, TraceSettings(samples=2, seed=0, kinds=("mlp",), rows=1))
    c = trace_fact(model, layout, prepared, 0.5, TraceSettings(samples=2, seed=1, kinds=("mlp",)))
    other = attrs.evolve(prepared, fact=attrs.evolve(prepared.fact, index=8))
    d = trace_fact(model, layout, other, 0.5, TraceSettings(samples=2, seed=0, kinds=("mlp",)))
    assert a.restored["mlp"] == pytest.approx(b.restored["mlp"], abs=1e-14)  # one row per forward: rounding only
    assert a.corrupted == pytest.approx(b.corrupted, abs=1e-14)
    assert abs(c.corrupted - a.corrupted) > 1e-6 and abs(d.corrupted - a.corrupted) > 1e-6


def test_window_layers_are_centred_as_rome_centres_them():
    assert list(window_layers(5, 10, 30)) == list(range(0, 10))
    assert list(window_layers(15, 10, 30)) == list(range(10, 20))
    assert list(window_layers(28, 10, 30)) == list(range(23, 30))
    assert list(window_layers(4, 1, 30)) == [4]
    assert list(window_layers(4, 3, 30)) == [3, 4, 5]


def test_summary_is_the_mean_and_standard_error_over_facts():
    from editkit.job.causaltrace import FactTrace

    traces = [FactTrace(fact=FACTS[0], clean=0.9, corrupted=0.2, restored={"mlp": (0.3, 0.6)}, subject_tokens=(0, 1)),
              FactTrace(fact=FACTS[1], clean=0.7, corrupted=0.1, restored={"mlp": (0.1, 0.5)}, subject_tokens=(0, 1)),
              FactTrace(fact=FACTS[1], clean=0.8, corrupted=0.4, restored={"mlp": (0.5, 0.4)}, subject_tokens=(0, 1))]
    out = summarise(traces, ["mlp"], 2)
    effects = [0.1, 0.0, 0.1]  # layer 0: restored − corrupted per fact
    mean = sum(effects) / 3
    se = math.sqrt(sum((e - mean) ** 2 for e in effects) / 2 / 3)
    assert out["layers"][0]["mlp"]["mean"] == pytest.approx(mean)
    assert out["layers"][0]["mlp"]["se"] == pytest.approx(se)
    assert out["layers"][1]["mlp"]["mean"] == pytest.approx((0.4 + 0.4 + 0.0) / 3)
    assert out["clean"]["mean"] == pytest.approx(0.8)
    assert Estimate.of([0.5]).se is None


def test_facts_from_both_record_forms():
    cf = {"case_id": 9, "requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux",
                                              "target_new": {"str": "English"}, "target_true": {"str": "French"}}}
    known = {"subject": "Vinson Massif", "prompt": "Vinson Massif is located in the continent of",
             "attribute": "Antarctica"}
    a, b = fact_from_record(cf, 0), fact_from_record(known, 1)
    assert (a.prompt, a.object, a.subject_start) == ("The mother tongue of Danielle Darrieux is", " French", 21)
    assert (b.prompt, b.object, b.subject_start) == (known["prompt"], " Antarctica", 0)


@pytest.mark.parametrize(("record", "message"), [
    ({"case_id": 4, "requested_rewrite": {"prompt": "{} speaks", "subject": "X", "target_new": {"str": "Y"}}},
     "record 1 (case_id 4): requested_rewrite.target_true.str: required field is missing (the true object"),
    ({"subject": "Vinson Massif", "prompt": "It is in", "attribute": "Antarctica"},
     "record 1: prompt: the subject 'Vinson Massif' does not occur in 'It is in'"),
    ({"subject": "A", "prompt": "A is in"}, "record 1: attribute: required field is missing"),
    ({"subject": "A", "prompt": "A is in ", "attribute": "B"}, "record 1: prompt: 'A is in ' ends in whitespace"),
    ({"question": "?"}, "record 1: record: unknown format"),
    ("text", "record 1: record: expected a JSON object, got str"),
])
def test_bad_records_are_named_with_the_field(record, message):
    good = {"subject": "A", "prompt": "A is in", "attribute": "B"}
    with pytest.raises(InputError, match=r"facts\.json: 1 bad record") as info:
        facts_from_records([good, record], source="facts.json")
    assert message in str(info.value)
    facts, skipped = facts_from_records([good, record], source="facts.json", skip_invalid=True)
    assert len(facts) == 1 and len(skipped) == 1
