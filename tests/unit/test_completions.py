"""Greedy completions before and after editing: probes, records and the printed table."""

from __future__ import annotations

from editkit.cli.completion_table import print_completions, short
from editkit.helpers.completions import completion_probes, completion_records, shown_completions, starts_with
from editkit.requests import EditRequest


def _request(case_id, subject, paraphrases=("p1", "p2"), neighbours=("n1",)):
    return EditRequest(case_id=case_id, subject=subject, prompt="{} is in", target_new="Rome", target_true="Paris",
                       paraphrase_prompts=paraphrases, neighborhood_prompts=neighbours)


def test_probes_take_the_rewrite_first_paraphrase_and_first_neighbour_of_the_first_n():
    requests = [_request("0", "A"), _request("1", "B", paraphrases=(), neighbours=()), _request("2", "C")]
    probes = completion_probes(requests, 2)
    assert [(p.case_id, p.kind, p.prompt) for p in probes] == [
        ("0", "rewrite", "A is in"), ("0", "paraphrase", "p1"), ("0", "neighbour", "n1"), ("1", "rewrite", "B is in")]
    assert [p.expected_after for p in probes] == ["Rome", "Rome", "Paris", "Rome"]
    assert completion_probes(requests, 0) == []


def test_records_check_the_completion_after_against_the_expected_object():
    probes = completion_probes([_request("0", "A")], 1)
    records = completion_records(probes, [" Paris.", " Paris.", " Paris."], [" Rome, Italy", " Paris", " Rome"])
    assert [r["after_as_expected"] for r in records] == [True, False, False]
    assert records[0] | {} == {"case_id": "0", "subject": "A", "kind": "rewrite", "prompt": "A is in",
                               "target_true": "Paris", "target_new": "Rome", "before": " Paris.",
                               "after": " Rome, Italy", "after_as_expected": True}
    assert starts_with("  Rome", "Rome") and not starts_with(" Romania", "Paris") and starts_with("x", None) is None


def test_shown_completions_option_then_dataset_choice():
    assert shown_completions(None, {}) == 0 and shown_completions(None, {"completions": 12}) == 12
    assert shown_completions(0, {"completions": 12}) == 0 and shown_completions(3, {}) == 3
    assert shown_completions(None, {"completions": True}) == 0


def test_the_table_shows_each_fact_and_its_prompts(capsys):
    probes = completion_probes([_request("0", "Eiffel Tower")], 1)
    records = completion_records(probes, [" Paris, France. It is"] * 3, [" Rome, Italy. The", " Rome", " Paris"])
    print_completions(records, 5)
    out = capsys.readouterr().out
    assert "(1 of 5 edits)" in out and "Eiffel Tower: Paris -> Rome" in out
    assert "Paris, France." in out and "Rome, Italy." in out and "It is" not in out
    assert out.count("ok") == 3
    assert short("a very long completion that goes on and on").endswith("...")


def test_greedy_completions_can_skip_the_line_break_an_answer_starts_with(monkeypatch):
    from editkit.helpers import completions

    tok = type("Tok", (), {"decode": lambda self, ids, skip_special_tokens=True: "Q?"})()
    monkeypatch.setattr("editkit.helpers.generation.sample_continuations",
                        lambda *a, **k: ["Q?\n\nParis, France\nmore"])
    monkeypatch.setattr("editkit.helpers.tokens.tokenize", lambda tokenizer, text: type("T", (), {"ids": [1]})())
    assert completions.greedy_completions(None, tok, ["Q?"]) == [""]
    assert completions.greedy_completions(None, tok, ["Q?"], skip_leading_breaks=True) == ["Paris, France"]
