"""Linear probes for lookahead: plan-probe selectivity and the future-lens curve.

Pure functions of activations that the caller has already captured (numpy arrays,
layer 0 = embeddings): no I/O, no printing, no model code. See docs "Metrics":

- `fit_probe` / `probe_layers`: multinomial logistic regression (L2) from a hidden
  state to a label (the future target), one probe per layer.
- `bag_of_words_features`: features for the bag-of-words control over the prompt.
- `selectivity`: accuracy(layer) - max over controls, with paired bootstrap intervals.
- `future_lens`: for k = 1..K, how well the state at t decodes the token at t+k beyond
  what the token at t alone gives.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import sparse
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from benchmark.stats import bootstrap_indices

RARE = "\x00rare"  # the pooled class of labels seen fewer than `min_count` times in training
DIGITS = 4  # rounding in to_dict(): accuracies on <= ~10^4 examples need no more


def _round(x: float) -> float | None:
    """Round for JSON; nan (undefined) becomes None so the output is strict JSON."""
    return None if x is None or math.isnan(x) else round(float(x), DIGITS)


def _labels(y: Sequence) -> np.ndarray:
    """Labels as a 1-d array of strings, so ints and strings compare the same way."""
    return np.asarray(y).astype(str).ravel()


# ---------------------------------------------------------------------------------------
# One probe
# ---------------------------------------------------------------------------------------


@dataclass
class ProbeResult:
    """A probe scored on a test set.

    `correct` and `predicted` are per test example, in the caller's order, so that
    several probes on the same examples can be compared with a paired bootstrap.
    """

    accuracy: float
    majority_accuracy: float  # always predicting the most frequent train label
    correct: np.ndarray  # bool [n_test]
    predicted: np.ndarray  # str [n_test]
    test_labels: np.ndarray  # str [n_test]; lets `selectivity` check probes are paired
    n_train: int
    n_classes: int  # distinct labels in the train set
    converged: bool

    @property
    def n_test(self) -> int:
        return int(self.correct.size)

    def to_dict(self) -> dict:
        """JSON-friendly summary (per-example arrays left out)."""
        return {
            "accuracy": _round(self.accuracy),
            "majority_accuracy": _round(self.majority_accuracy),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_classes": self.n_classes,
            "converged": self.converged,
        }


def fit_probe(
    train_X: np.ndarray,
    train_y: Sequence,
    test_X: np.ndarray,
    test_y: Sequence,
    seed: int,
    C: float = 1.0,
    max_iter: int = 100,
    tol: float = 1e-3,
    min_count: int = 3,
) -> ProbeResult:
    """Fit a multinomial L2 logistic regression on train, score it on test.

    Features are standardised with train statistics only (sparse input is scaled but
    not centred, which would make it dense). A test label never seen in training cannot
    be predicted and counts as wrong. A train set with one class predicts that class.
    `seed` is passed to sklearn for reproducibility (lbfgs itself is deterministic).
    """
    train_y, test_y = _labels(train_y), _labels(test_y)
    if train_X.shape[0] != train_y.size or test_X.shape[0] != test_y.size:
        raise ValueError("features and labels disagree on the number of rows")
    if train_y.size == 0:
        raise ValueError("cannot fit a probe on an empty train set")

    classes, counts = np.unique(train_y, return_counts=True)
    majority = classes[np.argmax(counts)]  # ties go to the first label in sorted order
    converged = True
    if classes.size == 1 or test_y.size == 0:
        predicted = np.full(test_y.size, majority)
    else:
        # Labels seen fewer than `min_count` times in training are pooled into one class
        # the probe may predict but that never matches a test label: a linear probe cannot
        # learn a class from a row or two, and a long tail of them (chess moves, words)
        # made lbfgs 10x slower for nothing.
        rare = np.isin(train_y, classes[counts < min_count])
        fit_y = np.where(rare, RARE, train_y) if rare.any() and not rare.all() else train_y
        scaler = StandardScaler(with_mean=not sparse.issparse(train_X)).fit(train_X)
        # A bounded iteration count and a loose tolerance: hidden states are often nearly
        # separable, where lbfgs would otherwise creep on for many seconds to no effect.
        model = LogisticRegression(C=C, max_iter=max_iter, tol=tol, random_state=seed)
        with warnings.catch_warnings():
            # Non-convergence is recorded in the result instead of spamming the log.
            warnings.simplefilter("ignore", ConvergenceWarning)
            # Many classes with few rows each is the normal case for a probe, not a mistake.
            warnings.filterwarnings("ignore", message="The number of unique classes")
            model.fit(scaler.transform(train_X), fit_y)
        converged = bool(np.max(model.n_iter_) < max_iter)
        predicted = model.predict(scaler.transform(test_X)).astype(str)

    correct = predicted == test_y
    return ProbeResult(
        accuracy=float(correct.mean()) if correct.size else math.nan,
        majority_accuracy=float((test_y == majority).mean()) if test_y.size else math.nan,
        correct=correct,
        predicted=predicted,
        test_labels=test_y,
        n_train=int(train_y.size),
        n_classes=int(classes.size),
        converged=converged,
    )


def restrict(result: ProbeResult, rows: np.ndarray) -> ProbeResult:
    """The same fitted probe, scored on a subset of its test examples (e.g. one group)."""
    correct = result.correct[rows]
    labels = result.test_labels[rows]
    return ProbeResult(
        accuracy=float(correct.mean()) if correct.size else math.nan,
        majority_accuracy=math.nan,  # the train majority is not kept; not needed per group
        correct=correct, predicted=result.predicted[rows], test_labels=labels,
        n_train=result.n_train, n_classes=result.n_classes, converged=result.converged,
    )


def probe_layers(
    train_acts: np.ndarray,
    train_y: Sequence,
    test_acts: np.ndarray,
    test_y: Sequence,
    seed: int,
    C: float = 1.0,
) -> list[ProbeResult]:
    """One probe per layer. Activations are [L, N, H]; layer 0 is the embeddings."""
    if train_acts.ndim != 3 or test_acts.ndim != 3 or train_acts.shape[0] != test_acts.shape[0]:
        raise ValueError("activations must be [L, N, H] with the same L for train and test")
    return [
        fit_probe(train_acts[layer], train_y, test_acts[layer], test_y, seed, C)
        for layer in range(train_acts.shape[0])
    ]


def bag_of_words_features(
    train_texts: Sequence[str], test_texts: Sequence[str]
) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Binary bag-of-words features of prompts, vocabulary from the train prompts only.

    Every whitespace-separated token is kept exactly as written (case and attached
    punctuation included, single characters too), so the control sees everything the
    prompt fixes. Returns sparse matrices for `fit_probe`.
    """
    vectorizer = CountVectorizer(token_pattern=r"\S+", lowercase=False, binary=True)
    try:
        X_train = vectorizer.fit_transform(list(train_texts))
    except ValueError:  # every train prompt is empty: the control knows nothing
        return sparse.csr_matrix((len(train_texts), 1)), sparse.csr_matrix((len(test_texts), 1))
    return X_train, vectorizer.transform(list(test_texts))


def one_hot_features(
    train_labels: Sequence, test_labels: Sequence
) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """One-hot features of categorical values: [N] (one value per row) or [N, C] (each
    column encoded on its own, then side by side). Categories come from train only; a
    value unseen in training is all zeros. Used by controls that know a token or two."""
    def columns(labels: Sequence) -> np.ndarray:
        array = np.asarray(labels).astype(str)
        return array[:, None] if array.ndim == 1 else array

    train, test = columns(train_labels), columns(test_labels)
    encoder = OneHotEncoder(handle_unknown="ignore").fit(train)
    return encoder.transform(train), encoder.transform(test)


# ---------------------------------------------------------------------------------------
# Selectivity
# ---------------------------------------------------------------------------------------


@dataclass
class SelectivityResult:
    """Selectivity over layers, the best layer, and intervals (all in accuracy units).

    Choosing the maximum of noisy estimates biases it upward (the winner's curse), on the
    model's side (which layer) and on the controls' side (which layer of a per-layer control,
    and which control is strongest). So every choice is cross-fitted: the test examples are
    split in two halves at random; on each half the model's layer, each control's layer and
    the strongest control are chosen, and the examples of the OTHER half are scored with
    those choices. No example is scored by a choice made with its help, so a null model
    reads 0 on average (tests/test_probes.py simulates it).

    - `selectivity[layer]`: accuracy of that layer minus the cross-fitted strongest control.
    - `crossfit_selectivity` [`crossfit_lo`, `crossfit_hi`]: the cross-fitted best layer
      minus the cross-fitted strongest control. The honest figure to report and rank by.
      `crossfit_layers` and `strongest_controls` are the choices made on the two halves.
    - `best_selectivity` [`best_lo`, `best_hi`]: the layer with the highest point
      selectivity, biased upward; use it to name the layer, not to claim an effect.
    Intervals are a paired bootstrap over test examples that holds the choices fixed.
    """

    layer_accuracy: list[float]
    selectivity: list[float]
    selectivity_lo: list[float]
    selectivity_hi: list[float]
    control_accuracy: dict[str, float]  # a per-layer control shows its best layer's accuracy
    control_layers: dict[str, list[int] | None]  # per-layer controls: the layers chosen on the halves
    strongest_control: str  # the strongest control on all test examples (descriptive)
    strongest_controls: tuple[str, str]  # the strongest control chosen on each half
    best_layer: int
    best_selectivity: float
    best_lo: float
    best_hi: float
    crossfit_selectivity: float
    crossfit_lo: float
    crossfit_hi: float
    crossfit_layers: tuple[int, int]
    n_test: int
    n_boot: int
    seed: int

    def to_dict(self) -> dict:
        """JSON-friendly: floats rounded, nan as None."""
        return {
            "layer_accuracy": [_round(v) for v in self.layer_accuracy],
            "selectivity": [_round(v) for v in self.selectivity],
            "selectivity_lo": [_round(v) for v in self.selectivity_lo],
            "selectivity_hi": [_round(v) for v in self.selectivity_hi],
            "control_accuracy": {k: _round(v) for k, v in self.control_accuracy.items()},
            "control_layers": dict(self.control_layers),
            "strongest_control": self.strongest_control,
            "strongest_controls": list(self.strongest_controls),
            "best_layer": self.best_layer,
            "best_selectivity": _round(self.best_selectivity),
            "best_lo": _round(self.best_lo),
            "best_hi": _round(self.best_hi),
            "crossfit_selectivity": _round(self.crossfit_selectivity),
            "crossfit_lo": _round(self.crossfit_lo),
            "crossfit_hi": _round(self.crossfit_hi),
            "crossfit_layers": list(self.crossfit_layers),
            "n_test": self.n_test,
            "n_boot": self.n_boot,
            "seed": self.seed,
        }


def _correct_matrix(results: Sequence[ProbeResult]) -> np.ndarray:
    """Stack per-example correctness into a float matrix [n_probes, n_test]."""
    return np.stack([r.correct for r in results]).astype(float)


def _choose(layers: np.ndarray, controls: dict[str, np.ndarray], rows: np.ndarray) -> tuple[int, str, int]:
    """On ``rows``: the model's best layer, the strongest control and that control's best layer."""
    best_layer = int(np.argmax(layers[:, rows].mean(axis=1)))
    per_control = {name: c[:, rows].mean(axis=1) for name, c in controls.items()}
    strongest = max(per_control, key=lambda name: (per_control[name].max(), name))
    return best_layer, strongest, int(np.argmax(per_control[strongest]))


def selectivity(
    layer_results: list[ProbeResult],
    control_results: dict[str, ProbeResult | list[ProbeResult]],
    seed: int,
    n_boot: int = 1000,
) -> SelectivityResult:
    """selectivity(layer) = accuracy(layer) - accuracy of the strongest control, cross-fitted.

    Every probe must be scored on the same test examples in the same order. A control given
    as a list (e.g. the random-init model probed at every layer) counts as its best layer.
    See `SelectivityResult` for what is chosen where and why. With a single test example
    nothing can be split: the controls' maximum is then taken on that example (biased) and
    the cross-fitted figure is nan.
    """
    if not layer_results:
        raise ValueError("need at least one layer")
    if not control_results:
        raise ValueError("selectivity needs at least one control")
    labels = layer_results[0].test_labels
    n = labels.size
    if n == 0:
        raise ValueError("no test examples")
    control_lists = {
        name: list(r) if isinstance(r, (list, tuple)) else [r]
        for name, r in control_results.items()
    }
    everything = list(layer_results) + [p for probes in control_lists.values() for p in probes]
    if any(not np.array_equal(p.test_labels, labels) for p in everything):
        raise ValueError("all probes must be scored on the same test examples, in order")
    controls = {name: _correct_matrix(probes) for name, probes in control_lists.items()}
    layers = _correct_matrix(layer_results)  # [L, n]

    order = np.random.default_rng(seed).permutation(n)
    halves = (order[: n // 2], order[n // 2:])
    control_correct = np.empty(n)  # per example: the control chosen on the other half
    crossfit_correct = np.empty(n)  # per example: the layer chosen on the other half
    if halves[0].size and halves[1].size:
        choices = [_choose(layers, controls, half) for half in halves]
        for (layer, name, c_layer), scored in zip(choices, reversed(halves)):
            control_correct[scored] = controls[name][c_layer, scored]
            crossfit_correct[scored] = layers[layer, scored]
        crossfit_layers = (choices[0][0], choices[1][0])
        strongest_controls = (choices[0][1], choices[1][1])
        control_layers = {
            name: ([int(np.argmax(c[:, h].mean(axis=1))) for h in halves] if c.shape[0] > 1 else None)
            for name, c in controls.items()
        }
    else:  # one example cannot be split: no honest estimate
        _, name, c_layer = _choose(layers, controls, np.arange(n))
        control_correct[:] = controls[name][c_layer]
        crossfit_correct[:] = math.nan
        crossfit_layers, strongest_controls = (-1, -1), (name, name)
        control_layers = {name: None for name in controls}

    # With every choice fixed, each figure is a mean of per-example differences, so the
    # bootstrap is one matrix product per statistic.
    per_example = np.vstack([layers - control_correct, crossfit_correct - control_correct])  # [L+1, n]
    value = per_example.mean(axis=1)
    idx = bootstrap_indices(n, seed, n_boot)
    counts = np.zeros((n_boot, n))  # how often each example is drawn in each resample
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    draws = (counts / n) @ np.nan_to_num(per_example).T  # [n_boot, L+1]
    draws[:, np.isnan(value)] = math.nan
    lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
    per_layer, lo_layer, hi_layer = value[:-1], lo[:-1], hi[:-1]
    best = int(np.argmax(per_layer))

    control_accuracy = {name: float(c.mean(axis=1).max()) for name, c in controls.items()}
    return SelectivityResult(
        layer_accuracy=[r.accuracy for r in layer_results],
        selectivity=per_layer.tolist(),
        selectivity_lo=lo_layer.tolist(),
        selectivity_hi=hi_layer.tolist(),
        control_accuracy=control_accuracy,
        control_layers=control_layers,
        strongest_control=max(control_accuracy, key=lambda k: (control_accuracy[k], k)),
        strongest_controls=strongest_controls,
        best_layer=best,
        best_selectivity=float(per_layer[best]),
        best_lo=float(lo_layer[best]),
        best_hi=float(hi_layer[best]),
        crossfit_selectivity=float(value[-1]),
        crossfit_lo=float(lo[-1]),
        crossfit_hi=float(hi[-1]),
        crossfit_layers=crossfit_layers,
        n_test=n,
        n_boot=n_boot,
        seed=seed,
    )


# ---------------------------------------------------------------------------------------
# Future lens
# ---------------------------------------------------------------------------------------


def _subsample(rows: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    """At most max_rows of the given row indices, chosen at random, kept in order."""
    if rows.size <= max_rows:
        return rows
    return np.sort(rng.choice(rows, size=max_rows, replace=False))


def stack_features(parts: Sequence) -> sparse.csr_matrix:
    """Side-by-side features of the same rows: dense [N, F] or [L, N, H] arrays (every layer
    becomes columns) and sparse matrices. The input of a joint control."""
    blocks = []
    for part in parts:
        if sparse.issparse(part):
            blocks.append(part)
        else:
            array = np.asarray(part)
            if array.ndim == 3:  # [L, N, H] -> [N, L*H]
                array = array.transpose(1, 0, 2).reshape(array.shape[1], -1)
            blocks.append(sparse.csr_matrix(array))
    return sparse.hstack(blocks, format="csr")


def _rows(features, rows: np.ndarray):
    """The given rows of [N, F] features, or of every layer of [L, N, H] states."""
    if sparse.issparse(features):
        return features[rows]
    features = np.asarray(features)
    return features[:, rows] if features.ndim == 3 else features[rows]


def control_probes(controls: dict, train_rows: np.ndarray, test_rows: np.ndarray,
                   y_train: np.ndarray, y_test: np.ndarray, seed: int, C: float = 1.0) -> dict:
    """Fit each control on its features' train rows and score it on the test rows; [L, N, H]
    states give one probe per layer (a list), anything else one probe."""
    out: dict = {}
    for name, features in controls.items():
        X_train, X_test = _rows(features, train_rows), _rows(features, test_rows)
        if not sparse.issparse(features) and np.asarray(features).ndim == 3:
            out[name] = probe_layers(X_train, y_train, X_test, y_test, seed, C)
        else:
            out[name] = fit_probe(X_train, y_train, X_test, y_test, seed, C)
    return out


def future_lens(
    acts: np.ndarray,
    future_tokens: np.ndarray,
    current_tokens: np.ndarray,
    train: np.ndarray,
    seed: int,
    *,
    controls: dict | None = None,
    beyond_end: object = -1,
    max_rows: int = 5000,
    n_boot: int = 1000,
    C: float = 1.0,
) -> dict:
    """Future-lens curve (Pal et al. 2023): decode the token at t+k from the state at t.

    acts: [L, N, H], states at positions t. future_tokens: [N, K], column k-1 holds the
    token at t+k (ints or strings); entries equal to `beyond_end` (past the end of the
    text) leave that row out for that k. current_tokens: [N], the token at t, or [N, C]
    with more columns the control may see (for a model's own output: its token at t+1,
    which the state at t decides, so only what lies beyond it counts). train: a
    bool mask [N] of probe-train rows (the rest are test), or an array of train row
    indices. Train and test rows are each subsampled to at most `max_rows` per k.

    Controls, for each k: "current-token" (a one-hot of `current_tokens`), every entry of
    ``controls`` (features of the same N rows: [N, F] dense or sparse, or [L, N, H] states
    of another model, probed per layer; the plan probes' controls), and, when ``controls``
    is given, "joint": one probe on all of them side by side (a state that is two
    controls' inputs together would otherwise beat each alone). The "gain" is the layer's
    accuracy minus the strongest control, cross-fitted on both sides as in `selectivity`.
    Returns a JSON-friendly dict.
    """
    n_layers, n_rows = acts.shape[0], acts.shape[1]
    future_tokens = np.asarray(future_tokens, dtype=object)
    if future_tokens.ndim != 2 or future_tokens.shape[0] != n_rows:
        raise ValueError("future_tokens must be [N, K] with N matching acts")
    current = np.asarray(current_tokens).astype(str)
    if current.ndim not in (1, 2) or current.shape[0] != n_rows:
        raise ValueError("current_tokens must be [N] or [N, C] with N matching acts")
    train = np.asarray(train)
    if train.dtype != bool:  # train row indices -> mask
        mask = np.zeros(n_rows, dtype=bool)
        mask[train] = True
        train = mask
    controls = dict(controls or {})

    curve = []
    for k in range(1, future_tokens.shape[1] + 1):
        column = future_tokens[:, k - 1]
        valid = np.asarray(column != beyond_end, dtype=bool)
        rng = np.random.default_rng([seed, k])
        train_rows = _subsample(np.flatnonzero(valid & train), max_rows, rng)
        test_rows = _subsample(np.flatnonzero(valid & ~train), max_rows, rng)
        point = {"k": k, "n_train": int(train_rows.size), "n_test": int(test_rows.size)}
        if train_rows.size == 0 or test_rows.size == 0:
            curve.append(point | {"best_layer": None, "gain": None, "crossfit_gain": None})
            continue

        y_train, y_test = _labels(column[train_rows]), _labels(column[test_rows])
        layers = probe_layers(acts[:, train_rows], y_train, acts[:, test_rows], y_test, seed, C)
        # What the current token alone (and any extra columns) tells about the token at t+k.
        X_train, X_test = one_hot_features(current[train_rows], current[test_rows])
        fitted = {"current-token": fit_probe(X_train, y_train, X_test, y_test, seed, C)}
        if controls:
            current_all = sparse.vstack([X_train, X_test], format="csr")
            rows = np.concatenate([train_rows, test_rows])
            joint = stack_features([current_all] + [_rows(f, rows) for f in controls.values()])
            n_tr = train_rows.size
            fitted["joint"] = fit_probe(joint[:n_tr], y_train, joint[n_tr:], y_test, seed, C)
            fitted |= control_probes(controls, train_rows, test_rows, y_train, y_test, seed, C)
        sel = selectivity(layers, fitted, seed, n_boot)
        best = sel.best_layer
        curve.append(point | {
            "best_layer": best,
            "best_accuracy": _round(sel.layer_accuracy[best]),
            "control_accuracy": _round(sel.control_accuracy[sel.strongest_control]),
            "strongest_control": sel.strongest_control,
            "gain": _round(sel.best_selectivity),
            "gain_lo": _round(sel.best_lo),
            "gain_hi": _round(sel.best_hi),
            "crossfit_gain": _round(sel.crossfit_selectivity),
            "crossfit_lo": _round(sel.crossfit_lo),
            "crossfit_hi": _round(sel.crossfit_hi),
            "layer_accuracy": [_round(v) for v in sel.layer_accuracy],
        })
    return {"n_layers": n_layers, "max_rows": max_rows, "seed": seed, "n_boot": n_boot,
            "curve": curve}
