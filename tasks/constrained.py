"""Constrained completion: sentences that must meet a stated constraint (after COLLIE, 2023).

Text format (space-separated lower-case tokens)::

    constraint : end with river in 7 words : a swimmer carefully swam to the river
    |------------- prompt ----------------| |------------ completion -----------|

Five families, one prompt template each (L = number of words, 4 to 10):

- ``end-word``: ``constraint : end with river in 7 words :``; L words, ending on "river".
- ``end-rhyme``: ``constraint : end with a rhyme of cake in 6 words :``; L words, ending on a
  different word that rhymes with "cake" (CMU Pronouncing Dictionary).
- ``kth-word``: ``constraint : word 3 is sailor in 7 words :``; L words, word 3 "sailor".
- ``counts``: ``constraint : 6 words with 29 letters :``; L words, 29 letters in all.
- ``acrostic``: ``constraint : first letters spell c a k e :``; one word per letter, their
  initials spelling "cake" (words of 4 to 6 letters).

The acrostic word is spelled out letter by letter so that a word-level tokenizer can see
its letters. Checks are made on words (`tasks.base.words`): case and punctuation are
ignored, so a pretrained model with its own tokenizer is judged the same way. The checker
asks only for the constraint, not for words of this task's vocabulary.

Why planning pays off (the dependence, by construction). Reference completions come from
a small grammar::

    [OPENER] SUBJECT [ADVERB] VERB DET [ADJ [ADJ]] NOUN
    SUBJECT = PRONOUN | NAME | DET [ADJ [ADJ]] AGENT

Every noun belongs to one of 22 topics (water, farm, kitchen, music, ...) and has a
*frame*: two of its topic's verb phrases and two of its topic's adjectives, a fixed seeded
choice per noun. A sentence takes its agent from the noun's topic and its verb phrase and
object adjectives from the noun's frame ("the fisherman crossed the deep bay", "a baker
tasted a sour peach"); "a" becomes "an" before a vowel sound (CMU). The generator picks
the slot word first (the given end word, a rhyme partner of the given word, a noun whose
initial ends the acrostic, any noun for counts and kth-word) and then builds the words
before it to fit. So the agent (1 of 22 topics), the verb (each is in the frames of about
40% of its topic's nouns), the adjective and the article before the noun are functions of
the word that fills the slot, and a model that has settled on that word at the start of
the completion predicts them better. A model that has not may open with an agent or verb
from which no grammatical ending meets the constraint (no noun of that topic rhymes with
the cue, or has the letters left over). The length L is met by a sentence shape (which
optional parts appear) summing to L, another decision the first words reveal.
Topic-neutral words (openers, pronouns, names, adverbs, subject adjectives) carry no plan,
and the first word is always one of them. General adjectives stand before the noun only
when an acrostic's letters leave no adjective of the noun's own. In kth-word, the fixed
word is the agent, the verb or an object adjective, so the words before it depend on it
too, and the end noun stays free.

Decisions, all at the start of the completion (offset = len(prompt)):

- ``end_word``: the word the completion ends on; horizon L.
- ``slot_word``: the word at the constrained slot: the end word for end-word, end-rhyme,
  counts and acrostic, the k-th word for kth-word; horizon = its position (1-based), the
  number of words until it is written.

Splits are by a hash of the prompt, so no prompt is in two splits. Lexicon: ~750 common
English words, every one in the CMU Pronouncing Dictionary; acrostic words are common
English words (wordfreq) of 4 to 6 letters that the grammar can spell.
"""

from __future__ import annotations

import functools
import random
from typing import NamedTuple

from tasks.base import SPLITS, Task, make_example, split_of, words
from tasks.pronounce import rhyme_parts, rhymes_with

VERSION = "1"
FAMILIES = ("end-word", "end-rhyme", "kth-word", "counts", "acrostic")
MIN_WORDS, MAX_WORDS = 4, 10
ACROSTIC_LENGTHS = (4, 5, 6)


class Topic(NamedTuple):
    """A semantic class: its nouns, and the agents, verbs and adjectives that go with them."""

    name: str
    agents: tuple[str, ...]
    verbs: tuple[str, ...]  # verb phrases of one or two words, each fits every noun
    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]
    mass: tuple[str, ...] = ()  # nouns that take "some" rather than "a"


def _topic(name: str, agents: str, verbs: str, adjectives: str, nouns: str,
           mass: str = "") -> Topic:
    return Topic(name, tuple(agents.split()), tuple(v.strip() for v in verbs.split(",")),
                 tuple(adjectives.split()), tuple(nouns.split()), tuple(mass.split()))


TOPICS = (
    _topic("water", "sailor fisherman captain swimmer",
           "sailed to, rowed to, swam to, drifted to, reached, crossed",
           "deep blue calm cold wide quiet",
           "sea lake river shore beach island harbor pond bay coast ocean stream boat ship "
           "raft canoe dock pier yacht"),
    _topic("creatures", "diver fisherman child",
           "caught, fed, watched, swam with, chased",
           "huge silver slippery tiny shy",
           "fish whale shark crab seal turtle frog eel dolphin swan duck goose otter"),
    _topic("farm", "farmer shepherd",
           "fed, brushed, herded, led, sold, rode",
           "fat lazy brown noisy hungry muddy",
           "cow pig goat horse sheep hen lamb donkey mule bull ox calf chicken pony rooster "
           "mare cat dog"),
    _topic("wild", "hunter ranger explorer",
           "tracked, spotted, followed, ran from, hid from",
           "wild fierce sleepy grey clever dangerous",
           "bear wolf fox lion tiger deer snake owl eagle elephant monkey rabbit mouse moose "
           "hare bat raven crow bee crane kangaroo rat bug nest snail raccoon"),
    _topic("food", "cook baker chef",
           "ate, served, tasted, cooked, shared",
           "sweet warm fresh tasty sour delicious",
           "cake bread pie soup apple pear orange egg cheese rice meat steak toast pizza "
           "salad peach plum bun stew cookie honey lemon grape cherry banana potato tomato "
           "bean corn pea cone snack meal",
           "bread soup cheese rice meat toast salad stew honey corn"),
    _topic("drinks", "waiter guest",
           "drank, poured, spilled, sipped",
           "cold hot strong fresh bitter",
           "tea coffee milk juice wine water beer soda lemonade cocoa",
           "tea coffee milk juice wine water beer soda lemonade cocoa"),
    _topic("kitchen", "maid servant",
           "washed, dropped, broke, filled, dried",
           "clean dirty broken empty shiny cracked",
           "cup plate bowl spoon fork knife pot pan jar dish kettle glass mug tray bottle "
           "grill jug"),
    _topic("rooms", "guest visitor cleaner",
           "walked into, hid in, cleaned, slept in, waited in",
           "dark cozy tidy messy dusty chilly",
           "kitchen bedroom hall attic cellar garage house room bathroom basement barn cabin "
           "hut tent shed den shack"),
    _topic("furniture", "carpenter painter",
           "painted, fixed, moved, polished, built",
           "wooden heavy new small white",
           "bed chair table desk sofa lamp shelf clock mirror door window rug bench stool "
           "couch cradle cupboard wall seat chest mat"),
    _topic("clothes", "tailor lady dancer",
           "wore, washed, bought, folded, mended",
           "warm woolen pretty silky torn",
           "hat coat shirt dress sock shoe boot scarf glove vest jacket belt skirt sweater "
           "cap gown apron ring cape"),
    _topic("town", "teacher doctor student tourist",
           "walked to, drove to, went to, visited",
           "busy big crowded famous empty",
           "market store shop bank school church library hotel station park museum hospital "
           "office cafe bakery theater zoo city town village mall mill street"),
    _topic("vehicles", "driver pilot mechanic",
           "drove, parked, waited for, repaired, steered",
           "fast shiny slow noisy rusty",
           "car bus train bike truck plane taxi van tractor wagon cart jeep rocket wheel tire"),
    _topic("land", "hiker climber traveler",
           "climbed, crossed, wandered to, hiked to",
           "steep green rocky high lonely",
           "hill mountain valley forest field meadow cave desert cliff road path bridge "
           "canyon peak ridge trail rock stone sand track mine",
           "sand"),
    _topic("plants", "gardener florist",
           "watered, planted, picked, trimmed, smelled",
           "tall tiny yellow pretty young",
           "tree flower rose grass bush seed leaf vine tulip daisy oak pine weed lily fern "
           "moss cactus palm",
           "grass moss"),
    _topic("sky", "poet astronomer dreamer",
           "looked at, watched, stared at, pointed at, dreamed of",
           "bright pale full distant grey",
           "moon sun star cloud sky rain snow storm rainbow wind comet planet sunset light fog",
           "rain snow wind light fog"),
    _topic("music", "musician singer drummer",
           "played, heard, tuned, listened to",
           "loud soft lovely sad gentle",
           "song guitar drum piano bell flute violin tune horn harp band trumpet whistle "
           "choir concert radio banjo"),
    _topic("toys", "child kid",
           "threw, found, lost, played with, hugged",
           "little favorite tiny colorful plastic",
           "ball kite doll game puzzle balloon toy robot marble puppet block crayon sled "
           "swing shell"),
    _topic("writing", "teacher student writer clerk",
           "read, wrote, opened, signed, copied",
           "long short secret strange boring",
           "book letter paper map note card story poem lesson page diary novel report "
           "message list magazine newspaper notebook envelope ticket mail",
           "paper mail"),
    _topic("tools", "builder worker plumber",
           "carried, dropped, grabbed, used, cleaned",
           "heavy rusty strong sharp long",
           "hammer nail rope ladder shovel axe chain wire box bucket drill key lock brick pen "
           "pencil brush tape needle wrench rake hose glue string sack pail",
           "glue"),
    _topic("fire", "camper guard",
           "lit, sat by, put out, looked at",
           "bright warm hot smoky",
           "fire candle torch stove oven match lantern flame fireplace bonfire campfire log"),
    _topic("people", "man woman boy girl stranger",
           "met, helped, called, thanked, visited, waved at, smiled at",
           "kind old young brave rich poor friendly",
           "friend neighbor baby mother father uncle aunt sister brother cousin nurse"),
    _topic("royal", "knight soldier guard prince",
           "guarded, rode to, defended, marched to",
           "golden ancient royal grand mighty",
           "castle tower palace gate throne crown king queen princess kingdom dragon sword "
           "shield flag"),
)

# Topic-neutral words: they carry no plan, so the topic shows first in the agent or verb.
PRONOUNS = ("i", "he", "she", "we", "they", "you")
NAMES = tuple("anna ben carl dan emma fred grace harry ivy jack kate lucy max nina oscar paul "
              "quinn ruth sam tom uma victor wendy yvonne zoe".split())
OPENERS = tuple(tuple(p.split()) for p in (
    "today", "yesterday", "then", "later", "once", "now", "soon", "still", "sometimes",
    "meanwhile", "one day", "last night", "that morning", "every night", "on sunday", "at dawn",
    "at noon", "before noon", "in the morning", "after school", "after dinner"))
ADVERBS = tuple("slowly quickly finally suddenly gladly never often always quietly happily "
                "carefully bravely eagerly proudly rarely nervously calmly".split())
SUBJECT_ADJECTIVES = tuple("old young little tired happy brave kind tall clever busy lonely "
                           "sleepy angry proud shy gentle eager".split())
# (determiner, weight): "the" is commonest; "a" turns into "an" before a vowel sound.
DETERMINERS = (("the", 8), ("a", 6), ("my", 1), ("his", 1), ("her", 1), ("our", 1),
               ("their", 1), ("your", 1), ("this", 1), ("that", 1), ("every", 1), ("each", 1),
               ("one", 1))
MASS_DETERMINERS = (("the", 8), ("some", 4), ("my", 1), ("his", 1), ("her", 1), ("our", 1),
                    ("their", 1), ("your", 1), ("this", 1), ("that", 1))
PROMPT_WORDS = ("constraint", ":", "end", "with", "a", "rhyme", "of", "in", "words", "word",
                "is", "letters", "first", "spell")

# A slot of a sentence shape: (role, number of words).
Shape = tuple[tuple[str, int], ...]


# ---------------------------------------------------------------- lexicon helpers


@functools.lru_cache(maxsize=1)
def _topic_of() -> dict[str, Topic]:
    """Noun -> its topic (every noun is in exactly one topic)."""
    return {noun: topic for topic in TOPICS for noun in topic.nouns}


def nouns() -> list[str]:
    """Every noun that can end a reference sentence, in lexicon order."""
    return list(_topic_of())


@functools.lru_cache(maxsize=None)
def starts_with_vowel_sound(word: str) -> bool:
    """Does the word start with a vowel sound ("an hour", but "a unicorn"), by CMU?"""
    import pronouncing

    phones = pronouncing.phones_for_word(word)
    return bool(phones) and phones[0].split()[0][-1].isdigit()


def letter_count(ws: list[str]) -> int:
    """Letters in a list of words (apostrophes do not count)."""
    return sum(ch.isalpha() for w in ws for ch in w)


@functools.lru_cache(maxsize=1)
def rhyme_partners() -> dict[str, tuple[str, ...]]:
    """Rhyme cue -> the nouns that rhyme with it: the end-rhyme family's instances.

    Cues are the lexicon's content words (nouns, agents, adjectives, one-word verbs) that
    have at least one rhyming noun other than themselves.
    """
    content = list(dict.fromkeys(
        [w for t in TOPICS for w in (*t.nouns, *t.agents, *t.adjectives)]
        + [v for t in TOPICS for v in t.verbs if " " not in v] + list(SUBJECT_ADJECTIVES)))
    by_part: dict[str, list[str]] = {}
    for noun in nouns():
        for part in rhyme_parts(noun):
            by_part.setdefault(part, []).append(noun)
    table = {}
    for cue in content:
        found = {n for part in rhyme_parts(cue) for n in by_part.get(part, ()) if n != cue}
        if found:
            table[cue] = tuple(n for n in nouns() if n in found)
    return table


def lexicon() -> list[str]:
    """Every word a reference completion can contain (a few topic verbs go unused)."""
    out = [*PRONOUNS, *NAMES, *(w for p in OPENERS for w in p), *ADVERBS, *SUBJECT_ADJECTIVES,
           *(d for d, _ in DETERMINERS), "an", *(d for d, _ in MASS_DETERMINERS)]
    for t in TOPICS:
        out += [*t.agents, *(w for v in t.verbs for w in v.split()), *t.adjectives, *t.nouns]
    return list(dict.fromkeys(out))


# Proper names, brands and rude words among wordfreq's common words: not acrostic targets.
ACROSTIC_BLOCKLIST = frozenset("""
    john london james trump obama google thomas http https israel scott boston taylor iran
    wales adam andrew matt dumb joseph korean sarah simon jason egypt rome roman morgan moscow
    islam vegas dutch crap sweden arab roger walter carter graham oregon greece murray cooper
    adams khan poland steven susan aaron greg jacob utah gotta mama butt breast murder bomb
    german french peter trans haha thats blog""".split())


@functools.lru_cache(maxsize=1)
def acrostic_words() -> tuple[str, ...]:
    """The words an acrostic may spell: common words of 4 to 6 letters that have a solution.

    Drawn from the lexicon (names aside) and wordfreq's 5,000 commonest English words;
    about 500 of them can be spelled by the grammar.
    """
    import wordfreq

    pool = [w for w in lexicon() if w not in NAMES] + wordfreq.top_n_list("en", 5000)
    candidates = dict.fromkeys(
        w for w in pool if w.isascii() and w.isalpha() and len(w) in ACROSTIC_LENGTHS
        and w not in ACROSTIC_BLOCKLIST)
    return tuple(w for w in candidates if _acrostic_solvable(w))


# ---------------------------------------------------------------- the sentence grammar


@functools.lru_cache(maxsize=None)
def _shapes(verb_lengths: tuple[int, ...], length: int) -> tuple[Shape, ...]:
    """Every sentence shape of exactly ``length`` words (which optional parts appear)."""
    opener_lengths = sorted({0} | {len(p) for p in OPENERS})
    subjects = [(("subject", 1),)] + [
        (("subj_det", 1),) + (("subj_adj", 1),) * k + (("agent", 1),) for k in range(3)]
    out = []
    for o in opener_lengths:
        for subject in subjects:
            for adverb in (0, 1):
                for v in verb_lengths:
                    for k in range(3):
                        shape = ((("opener", o),) if o else ()) + subject \
                            + ((("adverb", 1),) if adverb else ()) + (("verb", v),) \
                            + (("obj_det", 1),) + (("obj_adj", 1),) * k + (("noun", 1),)
                        if sum(n for _, n in shape) == length:
                            out.append(shape)
    return tuple(out)


@functools.lru_cache(maxsize=None)
def noun_frame(noun: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The verb phrases and adjectives that go with ``noun``: two of its topic's each.

    Fixed by the noun (a seeded choice, one verb always of a single word so that short
    sentences exist), so the verb and the adjective narrow the noun down within its topic.
    """
    topic = _topic_of()[noun]
    pick = random.Random(f"frame-{noun}")
    first = pick.choice([v for v in topic.verbs if " " not in v])
    second = pick.choice([v for v in topic.verbs if v != first])
    return (first, second), tuple(pick.sample(topic.adjectives, 2))


def shapes_for(noun: str, length: int) -> tuple[Shape, ...]:
    """The shapes of ``length`` words that a sentence ending on ``noun`` can take."""
    return _shapes(tuple(sorted({len(v.split()) for v in noun_frame(noun)[0]})), length)


@functools.lru_cache(maxsize=None)
def _options(role: str, n: int, noun: str) -> tuple[tuple[tuple[str, ...], ...], tuple[int, ...]]:
    """Candidate phrases of ``n`` words for a slot of a sentence ending on ``noun``, and weights."""
    verbs, adjectives = noun_frame(noun)
    if role == "opener":
        pairs = [(p, 1) for p in OPENERS if len(p) == n]
    elif role == "subject":  # pronouns as likely as names in all
        pairs = [((p,), 4) for p in PRONOUNS] + [((m,), 1) for m in NAMES]
    elif role == "subj_adj":
        pairs = [((a,), 1) for a in SUBJECT_ADJECTIVES]
    elif role == "adverb":
        pairs = [((a,), 1) for a in ADVERBS]
    elif role == "agent":
        pairs = [((a,), 1) for a in _topic_of()[noun].agents]
    elif role == "verb":
        pairs = [(tuple(v.split()), 1) for v in verbs if len(v.split()) == n]
    elif role == "obj_adj":  # the noun's own adjectives; others (weight 0) are a fallback
        pairs = [((a,), 1) for a in adjectives]
        pairs += [((a,), 0) for a in SUBJECT_ADJECTIVES if a not in adjectives]
    elif role == "noun":
        pairs = [((noun,), 1)]
    else:
        raise ValueError(f"unknown slot role {role!r}")
    return tuple(p for p, _ in pairs), tuple(w for _, w in pairs)


def _fits(phrase: tuple[str, ...], initials: str | None, pos: int) -> bool:
    return initials is None or all(w[0] == initials[pos + i] for i, w in enumerate(phrase))


def _fill(rng: random.Random, shape: Shape, noun: str,
          initials: str | None = None) -> list[tuple[str, str]] | None:
    """Fill a shape with words (each with its role), or None if a slot has no fitting word.

    Content words are chosen first, determiners last: a determiner depends on the word
    after it ("a" or "an") and on whether the noun is a mass noun.
    """
    topic = _topic_of()[noun]
    out: list[tuple[str, str]] = []
    for role, n in shape:
        if role.endswith("_det"):
            out.append(("", role))
            continue
        phrases, weights = _options(role, n, noun)
        if initials is not None or role.endswith("_adj"):
            used = {w for w, _ in out}
            keep = [i for i, p in enumerate(phrases) if _fits(p, initials, len(out))
                    and not (role.endswith("_adj") and p[0] in used)]
            phrases, weights = [phrases[i] for i in keep], [weights[i] for i in keep]
        if not phrases:
            return None
        if not any(weights):  # only fallbacks fit the acrostic's letters: take any of them
            weights = [1] * len(phrases)
        phrase = rng.choices(phrases, weights)[0]
        out += [(word, role if i == 0 else role + "_part") for i, word in enumerate(phrase)]
    for i, (_, role) in enumerate(out):
        if not role.endswith("_det"):
            continue
        table = MASS_DETERMINERS if role == "obj_det" and noun in topic.mass else DETERMINERS
        after = out[i + 1][0]
        options = [("an" if d == "a" and starts_with_vowel_sound(after) else d, w)
                   for d, w in table]
        options = [(d, w) for d, w in options if _fits((d,), initials, i)]
        if not options:
            return None
        out[i] = (rng.choices([d for d, _ in options], [w for _, w in options])[0], role)
    return out


def sentence(rng: random.Random, noun: str, length: int) -> list[tuple[str, str]]:
    """A reference sentence of ``length`` words ending on ``noun``: (word, role) pairs."""
    filled = _fill(rng, rng.choice(shapes_for(noun, length)), noun)
    assert filled is not None  # without initials every slot has options
    return filled


@functools.lru_cache(maxsize=None)
def _slot_initials(role: str, n: int, noun: str) -> frozenset[str]:
    """The initials (one letter per word) of every phrase that can fill a slot."""
    if role.endswith("_det"):
        mass = role == "obj_det" and noun in _topic_of()[noun].mass
        return frozenset(d[0] for d, _ in (MASS_DETERMINERS if mass else DETERMINERS))
    return frozenset("".join(w[0] for w in p) for p in _options(role, n, noun)[0])


@functools.lru_cache(maxsize=None)
def _acrostic_candidates(word: str) -> tuple[tuple[str, Shape], ...]:
    """(noun, shape) pairs whose slots all have a phrase with the right initials.

    A quick filter on letters alone: `_fill` still decides, since two adjective slots
    cannot take the same word.
    """
    out = []
    for noun in nouns():
        if noun[0] != word[-1]:
            continue
        for shape in shapes_for(noun, len(word)):
            pos, ok = 0, True
            for role, n in shape[:-1]:
                if word[pos:pos + n] not in _slot_initials(role, n, noun):
                    ok = False
                    break
                pos += n
            if ok:
                out.append((noun, shape))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def _acrostic_solvable(word: str) -> bool:
    # Given the letters, slots only compete when two adjective slots want one word, and
    # then every fill attempt fails alike: one attempt per candidate decides.
    rng = random.Random(0)
    return any(_fill(rng, shape, noun, word) is not None
               for noun, shape in _acrostic_candidates(word))


def acrostic_sentence(rng: random.Random, word: str) -> list[tuple[str, str]] | None:
    """A reference sentence whose initials spell ``word`` (None if the grammar has none)."""
    pairs = list(_acrostic_candidates(word))
    rng.shuffle(pairs)
    for noun, shape in pairs:
        filled = _fill(rng, shape, noun, word)
        if filled is not None:
            return filled
    return None


# ---------------------------------------------------------------- the five families


def _instance(family: str, rng: random.Random) -> tuple[str, list[tuple[str, str]], dict, int]:
    """(prompt, sentence, constraint parameters, index of the slot word) for one item."""
    if family == "acrostic":
        word = rng.choice(acrostic_words())
        filled = acrostic_sentence(rng, word)
        assert filled is not None
        return (f"constraint : first letters spell {' '.join(word)} :", filled,
                {"length": len(word), "spell": word}, len(word) - 1)
    length = rng.randint(MIN_WORDS, MAX_WORDS)
    if family == "end-rhyme":
        cue = rng.choice(tuple(rhyme_partners()))
        filled = sentence(rng, rng.choice(rhyme_partners()[cue]), length)
        return (f"constraint : end with a rhyme of {cue} in {length} words :", filled,
                {"length": length, "rhyme": cue}, length - 1)
    noun = rng.choice(nouns())
    filled = sentence(rng, noun, length)
    if family == "end-word":
        return (f"constraint : end with {noun} in {length} words :", filled,
                {"length": length, "end": noun}, length - 1)
    if family == "kth-word":
        # The slot is a topic word (agent, verb or adjective) before the end, so the words
        # before it depend on it and the end noun stays free.
        slots = [i for i, (_, role) in enumerate(filled) if role in ("agent", "verb", "obj_adj")]
        k = rng.choice(slots) + 1
        return (f"constraint : word {k} is {filled[k - 1][0]} in {length} words :", filled,
                {"length": length, "k": k, "word": filled[k - 1][0]}, k - 1)
    if family == "counts":
        letters = letter_count([w for w, _ in filled])
        return (f"constraint : {length} words with {letters} letters :", filled,
                {"length": length, "letters": letters}, length - 1)
    raise ValueError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")


def sample_example(family: str, rng: random.Random, id: str = "") -> dict:
    """One example of ``family`` drawn with ``rng`` (its reference completion solves it)."""
    prompt, filled, params, slot = _instance(family, rng)
    ws = [w for w, _ in filled]
    decisions = [
        {"name": "end_word", "offset": len(prompt), "target": ws[-1], "horizon": len(ws)},
        {"name": "slot_word", "offset": len(prompt), "target": ws[slot], "horizon": slot + 1},
    ]
    meta = {"group": family, "family": family, **params}
    return make_example(id, prompt, " " + " ".join(ws), decisions, meta)


def satisfies(meta: dict, ws: list[str]) -> bool:
    """Do the words ``ws`` meet the constraint described by ``meta``?"""
    family = meta["family"]
    if family == "acrostic":
        spell = meta["spell"]
        return len(ws) == len(spell) and all(w[0] == c for w, c in zip(ws, spell))
    if len(ws) != meta["length"]:
        return False
    if family == "end-word":
        return ws[-1] == meta["end"]
    if family == "end-rhyme":
        return rhymes_with(ws[-1], meta["rhyme"])
    if family == "kth-word":
        return ws[meta["k"] - 1] == meta["word"]
    if family == "counts":
        return letter_count(ws) == meta["letters"]
    raise ValueError(f"unknown family {family!r}")


class ConstrainedTask(Task):
    name = "constrained"
    version = VERSION
    description = ("Completions that must meet a stated constraint (end word, rhyme, k-th "
                   "word, word and letter counts, acrostic); the words before the "
                   "constrained slot depend on the word that fills it.")
    target_names = ("end_word", "slot_word")
    max_words = MAX_WORDS + 2
    example_tokens = 17  # an 8-token prompt and about 7 words
    # Full training set sized to the default run's budget (one pass: 625 steps of 16);
    # "long" is what docs/experiments/constrained_budget.py found the model needs.
    sizes = {"full": (10000, 500), "quick": (2000, 100), "long": (100000, 500)}
    # Eval splits avoid repeating a prompt until this many draws in a row hit a seen one
    # (the counts family has under 200 prompts in all, about 20 in each eval split).
    max_repeat_misses = 200

    def generate(self, split: str, n: int, seed: int):
        """``n`` examples of ``split``, the five families in turn, deterministic for ``seed``.

        Items go to splits by a hash of their prompt, so no prompt is in two splits. In
        the dev and test splits a prompt is not repeated while the family has fresh ones.
        """
        import datasets

        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
        rng = random.Random(f"{self.name}-{VERSION}-{split}-{seed}")
        rows: list[dict] = []
        seen_prompts: set[str] = set()
        seen_items: set[str] = set()
        # Per family, what a new item must not repeat: 0 its prompt, 1 the whole item,
        # 2 nothing. A family moves on after `max_repeat_misses` rejected draws in a row.
        level = dict.fromkeys(FAMILIES, 1 if split == "train" else 0)
        misses = dict.fromkeys(FAMILIES, 0)
        for i in range(n):
            family = FAMILIES[i % len(FAMILIES)]
            while True:
                ex = sample_example(family, rng, f"{self.name}-{split}-{seed}-{i}")
                if split_of(ex["prompt"]) != split:
                    continue
                item = ex["prompt"] + ex["completion"]
                repeat = (ex["prompt"] in seen_prompts if level[family] == 0
                          else item in seen_items if level[family] == 1 else False)
                if repeat:
                    misses[family] += 1
                    if misses[family] >= self.max_repeat_misses:
                        level[family], misses[family] = level[family] + 1, 0
                    continue
                misses[family] = 0
                seen_prompts.add(ex["prompt"])
                seen_items.add(item)
                rows.append(ex)
                break
        return datasets.Dataset.from_list(rows)

    def check(self, example: dict, completion: str) -> bool:
        """The completion meets the prompt's constraint, judged on its words."""
        if not isinstance(completion, str):
            return False
        ws = words(completion)
        return bool(ws) and satisfies(self.meta(example), ws)

    def target_from_completion(self, example: dict, completion: str, name: str) -> str | None:
        """``end_word``: the completion's last word; ``slot_word``: its word at the slot."""
        if name not in self.target_names:
            raise ValueError(f"unknown target {name!r}; targets: {', '.join(self.target_names)}")
        ws = words(completion) if isinstance(completion, str) else []
        meta = self.meta(example)
        if name == "slot_word" and meta["family"] == "kth-word":
            return ws[meta["k"] - 1] if len(ws) >= meta["k"] else None
        return ws[-1] if ws else None

    def vocabulary(self) -> list[str]:
        longest = max(len(w) for w in lexicon())
        numbers = [str(i) for i in range(1, MAX_WORDS * longest + 1)]
        letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
        return list(dict.fromkeys([*PROMPT_WORDS, *numbers, *letters, *lexicon()]))
