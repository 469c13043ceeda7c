"""General filler text: a small grammar of everyday sentences.

Filler keeps the world model fluent (it learns ordinary sentence structure, not only fact
statements) and makes up most of the background corpus from which key statistics are
estimated. About one sentence in five mentions an object of some relation (a city, a
language, ...) in a neutral context, so object names also occur outside fact statements.
Filler never mentions a subject and never states a fact.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

__all__ = ["FILLER_WORDS", "filler_sentence", "filler_sentences"]

_PEOPLE = ("farmer", "teacher", "baker", "child", "doctor", "sailor", "student", "neighbour", "singer",
           "driver", "painter", "old man", "young woman", "traveller", "guard", "merchant")
_THINGS = ("river", "bridge", "market", "garden", "library", "harbour", "station", "forest", "village",
           "museum", "kitchen", "tower", "square", "road", "valley", "school")
_ITEMS = ("a letter", "the bread", "a small boat", "the old map", "a basket of apples", "the newspaper",
          "a red umbrella", "the keys", "a cup of tea", "some flowers", "the tickets", "a wooden chair")
_ADJECTIVES = ("quiet", "busy", "old", "new", "cold", "warm", "bright", "narrow", "green", "crowded",
               "peaceful", "windy")
_VERBS = ("carried", "found", "painted", "sold", "bought", "lost", "repaired", "cleaned", "brought", "opened")
_INTRANSITIVE = ("walked slowly", "waited", "sang softly", "laughed", "rested", "worked late", "smiled",
                 "looked around")
_TIMES = ("in the morning", "after the storm", "every winter", "on a sunny afternoon", "late at night",
          "before dinner", "during the festival", "at dawn", "last spring", "in the evening")
_PLACES = ("near the river", "at the market", "in the garden", "behind the station", "by the harbour",
           "across the square", "in the library", "under the bridge", "at the edge of the forest")

# Object-mentioning patterns; keys name the relation whose objects fill them.
_OBJECT_PATTERNS: tuple[tuple[str, ...], ...] = (
    ("P19", "The streets of {0} were {adj} {time}."),
    ("P19", "A {person} from {0} {verb} {item}."),
    ("P27", "The mountains of {0} are {adj} {time}."),
    ("P27", "Travellers say that {0} has many {adj} roads."),
    ("P103", "Many books are written in {0}."),
    ("P103", "The {person} learned a few words of {0} {time}."),
    ("P106", "Every {0} needs good tools."),
    ("P106", "The work of a {0} is {adj} {time}."),
    ("P108", "{0} opened a new office near the {thing}."),
    ("P108", "The workers of {0} {intransitive} {time}."),
    ("P641", "The {0} season starts {time}."),
    ("P641", "Children {place} were playing {0}."),
)


def _words(*groups: Sequence[str]) -> frozenset[str]:
    return frozenset(w.lower().strip(".,") for group in groups for phrase in group for w in phrase.split())


FILLER_WORDS: frozenset[str] = _words(
    _PEOPLE, _THINGS, _ITEMS, _ADJECTIVES, _VERBS, _INTRANSITIVE, _TIMES, _PLACES,
    [p for _, p in _OBJECT_PATTERNS],
    ["the", "a", "said", "that", "while", "then", "and", "in", "of", "from", "is", "was", "were"],
)
"""Every ordinary word filler (and templates) may use; generated names avoid these."""


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def filler_sentence(rng: random.Random, objects: Mapping[str, Sequence[str]]) -> str:
    """One filler sentence; ``objects`` maps relation ids to their object names."""
    pick = rng.choice
    slots = {
        "person": pick(_PEOPLE), "thing": pick(_THINGS), "item": pick(_ITEMS), "adj": pick(_ADJECTIVES),
        "verb": pick(_VERBS), "intransitive": pick(_INTRANSITIVE), "time": pick(_TIMES), "place": pick(_PLACES),
    }
    kind = rng.random()
    if kind < 0.2 and objects:
        relation_id, pattern = pick(_OBJECT_PATTERNS)
        return _cap(pattern.format(pick(objects[relation_id]), **slots))
    if kind < 0.45:
        return _cap("the {person} {verb} {item} {place}.".format(**slots))
    if kind < 0.65:
        return _cap("{time}, the {person} {intransitive} {place}.".format(**slots))
    if kind < 0.8:
        return _cap("the {thing} was {adj} {time}.".format(**slots))
    if kind < 0.9:
        other = pick(_PEOPLE)
        return _cap(f"the {slots['person']} said that the {other} {slots['verb']} {slots['item']}.")
    return _cap("the {person} {intransitive} while the {thing} was {adj}.".format(**slots))


def filler_sentences(rng: random.Random, n: int, objects: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """``n`` filler sentences drawn with ``rng``."""
    return tuple(filler_sentence(rng, objects) for _ in range(n))
