"""`mesabench validate`: its checks hold on known answers and fail when the instrument is
broken on purpose (a myopic model trained with ordinary gradients, probes fed other rows'
states, a planner that is not followed when patched)."""

import numpy as np
import pytest
from click.testing import CliRunner

from benchmark import validate
from benchmark.schema import Cell
from synthetic_cells import cell_dict, metrics


def planner_cell(seed: int, k: int = 97, sel: float = 0.7, follow_k: int = 80) -> Cell:
    m = metrics(k, sel, sel_half=0.04, follow_k=follow_k)
    m["plan_probe"]["rhyme_word"]["reference"] = m["plan_probe"]["rhyme_word"]["own"]
    return Cell.from_dict(cell_dict(f"ref-unstunted-s{seed}", "rhymes", m,
                                    {"variant": "unstunted", "seed": seed, "profile": "full"}))


def null_cell() -> Cell:
    m = metrics(0, 0.0, sel_half=0.03, follow_k=2)
    return Cell.from_dict(cell_dict("ref-random-init", "rhymes", m, {"variant": "random-init", "seed": 0, "profile": "full"}))


def test_planner_checks_hold_on_a_planner_and_fail_on_a_model_that_does_not_plan():
    good = validate.planner_checks({0: planner_cell(0), 1: planner_cell(1)}, null_cell())
    known = [c for c in good if c.passed is not None]
    assert all(c.passed for c in known), [c for c in known if not c.passed]
    assert len(known) == 3 * 2 + 2
    # Its follow rate is reported as a finding: nothing forces it to read "/" (see bottleneck).
    findings = [c for c in good if c.passed is None]
    assert [c.name for c in findings] == [f"seed {s}: follows a patched plan (causal, best layer)" for s in (0, 1)]
    assert findings[0].measured.startswith("0.800")
    unused = validate.planner_checks({0: planner_cell(0, follow_k=10)}, null_cell())
    assert not [c for c in unused if c.passed is False]
    # A model that does not follow the rule, and one whose plan no probe finds.
    weak = validate.planner_checks({0: planner_cell(0, k=60, sel=0.1)}, None)
    assert {c.name for c in weak if c.passed is False} == {"seed 0: follows the rule (strict verifier)",
                                                           "seed 0: rhyme_word decoded at the decision point beyond every control"}


def rate(k: int, n: int) -> dict:
    from benchmark.evaluate import rate_of

    return rate_of(k, n)


def causal_summary(follow: tuple[int, int], control=(0, 100), embedding=(0, 100), best=(2, 2)) -> dict:
    per_layer = [{"layer": 0, "follow": rate(*embedding)}, {"layer": 2, "follow": rate(*follow)}]
    return {"follow": rate(*follow), "control": rate(*control), "per_layer": per_layer, "best_layers": list(best)}


def test_bottleneck_checks_hold_on_a_followed_plan_and_fail_on_each_broken_part():
    good = validate.bottleneck_checks(0, rate(95, 100), rate(3, 100), causal_summary((80, 100)), causal_summary((1, 100)))
    known = [c for c in good if c.passed is not None]
    assert all(c.passed for c in known) and len(known) == 5, [c for c in known if not c.passed]
    assert [c.measured for c in good if c.passed is None] == ["0.030 [0.010, 0.085] (3/100)"]  # the strict rate
    assert "(layers 2/2)" in good[2].name
    broken = {  # which one check must fail, for each part broken
        "follows a patched plan (causal, best layer) (layers 2/2)": (rate(95, 100), causal_summary((30, 100))),
        "the same patch at a position with no plan": (rate(95, 100), causal_summary((80, 100), control=(20, 100))),
        "the same patch at the embedding layer": (rate(95, 100), causal_summary((80, 100), embedding=(9, 100))),
        "computes the rule's plan (its ending word's slot)": (rate(50, 100), causal_summary((80, 100))),
    }
    for name, (rule, causal) in broken.items():
        failed = [c.name for c in validate.bottleneck_checks(0, rule, rate(3, 100), causal, None) if c.passed is False]
        assert failed == [f"bottleneck seed 0: {name}", "bottleneck seed 0: its architecture untrained follows a patched plan"]
    # Without a measurement nothing passes by default.
    assert not any(c.passed for c in validate.bottleneck_checks(0, rate(95, 100), rate(3, 100), None, None)[1:])
    # An untrained twin with no plans to follow holds (nothing to follow), one that follows fails.
    none = validate.bottleneck_checks(0, rate(95, 100), rate(3, 100), causal_summary((80, 100)), causal_summary((0, 0)))
    assert none[-1].passed and none[-1].measured == "no pairs with a plan to follow"
    assert not validate.bottleneck_checks(0, rate(95, 100), rate(3, 100), causal_summary((80, 100)),
                                          causal_summary((30, 100)))[-1].passed


def test_shuffled_states_belong_to_other_rows_and_leave_no_plan_to_decode():
    from benchmark.probes import fit_probe, selectivity

    class Inner:
        def at(self, model, texts, offsets):
            return np.arange(2 * len(texts) * 3, dtype=float).reshape(2, len(texts), 3)

    broken = validate.ShuffledStates(8, model="planner", seed=0)
    broken.inner = Inner()
    plain = Inner().at(None, ["a"] * 10, [0] * 10)
    shuffled = broken.at("planner", ["a"] * 10, [0] * 10)
    assert not np.array_equal(shuffled, plain) and np.array_equal(np.sort(shuffled, axis=1), plain)
    assert np.array_equal(broken.at("control", ["a"] * 10, [0] * 10), plain)  # the controls are untouched

    # A state that decodes its target reads nothing once its rows are shuffled.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 800)
    state = np.eye(4)[y] * 2 + rng.normal(size=(800, 4))
    noise = rng.normal(size=(800, 4))
    perm = np.random.default_rng(1).permutation(800)
    for states, must_fire in ((state, True), (state[perm], False)):
        probe = fit_probe(states[:500], y[:500], states[500:], y[500:], 0)
        control = fit_probe(noise[:500], y[:500], noise[500:], y[500:], 0)
        result = selectivity([probe], {"embedding": control}, seed=0, n_boot=200)
        assert (result.crossfit_lo > 0.3) is must_fire


def fake_calibration(shift, variant, seed, beta=0.0, quick=False, cfg=None):
    """What the pre-caching pair gives: a myopic model with ordinary gradients (beta = 1)
    trains like vanilla."""
    myopic = variant == "myopic" and beta == 0.0
    loss = (1.8 if shift == 1 else 0.15) if myopic else 0.1
    r2 = 0.05 if myopic and shift == 1 else 0.9
    return {"shift": shift, "variant": variant, "seed": seed, "beta": beta, "loss": loss, "probe_r2_best": r2}


def test_calibration_checks_fail_when_the_myopic_model_trains_with_ordinary_gradients(monkeypatch):
    import benchmark.calibration

    monkeypatch.setattr(benchmark.calibration, "run_calibration", fake_calibration)
    assert all(c.passed for c in validate.calibration_checks(True, frozenset(), lambda s: None))
    broken = validate.calibration_checks(True, frozenset({"myopic-beta1"}), lambda s: None)
    assert {c.name for c in broken if not c.passed} == {"shift 1: myopic loss >= 5x vanilla",
                                                        "shift 1: myopic probe R2 <= 0.2"}


def test_gain_checks_fire_on_the_toy_and_read_zero_at_depth_one():
    checks = validate.gain_checks()
    assert [c.passed for c in checks] == [True, True]


def test_unknown_breaks_are_refused():
    with pytest.raises(ValueError, match="unknown break"):
        validate.run_checks(breaks=frozenset({"everything"}))


def test_the_command_prints_the_table_and_exits_1_when_a_known_answer_is_missed(monkeypatch, tmp_path):
    from benchmark import cli, pipeline
    from benchmark.schema import Validation, ValidationCheck

    record = Validation(profile="quick", date="2026-01-01", seconds=1.0, checks=[
        ValidationCheck("gain", "toy", "> 0", "1.0", True), ValidationCheck("planner", "follows", "≥ 0.50", "0.00", False),
        ValidationCheck("planner", "a finding", "a finding", "0.00", None)])
    monkeypatch.setattr(pipeline, "validate", lambda *a, **k: record)
    result = CliRunner().invoke(cli.main, ["validate", "--quick", "--workers", "1"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "validate: 1 of 2 known answers hold"
    assert "FAIL" in result.output and "follows" in result.output and "finding" in result.output
    held = Validation(profile="quick", date="2026-01-01", seconds=1.0, checks=record.checks[:1] + record.checks[2:])
    monkeypatch.setattr(pipeline, "validate", lambda *a, **k: held)
    result = CliRunner().invoke(cli.main, ["validate", "--quick", "--workers", "1"])
    assert result.exit_code == 0 and result.output.strip().endswith("validate: 1 of 1 known answers hold")


def test_the_leaderboard_shows_the_last_validation(tmp_path):
    import json

    from benchmark.report import VALIDATION_FILE, validation_section
    from benchmark.schema import Validation, ValidationCheck

    assert "Not checked yet" in validation_section(tmp_path / VALIDATION_FILE)[0]
    record = Validation(profile="full", date="2026-01-01", seconds=1.0,
                        checks=[ValidationCheck("null", "random-init follows", "≤ 0.05", "0.000", True),
                                ValidationCheck("planner", "follows", "a finding", "0.000", None)])
    (tmp_path / VALIDATION_FILE).write_text(json.dumps(record.to_dict()))
    text = "\n".join(validation_section(tmp_path / VALIDATION_FILE))
    assert "**1 of 1 known answers hold.**" in text and "| pass | null | random\\-init follows |" in text
    assert "| *finding* | planner | follows |" in text
