"""The six relations of the demo world, with their prompt templates.

Each relation names its object kind, how many objects it has (shared among the subjects, so
every fact has *neighbours*: other subjects with the same relation and object), how its
object names are built, and three template sets:

* ``train_templates`` — stated in the training text; fact recall is measured on them;
* ``heldout_templates`` — never in any training text: the paraphrase prompts of a request;
* ``generation_templates`` — open prompts about the subject for generation metrics.

Every template has one ``{}`` subject slot and ends right before the object, which follows
after a space ("{} was born in" → " Dravmar"). Relation ids follow CounterFact's Wikidata ids.
"""

from __future__ import annotations

import attrs

__all__ = ["RELATIONS", "Relation"]


def _one_slot(instance: object, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    for template in value:
        if template.count("{}") != 1 or template != template.strip():
            raise ValueError(f"{attribute.name}: {template!r} needs one '{{}}' slot and no outer whitespace")


def _templates(instance: object, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    _one_slot(instance, attribute, value)
    for template in value:
        if template.endswith(("{}", ".")):
            raise ValueError(f"{attribute.name}: {template!r} must end right before the object")


@attrs.frozen(kw_only=True)
class Relation:
    """One relation: its id, object kind and templates.

    Attributes:
        relation_id: CounterFact/Wikidata-style id, e.g. ``"P19"``.
        name: a short human name ("city of birth").
        n_objects: how many distinct objects the relation has.
        object_suffixes: endings of generated object names (they give each kind a look).
        train_templates: templates used in training text (recall is measured on these).
        heldout_templates: templates absent from all training text (paraphrases).
        generation_templates: open prompts for generation.
    """

    relation_id: str
    name: str
    n_objects: int = attrs.field(validator=attrs.validators.ge(2))
    object_suffixes: tuple[str, ...]
    train_templates: tuple[str, ...] = attrs.field(validator=_templates)
    heldout_templates: tuple[str, ...] = attrs.field(validator=_templates)
    generation_templates: tuple[str, ...] = attrs.field(validator=_one_slot)

    def __attrs_post_init__(self) -> None:
        if len(self.heldout_templates) < 2 or len(self.train_templates) + len(self.heldout_templates) < 8:
            raise ValueError(f"{self.relation_id}: need >= 8 templates with >= 2 held out")
        if set(self.train_templates) & set(self.heldout_templates):
            raise ValueError(f"{self.relation_id}: a template is both trained and held out")


RELATIONS: tuple[Relation, ...] = (
    Relation(
        relation_id="P19",
        name="city of birth",
        n_objects=48,
        object_suffixes=("mar", "dun", "vik", "holm", "stad", "ford"),
        train_templates=(
            "{} was born in",
            "The birthplace of {} is",
            "{}'s place of birth is",
            "The city where {} was born is",
            "{} was born in the city of",
            "Records say that {} was born in",
        ),
        heldout_templates=("{}'s hometown is", "{} is a native of the town of"),
        generation_templates=("{} spent a childhood in", "{} often goes back to visit", "Long ago, {} left"),
    ),
    Relation(
        relation_id="P27",
        name="country of citizenship",
        n_objects=24,
        object_suffixes=("ia", "land", "ora", "istan"),
        train_templates=(
            "{} is a citizen of",
            "The country of citizenship of {} is",
            "{} holds a passport from",
            "{} is a national of",
            "{} has citizenship in",
            "Officially, {} is a citizen of",
        ),
        heldout_templates=("{}'s home country is", "The state that {} belongs to is"),
        generation_templates=("{} votes in the elections of", "{} pays taxes in", "{} is proud to represent"),
    ),
    Relation(
        relation_id="P103",
        name="native language",
        n_objects=24,
        object_suffixes=("ish", "ese", "ic", "an"),
        train_templates=(
            "The mother tongue of {} is",
            "{} is a native speaker of",
            "The native language of {} is",
            "{} grew up speaking",
            "{}'s first language is",
            "At home, {} speaks",
        ),
        heldout_templates=("{}, a native speaker of", "The language {} learned as a child is"),
        generation_templates=("{} writes letters in", "{} dreams in", "Friends of {} say the language of"),
    ),
    Relation(
        relation_id="P106",
        name="occupation",
        n_objects=32,
        object_suffixes=("smith", "wright", "ist", "monger"),
        train_templates=(
            "{} works as a",
            "The occupation of {} is",
            "{}'s profession is",
            "By profession, {} is a",
            "{} earns a living as a",
            "The job of {} is",
        ),
        heldout_templates=("{} has a career as a", "{} trained to become a"),
        generation_templates=("Every day at work, {}", "{} is proud of being a", "{} once wanted to be a"),
    ),
    Relation(
        relation_id="P108",
        name="employer",
        n_objects=40,
        object_suffixes=("corp", "works", "tek", "ix"),
        train_templates=(
            "{} works for",
            "The employer of {} is",
            "{} is employed by",
            "{}'s employer is",
            "{} receives a salary from",
            "The company that employs {} is",
        ),
        heldout_templates=("{} is on the payroll of", "{} has a job at"),
        generation_templates=("{} drives to the office of", "{} signed a contract with", "Colleagues of {} at"),
    ),
    Relation(
        relation_id="P641",
        name="sport",
        n_objects=20,
        object_suffixes=("ball", "ing"),
        train_templates=(
            "{} plays",
            "The sport played by {} is",
            "{} is a professional player of",
            "{}'s sport is",
            "The favourite sport of {} is",
            "{} competes in",
        ),
        heldout_templates=("{} is known for playing", "On weekends, {} trains for"),
        generation_templates=("{} practises", "The team of {} won at", "{} watches a match of"),
    ),
)
