"""The result schema: a cell survives a round trip, older files are refused in one line."""

import json

import pytest

from benchmark.results import cell_key, cell_path, is_fresh, load_all, load_cell, write_cell
from benchmark.schema import (MIXED, Cell, Metrics, OutdatedCell, SchemaError, Selectivity,
                              profile_of)
from synthetic_cells import cell_dict, metrics, selectivity, store


def test_a_cell_round_trips_through_its_file(tmp_path):
    data = cell_dict("model-a", "rhymes", metrics(80, 0.2, baseline_k=5, follow_k=40),
                     reference={"variant": "unstunted", "seed": 1, "profile": "full"})
    data["metrics"]["steering"] = {"rate": 0.4, "future": [1, 2]}  # not typed yet
    cell = store(tmp_path, data)
    back = load_cell(cell_path(tmp_path, "model-a", "rhymes"))
    assert back == cell
    assert back.to_dict() == data  # every stored key, the untyped metric included
    # Typed access, no dict chains: the parts the leaderboard reads.
    m = back.metrics
    assert m.success_greedy.all.k == 80 and m.success_greedy.groups["dead-end"].n == 50
    assert m.baselines["random-guess"].all.k == 5
    assert m.amplification_gain.lam == 0.1 and m.amplification_gain.lookahead.decisions.value == 0.001
    assert m.plan_probe["rhyme_word"].own.control_layers["joint"] == [2, 2]
    assert m.future_lens.own.curve[1].crossfit_gain is None
    assert m.causal.model.follow.k == 40 and m.causal.random_init.best_layers == [1, 1]
    assert m.extra == {"steering": {"rate": 0.4, "future": [1, 2]}}
    assert back.reference.seed == 1 and back.profile == "full"


def test_an_error_cell_is_a_record_too(tmp_path):
    cell = store(tmp_path, cell_dict("bad", "rhymes", None, error="out of memory"))
    back = load_all(tmp_path)
    assert back == [cell] and not back[0].ok and back[0].error == "out of memory"
    with pytest.raises(SchemaError, match="needs an error message"):
        Cell(submission="x", task="rhymes", status="error")


def test_a_schema_1_file_is_refused_in_one_line_and_recomputed(tmp_path):
    """Harness-3 cells have no depth-1 or lookahead gain: they are refused, not upgraded."""
    path = cell_path(tmp_path, "old", "rhymes")
    old = cell_dict("old", "rhymes", metrics(50, 0.1))
    old["schema"] = 1
    key = {"model_hash": "m" * 20, "task_version": "1", "config_hash": "c" * 16, "harness_version": "3"}
    old["key"] = key
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(old))
    with pytest.raises(OutdatedCell) as err:
        Cell.from_dict(old, "old/rhymes.json")
    assert "\n" not in str(err.value) and "schema 1" in str(err.value) and "re-evaluate" in str(err.value)
    # The store shows it as an error row that says why, and never serves it from the cache.
    (shown,) = load_all(tmp_path)
    assert (shown.submission, shown.task, shown.status) == ("old", "rhymes", "error")
    assert "re-evaluate" in shown.error
    assert load_cell(path) is None and not is_fresh(path, cell_key("m" * 20, "1", {}))


def test_a_newer_or_malformed_cell_names_what_is_wrong():
    good = cell_dict("m", "rhymes", metrics(50, 0.1))
    with pytest.raises(SchemaError, match="schema 3, but this harness reads schema 2"):
        Cell.from_dict(good | {"schema": 3})
    bad = json.loads(json.dumps(good))
    bad["metrics"]["plan_probe"]["rhyme_word"]["own"]["surprise"] = 1
    with pytest.raises(SchemaError, match=r"metrics\.plan_probe\.rhyme_word\.own: unknown field 'surprise'"):
        Cell.from_dict(bad)
    del bad["metrics"]["plan_probe"]["rhyme_word"]["own"]["surprise"]
    del bad["metrics"]["amplification_gain"]["depth1"]
    with pytest.raises(SchemaError, match="amplification_gain: missing field 'depth1'"):
        Cell.from_dict(bad)
    with pytest.raises(SchemaError, match=r"task_loss\.n: expected int"):
        Metrics.from_dict({"task_loss": {"value": 1.0, "lo": 0.9, "hi": 1.1, "n": "many"}})


def test_nan_is_stored_as_null():
    probe = selectivity(0.1)
    probe["crossfit_lo"] = float("nan")
    sel = Selectivity.from_dict(probe)
    assert sel.crossfit_lo is None and sel.to_dict()["crossfit_lo"] is None


def test_the_runner_writes_a_cell_that_the_schema_reads(tmp_path):
    """An empty metrics dict (a runner test's fake evaluation) is still a valid ok cell."""
    cell = Cell(submission="s", task="rhymes", status="ok", metrics=Metrics.from_dict({}))
    path = cell_path(tmp_path, "s", "rhymes")
    write_cell(path, cell)
    assert json.loads(path.read_text())["schema"] == 2 and load_cell(path) == cell


def test_profile_of_a_set_of_cells():
    full = Cell.from_dict(cell_dict("a", "rhymes", metrics(1, 0.0)))
    quick = Cell.from_dict(cell_dict("b", "rhymes", metrics(1, 0.0), size="quick"))
    assert profile_of([full]) == "full" and profile_of([quick]) == "quick"
    assert profile_of([full, quick]) == MIXED and profile_of([]) is None
