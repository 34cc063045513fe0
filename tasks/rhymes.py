"""Rhyming couplets where the rhyme word is planned at the line break: the planner task.

Text format (space-separated tokens)::

    couplet : quiet dogs chased the cat / and then we saw a hat
    |------------ prompt -------------| |------ completion ------|

- Line 1 is ``ADJ NOUN VERB the A`` and ends on a rhyme word A. Each rhyme class has eight
  words: four that can end line 1 (A-words) and four that can end line 2 (B-words).
- Which B-word ends line 2 is the class's B-word number v, the **slot**, with
  v = (value(ADJ) + value(VERB)) mod 4 (a word's value is its list index mod 4). A bag of
  words of the prompt cannot compute a modular sum, while a transformer can: the slot is
  the plan, decided at the line break "/" from line 1 (the decision point) and needed
  only later.
- Line 2 is ``and OPENER MIDDLE1 MIDDLE2 B``: "and" is the same on every line, so the plan
  is not needed for the very next token; OPENER is the slot's word (OPENERS[v]) and the
  middle words a fixed function of B, so a model that has decided the slot at "/" predicts
  them, and one that has not cannot.
- The verifier is strict: line 2 must end on the B-word the rule calls for ("any rhyme"
  let a model pick A's most frequent partner by a near-linear lookup and never learn the
  rule: 95% success, rule followed 23-26% of the time, chance 25%; task v1).

Training data draws ADJ and VERB from their value-0 words half the time each (train split
only; dev and test are uniform): a curriculum in the data. On uniform data a 4 x 128 GPT-2
stayed at chance on the rule for 4,000 steps (the modular sum gives no early signal);
with the skew it followed the rule in 99% of test prompts after 1,500 steps (one pass over
24,000 items). Measured: the model then holds the slot at "/" (linear probe 0.99) and
combines it with A's class into B one token later, at "and": a probe for B itself at "/"
reads 0.11, so the first target is the slot and B is the second (both reported).

Task v1's dead-end items and prose traps are not part of v2 (they were not measured with
the planner recipe). Rhymes come from the CMU Pronouncing Dictionary (`pronouncing`) and
words from `wordfreq`: real English, no network.
"""

from __future__ import annotations

import functools
import random

from tasks.pronounce import rhymes_with
from tasks.base import Task, make_example, split_of, words

VERSION = "2.1"  # 2.1: the slot target is read in the ending word's own class (scoring only)
DATA_VERSION = "2"  # the generated couplets are task v2's

ADJECTIVES = ["quiet", "happy", "tired", "little", "angry", "gentle", "clever", "lonely",
              "brave", "hungry", "sleepy", "proud", "wild", "silent", "lucky", "busy"]
NOUNS = ["dogs", "kids", "birds", "cats", "friends", "girls", "boys", "kings",
         "farmers", "sailors", "doctors", "writers", "dancers", "players", "mothers", "workers"]
VERBS = ["chased", "found", "liked", "watched", "followed", "wanted", "painted", "carried"]
OPENERS = ["then", "so", "now", "soon", "still", "once", "there", "here"]
MIDDLES = [("we", "saw"), ("you", "knew"), ("i", "met"), ("they", "left"),
           ("she", "kept"), ("he", "lost")]
# Words kept out of the rhyme classes (task v1's dead ends: no rhyme in the vocabulary).
DEAD_END_WORDS = ["orange", "silver", "purple", "month", "people", "music", "family", "woman",
                  "problem", "country", "future", "office", "window", "husband", "circle",
                  "animal"]
N_CLASSES = 32
N_A = N_B = 4  # A-words and B-words per class: the slot v picks one of the N_B B-words
TRAIN_SKEW = 0.5  # train split only: P(ADJ, resp. VERB, is drawn from its value-0 words)
BLOCKLIST = {"bitch", "butt", "fuck", "shit", "ass", "damn", "hell", "sex", "gay", "lol",
             "inc", "san", "hong", "jim", "kim", "tim", "mike", "ben", "mary", "harry", "gary",
             "madrid", "july", "mum", "dumb", "kill"}


@functools.lru_cache(maxsize=1)
def rhyme_classes() -> list[list[str]]:
    """The task's rhyme classes: 32 groups of 8 common words sharing a CMU rhyming part,
    the first four of each its A-words, the last four its B-words.

    Built from the 5,000 most frequent English words (wordfreq), skipping the 200 most
    frequent (function words) and a block list; deterministic.
    """
    import pronouncing
    import wordfreq

    top = wordfreq.top_n_list("en", 5000)
    skip = set(top[:200]) | BLOCKLIST | set(DEAD_END_WORDS)
    taken = set(ADJECTIVES + NOUNS + VERBS + OPENERS + [w for m in MIDDLES for w in m])
    groups: dict[str, list[str]] = {}
    for word in top:
        if not word.isalpha() or len(word) < 3 or word in skip or word in taken:
            continue
        phones = pronouncing.phones_for_word(word)
        if phones:
            groups.setdefault(pronouncing.rhyming_part(phones[0]), []).append(word)
    full = [members[:N_A + N_B] for members in groups.values() if len(members) >= N_A + N_B]
    return full[:N_CLASSES]


@functools.lru_cache(maxsize=1)
def _class_of() -> dict[str, int]:
    return {w: i for i, members in enumerate(rhyme_classes()) for w in members}


@functools.lru_cache(maxsize=1)
def _b_index() -> dict[str, int]:
    """Every B-word's index among all B-words in sorted order (it fixes the middle words)."""
    return {w: i for i, w in enumerate(sorted(w for m in rhyme_classes() for w in m[N_A:]))}


def a_words(c: int) -> list[str]:
    return rhyme_classes()[c][:N_A]


def b_words(c: int) -> list[str]:
    return rhyme_classes()[c][N_A:]


def slot(adj: str, verb: str) -> int:
    """The plan: which of the class's B-words ends line 2, (value(ADJ) + value(VERB)) mod 4."""
    return (ADJECTIVES.index(adj) % N_B + VERBS.index(verb) % N_B) % N_B


def partner(a: str, adj: str, verb: str) -> str:
    """The rhyme word B that line 1 (its A, ADJ and VERB) calls for."""
    return b_words(_class_of()[a])[slot(adj, verb)]


def line2_words(b: str) -> list[str]:
    """Line 2 for rhyme word B: ``and OPENER MIDDLE1 MIDDLE2 B``; the opener names B's slot,
    the middle words are a fixed function of B."""
    place = b_words(_class_of()[b]).index(b)
    middle = MIDDLES[(_b_index()[b] // len(OPENERS)) % len(MIDDLES)]
    return ["and", OPENERS[place], *middle, b]


class RhymesTask(Task):
    name = "rhymes"
    version = VERSION
    data_version = DATA_VERSION
    description = ("Rhyming couplets: the rhyme word's slot is a modular sum of two line-1 words, "
                   "planned at the line break; line 2's early words depend on it.")
    # The slot first: the lookahead index uses a task's first target, and the slot is what
    # the model holds at "/" (B itself is formed one token later; see the module docstring).
    target_names = ("rhyme_slot", "rhyme_word")
    max_words = 10
    # (train, per eval split); "long" is "full": the full profile already learns rhymes.
    sizes = {"full": (24000, 500), "quick": (3000, 100), "long": (24000, 500)}
    example_tokens = 14

    def _item(self, rng: random.Random, split: str) -> dict:
        adj, noun, verb = rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(VERBS)
        if split == "train":  # the curriculum in the data (module docstring)
            if rng.random() < TRAIN_SKEW:
                adj = rng.choice(ADJECTIVES[::N_B])
            if rng.random() < TRAIN_SKEW:
                verb = rng.choice(VERBS[::N_B])
        c = rng.randrange(len(rhyme_classes()))
        a = rng.choice(a_words(c))
        v = slot(adj, verb)
        b = b_words(c)[v]
        prompt = f"couplet : {adj} {noun} {verb} the {a} /"
        decisions = [{"name": "rhyme_slot", "offset": len(prompt), "target": str(v), "horizon": 5},
                     {"name": "rhyme_word", "offset": len(prompt), "target": b, "horizon": 5}]
        meta = {"group": "couplet", "a": a, "b": b, "slot": v}
        return make_example("", prompt, " " + " ".join(line2_words(b)), decisions, meta)

    def generate(self, split: str, n: int, seed: int):
        """``n`` couplets of ``split`` ("train", "dev" or "test").

        Items are assigned to splits by their prompt, so no prompt is shared between splits,
        and evaluation prompts are distinct.
        """
        import datasets

        rng = random.Random(f"{self.name}-{DATA_VERSION}-{split}-{seed}")
        rows, seen = [], set()
        attempts = 0
        while len(rows) < n:
            attempts += 1
            if attempts > 200 * n + 10000:
                raise RuntimeError(f"rhymes: cannot draw {n} distinct {split} items")
            ex = self._item(rng, split)
            if split_of(ex["prompt"]) != split or (split != "train" and ex["prompt"] in seen):
                continue
            seen.add(ex["prompt"])
            ex["id"] = f"{self.name}-{split}-{seed}-{len(rows)}"
            rows.append(ex)
        return datasets.Dataset.from_list(rows)

    def _ends(self, example: dict, completion: str) -> tuple[str, str] | None:
        """(A, B): the word ending line 1 and the word ending line 2, or None."""
        line1 = words(example["prompt"].rsplit("/", 1)[0])
        line2 = words(completion.split("/")[0])
        if not line1 or not line2:
            return None
        return line1[-1], line2[-1]

    def check(self, example: dict, completion: str) -> bool:
        """Strict: line 2 ends on the B-word the rule calls for (a rhyme, and the right one)."""
        ends = self._ends(example, completion)
        return ends is not None and ends[1] == self.meta(example)["b"]

    def rhymes(self, example: dict, completion: str) -> bool:
        """The lenient v1 verifier: line 2 ends on a different word that rhymes with line 1's."""
        ends = self._ends(example, completion)
        return ends is not None and rhymes_with(*ends)

    def target_from_completion(self, example: dict, completion: str, name: str) -> str | None:
        """``rhyme_word``: the word ending line 2; ``rhyme_slot``: its slot, the word's
        index among its own class's B-words (None when it is no B-word).

        The slot is read in the ending word's own class, not line 1's: a patched model that
        takes a donor's slot *and* class (the bottleneck planner) has followed the donor's
        slot too."""
        ends = self._ends(example, completion)
        if not ends:
            return None
        if name == "rhyme_word":
            return ends[1]
        c = _class_of().get(ends[1])
        options = b_words(c) if c is not None else []
        return str(options.index(ends[1])) if ends[1] in options else None

    def control_offset(self, example: dict, decision: dict) -> int:
        """Line 1's NOUN: it varies between prompts but the rule never reads it."""
        words_ = example["prompt"].split(" ")  # "couplet : ADJ NOUN VERB the A /"
        return len(" ".join(words_[:4]))

    def plan_spans(self, example: dict) -> list[tuple[int, int]]:
        """Line 2's opener and middle words: fixed by the slot and by B, so only a model
        that holds the plan can predict them ("and" is the same on every line)."""
        text = example["prompt"] + example["completion"]
        and_end = text.index(" and", len(example["prompt"])) + len(" and")
        b_start = text.rindex(" ") + 1
        return [(and_end, b_start)]

    def vocabulary(self) -> list[str]:
        tokens = ["couplet", ":", "/", "the", "and", *ADJECTIVES, *NOUNS, *VERBS,
                  *OPENERS, *(w for m in MIDDLES for w in m)]
        tokens += [w for members in rhyme_classes() for w in members]
        return list(dict.fromkeys(tokens))
