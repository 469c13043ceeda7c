"""Syllable-built names for the demo world: unambiguous by construction.

Every generated word (given names, family names, object names) is built from simple
consonant-vowel(-coda) syllables (a small inventory, so names read easily and tokenise into
a few common pieces) and accepted only if it is *substring-free* with respect to
every word accepted before it (case-insensitively, in both directions). So no subject name
is a prefix or substring of another subject's, no object of another object's, and a name's
text identifies it wherever it occurs in a prompt. Generated words also never equal a word
of the world's ordinary vocabulary (``reserved``).

Pure Python; the output depends only on the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import attrs

__all__ = ["NameForge"]

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "n", "r", "l", "s")  # open syllables twice as likely
_LINKS = ("n", "r", "l", "s", "k", "m", "d", "t")
_VOWEL_LETTERS = frozenset("aeiouy")


def _substrings(word: str) -> set[str]:
    return {word[i:j] for i in range(len(word)) for j in range(i + 1, len(word) + 1)}



def _frozen(words: Iterable[str]) -> frozenset[str]:
    return frozenset(words)


@attrs.define
class NameForge:
    """Draws words that are substring-free with respect to each other and to ``reserved``.

    A forge is a short-lived builder (one per world generation): it remembers what it has
    handed out so that later words cannot collide with earlier ones.

    Attributes:
        rng: the source of randomness (a seeded ``random.Random``).
        reserved: lower-case words a generated word must not equal (the filler vocabulary).
    """

    rng: random.Random
    reserved: frozenset[str] = attrs.field(factory=frozenset, converter=_frozen)
    _accepted: set[str] = attrs.field(init=False, factory=set)
    _covered: set[str] = attrs.field(init=False, factory=set)  # every substring of an accepted word

    def _syllable(self) -> str:
        return self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)

    def _fits(self, word: str) -> bool:
        if len(word) < 4 or word in self.reserved or word in self._covered:
            return False  # too short, ordinary word, or inside an accepted word
        return not (_substrings(word) & self._accepted)  # would contain an accepted word

    def _accept(self, word: str) -> None:
        self._accepted.add(word)
        self._covered |= _substrings(word)

    def word(self, *, syllables: tuple[int, ...] = (2, 3), suffixes: Iterable[str] = ("",),
             max_len: int = 11) -> str:
        """One new capitalised word of ``syllables`` syllables plus one of ``suffixes``."""
        suffixes = tuple(suffixes)
        for _ in range(10_000):
            stem = "".join(self._syllable() for _ in range(self.rng.choice(syllables)))
            suffix = self.rng.choice(suffixes)
            if suffix[:1] in _VOWEL_LETTERS and stem[-1] in _VOWEL_LETTERS:
                stem += self.rng.choice(_LINKS)  # no vowel clusters at the seam ("Kreiist")
            word = (stem + suffix).lower()
            if len(word) <= max_len and self._fits(word):
                self._accept(word)
                return word.capitalize()
        raise RuntimeError("NameForge: could not find a new unambiguous word; the name space is exhausted")

    def words(self, n: int, **kwargs: object) -> tuple[str, ...]:
        """``n`` new words (see :meth:`word`)."""
        return tuple(self.word(**kwargs) for _ in range(n))  # type: ignore[arg-type]
