"""The demo knowledge world: subjects, facts, prompts, requests and corpora.

A :class:`World` is generated deterministically from a :class:`WorldConfig` (pure Python, no
torch). It has ``n_subjects`` two-word subjects ("Tanis Rolse"), six relations
(:mod:`editkit_world.relations`) and, for each relation, a few dozen single-word objects
shared among the subjects, so every fact has neighbours (other subjects with the same
relation and object). Each subject has one object per relation, drawn so that the objects of
a relation are used about equally often.

Text made from the world:

* :meth:`World.training_texts` — every fact in every *train* template, plus filler;
* :meth:`World.fact_probes` / :meth:`World.heldout_probes` — (prompt, object) pairs for
  measuring recall with the train / held-out templates;
* :meth:`World.background_corpus` — general text for key statistics (C0), see its docstring;
* :meth:`World.requests` — CounterFact-format edit requests.
"""

from __future__ import annotations

import hashlib
import json
import random
import types
from collections.abc import Mapping
from typing import Any

import attrs

from editkit_world.filler import FILLER_WORDS, filler_sentences
from editkit_world.names import NameForge
from editkit_world.relations import RELATIONS, Relation

__all__ = ["Fact", "Probe", "Templates", "World", "WorldConfig"]

_ge = attrs.validators.ge



def _read_only(objects: Mapping[str, tuple[str, ...]]) -> Mapping[str, tuple[str, ...]]:
    return types.MappingProxyType(objects)


@attrs.frozen(kw_only=True)
class WorldConfig:
    """What a world is generated from; equal configs give equal worlds.

    Attributes:
        seed: the generator's seed.
        n_subjects: number of subjects (each has one fact per relation).
        n_given_names: size of the pool of given names shared by subjects (family names are
            unique, so a subject's last word identifies it).
        train_filler: filler sentences in the training text.
        background_filler: filler sentences in the background corpus.
    """

    seed: int = attrs.field(default=0, validator=attrs.validators.instance_of(int))
    n_subjects: int = attrs.field(default=1000, validator=_ge(2))
    n_given_names: int = attrs.field(default=120, validator=_ge(1))
    train_filler: int = attrs.field(default=6000, validator=_ge(0))
    background_filler: int = attrs.field(default=24000, validator=_ge(0))

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class Fact:
    """``(subject, relation_id, object)``."""

    subject: str
    relation_id: str
    object: str


@attrs.frozen(kw_only=True)
class Templates:
    """A relation's template sets (see :mod:`editkit_world.relations`)."""

    train: tuple[str, ...]
    heldout: tuple[str, ...]
    generation: tuple[str, ...]


@attrs.frozen(kw_only=True)
class Probe:
    """A recall probe: ``prompt`` should be continued by ``target`` (``" " + object``).

    Attributes:
        subject: the fact's subject.
        relation_id: the fact's relation.
        template: the ``{}`` template the prompt was made from.
        object: the expected object (no leading space).
    """

    subject: str
    relation_id: str
    template: str
    object: str

    @property
    def prompt(self) -> str:
        return self.template.format(self.subject)

    @property
    def target(self) -> str:
        return " " + self.object


def fact_sentence(template: str, subject: str, obj: str) -> str:
    """The sentence stating a fact: the filled template, a space, the object and a full stop."""
    return f"{template.format(subject)} {obj}."


def _balanced(rng: random.Random, items: tuple[str, ...], n: int) -> list[str]:
    """``n`` draws from ``items`` in which every item occurs ``n // len(items)`` or one more times."""
    pool = list(items) * (n // len(items)) + rng.sample(items, n % len(items))
    rng.shuffle(pool)
    return pool


@attrs.frozen(kw_only=True)
class World:
    """A generated world (build it with :meth:`generate`).

    Attributes:
        config: what it was generated from.
        relations: the relations, in a fixed order.
        subjects: subject names ("Given Family"), in generation order.
        objects: relation id → that relation's object names.
        facts: every fact, ordered by subject then relation.
        filler: the training text's filler sentences.
    """

    config: WorldConfig
    relations: tuple[Relation, ...]
    subjects: tuple[str, ...]
    objects: Mapping[str, tuple[str, ...]] = attrs.field(converter=_read_only)
    facts: tuple[Fact, ...]
    filler: tuple[str, ...] = attrs.field(repr=False)
    _by_key: Mapping[tuple[str, str], str] = attrs.field(init=False, repr=False, eq=False)
    _holders: Mapping[tuple[str, str], tuple[str, ...]] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        by_key = {(f.subject, f.relation_id): f.object for f in self.facts}
        holders: dict[tuple[str, str], list[str]] = {}
        for f in self.facts:
            holders.setdefault((f.relation_id, f.object), []).append(f.subject)
        object.__setattr__(self, "_by_key", types.MappingProxyType(by_key))
        object.__setattr__(self, "_holders", types.MappingProxyType({k: tuple(v) for k, v in holders.items()}))

    # ------------------------------------------------------------------ generation

    @classmethod
    def generate(cls, config: WorldConfig | None = None) -> World:
        """Generate the world of ``config`` (default: :class:`WorldConfig` ``()``)."""
        config = config or WorldConfig()
        rng = random.Random(f"editkit-world:{config.seed}")
        template_words = {
            w.lower().strip(",.'s{}")
            for r in RELATIONS
            for t in (*r.train_templates, *r.heldout_templates, *r.generation_templates)
            for w in t.split()
        }
        forge = NameForge(rng, reserved=FILLER_WORDS | template_words)
        objects = {
            r.relation_id: forge.words(r.n_objects, syllables=(1, 2), suffixes=r.object_suffixes)
            for r in RELATIONS
        }
        given = forge.words(config.n_given_names, syllables=(2,), max_len=8)
        family = forge.words(config.n_subjects, syllables=(2,), max_len=9)
        subjects = tuple(f"{rng.choice(given)} {last}" for last in family)
        assignment = {r.relation_id: _balanced(rng, objects[r.relation_id], len(subjects)) for r in RELATIONS}
        facts = tuple(
            Fact(subject=s, relation_id=r.relation_id, object=assignment[r.relation_id][i])
            for i, s in enumerate(subjects)
            for r in RELATIONS
        )
        filler = filler_sentences(random.Random(f"editkit-world:{config.seed}:train-filler"),
                                  config.train_filler, objects)
        return cls(config=config, relations=RELATIONS, subjects=subjects, objects=objects, facts=facts,
                   filler=filler)

    # ------------------------------------------------------------------ lookups

    @property
    def templates(self) -> Mapping[str, Templates]:
        """Relation id → its train / held-out / generation templates."""
        return types.MappingProxyType({
            r.relation_id: Templates(train=r.train_templates, heldout=r.heldout_templates,
                                     generation=r.generation_templates)
            for r in self.relations
        })

    def relation(self, relation_id: str) -> Relation:
        for r in self.relations:
            if r.relation_id == relation_id:
                return r
        raise KeyError(f"unknown relation {relation_id!r}")

    def object_of(self, subject: str, relation_id: str) -> str:
        """The true object of ``(subject, relation_id)``."""
        return self._by_key[(subject, relation_id)]

    def holders(self, relation_id: str, obj: str) -> tuple[str, ...]:
        """Every subject whose ``relation_id`` object is ``obj``."""
        return self._holders.get((relation_id, obj), ())

    def neighbours(self, subject: str, relation_id: str) -> tuple[str, ...]:
        """Other subjects with the same ``relation_id`` object as ``subject``."""
        return tuple(s for s in self.holders(relation_id, self.object_of(subject, relation_id)) if s != subject)

    def fingerprint(self) -> str:
        """sha256 of everything a trained model depends on (subjects, facts, templates, filler)."""
        payload = {
            "config": self.config.to_dict(),
            "relations": [attrs.asdict(r) for r in self.relations],
            "facts": [[f.subject, f.relation_id, f.object] for f in self.facts],
            "filler": list(self.filler),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    # ------------------------------------------------------------------ text

    def training_texts(self) -> tuple[str, ...]:
        """Every fact stated in every train template, then the training filler.

        The trainer draws its batches from exactly these texts; held-out templates never
        occur in them.
        """
        facts = tuple(
            fact_sentence(t, f.subject, f.object)
            for f in self.facts
            for t in self.relation(f.relation_id).train_templates
        )
        return facts + self.filler

    def _probes(self, heldout: bool) -> tuple[Probe, ...]:
        return tuple(
            Probe(subject=f.subject, relation_id=f.relation_id, template=t, object=f.object)
            for f in self.facts
            for t in (self.relation(f.relation_id).heldout_templates if heldout
                      else self.relation(f.relation_id).train_templates)
        )

    def fact_probes(self) -> tuple[Probe, ...]:
        """One probe per fact and train template (the recall measured during training)."""
        return self._probes(heldout=False)

    def heldout_probes(self) -> tuple[Probe, ...]:
        """One probe per fact and held-out template (paraphrase recall)."""
        return self._probes(heldout=True)

    def background_corpus(self) -> tuple[str, ...]:
        """General text for key statistics (MEMIT's C0 / AlphaEdit's null space).

        Mostly filler (``config.background_filler`` sentences, drawn apart from the training
        filler) plus every fact stated once, in a train template chosen at random, shuffled
        together. With the defaults (24,000 filler sentences and 6,000 fact sentences), a
        given subject occurs in 6 of 30,000 sentences (0.02%): as for a real model's
        Wikipedia statistics, any one subject is rare, so the statistics describe general
        key directions rather than the very keys an edit will write (see
        ``small-model-calibration.md``, point 3).
        """
        rng = random.Random(f"editkit-world:{self.config.seed}:background")
        filler = filler_sentences(rng, self.config.background_filler, self.objects)
        facts = [fact_sentence(rng.choice(self.relation(f.relation_id).train_templates), f.subject, f.object)
                 for f in self.facts]
        corpus = [*filler, *facts]
        rng.shuffle(corpus)
        return tuple(corpus)

    # ------------------------------------------------------------------ requests

    def requests(self, n: int, seed: int = 0, *, max_prompts: int = 10) -> list[dict[str, Any]]:
        """``n`` CounterFact-format edit requests for ``n`` distinct subjects.

        Each rewrites one fact of a random relation to another object of the same relation
        (``target_new != target_true``). ``paraphrase_prompts`` are the relation's held-out
        templates; ``neighborhood_prompts`` are up to ``max_prompts`` prompts about other
        subjects with the same true object (their answer stays ``target_true``);
        ``attribute_prompts`` are prompts about subjects whose true object is ``target_new``.
        Prefix-stable: ``requests(n, seed)`` is the start of ``requests(m, seed)`` for m > n.
        """
        if not 0 <= n <= len(self.subjects):
            raise ValueError(f"n: expected 0..{len(self.subjects)} (one request per subject), got {n}")
        order = list(self.subjects)
        random.Random(f"editkit-world:{self.config.seed}:requests:{seed}").shuffle(order)
        return [self._request(i, subject, seed, max_prompts) for i, subject in enumerate(order[:n])]

    def _request(self, case_id: int, subject: str, seed: int, max_prompts: int) -> dict[str, Any]:
        rng = random.Random(f"editkit-world:{self.config.seed}:requests:{seed}:{case_id}")
        relation = rng.choice(self.relations)
        rid = relation.relation_id
        true = self.object_of(subject, rid)
        new = rng.choice([o for o in self.objects[rid] if o != true])

        def prompts(subjects: tuple[str, ...]) -> list[str]:
            chosen = rng.sample(subjects, min(max_prompts, len(subjects)))
            return [rng.choice(relation.train_templates).format(s) for s in chosen]

        others = [r for r in self.relations if r is not relation]
        generation = [*relation.generation_templates,
                      *(rng.choice(r.generation_templates) for r in rng.sample(others, 2))]
        return {
            "case_id": case_id,
            "requested_rewrite": {
                "prompt": rng.choice(relation.train_templates),
                "relation_id": rid,
                "subject": subject,
                "target_new": {"str": new},
                "target_true": {"str": true},
            },
            "paraphrase_prompts": [t.format(subject) for t in relation.heldout_templates],
            "neighborhood_prompts": prompts(self.neighbours(subject, rid)),
            "attribute_prompts": prompts(tuple(s for s in self.holders(rid, new) if s != subject)),
            "generation_prompts": [t.format(subject) for t in generation],
        }
