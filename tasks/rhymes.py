"""Rhyming couplets: the task where a planned word pays off before it is written.

Text format (space-separated tokens)::

    couplet : quiet dogs chased the cat / and then we saw a hat
    |------------ prompt -------------| |------ completion ------|

- Line 1 is ``ADJ NOUN VERB the A`` and ends on a rhyme word A.
- Line 2 is ``and OPENER(B) MIDDLE(B) B``: it ends on B, another member of A's rhyme class,
  and its early words are a fixed function of B. So a model that has decided on B at the
  end of line 1 predicts the opener and the middle words; one that has not, cannot.
- Which member of the class B is depends on line 1 through a modular sum of two hidden
  word values (``(value(ADJ) + value(VERB)) mod 4``). A bag of words over the prompt cannot
  compute a modular sum, so the bag-of-words probe control stays weak, while a transformer
  can compute it; that is what makes probe selectivity meaningful.
- Position 1 of line 2 (``and``) is fixed, so the plan is not needed for the very next token:
  a model that holds B at the decision point has computed it ahead of need.

"Dead-end" items (the "Cheddar is marigold, not orange" example) stop before the last word
of line 1: the model must itself end line 1 on a word that has rhymes. Training data also
holds ``prose :`` lines whose same frames end on dead-end words (no rhyme in the
vocabulary), so the locally likely word in that slot is a trap that only a plan avoids.

Rhymes come from the CMU Pronouncing Dictionary (`pronouncing`) and words from `wordfreq`:
real English, no network.
"""

from __future__ import annotations

import functools
import random

from tasks.base import Task, make_example, split_of, words

VERSION = "1"

ADJECTIVES = ["quiet", "happy", "tired", "little", "angry", "gentle", "clever", "lonely",
              "brave", "hungry", "sleepy", "proud", "wild", "silent", "lucky", "busy"]
NOUNS = ["dogs", "kids", "birds", "cats", "friends", "girls", "boys", "kings",
         "farmers", "sailors", "doctors", "writers", "dancers", "players", "mothers", "workers"]
VERBS = ["chased", "found", "liked", "watched", "followed", "wanted", "painted", "carried"]
OPENERS = ["then", "so", "now", "soon", "still", "once", "there", "here"]
MIDDLES = [("we", "saw"), ("you", "knew"), ("i", "met"), ("they", "left"),
           ("she", "kept"), ("he", "lost")]
# Words with no rhyme in the vocabulary: the trap that prose lines end on.
DEAD_END_WORDS = ["orange", "silver", "purple", "month", "people", "music", "family", "woman",
                  "problem", "country", "future", "office", "window", "husband", "circle",
                  "animal"]
N_CLASSES = 32
CLASS_SIZE = 5  # every rhyme word has exactly 4 partners: the modular sum picks one
BLOCKLIST = {"bitch", "butt", "fuck", "shit", "ass", "damn", "hell", "sex", "gay", "lol",
             "inc", "san", "hong", "jim", "kim", "tim", "mike", "ben", "mary", "harry", "gary",
             "madrid", "july", "mum", "dumb", "kill"}


@functools.lru_cache(maxsize=1)
def rhyme_classes() -> list[list[str]]:
    """The task's rhyme classes: 48 groups of 5 common words sharing a CMU rhyming part.

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
    full = [members[:CLASS_SIZE] for members in groups.values() if len(members) >= CLASS_SIZE]
    return full[:N_CLASSES]


@functools.lru_cache(maxsize=1)
def _class_of() -> dict[str, int]:
    return {w: i for i, members in enumerate(rhyme_classes()) for w in members}


def rhymes_with(a: str, b: str) -> bool:
    """True when two different words rhyme in some CMU pronunciation of each."""
    import pronouncing

    a, b = a.lower().strip(), b.lower().strip()
    if not a or not b or a == b:
        return False
    parts_a = {pronouncing.rhyming_part(p) for p in pronouncing.phones_for_word(a)}
    parts_b = {pronouncing.rhyming_part(p) for p in pronouncing.phones_for_word(b)}
    return bool(parts_a & parts_b)


def line2_words(b: str) -> list[str]:
    """Line 2 for rhyme word B: ``and OPENER MIDDLE... B``, its early words fixed by B."""
    index = sorted(_class_of()).index(b)
    opener = OPENERS[index % len(OPENERS)]
    middle = MIDDLES[(index // len(OPENERS)) % len(MIDDLES)]
    return ["and", opener, *middle, b]


def partner(a: str, adj: str, verb: str) -> str:
    """The rhyme word B that line 1 (its A, ADJ and VERB) calls for."""
    members = rhyme_classes()[_class_of()[a]]
    others = [w for w in members if w != a]
    value = (ADJECTIVES.index(adj) % 4 + VERBS.index(verb) % 4) % len(others)
    return others[value]


class RhymesTask(Task):
    name = "rhymes"
    version = VERSION
    description = "Rhyming couplets: line 2's early words depend on the rhyme word that ends it."
    target_names = ("rhyme_word",)
    max_new_tokens = 10
    sizes = {"full": (24000, 500), "quick": (3000, 100)}  # (train, per eval split)
    example_tokens = 11  # couplets 14, prose lines 7
    dead_end_share = 0.25
    prose_share = 0.25  # of training items only

    def _item(self, rng: random.Random, kind: str) -> dict:
        adj, noun, verb = rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(VERBS)
        frame = f"{adj} {noun} {verb} the"
        if kind == "prose":
            return make_example("", f"prose : {frame}", f" {rng.choice(DEAD_END_WORDS)}", [],
                                {"group": "prose"})
        a = rng.choice(rng.choice(rhyme_classes()))
        b = partner(a, adj, verb)
        line2 = " ".join(line2_words(b))
        meta = {"group": kind, "a": a, "b": b}
        if kind == "couplet":
            prompt = f"couplet : {frame} {a} /"
            decision = {"name": "rhyme_word", "offset": len(prompt), "target": b, "horizon": 5}
            return make_example("", prompt, f" {line2}", [decision], meta)
        # Dead-end items are scored for success only: the model picks its own A, so the
        # reference B is not a target a probe could be fair about.
        return make_example("", f"couplet : {frame}", f" {a} / {line2}", [], meta)

    def generate(self, split: str, n: int, seed: int):
        """``n`` items of ``split`` ("train", "dev" or "test"); prose lines only in train.

        Items are assigned to splits by their prompt, so no prompt is shared between splits.
        Evaluation prompts are distinct; training may repeat a dead-end or prose frame with a
        different ending.
        """
        import datasets

        rng = random.Random(f"{self.name}-{VERSION}-{split}-{seed}")
        rows, seen = [], set()
        attempts = 0
        while len(rows) < n:
            attempts += 1
            if attempts > 200 * n + 10000:
                raise RuntimeError(f"rhymes: cannot draw {n} distinct {split} items")
            if split == "train" and rng.random() < self.prose_share:
                kind = "prose"
            else:
                kind = "dead-end" if rng.random() < self.dead_end_share else "couplet"
            ex = self._item(rng, kind)
            key = ex["prompt"] if split != "train" else ex["prompt"] + ex["completion"]
            if split_of(ex["prompt"]) != split or key in seen:
                continue
            seen.add(key)
            ex["id"] = f"{self.name}-{split}-{seed}-{len(rows)}"
            rows.append(ex)
        return datasets.Dataset.from_list(rows)

    def _ends(self, example: dict, completion: str) -> tuple[str, str] | None:
        """(A, B): the word ending line 1 and the word ending line 2, or None."""
        meta = self.meta(example)
        if meta.get("group") == "dead-end":
            line1_end, _, line2 = completion.partition("/")
            first, last = words(line1_end), words(line2)
            if not first or not last or not _:
                return None
            return first[-1], last[-1]
        line1 = words(example["prompt"].rsplit("/", 1)[0])
        line2 = words(completion.split("/")[0])
        if not line1 or not line2:
            return None
        return line1[-1], line2[-1]

    def check(self, example: dict, completion: str) -> bool:
        """Line 2 ends on a different word that rhymes, by CMU pronunciation, with line 1's."""
        ends = self._ends(example, completion)
        return ends is not None and rhymes_with(*ends)

    def target_from_completion(self, example: dict, completion: str, name: str) -> str | None:
        ends = self._ends(example, completion)
        return ends[1] if ends else None

    def control_offset(self, example: dict, decision: dict) -> int:
        """Line 1's NOUN: it varies between prompts but the rule for B never reads it."""
        words = example["prompt"].split(" ")  # "couplet : ADJ NOUN VERB the A /"
        return len(" ".join(words[:4]))

    def plan_spans(self, example: dict) -> list[tuple[int, int]]:
        """Line 2's opener and middle words: fixed functions of its rhyme word B, so only a
        model that holds B can predict them ("and" is the same on every line)."""
        text = example["prompt"] + example["completion"]
        spans = []
        for d in example["decisions"]:
            and_end = text.index(" and", d["offset"]) + len(" and")
            b_start = text.rindex(" " + d["target"]) + 1
            spans.append((and_end, b_start))
        return spans

    def vocabulary(self) -> list[str]:
        tokens = ["couplet", "prose", ":", "/", "the", "and", *ADJECTIVES, *NOUNS, *VERBS,
                  *OPENERS, *(w for m in MIDDLES for w in m), *DEAD_END_WORDS]
        tokens += [w for members in rhyme_classes() for w in members]
        return list(dict.fromkeys(tokens))
