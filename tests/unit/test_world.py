"""The demo world generator: determinism, unambiguous names, neighbours, requests, corpora."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from editkit_world import RELATIONS, World, WorldConfig
from editkit_world.names import NameForge

from editkit.requests import requests_from_records


@pytest.fixture(scope="module")
def world() -> World:
    return World.generate(WorldConfig(seed=0))


def test_same_seed_same_world(world: World) -> None:
    again = World.generate(WorldConfig(seed=0))
    assert again == world
    assert again.fingerprint() == world.fingerprint()
    assert again.training_texts() == world.training_texts()
    assert again.background_corpus() == world.background_corpus()
    assert again.requests(20, seed=3) == world.requests(20, seed=3)


def test_different_seed_different_world(world: World) -> None:
    other = World.generate(WorldConfig(seed=1))
    assert other.fingerprint() != world.fingerprint()
    assert set(other.subjects) != set(world.subjects)
    assert world.requests(5, seed=0) != world.requests(5, seed=1)


def test_shape(world: World) -> None:
    assert len(world.subjects) >= 1000
    assert len(world.relations) == 6
    assert len(world.facts) == len(world.subjects) * len(world.relations)
    for relation in world.relations:
        assert 20 <= len(world.objects[relation.relation_id]) <= 60
        templates = world.templates[relation.relation_id]
        assert len(templates.train) + len(templates.heldout) >= 8
        assert len(templates.heldout) >= 2
        assert not set(templates.train) & set(templates.heldout)
        for template in (*templates.train, *templates.heldout):
            assert template.count("{}") == 1 and not template.endswith((" ", "{}", "."))


def test_names_are_unique_and_unambiguous(world: World) -> None:
    subjects = world.subjects
    assert len(set(subjects)) == len(subjects)
    assert all(len(s.split()) == 2 for s in subjects)
    objects = [o for rid in world.objects for o in world.objects[rid]]
    assert len(set(objects)) == len(objects)
    assert all(re.fullmatch(r"[A-Z][a-z]+", o) for o in objects)
    # no word of any name is a substring of another (so no name is inside another name)
    family = [s.split()[1] for s in subjects]
    words = sorted({w.lower() for w in (*family, *objects, *(s.split()[0] for s in subjects))}, key=len)
    joined = "\n".join(words)
    for w in words:
        assert joined.count(w) == 1, f"{w!r} occurs inside another name"
    assert len(set(family)) == len(family)  # the family name identifies the subject


def test_name_forge_avoids_collisions_and_reserved_words() -> None:
    forge = NameForge(random.Random(7), reserved={"river"})
    words = [w.lower() for w in forge.words(300)]
    for i, a in enumerate(words):
        assert a != "river"
        assert not any(a in b for j, b in enumerate(words) if j != i)


def test_every_fact_has_neighbours(world: World) -> None:
    for fact in world.facts:
        neighbours = world.neighbours(fact.subject, fact.relation_id)
        assert neighbours and fact.subject not in neighbours
        assert all(world.object_of(n, fact.relation_id) == fact.object for n in neighbours)
    for rid, objects in world.objects.items():
        counts = Counter(world.object_of(s, rid) for s in world.subjects)
        assert set(counts) == set(objects)
        assert max(counts.values()) - min(counts.values()) <= 1  # balanced


def _subject_of(prompt: str, world: World) -> str:
    found = [s for s in world.subjects if s in prompt]
    assert len(found) == 1, prompt
    return found[0]


def test_requests_are_counterfact_records(world: World) -> None:
    records = world.requests(50, seed=0)
    parsed = requests_from_records(records)
    assert len(parsed) == 50
    assert len({r.subject for r in parsed}) == 50
    for record, request in zip(records, parsed):
        rewrite = record["requested_rewrite"]
        assert set(record) == {"case_id", "requested_rewrite", "paraphrase_prompts", "neighborhood_prompts",
                               "attribute_prompts", "generation_prompts"}
        assert set(rewrite) == {"prompt", "relation_id", "subject", "target_new", "target_true"}
        rid, subject = rewrite["relation_id"], rewrite["subject"]
        new, true = rewrite["target_new"]["str"], rewrite["target_true"]["str"]
        assert true == world.object_of(subject, rid)
        assert new != true and new in world.objects[rid]
        assert rewrite["prompt"] in world.templates[rid].train
        assert request.target_new == " " + new and request.target_true == " " + true
        assert record["paraphrase_prompts"] == [t.format(subject) for t in world.templates[rid].heldout]
        assert record["neighborhood_prompts"] and record["attribute_prompts"] and record["generation_prompts"]
        for prompt in record["neighborhood_prompts"]:
            other = _subject_of(prompt, world)
            assert other != subject and world.object_of(other, rid) == true
        for prompt in record["attribute_prompts"]:
            assert world.object_of(_subject_of(prompt, world), rid) == new
        for prompt in (*record["paraphrase_prompts"], *record["neighborhood_prompts"]):
            assert prompt == prompt.strip() and not prompt.endswith(".")


def test_requests_are_prefix_stable_and_bounded(world: World) -> None:
    assert world.requests(30, seed=2)[:10] == world.requests(10, seed=2)
    assert world.requests(0) == []
    with pytest.raises(ValueError, match="n:"):
        world.requests(len(world.subjects) + 1)


def test_heldout_templates_never_trained(world: World) -> None:
    texts = world.training_texts()
    blob = "\n".join(texts)
    for relation in world.relations:
        for template in relation.heldout_templates:
            fragment = max((part.strip(" ") for part in template.split("{}")), key=len)
            assert fragment and fragment not in blob, (template, fragment)
        for fact in world.facts[:60]:
            for template in relation.heldout_templates:
                assert template.format(fact.subject) not in blob


def test_training_texts_state_every_probe(world: World) -> None:
    texts = set(world.training_texts())
    probes = world.fact_probes()
    assert len(probes) == sum(len(world.relation(f.relation_id).train_templates) for f in world.facts)
    for probe in probes[::97]:
        assert f"{probe.prompt}{probe.target}." in texts
    heldout = world.heldout_probes()
    assert len(heldout) == len(world.facts) * 2
    assert all(f"{p.prompt}{p.target}." not in texts for p in heldout[::97])
    assert {p.object for p in probes} == {o for objs in world.objects.values() for o in objs}


def test_background_corpus_keeps_subjects_rare(world: World) -> None:
    corpus = world.background_corpus()
    assert len(corpus) == world.config.background_filler + len(world.facts)
    n_relations = len(RELATIONS)
    for subject in world.subjects[::50]:
        assert sum(subject in text for text in corpus) == n_relations  # each fact stated once
    assert n_relations / len(corpus) < 0.001


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        WorldConfig(n_subjects=1)
    with pytest.raises(TypeError):
        WorldConfig(0)  # type: ignore[misc]  # keyword-only
