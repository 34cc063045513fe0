"""The rhymes task: generation, splits, the verifier and its robustness."""


from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import get_task
from tasks.base import words
from tasks.rhymes import (ADJECTIVES, N_B, VERBS, a_words, b_words, line2_words, partner, rhyme_classes,
                          rhymes_with, slot)

TASK = get_task("rhymes")


def test_generation_is_deterministic_and_seed_dependent():
    a = TASK.generate("dev", 50, seed=3)
    b = TASK.generate("dev", 50, seed=3)
    c = TASK.generate("dev", 50, seed=4)
    assert a["prompt"] == b["prompt"] and a["completion"] == b["completion"]
    assert a["prompt"] != c["prompt"]


def test_splits_share_no_prompt():
    train = set(TASK.generate("train", 2000, 0)["prompt"])
    dev = set(TASK.generate("dev", 300, 0)["prompt"])
    test = set(TASK.generate("test", 300, 0)["prompt"])
    assert not (train & dev) and not (train & test) and not (dev & test)


def test_reference_completions_pass_and_decisions_point_at_line_end():
    ds = TASK.generate("test", 200, 0)
    for ex in ds:
        assert TASK.check(ex, ex["completion"])
        meta = TASK.meta(ex)
        slot_d, word_d = ex["decisions"]
        assert (slot_d["name"], word_d["name"]) == ("rhyme_slot", "rhyme_word")
        for d in ex["decisions"]:
            text = ex["prompt"] + ex["completion"]
            assert text[: d["offset"]].endswith("/")  # the end of line 1
        assert words(ex["completion"])[-1] == word_d["target"] == meta["b"]
        assert slot_d["target"] == str(meta["slot"]) == TASK.target_from_completion(ex, ex["completion"], "rhyme_slot")


def test_train_draws_are_skewed_and_evaluation_draws_are_uniform():
    from collections import Counter

    train = Counter(TASK.meta(ex)["slot"] for ex in TASK.generate("train", 2000, 0))
    test = Counter(TASK.meta(ex)["slot"] for ex in TASK.generate("test", 400, 0))
    assert train[0] > 0.4 * 2000  # half the adjectives and verbs are value-0 words
    assert all(0.15 < test[v] / 400 < 0.35 for v in range(N_B))


def test_every_token_is_in_the_vocabulary():
    vocab = set(TASK.vocabulary())
    for ex in TASK.generate("train", 500, 1):
        assert set((ex["prompt"] + ex["completion"]).split()) <= vocab


def test_verifier_is_strict_and_the_lenient_rate_judges_rhymes_by_pronunciation():
    ex = TASK.generate("test", 1, 0)[0]
    meta = TASK.meta(ex)
    b = meta["b"]
    wrong = next(w for w in b_words(rhyme_classes().index(next(m for m in rhyme_classes() if b in m))) if w != b)
    assert TASK.check(ex, f" and then we saw {b}") and TASK.check(ex, f" And then we saw {b.upper()}!")
    assert not TASK.check(ex, f" and then we saw {wrong}")  # a rhyme, but not the rule's
    assert TASK.rhymes(ex, f" and then we saw {wrong}")  # ... which the lenient rate accepts
    assert TASK.target_from_completion(ex, f" and then we saw {wrong}", "rhyme_slot") != str(meta["slot"])
    assert TASK.target_from_completion(ex, " and then we saw xqzzyv", "rhyme_slot") is None
    assert not TASK.check(ex, " and then we saw xqzzyv") and not TASK.rhymes(ex, "")


def test_the_slot_is_read_in_the_ending_words_own_class():
    """A completion ending on another class's B-word at slot s reads as slot s: a model
    patched with a donor's plan (class and slot) has followed the donor's slot."""
    ex = TASK.generate("test", 1, 0)[0]
    other = next(c for c in range(len(rhyme_classes())) if TASK.meta(ex)["b"] not in b_words(c))
    for index, word in enumerate(b_words(other)):
        assert TASK.target_from_completion(ex, f" and then we saw {word}", "rhyme_slot") == str(index)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_verifier_never_raises_on_garbage(text):
    for ex in TASK.generate("test", 4, 0):
        assert TASK.check(ex, text) in (True, False)
        TASK.target_from_completion(ex, text, "rhyme_word")
        TASK.target_from_completion(ex, text, "rhyme_slot")


def test_rhyme_partner_is_a_modular_function_of_line_one():
    # Every A-word rhymes with the four B-words of its class, and the rule picks among them
    # by the modular sum of ADJ's and VERB's values.
    a = a_words(0)[0]
    partners = {partner(a, adj, verb) for adj in ADJECTIVES for verb in VERBS}
    assert partners == set(b_words(0)) and all(rhymes_with(a, b) for b in partners)
    assert slot(ADJECTIVES[1], VERBS[3]) == 0 and slot(ADJECTIVES[5], VERBS[2]) == 3
    # Line 2's opener names the slot; its early words differ across a class's B-words.
    assert [line2_words(b)[1] for b in b_words(0)] == [line2_words(b)[1] for b in b_words(1)]
    openings = {tuple(line2_words(b)[:4]) for b in b_words(0)}
    assert len(openings) == N_B
