"""The pretrained stand-in (benchmark/standin.py): a BPE GPT-2 built here, scored as a submission."""

from __future__ import annotations

import dataclasses
import math

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmark import standin
from tasks.base import split_of
from tasks.rhymes_natural import last_word

TINY = dataclasses.replace(standin.QUICK, steps=12)  # seconds: the tests check plumbing, not skill


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return standin.write_submission(tmp_path_factory.mktemp("standin") / standin.NAME, TINY)


def test_the_corpus_holds_train_couplets_only_in_the_face_format():
    from tasks.rhymes_natural import INSTRUCTION

    docs = standin.corpus(TINY)
    few_shot = [f"{kind}-{k}" for kind in ("fewshot", "broad-fewshot") for k in standin.SHOTS]
    assert set(docs) == set(few_shot) | {"couplets", "broad-couplets", "prose"}
    for kind in few_shot:
        k = int(kind.rsplit("-", 1)[1])
        for doc in docs[kind]:
            blocks = doc[len(INSTRUCTION) + 2:].split("\n\n")
            assert doc.startswith(INSTRUCTION + "\n\n") and len(blocks) == k + 1
            assert all(split_of(block.split("\n")[0]) == "train" for block in blocks)
    assert all(split_of(doc.split("\n")[0]) == "train" for doc in docs["couplets"] + docs["broad-couplets"])
    assert all("\n" not in doc and doc.endswith(".") for doc in docs["prose"])


def test_broad_couplets_end_on_common_words_outside_the_grammar():
    from tasks.rhymes_natural import _rhyming_nouns

    table = standin.broad_rhymes(TINY.broad_words)
    ends = [c.split("\n")[0] for c in standin.corpus(TINY)["broad-couplets"]]
    grammar = set(_rhyming_nouns())
    assert len(table) > 4 * len(grammar)  # a thousand words and more, not the grammar's ~200 nouns
    assert sum(last_word(line) not in grammar for line in ends) > 0.9 * len(ends)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**9), split=st.sampled_from(["train", "dev", "test"]),
       shape=st.sampled_from(standin.LINE1_SHAPES), alike=st.booleans())
def test_a_broad_couplet_rhymes_and_keeps_to_its_split(seed, split, shape, alike):
    from tasks.pronounce import rhymes_with

    couplet = None
    rng = random.Random(seed)
    while couplet is None:
        couplet = standin.broad_couplet(rng, split, TINY.broad_words, alike, shape)
    assert split_of(couplet["line1"]) == split and "\n" not in couplet["line1"] + couplet["line2"]
    assert last_word(couplet["line1"]) == couplet["rhyme1"] and last_word(couplet["line2"]) == couplet["rhyme2"]
    assert rhymes_with(couplet["rhyme1"], couplet["rhyme2"])
    assert couplet["rhyme2"] in standin.broad_rhymes(TINY.broad_words, alike)[couplet["rhyme1"]]


def test_freer_line1_shapes_are_longer_and_start_otherwise():
    def lines(shape):
        rng, out = random.Random(0), []
        while len(out) < 300:
            c = standin.broad_couplet(rng, "train", TINY.broad_words, shape=shape)
            out += [c["line1"]] if c else []
        return out

    grammar, varied = lines("grammar"), lines("varied")
    assert max(len(x.split()) for x in grammar) <= 7 < max(len(x.split()) for x in varied)
    assert sum(x.split()[0] in standin.OPENERS or x.startswith("Oh,") for x in varied) > 100
    assert not any(x.split()[0] in ("And", "But", "Oh,", "Yet") for x in grammar)


def test_the_folder_round_trips_through_the_submission_loader(built):
    from tokenizers import Tokenizer

    from benchmark.models import load_model, tokenize
    from benchmark.submissions import read_submission
    from tasks import get_task

    sub = read_submission(built)
    assert sub.name == standin.NAME and sub.tasks == list(standin.TASKS)
    folder = sub.model_for("rhymes-natural")
    loaded = load_model(folder, torch.device("cpu"))
    saved = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for ex in get_task("rhymes-natural").generate("test", 5, 0):
        text = ex["prompt"] + ex["completion"]
        assert tokenize(loaded.tokenizer, text)["input_ids"] == saved.encode(text).ids
    assert loaded.model.config.vocab_size == saved.get_vocab_size()
    assert max(len(loaded.tokenizer(" " + w)["input_ids"]) for w in ("kangaroo", "umbrella")) > 1  # not word-level


def test_build_is_deterministic_and_cached(built, tmp_path):
    weights = (built / "model" / "model.safetensors").read_bytes()
    again = standin.build(tmp_path / "again", TINY)
    assert (again / "model.safetensors").read_bytes() == weights
    before = (again / "model.safetensors").stat().st_mtime_ns
    standin.build(tmp_path / "again", TINY)  # built with this config already: kept
    assert (again / "model.safetensors").stat().st_mtime_ns == before
    other = standin.build(tmp_path / "other", dataclasses.replace(TINY, seed=1))
    assert (other / "model.safetensors").read_bytes() != weights


def test_a_tiny_standin_gets_a_finite_rhymes_natural_cell(built):
    from benchmark.models import load_model
    from benchmark.runner import _run_cell
    from tests.test_submissions import TINY_EVAL

    cfg = dataclasses.replace(TINY_EVAL, causal_pairs=8)
    task = cfg.task("rhymes-natural")
    task.max_words = 4  # a barely trained model may not end its line: keep its output short
    metrics = _run_cell(load_model(built / "model", torch.device("cpu")), task, cfg, lambda s: None)["metrics"]
    assert 0.0 <= metrics["success_greedy"]["all"]["value"] <= 1.0
    assert metrics["success_greedy_real"]["all"]["n"] == cfg.max_success
    assert {"baseline_random-line", "baseline_bag-of-words"} <= set(metrics)
    assert math.isfinite(metrics["amplification_gain"]["all"]["value"])
    assert math.isfinite(metrics["task_loss"]["value"])
    assert "plan_probe" in metrics and "causal" in metrics


def test_spelled_alike_partners_share_the_words_spelled_rime_where_any_does():
    from benchmark.models import spelled_rime
    from tasks.pronounce import rhymes_with

    plain, alike = standin.broad_rhymes(TINY.broad_words), standin.broad_rhymes(TINY.broad_words, spelled_alike=True)
    assert set(plain) == set(alike) and alike["night"] and alike != plain
    for word, partners in alike.items():
        same = [p for p in plain[word] if spelled_rime(p) == spelled_rime(word)]
        assert all(spelled_rime(p) == spelled_rime(word) for p in partners) or not same, word
        assert all(rhymes_with(word, p) for p in partners), word
    assert "white" in plain["night"] and "white" not in alike["night"]
