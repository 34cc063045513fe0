"""The command line: fast start-up, `tasks check`, progress bars, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO

import click
import pytest
from click.testing import CliRunner
from rich.console import Console
from rich.progress import Progress

import benchmark.cli as cli
from benchmark.pipeline import EvalEvent, TrainEvent
from benchmark.variants import VARIANTS
from tasks.chess.lichess import LICHESS_SAMPLE


def invoke(*args: str):
    return CliRunner().invoke(cli.main, list(args))


def test_help_imports_no_heavy_library():
    code = ("import sys\nfrom benchmark.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Commands:" in out.stdout and out.stdout.strip().endswith("[]")


def test_variant_choices_are_the_variant_list():
    option = next(p for p in cli.baselines_train.params if p.name == "variants")
    assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == VARIANTS


def test_profile_options_choose_one_profile(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "_run", lambda profile, *args, **kwargs: seen.append(profile))
    for args, profile in ((["run"], "full"), (["run", "--quick"], "quick"), (["run", "--profile", "long"], "long"),
                          (["run", "--quick", "--profile", "quick"], "quick")):
        assert invoke(*args).exit_code == 0 and seen.pop() == profile
    clash = invoke("run", "--quick", "--profile", "long")
    assert clash.exit_code == 2 and "--quick and --profile long disagree" in clash.output and not seen
    assert invoke("run", "--profile", "huge").exit_code == 2


# ---------------------------------------------------------------- tasks check --lichess


def test_lichess_check_verifies_the_shipped_sample():
    result = invoke("tasks", "check", "chess-mate", "--lichess", str(LICHESS_SAMPLE))
    assert result.exit_code == 0, result.output
    assert "455 of 455 puzzles verified" in result.output


def test_lichess_check_fails_on_a_corrupted_puzzle(tmp_path):
    lines = LICHESS_SAMPLE.read_text().splitlines()[:11]  # the header and ten puzzles
    fields = lines[3].split(",")
    moves = fields[2].split()
    fields[2] = " ".join(moves[:-1] + ["a1a1"])  # the mating move is now no move
    lines[3] = ",".join(fields)
    path = tmp_path / "corrupted.csv"
    path.write_text("\n".join(lines) + "\n")
    result = invoke("tasks", "check", "chess-mate", "--lichess", str(path))
    assert result.exit_code == 1
    assert "9 of 10 puzzles verified" in result.output
    assert f"{fields[0]}: the solution does not force mate in" in result.output


def test_lichess_check_of_a_missing_file_is_one_line(tmp_path):
    missing = tmp_path / "nowhere.csv"
    result = invoke("tasks", "check", "chess-mate", "--lichess", str(missing))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: cannot read {missing}: No such file or directory"]


def test_a_task_without_files_refuses_in_one_line():
    result = invoke("tasks", "check", "rhymes", "--lichess", str(LICHESS_SAMPLE))
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: task rhymes does not read files"


def test_generated_data_check():
    result = invoke("tasks", "check", "constrained", "--n", "10")
    assert result.exit_code == 0 and "20 of 20 reference completions verified" in result.output


# ---------------------------------------------------------------- leaderboard


def test_leaderboard_refuses_another_workspace_in_one_line(tmp_path):
    board = tmp_path / "leaderboard.md"
    board.write_text("# an earlier leaderboard\n")
    result = invoke("leaderboard", "--results", str(tmp_path / "empty"), "--out", str(board))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "refusing" in lines[0]
    assert board.read_text() == "# an earlier leaderboard\n"


# ---------------------------------------------------------------- progress


@pytest.fixture
def view():
    progress = Progress(console=Console(file=StringIO()))
    return cli.ProgressView(progress)


def test_every_cell_bar_is_closed_even_on_error(view, capsys):
    for event in [EvalEvent("begin", cells=4),
                  EvalEvent("start", "a", "rhymes"), EvalEvent("stage", "a", "rhymes", "greedy"),
                  EvalEvent("error", "a", "rhymes", "out of memory"),
                  EvalEvent("start", "a", "constrained"), EvalEvent("done", "a", "constrained", "3s"),
                  EvalEvent("cached", "b", "rhymes"),
                  EvalEvent("error", "c", "*", "malformed TOML", cells=1)]:
        view(event)
    tasks = {t.description: t for t in view.progress.tasks}
    assert all(t.finished for t in tasks.values()), [d for d, t in tasks.items() if not t.finished]
    assert "[red]a / rhymes: error[/red]" in tasks
    assert tasks["cells"].completed == 4
    assert capsys.readouterr().out.splitlines() == ["error a / rhymes: out of memory",
                                                    "error c / *: malformed TOML"]


def test_training_bars_follow_their_model(view):
    view(TrainEvent("training", "ref-myopic-s0/rhymes"))
    view(TrainEvent("step", "ref-myopic-s0/rhymes", step=5, steps=10, loss=1.5))
    (bar,) = view.progress.tasks
    assert (bar.completed, bar.total, bar.finished) == (5, 10, False)
    view(TrainEvent("done", "ref-myopic-s0/rhymes"))
    assert bar.finished and "trained ref-myopic-s0/rhymes" in bar.description


def test_backend_ray_without_ray_is_one_line(monkeypatch):
    from benchmark.parallel import RAY_MISSING

    ran = []
    monkeypatch.setattr(cli.pipeline, "evaluate", lambda *args, **kwargs: ran.append(args) or [])
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    for args in (["evaluate", "x", "--backend", "ray"], ["run", "--backend", "ray"],
                 ["baselines", "train", "--backend", "ray"]):
        result = invoke(*args)
        assert result.exit_code == 2 and result.stderr.strip() == f"error: {RAY_MISSING}", args
    assert not ran
    assert "--ray-address needs --backend ray" in invoke("evaluate", "--ray-address", "h:6379").output


def test_backend_reaches_the_pipeline(monkeypatch):
    import types

    from benchmark.parallel import Backend

    from benchmark.pipeline import RunSummary

    seen = []
    monkeypatch.setattr(cli.pipeline, "run", lambda *args: seen.append(args[-1]) or RunSummary([], [], 0, 0.0))
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))  # installed, as far as the CLI asks
    assert invoke("run", "--backend", "ray", "--ray-address", "head:6379").exit_code == 0
    assert invoke("run").exit_code == 0
    assert seen == [Backend("ray", "head:6379"), Backend("local")]
