"""The leaderboard from synthetic result files: pooled seeds, learned tasks, the rank rule,
the headline tests, byte-identical rebuilds, and refusing another workspace's leaderboard."""

import math

import pytest

from benchmark.report import (Comparison, Figure, WorkspaceMismatch, headline_paragraph,
                              workspace_profile, write_leaderboard)
from synthetic_cells import cell_dict, metrics, selectivity, store


def ref(variant: str, seed: int) -> dict:
    return {"variant": variant, "seed": seed, "profile": "full"}


@pytest.fixture
def results(tmp_path):
    """Three seeds of two variants, the null model, four submitted models, one broken."""
    root = tmp_path / "results"
    # rhymes: the null model solves nothing; constrained: a model-free baseline solves 20%.
    store(root, cell_dict("ref-random-init", "rhymes", metrics(0, 0.01), ref("random-init", 0)))
    store(root, cell_dict("ref-random-init", "constrained", metrics(0, 0.05, baseline_k=20), ref("random-init", 0)))
    for seed, (k, sel, loss) in enumerate([(90, 0.10, 0.7), (92, 0.12, 0.8), (94, 0.14, 0.9)]):
        name = f"ref-unstunted-s{seed}"
        store(root, cell_dict(name, "rhymes", metrics(k, sel, loss=loss), ref("unstunted", seed),
                              date=f"2026-01-0{seed + 1}"))
        store(root, cell_dict(name, "constrained", metrics(0, 0.3, baseline_k=20), ref("unstunted", seed)))
    for seed, (k, sel, loss) in enumerate([(50, 0.00, 0.75), (55, 0.01, 0.95), (60, -0.01, 1.15)]):
        name = f"ref-myopic-s{seed}"
        store(root, cell_dict(name, "rhymes", metrics(k, sel, loss=loss), ref("myopic", seed)))
        store(root, cell_dict(name, "constrained", metrics(0, 0.3, baseline_k=20), ref("myopic", seed)))
    store(root, cell_dict("good-model", "rhymes", metrics(80, 0.20, sel_half=0.05, follow_k=62)))
    # 10/100 on constrained: above 0, but not above the baseline's 20%.
    store(root, cell_dict("good-model", "constrained", metrics(10, 0.40, baseline_k=20)))
    store(root, cell_dict("noisy-model", "rhymes", metrics(70, 0.30, sel_half=0.40)))
    store(root, cell_dict("fails-model", "rhymes", metrics(0, 0.50)))  # high selectivity, no skill
    store(root, cell_dict("broken", "rhymes", None, error="boom"))
    return root


def ranking(text: str) -> list[str]:
    section = text.split("## Ranking")[1].split("**Task floors**")[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| #")]


def test_leaderboard_rebuilds_byte_for_byte_and_shows_the_right_figures(results, tmp_path):
    a, b = tmp_path / "a" / "leaderboard.md", tmp_path / "b" / "leaderboard.md"
    rows = write_leaderboard(results, a, tmp_path / "no-submissions")
    write_leaderboard(results, b, tmp_path / "no-submissions")
    assert a.read_bytes() == b.read_bytes()
    plots = sorted(p.name for p in (a.parent / "leaderboard_plots").glob("*.png"))
    assert plots and plots == sorted(p.name for p in (b.parent / "leaderboard_plots").glob("*.png"))
    for name in plots:
        assert (a.parent / "leaderboard_plots" / name).read_bytes() == \
            (b.parent / "leaderboard_plots" / name).read_bytes()

    text = a.read_text()
    assert rows == 7  # two pooled references, the null model, four submissions
    assert "Generated 2026-01-03 " in text  # the newest cell's date, not today's
    assert "stale" not in text.split("## Ranking")[1]  # no model folders: no stale marks
    lines = ranking(text)
    order = [line.split(" | ")[1] for line in lines]
    # Evidence first (by value), then no evidence (by value); unranked rows last, by name.
    assert order == ["good\\-model", "ref\\-unstunted (3 seeds)", "noisy\\-model", "ref\\-myopic (3 seeds)",
                     "broken", "fails\\-model", "ref\\-random\\-init"]
    assert [line.split(" | ")[0] for line in lines] == ["| 1", "| 2", "| 3", "| 4", "| –", "| –", "| –"]
    unstunted = lines[1]
    # Pooled over seeds: index = mean of the per-seed selectivities 0.10, 0.12, 0.14 with a
    # t interval over 3 seeds (half-width t(0.975, 2) * 0.02 / sqrt(3) = 0.0497).
    assert "| 0.120 [0.070, 0.170] (1 task, 3 seeds) |" in unstunted
    assert "| 0.920 [0.870, 0.970] (3 seeds) |" in unstunted  # success@greedy, mean of 90/92/94
    # Constrained is not learned by anyone (nobody beats the 20% baseline): never counted.
    assert unstunted.count("n/a: task not learned") == 1
    good = lines[0]
    assert "| 0.200 [0.150, 0.250] (1 task) |" in good and "0.100 [0.055, 0.174] (10/100) | n/a: task not learned" in good
    assert "no evidence: 0.300" in lines[2] and "no evidence: " in lines[3]
    assert "| n/a: no task learned |" in lines[5]  # fails-model: 0.50 selectivity, never ranked
    assert "null model: no index" in lines[6] and "error: boom" in lines[4]
    assert "constrained 0.200 (baseline random\\-guess)" in text  # the floor, as applied

    # The headline: myopic's own-target selectivity is significantly lower on rhymes.
    headline = text.split("## Headline experiment")[1].split("## Per task")[0]
    assert "Welch t 95% interval over 3 seeds per variant" in headline
    assert "Own-target selectivity: the point estimate is lower than unstunted in 1 of 2 comparisons" in headline
    assert "significantly lower in 1 (myopic on rhymes -0.120" in headline
    # Task loss is higher in point estimate on rhymes, but not significantly.
    assert "Task loss: the point estimate is lower than unstunted in 0 of 2 comparisons and higher in 1; " \
           "significantly lower in 0 and significantly higher in 0" in headline
    # The per-task table shows gain(D), gain(1) and the lookahead part; the probe table the joint control.
    per_task = text.split("## Per task")[1]
    assert "gain(D=3, W=4), all positions | gain(1), all positions | lookahead gain, all positions" in per_task
    assert "controls: embedding / random-init / bag-of-words / joint / own-next-word" in per_task
    assert "| joint / bag\\-of\\-words |" in per_task  # strongest control chosen on each half
    assert "current\\-token" in per_task  # the future lens names its strongest control
    # The causal check beside selectivity: the best layer's follow rate with its interval.
    assert "| 0.620 [0.522, 0.709] (62/100, L1/1) |" in good
    assert "| good\\-model | 0.00 0.62 | 0.00 0.00 | 0.620 [0.522, 0.709] (62/100, L1/1) | 0.000 [0.000, 0.037] (0/100) | 0.010" in per_task


def test_a_leaderboard_is_never_overwritten_from_another_workspace(results, tmp_path):
    out = tmp_path / "leaderboard.md"
    write_leaderboard(results, out, tmp_path)
    assert workspace_profile(results) == "full"
    before = out.read_bytes()
    quick = tmp_path / "quick-results"
    store(quick, cell_dict("m", "rhymes", metrics(50, 0.1), size="quick"))
    with pytest.raises(WorkspaceMismatch, match="leaderboard of the full profile .* quick profile"):
        write_leaderboard(quick, out, tmp_path)
    with pytest.raises(WorkspaceMismatch, match="holds no result files"):
        write_leaderboard(tmp_path / "empty", out, tmp_path)
    with pytest.raises(WorkspaceMismatch, match="results of the full profile, not quick"):
        write_leaderboard(results, tmp_path / "elsewhere.md", tmp_path, profile="quick")
    assert out.read_bytes() == before
    write_leaderboard(quick, tmp_path / "quick.md", tmp_path)  # its own file is fine


def comparison(diff: float, lo: float, hi: float, metric: str = "own-target selectivity") -> Comparison:
    return Comparison("rhymes", "stunted-skip", metric, 0.1 + diff, 0.1, diff, lo, hi, 3, 3)


def test_headline_counts_directions_apart_from_significant_differences():
    # Lower in point estimate but not significantly: never "no variant has lower ...".
    base = {"rhymes": {"own-target selectivity": Figure(-0.05, -0.2, 0.1)}}
    text = headline_paragraph([comparison(-0.03, -0.08, 0.02)], base)
    assert "lower than unstunted in 1 of 1 comparisons and higher in 0; significantly lower in 0" in text
    assert "no stunted variant" not in text.lower()
    # The unstunted reference shows nothing above 0: the honest verdict says so.
    assert "nothing for stunting to remove" in text
    base["rhymes"]["own-target selectivity"] = Figure(0.1, 0.05, 0.15)
    text = headline_paragraph([comparison(-0.06, -0.1, -0.02)], base)
    assert "significantly lower in 1 (stunted-skip on rhymes -0.060 [-0.100, -0.020])" in text
    assert "nothing for stunting to remove" not in text and "above 0" in text
    one_seed = Comparison("rhymes", "myopic", "task loss", 1.0, 0.9, 0.1, math.nan, math.nan, 1, 1)
    assert "1 untested (one seed)" in headline_paragraph([one_seed], {})
    assert "nothing to compare" in headline_paragraph([], base)


def test_null_model_note_quotes_the_untrained_models_selectivity():
    from benchmark.report import build_rows, null_model_note
    from benchmark.schema import Cell

    cells = [Cell.from_dict(cell_dict("ref-random-init", "rhymes", metrics(0, 0.05), ref("random-init", 0))),
             Cell.from_dict(cell_dict("ref-random-init", "constrained", None, ref("random-init", 0), error="boom"))]
    (null,) = build_rows(cells)
    text = " ".join(null_model_note(null, ["rhymes", "constrained"]))
    assert "rhymes 0.050 [0.030, 0.070]" in text and "constrained" not in text
    assert null_model_note(None, ["rhymes"]) == []


def test_one_seed_leaves_the_unstunted_verdict_untested():
    base = {"rhymes": {"own-target selectivity": Figure(0.1, math.nan, math.nan)}}
    one_seed = Comparison("rhymes", "myopic", "own-target selectivity", 0.0, 0.1, -0.1, math.nan, math.nan, 1, 1)
    text = headline_paragraph([one_seed], base)
    assert "untested" in text and "nothing for stunting to remove" not in text


def test_the_committed_leaderboard_rebuilds_from_the_committed_results(tmp_path):
    """`mesabench leaderboard` in a fresh clone gives the committed leaderboard.md, byte for
    byte, from the committed results/*/*.json (and results/validate.json) alone."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not list((root / "results").glob("*/*.json")):
        pytest.skip("no committed full-run results")
    out = tmp_path / "leaderboard.md"
    write_leaderboard(root / "results", out, tmp_path / "no-model-folders", profile="full")
    assert out.read_text() == (root / "leaderboard.md").read_text()


def test_natural_faces_are_ranked_apart(results, tmp_path):
    # A pretrained-style model with a natural-face cell beside its word-level one.
    store(results, cell_dict("pretrained", "rhymes-natural", metrics(60, 0.2, baseline_k=5)))
    # And one scored on the natural faces only: no row of "not run" among the word-level faces.
    store(results, cell_dict("standin", "rhymes-natural", metrics(55, 0.1, baseline_k=5)))
    out = tmp_path / "board.md"
    write_leaderboard(results, out, tmp_path / "none")
    text = out.read_text()
    ranking, natural = text.split("## Ranking")[1].split("## Natural faces")[:2]
    assert "rhymes-natural" not in ranking and "rhymes-natural: success@greedy" in natural
    table = natural.split("## Per task")[0]
    assert "| pretrained |" in table and "ref\\-unstunted" not in table and "ref\\-unstunted" in ranking
    assert "| standin |" in table and "| standin |" not in ranking.split("**Task floors")[0]


def test_headline_shows_the_training_diagnostics_the_cells_carry(tmp_path):
    """v5's amplifier gain (and v3's balance figures) come from train_log.json through the
    cells' reference record; variants without them get no line."""
    root = tmp_path / "results"
    for seed, gain in enumerate([0.010, 0.020, 0.030]):
        store(root, cell_dict(f"ref-unstunted-s{seed}", "rhymes", metrics(90, 0.1), ref("unstunted", seed)))
        training = {"final_amplifier_gain": gain, "min_balance_ess": 0.5, "max_balance_residual": 0.0}
        store(root, cell_dict(f"ref-stunted-learned-s{seed}", "rhymes", metrics(90, 0.1),
                              ref("stunted-learned", seed) | {"training": training}))
    out = tmp_path / "leaderboard.md"
    write_leaderboard(root, out, tmp_path / "no-submissions")
    line = next(t for t in out.read_text().splitlines() if t.startswith("**Training diagnostics**"))
    assert ("stunted-learned: learned amplifier's held-out gain over the model at its last retrain (nats) "
            "0.0200 [0.0100, 0.0300] (3 seeds); worst balance ESS 0.500 [0.500, 0.500] (3 seeds)") in line
    assert "unstunted:" not in line


def test_a_masked_reference_says_in_one_line_what_is_not_defined_for_it(tmp_path):
    """The masked variant's cells have no gain, beam or amplified decoding, and carry the
    reason (`benchmark.masked.NOT_DEFINED`): the headline prints it once per task, and its
    monitor points without a gain still draw."""
    from benchmark.masked import NOT_DEFINED

    root = tmp_path / "results"
    point = {"step": 0, "split": "dev", "seed": 0, "amplification_gain": None,
             "plan_probe": {"rhyme_word": {"reference": selectivity(0.1, own=False), "own": selectivity(0.2)}}}
    monitor = {"config": {"split": "dev", "seed": 0}, "task": "rhymes", "every": 5,
               "points": [point, point | {"step": 5}]}
    for seed in range(2):
        store(root, cell_dict(f"ref-unstunted-s{seed}", "rhymes", metrics(90, 0.3), ref("unstunted", seed)))
        undefined = {k: v for k, v in metrics(20, 0.1).items() if k not in ("success_beam", "amplification_gain")}
        store(root, cell_dict(f"ref-masked-s{seed}", "rhymes", undefined | {"not_defined": NOT_DEFINED},
                              ref("masked", seed)) | {"monitor": monitor})
    out = tmp_path / "leaderboard.md"
    write_leaderboard(root, out, tmp_path / "no-submissions")
    text = out.read_text()
    headline = text.split("## Training monitor")[0]
    assert headline.count("masked: not defined for masked models") == 1
    assert "| masked | 0,1 |" in headline
    assert (tmp_path / "leaderboard_plots" / "rhymes_monitor.png").is_file()
