"""Rhymes by the CMU Pronouncing Dictionary (`pronouncing`, shipped in a package: no network),
shared by the tasks that judge rhymes."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def rhyme_parts(word: str) -> frozenset[str]:
    """The rhyming parts of every CMU pronunciation of ``word`` (empty if unknown)."""
    import pronouncing

    return frozenset(pronouncing.rhyming_part(p) for p in pronouncing.phones_for_word(word))


def rhymes_with(a: str, b: str) -> bool:
    """True when two different words rhyme in some CMU pronunciation of each."""
    a, b = a.lower().strip(), b.lower().strip()
    return bool(a and b and a != b and rhyme_parts(a) & rhyme_parts(b))
