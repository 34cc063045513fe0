"""The natural constrained face: the word-level items as English instructions, few-shot."""

from __future__ import annotations

import pytest

from tasks.constrained import ConstrainedTask
from tasks.constrained_natural import FEWSHOT, HEADER, NaturalConstrainedTask, as_english, instruction

TASK = NaturalConstrainedTask()


@pytest.fixture(scope="module")
def items():
    return list(TASK.generate("test", 50, 0))


def test_the_items_are_the_word_level_tasks_in_english(items):
    plain = list(ConstrainedTask().generate("test", 50, 0))
    for ex, word in zip(items, plain):
        assert TASK.meta(ex) == ConstrainedTask.meta(word)
        assert ex["completion"].lower().rstrip(".") == word["completion"]
        assert [d["target"] for d in ex["decisions"]] == [d["target"] for d in word["decisions"]]
        assert ex["prompt"].startswith(HEADER + "\n\n") and ex["prompt"].endswith("\nSentence:")
        assert ex["prompt"].count("Constraint: ") == FEWSHOT + 1
        assert ex["prompt"].rsplit("Constraint: ", 1)[1].startswith(instruction(TASK.meta(ex)))
        assert all(d["offset"] == len(ex["prompt"]) for d in ex["decisions"])
        assert TASK.check(ex, ex["completion"])
    assert {TASK.group(e) for e in items} == {"end-word", "end-rhyme", "kth-word", "counts", "acrostic"}


def test_exemplars_never_hold_the_items_slot_word(items):
    for ex in items:
        slot = ex["decisions"][1]["target"]
        shots = ex["prompt"].split("\n\n")[1:-1]
        assert all(f" {slot}." not in s.split("Sentence: ")[1].lower() for s in shots)


def test_the_verifier_reads_the_first_line_in_words(items):
    ex = next(e for e in items if TASK.group(e) == "end-word")
    end, n = TASK.meta(ex)["end"], TASK.meta(ex)["length"]
    good = as_english(["the"] * (n - 1) + [end], "!")
    assert TASK.check(ex, " " + good) and TASK.check(ex, "\n" + good + "\nmore words here")
    assert not TASK.check(ex, " " + as_english(["the"] * n + [end]))  # one word too many
    assert not TASK.check(ex, " the\n" + good)
    assert TASK.target_from_completion(ex, " " + good, "end_word") == end


def test_names_and_i_are_capitalised():
    assert as_english(["yesterday", "carl", "and", "i", "ate"], ",") == "Yesterday Carl and I ate,"
    assert TASK.face == "natural" and TASK.vocabulary() == []
