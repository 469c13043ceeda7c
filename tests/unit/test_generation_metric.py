"""Generation-based metrics: the judge against hand-judged continuations, the aggregation per record then over
records, portability both ways, and prompts at the model's context limit cut or counted, never a traceback."""

from __future__ import annotations

import pytest
from editkit_metrics import generation
from editkit_metrics.generation import begins_with, exact_match, first_clause, normalise, token_f1

from editkit.evaluation import EvalContext
from editkit.plugins import PluginHost
from editkit.testing.tiny import tiny_model, tiny_tokenizer

# (continuation, answers, begins with?) judged by hand
BEGINS = [
    (" Paris, France.", ["Paris"], True),
    (" paris is lovely", ["Paris"], True),  # case
    ("  \u201cParis\u201d, they said", ["Paris"], True),  # leading spaces and quotes
    (" Parisian cuisine", ["Paris"], False),  # a word boundary is required
    (" the city of Paris", ["Paris"], False),  # must begin with it
    (" New  York City", ["New York"], True),  # whitespace collapsed
    (" NYC is big", ["New York City", "NYC"], True),  # an alias counts
    (" Ｐａｒｉｓ.", ["Paris"], True),  # NFKC: full-width letters
    ("", ["Paris"], False),
    (" English", [""], False),  # an empty answer never matches
]

# real greedy continuations of SmolLM2-135M-Instruct (unedited, 2026-12-06) of CounterFact prompts, judged by hand
REAL_SMOLLM2 = [
    (" French. She", ["French"], True),  # "The mother tongue of Danielle Darrieux is"
    (" the French language", ["French"], False),  # right fact, but it does not begin with the object
    (" the Church of", ["Christianity"], False),
    (" Apple to enhance", ["Apple"], True),  # "Apple A5 was created by"
    (" 20", ["Birmingham"], False),
    (" a language spoken", ["Dutch"], False),
]

# (continuation, answers, exact match, token F1) judged by hand
QA = [
    (" The Eiffel Tower. It is", ["Eiffel Tower"], True, 1.0),  # article and clause end dropped
    (" 1998, when it began", ["1998"], True, 1.0),
    (" in 1998", ["1998"], False, 2 / 3),  # P 1/2, R 1 → F1 2/3
    (" athletics events", ["Athletics"], False, 2 / 3),
    (" U.S. Army", ["US Army"], False, 2 / 3),  # "S. " ends a clause: "U.S" → "us" of "us army"
    (" football", ["soccer", "football"], True, 1.0),  # the best over aliases
    # real SmolLM2-135M-Instruct answers to ZsRE questions (after the line break it starts with)
    ("assistant", ["1998"], False, 0.0),
    ("The answer is: Call the Doctor", ["Sleater-Kinney"], False, 0.0),
    ("A: The answer", ["Volvo Buses"], False, 0.0),
]


@pytest.mark.parametrize(("continuation", "answers", "expected"), BEGINS)
def test_begins_with_matches_hand_judgement(continuation, answers, expected):
    assert begins_with(continuation, answers) is expected


@pytest.mark.parametrize(("continuation", "answers", "expected"), REAL_SMOLLM2)
def test_begins_with_matches_hand_judgement_of_real_smollm2_continuations(continuation, answers, expected):
    assert begins_with(continuation, answers) is expected


@pytest.mark.parametrize(("continuation", "answers", "em", "f1"), QA)
def test_exact_match_and_f1_match_hand_judgement(continuation, answers, em, f1):
    assert exact_match(continuation, answers) is em
    assert token_f1(continuation, answers) == pytest.approx(f1)


def test_normalisation_and_clause_cut():
    assert normalise('  "Rome"  Italy') == 'rome" italy'
    assert first_clause("Paris, France") == "Paris" and first_clause("3.14 is pi") == "3.14 is pi"


def _record(i, new, true, paraphrases=(), neighbours=(), **extra):
    return {"case_id": i, "requested_rewrite": {"prompt": "{} plays", "subject": f"S{i}", "target_new": {"str": new},
                                                "target_true": {"str": true}},
            "paraphrase_prompts": list(paraphrases), "neighborhood_prompts": list(neighbours), **extra}


def test_figures_are_means_per_record_then_over_records(monkeypatch):
    scripted = {"S0 plays": " tennis", "P0a": " tennis.", "P0b": " golf", "N0": " chess", "S1 plays": " golf",
                "N1a": " piano", "N1b": " violin", "fact": " Paris"}
    monkeypatch.setattr(generation, "greedy_completions",
                        lambda model, tok, prompts, **kw: [scripted[p] for p in prompts])
    tok = tiny_tokenizer()
    records = [_record(0, "tennis", "chess", ["P0a", "P0b"], ["N0"]),
               _record(1, "tennis", "piano", [], ["N1a", "N1b"])]  # no paraphrases: scored on what it has
    context = EvalContext(model=tiny_model(vocab_size=len(tok)), tokenizer=tok, records=records,
                          extras={"fact_probes": [("S0", "ignored: edited subject", "x"), ("Fr", "fact", "Paris")]})
    out = generation.generation_scores(context)
    assert out["generation_efficacy"] == pytest.approx(50.0)  # record 0 yes, record 1 no
    assert out["generation_generalisation"] == pytest.approx(50.0)  # record 0 only: 1 of 2
    assert out["generation_specificity"] == pytest.approx(75.0)  # (1 + 1/2) / 2
    assert out["generation_retention"] == pytest.approx(100.0)  # the edited subject's probe is left out
    assert out["generation_prompts"] == 8 and "generation_skipped_prompts" not in out


def test_question_records_get_exact_match_f1_and_locality(monkeypatch):
    scripted = {"Who leads S0?": " Ann Lee, since", "Who heads S0?": " Ann", "loc?": " Bob."}
    monkeypatch.setattr(generation, "greedy_completions",
                        lambda model, tok, prompts, **kw: [scripted[p] for p in prompts])
    tok = tiny_tokenizer()
    record = {"case_id": 0, "requested_rewrite": {"prompt": "Who leads {}?", "subject": "S0",
                                                  "target_new": {"str": "Ann Lee"}},
              "paraphrase_prompts": ["Who heads S0?"], "locality": [{"prompt": "loc?", "answer": "Bob"}]}
    out = generation.generation_scores(EvalContext(model=tiny_model(vocab_size=len(tok)), tokenizer=tok,
                                                   records=[record]))
    assert out["generation_zsre_em"] == pytest.approx(50.0)
    assert out["generation_zsre_f1"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    assert out["generation_locality_em"] == pytest.approx(100.0)
    assert "generation_efficacy" not in out


def test_prompts_past_the_context_are_cut_or_counted_never_a_traceback():
    tok = tiny_tokenizer()
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_inner=64, n_head=4, n_positions=12,
                                       vocab_size=len(tok))).eval()
    long_prompt = " ".join(["word"] * 30)  # longer than the 12 positions on its own
    records = [_record(0, "tennis", "chess", [long_prompt], ["Toko Yasuda plays the"])]
    out = generation.generation_scores(EvalContext(model=model, tokenizer=tok, records=records))
    assert out["generation_skipped_prompts"] == 1.0
    assert {"generation_efficacy", "generation_specificity"} <= set(out)
    assert 0.0 <= out["generation_efficacy"] <= 100.0


def test_portability_both_ways_on_both_record_shapes(monkeypatch):
    tok = tiny_tokenizer()
    model = tiny_model(vocab_size=len(tok))
    records = [_record(0, "tennis", "chess", portability={"New Question": "Which sport?", "New Answer": "Tennis"}),
               {"case_id": 1, "requested_rewrite": {"prompt": "{} q", "subject": "S1", "target_new": {"str": "x"}},
                "locality": [], "portability": [{"prompt": "Where?", "answer": "Rome"}]},
               _record(2, "golf", "chess")]  # no portability: not counted
    context = EvalContext(model=model, tokenizer=tok, records=records)
    real = generation.portability(context)
    assert real["portability_questions"] == 2 and 0.0 <= real["portability_tf"] <= 100.0
    monkeypatch.setattr(generation, "greedy_completions",
                        lambda model, tok, prompts, **kw: [{"Which sport?": " tennis!", "Where?": " Paris"}[p]
                                                           for p in prompts])
    scripted = generation.portability(context)
    assert scripted["portability_generation_em"] == pytest.approx(50.0)
    assert scripted["portability_tf"] == real["portability_tf"]  # teacher forcing does not generate


def test_both_metrics_are_registered():
    metrics = PluginHost().catalog.entries["metrics"]
    assert {"generation", "portability"} <= set(metrics)
