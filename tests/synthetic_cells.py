"""Result cells in the stored (schema 2, harness 4) layout, built from a few numbers, for
tests of the schema and the leaderboard that need no model."""

from __future__ import annotations

from benchmark.results import cell_path, write_cell
from benchmark.schema import Cell
from benchmark.stats import wilson_interval


def rate(k: int, n: int = 100) -> dict:
    lo, hi = wilson_interval(k, n)
    return {"value": k / n if n else None, "lo": round(lo, 4), "hi": round(hi, 4), "k": k, "n": n}


def mean_ci(value: float, half: float = 0.01, n: int = 100) -> dict:
    return {"value": value, "lo": value - half, "hi": value + half, "n": n}


def selectivity(value: float, half: float = 0.02, own: bool = True, layers: int = 3) -> dict:
    controls = {"embedding": 0.20, "random-init": 0.25, "bag-of-words": 0.30, "joint": 0.32}
    if own:
        controls["own-next-word"] = 0.10
    curve = [round(value - 0.01 * (layers - 1 - i), 4) for i in range(layers)]
    return {
        "layer_accuracy": [round(0.32 + v, 4) for v in curve], "selectivity": curve,
        "selectivity_lo": [round(v - half, 4) for v in curve],
        "selectivity_hi": [round(v + half, 4) for v in curve],
        "control_accuracy": controls,
        "control_layers": {"embedding": None, "random-init": [1, 2], "bag-of-words": None,
                           "joint": [2, 2], **({"own-next-word": None} if own else {})},
        "strongest_control": "joint", "strongest_controls": ["joint", "bag-of-words"],
        "best_layer": layers - 1, "best_selectivity": value, "best_lo": value - half,
        "best_hi": value + half, "crossfit_selectivity": value, "crossfit_lo": value - half,
        "crossfit_hi": value + half, "crossfit_layers": [layers - 1, layers - 2], "n_test": 100,
        "n_boot": 100, "seed": 0,
        "layers": [{"accuracy": 0.4, "majority_accuracy": 0.1, "n_train": 300, "n_test": 100,
                    "n_classes": 20, "converged": True} for _ in range(layers)],
        "n_train": 300, "n_classes": 20,
        "groups": {"couplet": {"crossfit_selectivity": value, "crossfit_lo": value - half,
                               "crossfit_hi": value + half, "best_layer": layers - 1,
                               "layer_accuracy": [0.4] * layers, "control_accuracy": controls,
                               "n_test": 60}},
    }


def lens(gain: float) -> dict:
    point = {"k": 1, "n_train": 200, "n_test": 100, "best_layer": 2, "best_accuracy": 0.5,
             "control_accuracy": 0.4, "strongest_control": "current-token", "gain": gain,
             "gain_lo": gain - 0.02, "gain_hi": gain + 0.02, "crossfit_gain": gain,
             "crossfit_lo": gain - 0.03, "crossfit_hi": gain + 0.03, "layer_accuracy": [0.4, 0.45, 0.5]}
    short = {"k": 2, "n_train": 0, "n_test": 0, "best_layer": None, "gain": None, "crossfit_gain": None}
    return {"n_layers": 3, "max_rows": 400, "seed": 0, "n_boot": 100, "curve": [point, short]}


def follow(k: int, n: int = 100, control_k: int = 0) -> dict:
    """A model's causal check: follow k/n at its best layers, control control_k/n."""
    layer = {"layer": 1, "follow": rate(k, n), "control": rate(control_k, n), "keep": rate(n - k, n),
             "base": rate(0, n)}
    return {"per_layer": [layer | {"layer": 0, "follow": rate(0, n)}, layer], "best_layers": [1, 1],
            "follow": rate(k, n), "control": rate(control_k, n), "n_pairs": n, "control_position": "task"}


def decoding(greedy: int, beam: int, sampling: int, amplified: int, depth1: int) -> dict:
    """Amplified decoding: each decoder's k of 100, half of them on 50 dead-end prompts."""
    def rates(k: int) -> dict:
        return {"all": rate(k), "groups": {"couplet": rate(k - k // 2, 50), "dead-end": rate(k // 2, 50)}}
    return {"width": 4, "depth": 2, "lambda": 0.5, "temperature": 1.0, "seed": 0, "split": "test",
            "greedy": rates(greedy), "beam": rates(beam), "sampling": rates(sampling),
            "amplified": rates(amplified), "amplified_depth1": rates(depth1),
            "lift": mean_ci((amplified - sampling) / 100, 0.02), "lookahead_lift": mean_ci((amplified - depth1) / 100, 0.02)}


def metrics(k: int, sel: float, sel_half: float = 0.02, lookahead: float = 0.001, loss: float = 1.0,
            baseline_k: int | None = None, follow_k: int | None = None, decoding_k: tuple | None = None) -> dict:
    """A cell's metrics: success k/100, own-target selectivity ``sel`` (± ``sel_half``),
    lookahead gain at decisions, task loss, an optional model-free baseline's k/100, and
    optionally amplified decoding (`decoding`'s five k)."""
    gain_d, gain_1 = 0.004 + lookahead, 0.004
    out = {
        "success_greedy": {"all": rate(k), "groups": {"couplet": rate(k // 2, 50), "dead-end": rate(k - k // 2, 50)}},
        "success_beam": {"all": rate(k), "groups": {"couplet": rate(k // 2, 50), "dead-end": rate(k - k // 2, 50)}},
        "task_loss": mean_ci(loss, 0.02),
        "amplification_gain": {
            "width": 4, "depth": 3, "lambda": 0.1, "lambda_depth1": 0.05,
            "dev_gain_by_lambda": {"0.0": 0.0, "0.1": gain_d},
            "dev_gain_by_lambda_depth1": {"0.0": 0.0, "0.05": gain_1},
            "all": mean_ci(gain_d, 0.001), "decisions": mean_ci(gain_d, 0.001),
            "depth1": {"all": mean_ci(gain_1, 0.001), "decisions": mean_ci(gain_1, 0.001)},
            "lookahead": {"all": mean_ci(lookahead / 2, 0.0005), "decisions": mean_ci(lookahead, 0.0005)},
            "groups": {"couplet": {"all": mean_ci(gain_d), "lookahead": mean_ci(lookahead)},
                       "dead-end": {"all": mean_ci(gain_d), "lookahead": None}},
        },
        "plan_probe": {"rhyme_word": {"reference": selectivity(sel / 2, sel_half, own=False),
                                      "own": selectivity(sel, sel_half)}},
        "future_lens": {"reference": lens(0.1), "own": lens(0.05)},
    }
    if baseline_k is not None:
        out["baseline_random-guess"] = {"all": rate(baseline_k), "groups": {}}
    if follow_k is not None:
        out["causal"] = {"model": follow(follow_k), "random-init": follow(1)}
    if decoding_k is not None:
        out["amplified_decoding"] = decoding(*decoding_k)
    return out


def cell_dict(submission: str, task: str, metrics_: dict | None, reference: dict | None = None,
              date: str = "2026-01-01", size: str = "full", error: str | None = None) -> dict:
    """A stored cell (an error cell when ``error`` is given)."""
    base = {"schema": 2, "submission": submission, "task": task,
            "config": {"size": size, "seed": 0, "n_boot": 100},
            "run": {"date": date, "timings": {}, "seconds": 1.0}}
    if reference:
        base["reference"] = reference
    if error:
        return base | {"status": "error", "error": error}
    return base | {
        "task_version": "1", "status": "ok",
        "key": {"model_hash": "m" * 20, "task_version": "1", "config_hash": "c" * 16, "harness_version": "4"},
        "seeds": {"data": 0, "bootstrap": 0, "probe": 0, "random_init": 0},
        "description": "synthetic", "authors": ["test"],
        "data": {"dev": 300, "test": 100, "fingerprint": "f" * 16}, "metrics": metrics_,
        "versions": {"numpy": "2.0"}, "git": "abc123", "run": {"date": date, "timings": {"greedy": 1.5}, "seconds": 2.0},
    }


def store(results, data: dict) -> Cell:
    """Write a cell dict to the results folder through the schema; return the record."""
    cell = Cell.from_dict(data)
    write_cell(cell_path(results, cell.submission, cell.task), cell, examples=[])
    return cell
