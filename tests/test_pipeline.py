"""End to end on a tiny model: train, evaluate, cache, resume, leaderboard."""

import json
import shutil
from pathlib import Path

import pytest

from benchmark.evaluate import EvalConfig
from benchmark.results import cell_path, read_cell
from benchmark.runner import evaluate_folder
from benchmark.submissions import write_submission_toml
from benchmark.train import TrainConfig, train_reference

TINY_TRAIN = TrainConfig(tasks=("rhymes",), size="quick", steps=40, batch_size=16, n_layer=2,
                         n_embd=32, n_head=2, n_positions=64, warmup=5)
TINY_EVAL = EvalConfig(size="quick", n_eval=80, max_success=24, max_amp_examples=24, n_boot=100,
                       future_k=2, batch_size=32)


def strip_run(cell: dict) -> dict:
    return {k: v for k, v in cell.items() if k != "run"}


@pytest.fixture(scope="module")
def submission(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("subs")
    folder = root / "tiny-ref"
    folder.mkdir()
    train_reference(TINY_TRAIN, folder / "model")
    write_submission_toml(folder, "tiny-ref", "a tiny reference", reference={"variant": "unstunted", "seed": 0})
    return folder


def test_training_writes_an_ordinary_model_folder(submission):
    model_dir = submission / "model"
    assert (model_dir / "model.safetensors").is_file()
    log = json.loads((model_dir / "train_log.json").read_text())
    assert log["config"]["variant"] == "unstunted" and log["sequences_seen"] == 40 * 16
    losses = [row["loss"] for row in log["log"]]
    assert losses[-1] < losses[0]  # it learned something


def test_evaluate_cache_resume_and_determinism(submission, tmp_path):
    results = tmp_path / "results"
    events = []
    on_event = lambda kind, sub, task, detail: events.append(kind)
    out = evaluate_folder(submission, ["rhymes"], TINY_EVAL, results, on_event=on_event)
    assert [o.status for o in out] == ["ok"]
    path = cell_path(results, "tiny-ref", "rhymes")
    cell = read_cell(path)
    m = cell["metrics"]
    assert cell["status"] == "ok" and cell["key"]["model_hash"]
    assert m["success_greedy"]["all"]["n"] == 24
    assert 0 <= m["success_greedy"]["all"]["lo"] <= m["success_greedy"]["all"]["hi"] <= 1
    assert m["amplification_gain"]["lambda"] in TINY_EVAL.lambdas
    probe = m["plan_probe"]["rhyme_word"]["own"]
    assert len(probe["selectivity"]) == 3  # embeddings + 2 layers
    assert set(probe["control_accuracy"]) == {"embedding", "random-init", "bag-of-words", "own-next-word", "joint"}
    # Per group (rhymes v2: couplets only): gain with the task's λ, and the
    # same probes scored on each group's rows (groups under 20 test rows are left out).
    assert set(m["amplification_gain"]["groups"]) == set(m["success_greedy"]["groups"])
    assert sum(g["all"]["n"] for g in m["amplification_gain"]["groups"].values()) == m["amplification_gain"]["all"]["n"]
    for group in probe["groups"].values():
        assert group["n_test"] >= 20 and len(group["layer_accuracy"]) == 3
    reference = m["plan_probe"]["rhyme_word"]["reference"]
    assert set(reference["control_accuracy"]) == {"embedding", "random-init", "bag-of-words", "joint"}
    assert path.with_suffix(".examples.jsonl").read_text().count("\n") == 24

    # A second run recomputes nothing.
    events.clear()
    assert [o.status for o in evaluate_folder(submission, ["rhymes"], TINY_EVAL, results,
                                              on_event=on_event)] == ["cached"]
    # The same seed from scratch gives the same file, apart from timings.
    again = tmp_path / "again"
    evaluate_folder(submission, ["rhymes"], TINY_EVAL, again)
    assert strip_run(read_cell(cell_path(again, "tiny-ref", "rhymes"))) == strip_run(cell)


def test_changed_weights_recompute(submission, tmp_path):
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "tiny-ref"
    shutil.copytree(submission, copy)
    results = tmp_path / "results"
    evaluate_folder(copy, ["rhymes"], TINY_EVAL, results)
    weights = copy / "model" / "model.safetensors"
    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1.0
    save_file(tensors, weights, metadata={"format": "pt"})
    out = evaluate_folder(copy, ["rhymes"], TINY_EVAL, results)
    assert [o.status for o in out] == ["ok"]  # recomputed, not served from cache


def test_leaderboard_from_results(submission, tmp_path):
    from benchmark.report import write_leaderboard

    results = tmp_path / "results"
    evaluate_folder(submission, ["rhymes"], TINY_EVAL, results)
    out = tmp_path / "leaderboard.md"
    rows = write_leaderboard(results, out, submission.parent)
    text = out.read_text()
    assert rows == 1 and "tiny\\-ref" in text and "lookahead index" in text.lower()
    # Rhymes v2 has one group, so no per-group table; the probe and causal tables are there.
    assert "By group" not in text and "| tiny\\-ref | rhyme\\_slot | reference |" in text
    assert "Causal check" in text
    assert list((tmp_path / "leaderboard_plots").glob("*.png"))


def test_own_next_word_control_explains_a_model_that_repeats_its_first_word(tiny_model_dir):
    """A model that repeats one word has a perfectly decodable "own target" that is no
    plan: the own-next-word control must see it, so selectivity is never above 0."""
    import random

    from benchmark.evaluate import StateCache, decision_rows, plan_probes
    from benchmark.models import load_model, random_init_like
    from tasks import get_task

    task = get_task("rhymes")
    dev, test = (list(task.generate(split, n, 0)) for split, n in (("dev", 120), ("test", 60)))
    words = ["cat", "hat", "mat", "bat"]
    rng = random.Random(0)
    # The repeated word is random, so only a control that sees it can decode it.
    repeat = lambda exs: [" / ".join([" ".join([rng.choice(words)] * 4)] * 2) for _ in exs]
    dev_rows, test_rows = decision_rows(task, dev, repeat(dev)), decision_rows(task, test, repeat(test))
    assert all(r["own"] == r["own_next"] for r in dev_rows + test_rows if r["own"] != "<none>")
    loaded = load_model(tiny_model_dir)
    out = plan_probes(loaded, random_init_like(loaded, 1), task, dev_rows, test_rows,
                      TINY_EVAL, StateCache(32))["rhyme_word"]["own"]
    assert out["control_accuracy"]["own-next-word"] == 1.0
    assert max(out["selectivity_hi"]) <= 0 and out["crossfit_hi"] <= 0
