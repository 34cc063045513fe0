"""Tests of the constrained-completion task: checkers, generator, splits, vocabulary."""

from __future__ import annotations

import collections
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import get_task
from tasks.base import make_example, split_of
from tasks.constrained import (
    FAMILIES, MAX_WORDS, TOPICS, acrostic_sentence, acrostic_words, noun_frame, nouns,
    rhyme_partners, rhymes_with, sample_example, sentence, starts_with_vowel_sound,
)

TASK = get_task("constrained")
VOCAB = set(TASK.vocabulary())


def hand(family: str, prompt: str, **params) -> dict:
    """A hand-written example: the checker reads the constraint from meta."""
    return make_example("hand", prompt, " x", [], {"group": family, "family": family, **params})


# ---------------------------------------------------------------- checkers, by hand


def test_end_word_checker():
    ex = hand("end-word", "constraint : end with river in 7 words :", length=7, end="river")
    assert TASK.check(ex, " the old man walked to the river")
    assert TASK.check(ex, " The old man, walked to the River!")  # case and punctuation
    assert not TASK.check(ex, " the old man walked to river")  # 6 words
    assert not TASK.check(ex, " the old man walked to the lake")
    assert not TASK.check(ex, " the old man walked to the river today")
    assert not TASK.check(ex, "")


def test_end_rhyme_checker():
    ex = hand("end-rhyme", "constraint : end with a rhyme of cake in 4 words :",
              length=4, rhyme="cake")
    assert TASK.check(ex, " we saw the lake")
    assert TASK.check(ex, " They ate the STEAK.")
    assert TASK.check(ex, " she fed a snake")
    assert not TASK.check(ex, " we ate the cake")  # the same word is not a rhyme
    assert not TASK.check(ex, " we saw the sea")
    assert not TASK.check(ex, " we saw the big lake")  # 5 words
    assert not TASK.check(ex, " we saw the qzxlake")  # not in the CMU dictionary


def test_kth_word_checker():
    ex = hand("kth-word", "constraint : word 3 is sailor in 5 words :",
              length=5, k=3, word="sailor")
    assert TASK.check(ex, " the old sailor rowed home")
    assert TASK.check(ex, " The old Sailor, rowed home.")
    assert not TASK.check(ex, " the sailor rowed home today")  # sailor is word 2
    assert not TASK.check(ex, " the old sailor rowed")  # 4 words
    assert not TASK.check(ex, " an old sailor")


def test_counts_checker():
    ex = hand("counts", "constraint : 4 words with 14 letters :", length=4, letters=14)
    assert TASK.check(ex, " the cats sat down")  # 3 + 4 + 3 + 4
    assert TASK.check(ex, " The cats, sat down!")
    assert not TASK.check(ex, " the cat sat down")  # 13 letters
    assert not TASK.check(ex, " the cats sat down now")  # 5 words
    apostrophe = hand("counts", "constraint : 2 words with 8 letters :", length=2, letters=8)
    assert TASK.check(apostrophe, " don't stop")  # the apostrophe is not a letter


def test_acrostic_checker():
    ex = hand("acrostic", "constraint : first letters spell c a k e :", length=4, spell="cake")
    assert TASK.check(ex, " carl ate kate's eggs")
    assert TASK.check(ex, " Cats Are Kind, Everyone!")
    assert not TASK.check(ex, " cats are kind")  # 3 words
    assert not TASK.check(ex, " cats are kind animals")
    assert not TASK.check(ex, " cats are kind everyone too")


def test_rhymes_with():
    assert rhymes_with("cake", "lake") and rhymes_with("torn", "corn")
    assert not rhymes_with("cake", "cake")
    assert not rhymes_with("cake", "sea")
    assert not rhymes_with("", "cake") and not rhymes_with("qzx", "qzx2")


def test_target_from_completion():
    kth = hand("kth-word", "constraint : word 3 is sailor in 5 words :",
               length=5, k=3, word="sailor")
    assert TASK.target_from_completion(kth, " the old sailor rowed home", "slot_word") == "sailor"
    assert TASK.target_from_completion(kth, " the old sailor rowed home.", "end_word") == "home"
    assert TASK.target_from_completion(kth, " the old", "slot_word") is None
    end = hand("end-word", "constraint : end with river in 3 words :", length=3, end="river")
    assert TASK.target_from_completion(end, " to the River!", "slot_word") == "river"
    assert TASK.target_from_completion(end, " ... ", "end_word") is None
    with pytest.raises(ValueError):
        TASK.target_from_completion(end, " to the river", "no_such_target")


# ---------------------------------------------------------------- generated data


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), family=st.sampled_from(FAMILIES))
def test_reference_completions_pass(seed, family):
    ex = sample_example(family, random.Random(seed), "x")
    assert TASK.check(ex, ex["completion"])
    assert set((ex["prompt"] + ex["completion"]).split()) <= VOCAB
    ws = ex["completion"].split()
    assert len(ws) <= MAX_WORDS <= TASK.max_words - 2
    for d in ex["decisions"]:
        assert d["offset"] == len(ex["prompt"])
        assert TASK.target_from_completion(ex, ex["completion"], d["name"]) == d["target"]
        assert ws[d["horizon"] - 1] == d["target"]
    assert {d["name"] for d in ex["decisions"]} == set(TASK.target_names)
    meta = TASK.meta(ex)
    assert meta["group"] == meta["family"] == family
    # every family fixes the number of words: dropping one always breaks the constraint
    assert not TASK.check(ex, " " + " ".join(ws[:-1]))


def test_words_before_the_slot_depend_on_it():
    """The agent comes from the noun's topic, the verb and adjectives from its frame."""
    rng = random.Random(0)
    agents_of = {n: t.agents for t in TOPICS for n in t.nouns}
    for _ in range(300):
        noun = rng.choice(nouns())
        filled = sentence(rng, noun, rng.randint(4, MAX_WORDS))
        verbs, adjectives = noun_frame(noun)
        assert filled[-1] == (noun, "noun")
        assert " ".join(w for w, role in filled if role.startswith("verb")) in verbs
        for i, (word, role) in enumerate(filled):
            if role == "agent":
                assert word in agents_of[noun]
            if role == "obj_adj":
                assert word in adjectives
            if word in ("a", "an"):
                assert (word == "an") == starts_with_vowel_sound(filled[i + 1][0])


def test_every_acrostic_word_and_rhyme_cue_is_solvable():
    rng = random.Random(1)
    assert len(acrostic_words()) > 300
    for word in acrostic_words():
        filled = acrostic_sentence(rng, word)
        assert filled is not None and "".join(w[0] for w, _ in filled) == word
    for cue, partners in rhyme_partners().items():
        assert partners and all(rhymes_with(cue, p) for p in partners)


def test_generate_is_deterministic_and_mixes_families():
    a = TASK.generate("train", 60, seed=5).to_list()
    assert a == TASK.generate("train", 60, seed=5).to_list()
    assert a != TASK.generate("train", 60, seed=6).to_list()
    groups = collections.Counter(TASK.meta(ex)["group"] for ex in a)
    assert groups == {family: 12 for family in FAMILIES}
    assert len({ex["id"] for ex in a}) == 60


def test_splits_are_disjoint_and_eval_prompts_distinct():
    data = {split: TASK.generate(split, n, seed=0).to_list()
            for split, n in (("train", 400), ("dev", 150), ("test", 150))}
    prompts = {split: {ex["prompt"] for ex in rows} for split, rows in data.items()}
    assert not prompts["train"] & prompts["dev"]
    assert not prompts["train"] & prompts["test"]
    assert not prompts["dev"] & prompts["test"]
    for split, rows in data.items():
        assert all(split_of(ex["prompt"]) == split for ex in rows)
    with pytest.raises(ValueError):
        TASK.generate("validation", 5, seed=0)
    # end-word has ~300 test prompts: 30 test items never repeat one
    end_word = [ex["prompt"] for ex in data["test"]
                if TASK.meta(ex)["family"] == "end-word"]
    assert len(end_word) == len(set(end_word)) == 30


def test_generated_tokens_are_in_vocabulary():
    vocab = TASK.vocabulary()
    assert len(vocab) == len(set(vocab)) and all(" " not in t and t for t in vocab)
    for ex in TASK.generate("dev", 100, seed=3):
        assert set((ex["prompt"] + ex["completion"]).split()) <= VOCAB
        assert TASK.check(ex, ex["completion"])


# ---------------------------------------------------------------- garbage in, False out


GARBAGE = st.one_of(
    st.text(),
    st.text(alphabet=" .,'!?-abcdeRIVER0123456789\n\t"),
    st.none(), st.integers(), st.binary(), st.lists(st.text()),
)


@settings(max_examples=200, deadline=None)
@given(completion=GARBAGE, family=st.sampled_from(FAMILIES), seed=st.integers(0, 1000))
def test_garbage_never_raises(completion, family, seed):
    ex = sample_example(family, random.Random(seed), "x")
    assert TASK.check(ex, completion) in (True, False)
    for name in TASK.target_names:
        target = TASK.target_from_completion(ex, completion, name)
        assert target is None or isinstance(target, str)
