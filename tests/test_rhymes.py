"""The rhymes task: generation, splits, the verifier and its robustness."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import get_task
from tasks.base import words
from tasks.rhymes import ADJECTIVES, VERBS, line2_words, partner, rhyme_classes, rhymes_with

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
    groups = set()
    for ex in ds:
        assert TASK.check(ex, ex["completion"])
        meta = TASK.meta(ex)
        groups.add(meta["group"])
        for d in ex["decisions"]:
            text = ex["prompt"] + ex["completion"]
            assert text[: d["offset"]].endswith("/")  # the end of line 1
            assert words(ex["completion"])[-1] == d["target"]
    assert groups == {"couplet", "dead-end"}


def test_every_token_is_in_the_vocabulary():
    vocab = set(TASK.vocabulary())
    for ex in TASK.generate("train", 500, 1):
        assert set((ex["prompt"] + ex["completion"]).split()) <= vocab


def test_verifier_judges_rhymes_by_pronunciation():
    ex = {"prompt": "couplet : quiet dogs chased the cat /", "completion": "", "decisions": [],
          "meta": json.dumps({"group": "couplet"})}
    assert TASK.check(ex, " and then we saw a hat")
    assert TASK.check(ex, " And then we saw a HAT!")  # case and punctuation
    assert not TASK.check(ex, " and then we saw a cat")  # the same word is not a rhyme
    assert not TASK.check(ex, " and then we saw a dog")
    assert not TASK.check(ex, " and then we saw a xqzzyv")  # unknown word
    dead = {"prompt": "couplet : quiet dogs chased the", "completion": "", "decisions": [],
            "meta": json.dumps({"group": "dead-end"})}
    assert TASK.check(dead, " cat / and then we saw a hat")
    assert not TASK.check(dead, " orange / and then we saw a hat")  # the dead end
    assert not TASK.check(dead, " cat and then we saw a hat")  # no line break


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_verifier_never_raises_on_garbage(text):
    for ex in TASK.generate("test", 4, 0):
        assert TASK.check(ex, text) in (True, False)
        TASK.target_from_completion(ex, text, "rhyme_word")


def test_rhyme_partner_is_a_modular_function_of_line_one():
    # Every class member rhymes with its partners, and the partner depends on ADJ and VERB.
    a = rhyme_classes()[0][0]
    partners = {partner(a, adj, verb) for adj in ADJECTIVES for verb in VERBS}
    assert len(partners) == 4 and all(rhymes_with(a, b) for b in partners)
    # Line 2's early words are a function of its rhyme word, distinct across a class.
    openings = {tuple(line2_words(b)[:4]) for b in rhyme_classes()[0]}
    assert len(openings) == len(rhyme_classes()[0])
