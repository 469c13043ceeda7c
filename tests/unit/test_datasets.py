"""Dataset plugins: every real format maps to requests; bad records are all named, or skipped."""

from __future__ import annotations

import json

import pytest
from conftest import require_real_data
from editkit_datasets.formats import detect
from editkit_datasets.reader import read_records
from editkit_datasets.sources import resolve

from editkit.requests import parse_records, requests_from_records


@pytest.mark.parametrize(
    ("name", "kind", "min_records"),
    [
        ("counterfact_portability_gpt4.json", "counterfact", 1000),
        ("counterfact-edit.json", "counterfact-easyedit", 10000),
        ("zsre_mend_eval_portability_gpt4.json", "zsre", 1000),
        ("benchmark_ZsRE_ZsRE-test-all.json", "knowedit", 1000),
        ("benchmark_wiki_counterfact_train_cf.json", "knowedit", 1000),
        ("benchmark_wiki_recent_recent_train.json", "knowedit", 500),
    ],
)
def test_real_files_map_to_valid_requests(name, kind, min_records):
    path = require_real_data(name)
    raw = json.loads(path.read_text())
    assert detect(raw[0]) == kind
    records = read_records(path)
    requests, problems = parse_records(records)
    assert len(requests) >= min_records
    assert len(problems) <= 0.02 * len(records), problems[:5]  # a few upstream records really are malformed
    first = requests[0]
    assert "{}" in first.prompt and first.subject in first.filled_prompt and first.target_new.strip()
    if kind == "zsre":
        assert records[0]["requested_rewrite"]["target_new"]["str"] == raw[0]["answers"][0]
        assert records[0]["locality"][0]["answer"] == raw[0]["loc_ans"]
        alt = read_records(path, target="alt")[0]
        assert alt["requested_rewrite"]["target_new"]["str"] == raw[0]["alt"]
    if kind == "knowedit":
        assert records[0]["locality"] and all({"prompt", "answer"} <= set(x) for x in records[0]["locality"])


def test_mixed_good_and_bad_records_are_all_named(tmp_path):
    good = {"subject": "Danielle Darrieux", "src": "What language does Danielle Darrieux speak?",
            "answers": ["English"], "rephrase": "Danielle Darrieux speaks?", "loc": "nq question: who", "loc_ans": "me"}
    records = [
        good,
        {**good, "subject": "Nobody Here"},                # subject not in its prompt
        {**good, "answers": [""]},                         # empty target
        {k: v for k, v in good.items() if k != "src"},     # missing required field → unknown format
        {**good, "case_id": 0},                            # duplicate case id (record 0 got id 0)
    ]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(records))
    requests, problems = parse_records(read_records(path))
    assert len(requests) == 1
    text = "\n".join(problems)
    assert "record 1 (case_id 1): src: the subject 'Nobody Here' does not occur" in text
    assert "record 2 (case_id 2): answers: expected a non-empty string" in text
    assert "record 3 (case_id 3): record: unknown format" in text
    assert "record 4 (case_id 0): case_id: duplicate of record 0" in text
    with pytest.raises(Exception, match="4 bad record"):
        requests_from_records(read_records(path))


def test_offline_missing_dataset_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITKIT_CACHE", str(tmp_path))
    import editkit_datasets.sources as sources

    monkeypatch.setitem(sources.OFFICIAL, "zsre", "http://127.0.0.1:9/unreachable.json")
    with pytest.raises(Exception, match=r"put it at .*datasets/zsre.json"):
        resolve("zsre", timeout=2)
    # a cached file is used, and a tampered one refused
    cached = tmp_path / "datasets" / "zsre.json"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text("[]")
    (tmp_path / "datasets" / "zsre.sha256.json").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(Exception, match="checksum mismatch"):
        resolve("zsre")


def test_knowedit_ground_truth_equal_to_the_target_is_an_insertion_without_target_true():
    """KnowEdit's ZsRE gives ``ground_truth`` == ``target_new`` for edits that insert the true answer; a true
    target equal to the new one would be a bad record (nothing to edit), so the record has none."""
    from editkit_datasets.formats import from_knowedit

    base = {"subject": "USA-199", "prompt": "What day was USA-199 launched?", "target_new": "20 December 2007"}
    inserted = from_knowedit({**base, "ground_truth": ["20 December 2007"]}, 0)
    changed = from_knowedit({**base, "ground_truth": ["20 August 2000"]}, 1)
    assert "target_true" not in inserted["requested_rewrite"]
    assert changed["requested_rewrite"]["target_true"] == {"str": "20 August 2000"}
    requests, problems = parse_records([inserted, changed])
    assert not problems and [r.target_true for r in requests] == [None, " 20 August 2000"]
