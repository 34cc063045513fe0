"""Constrained completion, natural face: the same constraints as English instructions,
few-shot, for pretrained models.

    Write a sentence that meets each constraint.

    Constraint: exactly 6 words, the last one rhyming with "cake".
    Sentence: The baker tasted a fresh steak.

    Constraint: exactly 7 words, ending with the word "river".
    Sentence:
             ^ prompt ends here (the decision point)
     A swimmer carefully swam to the river.      <- the reference completion

The items are the word-level task's (tasks/constrained.py: the same generator, splits,
families and checks); only the text differs. Each item's k exemplars (`FEWSHOT`) come from
the word-level *train* split (never scored), leaving out any exemplar with the item's own
constraint or slot word. The verifier is `tasks.constrained.satisfies` on the words of the
completion's first line (case and punctuation ignored), so "The baker tasted a fresh
steak." is judged as "the baker tasted a fresh steak". Decisions are the word-level task's
(``end_word``, ``slot_word``) at the end of the prompt. No reference trains on this face.
"""

from __future__ import annotations

import functools
import random

from tasks.base import make_example
from tasks.constrained import ConstrainedTask

VERSION = "1"
FEWSHOT = 3  # exemplars before each item (not yet chosen by measurement)
POOL = 300  # word-level train items the exemplars are drawn from
HEADER = "Write a sentence that meets each constraint."


def instruction(meta: dict) -> str:
    """A constraint in English, from a word-level item's meta."""
    family, n = meta["family"], meta.get("length")
    if family == "end-word":
        return f'exactly {n} words, ending with the word "{meta["end"]}".'
    if family == "end-rhyme":
        return f'exactly {n} words, the last one rhyming with "{meta["rhyme"]}" (and not "{meta["rhyme"]}" itself).'
    if family == "kth-word":
        return f'exactly {n} words, word number {meta["k"]} being "{meta["word"]}".'
    if family == "counts":
        return f"exactly {n} words with {meta['letters']} letters in all."
    if family == "acrostic":
        return f'{len(meta["spell"])} words whose first letters spell "{meta["spell"]}".'
    raise ValueError(f"unknown family {family!r}")


def as_english(ws: list[str], end: str = ".") -> str:
    """Lexicon words as English writes them: the first word, names and "I" capitalised,
    ``end`` punctuation after the last."""
    from tasks.constrained import NAMES

    ws = [w.capitalize() if i == 0 or w in NAMES or w == "i" else w for i, w in enumerate(ws)]
    return " ".join(ws) + end


def sentence_text(completion: str) -> str:
    """A word-level completion (" carl tasted a steak") as an English sentence."""
    return as_english(completion.split())


class NaturalConstrainedTask(ConstrainedTask):
    name = "constrained-natural"
    version = VERSION
    description = "The constrained-completion constraints as English instructions, few-shot (for pretrained models)."
    face = "natural"
    sizes = {"full": (0, 500), "quick": (0, 100), "long": (0, 500)}  # no training set: nobody trains on it
    example_tokens = 80

    def __init__(self, fewshot: int = FEWSHOT) -> None:
        self.fewshot = fewshot

    @functools.lru_cache(maxsize=4)
    def _pool(self, seed: int) -> tuple[dict, ...]:
        return tuple(ConstrainedTask().generate("train", POOL, seed))

    def _example(self, item: dict, seed: int) -> dict:
        meta = self.meta(item)
        slot = item["decisions"][1]["target"]
        shots = [ex for ex in self._pool(seed)
                 if ex["prompt"] != item["prompt"] and ex["decisions"][1]["target"] != slot]
        chosen = random.Random(f"{item['id']}-{seed}").sample(shots, self.fewshot)
        blocks = [f"Constraint: {instruction(self.meta(ex))}\nSentence: {sentence_text(ex['completion'])}" for ex in chosen]
        prompt = HEADER + "\n\n" + "\n\n".join(blocks) + f"\n\nConstraint: {instruction(meta)}\nSentence:"
        decisions = [dict(d, offset=len(prompt)) for d in item["decisions"]]
        return make_example(item["id"].replace("constrained", self.name, 1), prompt,
                            " " + sentence_text(item["completion"]), decisions, meta)

    def generate(self, split: str, n: int, seed: int):
        """``n`` items of ``split``: the word-level task's items, in English, few-shot."""
        import datasets

        items = ConstrainedTask().generate(split, n, seed)
        return datasets.Dataset.from_list([self._example(item, seed) for item in items])

    def vocabulary(self) -> list[str]:
        """None: no word-level reference is trained on this face."""
        return []

    @staticmethod
    def _first_line(completion: str) -> str:
        return completion.lstrip("\n").split("\n", 1)[0] if isinstance(completion, str) else ""

    def check(self, example: dict, completion: str) -> bool:
        """The completion's first line meets the constraint, judged on its words."""
        return super().check(example, self._first_line(completion))

    def target_from_completion(self, example: dict, completion: str, name: str) -> str | None:
        return super().target_from_completion(example, self._first_line(completion), name)

    def control_offset(self, example: dict, decision: dict) -> int:
        """The end of the header: the same in every prompt, it holds no plan."""
        return len(HEADER)
