"""The pretrained stand-in (benchmark/standin.py): a BPE GPT-2 built here, scored as a submission."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from benchmark import standin
from tasks.base import split_of

TINY = dataclasses.replace(standin.QUICK, steps=12)  # seconds: the tests check plumbing, not skill


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return standin.write_submission(tmp_path_factory.mktemp("standin") / standin.NAME, TINY)


def test_the_corpus_holds_train_couplets_only_in_the_face_format():
    from tasks.rhymes_natural import INSTRUCTION

    docs = standin.corpus(TINY)
    assert set(docs) == {f"fewshot-{k}" for k in standin.SHOTS} | {"couplets", "prose"}
    for k in standin.SHOTS:
        for doc in docs[f"fewshot-{k}"]:
            blocks = doc[len(INSTRUCTION) + 2:].split("\n\n")
            assert doc.startswith(INSTRUCTION + "\n\n") and len(blocks) == k + 1
            assert all(split_of(block.split("\n")[0]) == "train" for block in blocks)
    assert all(split_of(doc.split("\n")[0]) == "train" for doc in docs["couplets"])
    assert all("\n" not in doc and doc.endswith(".") for doc in docs["prose"])


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
