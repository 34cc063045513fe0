"""Tests for benchmark.probes on synthetic activations with a planted, known answer."""

import json

import numpy as np
import pytest

from scipy import sparse

from benchmark.probes import (
    ProbeResult,
    bag_of_words_features,
    fit_probe,
    future_lens,
    one_hot_features,
    probe_layers,
    restrict,
    selectivity,
    stack_features,
)

N_TRAIN, N_TEST, HIDDEN, N_LAYERS, N_CLASSES = 600, 400, 16, 4, 8
PLANTED = 2  # the one layer whose state holds the future target


def planted_view(y: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Features from which the label is linearly decodable, but not perfectly."""
    means = np.random.default_rng(99).normal(size=(N_CLASSES, HIDDEN))  # fixed per class
    return strength * means[y] + rng.normal(size=(y.size, HIDDEN))


@pytest.fixture(scope="module")
def data():
    """Layer PLANTED decodes the target; all other layers are noise."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, N_CLASSES, size=N_TRAIN + N_TEST)
    acts = rng.normal(size=(N_LAYERS, y.size, HIDDEN))
    acts[PLANTED] = planted_view(y, rng)
    labels = np.array([f"word{i}" for i in y])
    tr, te = slice(0, N_TRAIN), slice(N_TRAIN, None)
    layers = probe_layers(acts[:, tr], labels[tr], acts[:, te], labels[te], seed=0)
    return {"y": y, "labels": labels, "acts": acts, "tr": tr, "te": te, "layers": layers,
            "rng": rng}


def noise_probe(d, seed: int) -> ProbeResult:
    """A control that knows nothing about the target."""
    x = np.random.default_rng(seed).normal(size=(N_TRAIN + N_TEST, HIDDEN))
    return fit_probe(x[d["tr"]], d["labels"][d["tr"]], x[d["te"]], d["labels"][d["te"]], 0)


def leaky_probe(d, seed: int) -> ProbeResult:
    """A control that decodes the target as well as the planted layer does."""
    x = planted_view(d["y"], np.random.default_rng(seed))
    return fit_probe(x[d["tr"]], d["labels"][d["tr"]], x[d["te"]], d["labels"][d["te"]], 0)


# --- fit_probe ---------------------------------------------------------------------------


def test_planted_layer_decodes_and_noise_layers_do_not(data):
    accuracies = [r.accuracy for r in data["layers"]]
    assert accuracies[PLANTED] > 0.6
    chance = 1 / N_CLASSES
    assert all(a < chance + 0.08 for i, a in enumerate(accuracies) if i != PLANTED)
    result = data["layers"][PLANTED]
    assert result.correct.dtype == bool and result.correct.size == N_TEST
    assert result.correct.mean() == result.accuracy
    assert result.n_classes == N_CLASSES and result.converged
    assert 0.05 < result.majority_accuracy < 0.25


def test_probe_is_deterministic_for_a_seed(data):
    d = data
    x = d["acts"][PLANTED]
    a = fit_probe(x[d["tr"]], d["labels"][d["tr"]], x[d["te"]], d["labels"][d["te"]], seed=3)
    b = fit_probe(x[d["tr"]], d["labels"][d["tr"]], x[d["te"]], d["labels"][d["te"]], seed=3)
    assert np.array_equal(a.predicted, b.predicted) and a.accuracy == b.accuracy


def test_unseen_test_labels_count_as_wrong():
    rng = np.random.default_rng(1)
    train_y = np.array(["a", "b"] * 50)
    train_x = np.where(train_y[:, None] == "a", 2.0, -2.0) + rng.normal(size=(100, 3))
    test_y = np.array(["a", "b", "never-seen", "never-seen"])
    test_x = np.array([[2.0] * 3, [-2.0] * 3, [2.0] * 3, [0.0] * 3])
    result = fit_probe(train_x, train_y, test_x, test_y, seed=0)
    assert result.correct.tolist() == [True, True, False, False]
    assert result.accuracy == 0.5


def test_single_class_train_predicts_that_class():
    result = fit_probe(np.ones((5, 2)), ["x"] * 5, np.zeros((3, 2)), ["x", "y", "x"], seed=0)
    assert result.predicted.tolist() == ["x", "x", "x"]
    assert result.accuracy == pytest.approx(2 / 3) == result.majority_accuracy


def test_int_labels_and_empty_test_set():
    result = fit_probe(np.eye(4), [0, 1, 0, 1], np.zeros((0, 4)), [], seed=0)
    assert result.n_test == 0 and np.isnan(result.accuracy)
    json.dumps(result.to_dict(), allow_nan=False)


def test_probe_rejects_mismatched_rows():
    with pytest.raises(ValueError):
        fit_probe(np.zeros((3, 2)), ["a", "b"], np.zeros((1, 2)), ["a"], seed=0)


# --- bag of words ------------------------------------------------------------------------


def test_bag_of_words_keeps_punctuation_and_is_binary():
    train = ["the cat , sat .", "a dog ; a dog"]
    test = ["the dog ?", "unknown words only"]
    x_train, x_test = bag_of_words_features(train, test)
    # tokens: the cat , sat . a dog ;  -> 8 distinct, punctuation included
    assert x_train.shape == (2, 8) and x_test.shape == (2, 8)
    assert x_train.max() == 1  # "a dog" twice still counts 1
    assert x_test[0].sum() == 2 and x_test[1].sum() == 0  # "?" never seen in train


def test_bag_of_words_control_decodes_a_target_written_in_the_prompt():
    rng = np.random.default_rng(2)
    words = [f"w{i}" for i in range(10)]
    targets = rng.choice(words, size=300)
    prompts = [f"filler {t} more filler ." for t in targets]
    x_train, x_test = bag_of_words_features(prompts[:200], prompts[200:])
    result = fit_probe(x_train, targets[:200], x_test, targets[200:], seed=0)
    assert result.accuracy > 0.95


def test_bag_of_words_with_empty_prompts_does_not_crash():
    x_train, x_test = bag_of_words_features(["", " "], ["x"])
    assert x_train.shape[0] == 2 and x_test.shape[0] == 1


# --- selectivity -------------------------------------------------------------------------


def test_selectivity_finds_the_planted_layer(data):
    d = data
    x_bow_train, x_bow_test = bag_of_words_features(
        [" ".join(d["rng"].choice(["p", "q", "r", "s"], 5)) for _ in range(N_TRAIN)],
        [" ".join(d["rng"].choice(["p", "q", "r", "s"], 5)) for _ in range(N_TEST)],
    )
    controls = {
        "embedding": d["layers"][0],
        "random-init": [noise_probe(d, seed) for seed in (10, 11, 12)],
        "bag-of-words": fit_probe(x_bow_train, d["labels"][d["tr"]], x_bow_test,
                                  d["labels"][d["te"]], seed=0),
    }
    result = selectivity(d["layers"], controls, seed=0, n_boot=500)
    assert result.best_layer == PLANTED
    assert result.selectivity_lo[PLANTED] > 0.3
    for layer in range(N_LAYERS):
        if layer != PLANTED:  # noise layers against an unbiased control: near 0, either sign
            assert abs(result.selectivity[layer]) < 0.06 and result.selectivity_lo[layer] < 0.03
    # The honest cross-fitted figure picks the same layer on both halves here.
    assert result.crossfit_layers == (PLANTED, PLANTED)
    assert result.crossfit_lo > 0.3
    assert result.best_lo <= result.best_selectivity <= result.best_hi
    # A per-layer control counts as its best layer.
    assert result.control_accuracy["random-init"] == max(
        r.accuracy for r in controls["random-init"])
    json.dumps(result.to_dict(), allow_nan=False)


def test_a_control_that_decodes_the_target_leaves_no_selectivity(data):
    d = data
    controls = {"embedding": d["layers"][0], "bag-of-words": leaky_probe(d, seed=20)}
    result = selectivity(d["layers"], controls, seed=0, n_boot=500)
    assert result.strongest_control == "bag-of-words"
    assert abs(result.selectivity[PLANTED]) < 0.08
    assert result.selectivity_lo[PLANTED] <= 0.0
    assert result.crossfit_lo <= 0.0


def test_random_init_list_uses_its_best_layer(data):
    # The leak hides in one layer of the random-init list: the max over layers finds it.
    d = data
    random_init = [noise_probe(d, 30), leaky_probe(d, seed=31), noise_probe(d, 32)]
    result = selectivity(d["layers"], {"random-init": random_init}, seed=0, n_boot=300)
    assert result.selectivity_lo[PLANTED] <= 0.0


def correctness_probe(correct: np.ndarray) -> ProbeResult:
    """A ProbeResult with given per-example correctness (labels all alike, so paired)."""
    labels = np.array(["t"] * correct.size)
    return ProbeResult(float(correct.mean()), 0.0, correct, labels, labels, 100, 2, True)


def test_restrict_scores_the_same_probe_on_a_subset():
    correct = np.array([True, False, True, True, False, False])
    part = restrict(correctness_probe(correct), np.array([0, 2, 4]))
    assert part.accuracy == 2 / 3 and part.n_test == 3 and part.correct.tolist() == [True, True, False]
    # Subsets of paired probes stay paired, so selectivity works on them.
    sel = selectivity([part], {"embedding": restrict(correctness_probe(~correct), np.array([0, 2, 4]))},
                      seed=0, n_boot=20)
    assert sel.selectivity[0] == 2 / 3 - 1 / 3


def test_selectivity_intervals_are_paired():
    # A layer that is right on exactly the examples the control is right on has
    # selectivity 0 in every resample; unpaired resampling would give a wide interval.
    correct = np.random.default_rng(1).random(300) < 0.5
    result = selectivity([correctness_probe(correct)], {"embedding": correctness_probe(correct)},
                         seed=0, n_boot=200)
    assert result.selectivity_lo == result.selectivity_hi == [0.0]


def test_crossfit_corrects_the_winners_curse():
    # 50 layers and a control, all equally good (30%): no layer is selective. Picking
    # the best of 50 noisy layers looks significant in many draws; the cross-fitted
    # figure, which scores each example with a layer chosen without it, rarely does.
    point_claims = honest_claims = 0
    point, honest = [], []
    for draw in range(10):
        rng = np.random.default_rng(draw)
        layers = [correctness_probe(rng.random(400) < 0.3) for _ in range(50)]
        control = correctness_probe(rng.random(400) < 0.3)
        result = selectivity(layers, {"embedding": control}, seed=draw, n_boot=300)
        point_claims += result.best_lo > 0
        honest_claims += result.crossfit_lo > 0
        point.append(result.best_selectivity)
        honest.append(result.crossfit_selectivity)
    assert point_claims >= 4 and honest_claims <= 1
    assert np.mean(honest) < np.mean(point) - 0.02


def test_selectivity_is_deterministic_for_a_seed(data):
    controls = {"embedding": data["layers"][0]}
    a = selectivity(data["layers"], controls, seed=4, n_boot=200).to_dict()
    b = selectivity(data["layers"], controls, seed=4, n_boot=200).to_dict()
    assert a == b


def test_selectivity_rejects_unpaired_probes(data):
    other = fit_probe(np.zeros((4, 2)), ["a", "b"] * 2, np.zeros((3, 2)), ["a"] * 3, seed=0)
    with pytest.raises(ValueError):
        selectivity(data["layers"], {"embedding": other}, seed=0, n_boot=10)
    with pytest.raises(ValueError):
        selectivity(data["layers"], {}, seed=0, n_boot=10)


# --- future lens -------------------------------------------------------------------------


def test_future_lens_finds_planted_offset():
    """t+1 follows from the current token (control knows it), t+2 is planted in layer 1
    only, t+3 is unrelated to everything."""
    rng = np.random.default_rng(5)
    n, vocab = 900, 6
    current = rng.integers(0, vocab, size=n)
    future = np.stack([
        (current + 1) % vocab,  # t+1: a function of the token at t
        rng.integers(0, vocab, size=n),  # t+2: planted below
        rng.integers(0, vocab, size=n),  # t+3: noise
    ], axis=1)
    future[:100, 2] = -1  # the last 100 rows end before t+3
    acts = rng.normal(size=(3, n, 8))
    acts[1] = 2.0 * np.random.default_rng(6).normal(size=(vocab, 8))[future[:, 1]] \
        + rng.normal(size=(n, 8))
    train = np.arange(n) < 600

    out = future_lens(acts, future, current, train, seed=0, n_boot=300)
    k1, k2, k3 = out["curve"]
    assert [p["k"] for p in out["curve"]] == [1, 2, 3]
    # t+1: the state adds nothing beyond the current token.
    assert k1["control_accuracy"] > 0.95 and k1["crossfit_lo"] <= 0.0
    # t+2: only layer 1 knows it, and the current token does not.
    assert k2["best_layer"] == 1 and k2["crossfit_lo"] > 0.3
    # t+3: nothing to find; padded rows are left out.
    assert k3["crossfit_lo"] <= 0.0
    assert k3["n_train"] + k3["n_test"] == n - 100
    json.dumps(out, allow_nan=False)


def test_future_lens_control_columns_explain_what_they_know():
    """A state that encodes the token at t+2 shows no gain when the control also sees it
    (as for a model's own output, whose next token the state decides)."""
    rng = np.random.default_rng(8)
    n, vocab = 600, 5
    current = rng.integers(0, vocab, size=n)
    ahead = rng.integers(0, vocab, size=n)
    future = np.stack([ahead, ahead], axis=1)  # t+1 and t+2: the same token, repeated
    acts = np.random.default_rng(9).normal(size=(vocab, 8))[ahead][None] * 2.0 \
        + rng.normal(size=(1, n, 8))
    train = np.arange(n) < 400
    alone = future_lens(acts, future, current, train, seed=0, n_boot=200)["curve"][1]
    both = future_lens(acts, future, np.stack([current, ahead], axis=1), train, seed=0,
                       n_boot=200)["curve"][1]
    assert alone["crossfit_lo"] > 0.3
    assert both["control_accuracy"] == 1.0 and both["crossfit_hi"] <= 0.0


def test_one_hot_features_encodes_each_column_from_train_categories():
    X_train, X_test = one_hot_features([["a", "x"], ["b", "x"]], [["a", "y"], ["c", "x"]])
    assert X_train.shape == (2, 3) and X_test.toarray().tolist() == [[1, 0, 0], [0, 0, 1]]
    assert one_hot_features(["a", "b"], ["b"])[1].toarray().tolist() == [[0, 1]]


def test_future_lens_subsamples_and_takes_index_splits():
    rng = np.random.default_rng(7)
    n = 200
    current = rng.integers(0, 3, size=n)
    future = np.array([[str(t)] for t in rng.integers(0, 3, size=n)])  # string tokens
    acts = rng.normal(size=(2, n, 4))
    out = future_lens(acts, future, current, np.arange(120), seed=1,
                      beyond_end="<end>", max_rows=50, n_boot=50)
    point = out["curve"][0]
    assert point["n_train"] == 50 and point["n_test"] == 50


def test_future_lens_offset_with_no_rows():
    acts = np.zeros((2, 10, 3))
    future = np.full((10, 1), -1)  # every row ends before t+1
    out = future_lens(acts, future, np.zeros(10), np.arange(10) < 5, seed=0, n_boot=10)
    assert out["curve"][0]["gain"] is None and out["curve"][0]["n_test"] == 0


def test_selectivity_with_one_test_example_has_no_crossfit():
    one = correctness_probe(np.array([True]))
    result = selectivity([one, one], {"embedding": correctness_probe(np.array([False]))},
                         seed=0, n_boot=20)
    assert result.selectivity == [1.0, 1.0] and result.crossfit_layers == (-1, -1)
    assert result.to_dict()["crossfit_selectivity"] is None
    json.dumps(result.to_dict(), allow_nan=False)


def test_null_selectivity_reads_zero_with_honest_coverage():
    """The known null (`benchmark.validate.null_probe_check`, also run by `mesabench
    validate`): every probe, model layers and controls alike, is right with the same
    probability, so the true selectivity is 0; the strongest control is a maximum over eight
    probes, as in a cell. Before the controls' choices were cross-fitted the mean was -0.02
    to -0.03 and the 95% interval covered 0 in 63-68% of draws."""
    from benchmark.validate import null_probe_check

    check = null_probe_check(draws=200)
    assert check.passed, check.measured


def two_part_data(n: int = 1200, seed: int = 3):
    """A target that is a pair (a, b); one control knows a, another b, the state both."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 4, n), rng.integers(0, 4, n)
    labels = np.array([f"{x}-{y}" for x, y in zip(a, b)])
    know_a, know_b = np.eye(4)[a] + 0.1 * rng.normal(size=(n, 4)), np.eye(4)[b] + 0.1 * rng.normal(size=(n, 4))
    return labels, know_a, know_b


def test_joint_control_removes_what_the_controls_know_together():
    labels, know_a, know_b = two_part_data()
    tr, te = slice(0, 800), slice(800, None)
    state = np.hstack([know_a, know_b])
    layers = [fit_probe(state[tr], labels[tr], state[te], labels[te], 0)]
    controls = {"a": fit_probe(know_a[tr], labels[tr], know_a[te], labels[te], 0),
                "b": fit_probe(know_b[tr], labels[tr], know_b[te], labels[te], 0)}
    alone = selectivity(layers, controls, seed=0, n_boot=200)
    assert alone.crossfit_lo > 0.5  # each control alone knows a quarter of the target
    joint = stack_features([know_a, know_b])
    controls["joint"] = fit_probe(joint[:800], labels[tr], joint[800:], labels[te], 0)
    together = selectivity(layers, controls, seed=0, n_boot=200)
    assert together.crossfit_lo <= 0.0 <= together.crossfit_hi + 1e-9
    assert together.strongest_controls == ("joint", "joint")


def test_future_lens_gets_the_plan_probes_controls():
    """On rhymes the token at t is always "/" and at t+1 "and": a current-token control is
    blind, so a state that merely repeats what the prompt says looked like a +0.40 gain.
    Given the prompt's features as a control, the gain is 0."""
    rng = np.random.default_rng(11)
    n, vocab = 900, 6
    prompt_word = rng.integers(0, vocab, size=n)  # the prompt decides the token at t+2
    future = np.stack([np.zeros(n, int), prompt_word], axis=1)
    current = np.zeros(n, int)  # constant, as "/"
    acts = (2.0 * np.random.default_rng(12).normal(size=(vocab, 8))[prompt_word] + rng.normal(size=(n, 8)))[None]
    train = np.arange(n) < 600
    blind = future_lens(acts, future, current, train, seed=0, n_boot=200)["curve"][1]
    assert blind["crossfit_lo"] > 0.3
    bow = sparse.csr_matrix(np.eye(vocab)[prompt_word])
    seen = future_lens(acts, future, current, train, seed=0, n_boot=200,
                       controls={"bag-of-words": bow})["curve"][1]
    assert seen["crossfit_lo"] <= 0.0 and seen["strongest_control"] in ("bag-of-words", "joint")
