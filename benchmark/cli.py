"""The `mesabench` command line: the only module that prints.

torch and transformers are imported inside the commands that need them, so `--help` and
`tasks list` answer at once.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=False)
err_console = Console(stderr=True)

SUBMISSIONS = Path("submissions")
RESULTS = Path("results")
LEADERBOARD = Path("leaderboard.md")
# A smoke run (--quick) keeps its references, results and leaderboard apart, so it never
# overwrites the models or numbers of a full run.
QUICK = Path("runs") / "quick"


def _workspace(quick: bool, submissions: Path = SUBMISSIONS, references: Path | None = None,
               results: Path | None = None, out: Path | None = None) -> tuple[Path, Path, Path]:
    """Where the references, results and leaderboard of a full or a quick run live."""
    if quick:
        return (references or QUICK / "references", results or QUICK / "results",
                out or QUICK / "leaderboard.md")
    return references or submissions, results or RESULTS, out or LEADERBOARD


def _submission_dirs(submissions: Path, references: Path) -> list[Path]:
    return [submissions] if references == submissions else [submissions, references]


def path_option(name: str, help: str):
    return click.option(name, type=click.Path(path_type=Path), default=None, help=help)


REFERENCES_HELP = "Where reference baselines are written [default: submissions/; runs/quick/references with --quick]."
RESULTS_HELP = "Result files [default: results/; runs/quick/results with --quick]."
OUT_HELP = "The leaderboard file [default: leaderboard.md; runs/quick/leaderboard.md with --quick]."
SUBMISSIONS_HELP = "Folder of submissions [default: submissions/]."


def _quiet_libraries() -> None:
    """Rich draws its own bars: silence the progress bars and chatter of datasets and HF."""
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore", category=UserWarning)
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def _all_tasks(selected: tuple[str, ...]) -> list[str]:
    from tasks import task_names

    names = list(selected) or task_names()
    unknown = [n for n in names if n not in task_names()]
    if unknown:
        raise click.BadParameter(f"unknown task(s) {unknown}; known: {task_names()}")
    return names


def workers_option(command):
    """--workers: processes that train or evaluate side by side (one torch thread each)."""
    from benchmark.parallel import default_workers

    return click.option("--workers", type=click.IntRange(min=1), default=default_workers(),
                        show_default="one per CPU core",
                        help="Models trained / submissions evaluated side by side, one torch "
                             "thread each (results do not depend on it).")(command)


@contextmanager
def _progress():
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn)

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        yield progress


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """mesabench: does a language model plan ahead inside itself?

    Typical use: `mesabench run --quick` trains the reference baselines, evaluates every
    submission in submissions/ and writes leaderboard.md.
    """


# ---------------------------------------------------------------------------- tasks


@main.group()
def tasks() -> None:
    """List, inspect, generate and check the task suite."""


@tasks.command("list")
def tasks_list() -> None:
    """List the registered tasks."""
    from tasks import REGISTRY, get_task

    table = Table("task", "version", "targets", "description")
    for name in REGISTRY:
        try:
            task = get_task(name)
            table.add_row(name, task.version, ", ".join(task.target_names), task.description)
        except Exception as err:  # a broken task module must not hide the others
            table.add_row(name, "?", "", f"[red]cannot load: {err}[/red]")
    console.print(table)


@tasks.command("show")
@click.argument("name")
@click.option("--n", default=3, show_default=True, help="Examples to show.")
@click.option("--split", default="test", show_default=True)
@click.option("--seed", default=0, show_default=True)
def tasks_show(name: str, n: int, split: str, seed: int) -> None:
    """Describe task NAME and print a few examples with their decision points."""
    from tasks import get_task

    _quiet_libraries()
    task = _get_task_or_exit(name)
    console.print(f"[bold]{task.name}[/bold] v{task.version}: {task.description}")
    console.print(f"targets: {', '.join(task.target_names)}; sizes: {task.sizes}")
    for ex in task.generate(split, n, seed):
        console.print(f"\n[cyan]prompt[/cyan]     {ex['prompt']}")
        console.print(f"[cyan]completion[/cyan] {ex['completion']}")
        for d in ex["decisions"]:
            console.print(f"[cyan]decision[/cyan]   {d['name']} at char {d['offset']}: "
                          f"{d['target']!r} (horizon {d['horizon']})")
        console.print(f"[cyan]meta[/cyan]       {ex['meta']}")
        console.print(f"[cyan]verifier[/cyan]   reference passes: {task.check(ex, ex['completion'])}")
    del get_task


@tasks.command("generate")
@click.argument("name")
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "dev", "test"]))
@click.option("--n", default=None, type=int, help="Number of examples (default: the task's size).")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for datasets.save_to_disk (default: print a summary only).")
def tasks_generate(name: str, split: str, n: int | None, seed: int, out: Path | None) -> None:
    """Generate a split of task NAME (deterministic for the seed)."""
    _quiet_libraries()
    task = _get_task_or_exit(name)
    n = n or (task.sizes["full"][0] if split == "train" else task.sizes["full"][1])
    start = time.time()
    ds = task.generate(split, n, seed)
    console.print(f"{name}: {len(ds)} {split} examples (seed {seed}) in {time.time() - start:.1f}s")
    if out:
        ds.save_to_disk(str(out))
        console.print(f"saved to {out}")


@tasks.command("check")
@click.argument("name")
@click.option("--lichess", "lichess", type=click.Path(path_type=Path), default=None,
              help="A Lichess puzzle CSV: verify every mate-in-N puzzle in it.")
@click.option("--n", default=200, show_default=True, help="Generated examples to verify otherwise.")
def tasks_check(name: str, lichess: Path | None, n: int) -> None:
    """Verify task data: every reference completion must pass the task's verifier.

    Exits non-zero if any fails.
    """
    _quiet_libraries()
    task = _get_task_or_exit(name)
    if lichess is not None:
        if not hasattr(task, "check_lichess_file"):
            _fail(f"task {name} does not read Lichess files")
        if not lichess.is_file():
            _fail(f"file not found: {lichess}")
        report = task.check_lichess_file(lichess)
        console.print(f"{report['verified']} of {report['total']} puzzles verified")
        for failure in report.get("failures", [])[:20]:
            console.print(f"  [red]{failure}[/red]")
        sys.exit(0 if report["verified"] == report["total"] and report["total"] > 0 else 1)
    bad = 0
    for split in ("dev", "test"):
        for ex in task.generate(split, n, 0):
            if not task.check(ex, ex["completion"]):
                bad += 1
                console.print(f"  [red]{ex['id']}: reference completion fails the verifier[/red]")
    console.print(f"{2 * n - bad} of {2 * n} reference completions verified")
    sys.exit(1 if bad else 0)


def _get_task_or_exit(name: str):
    from tasks import get_task

    try:
        return get_task(name)
    except KeyError as err:
        _fail(str(err.args[0]))


def _fail(message: str) -> None:
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    sys.exit(2)


# ---------------------------------------------------------------------------- baselines


@main.group()
def baselines() -> None:
    """Train the reference baselines (unstunted, myopic, stunted-*)."""


@baselines.command("train")
@click.option("--task", "task_names", multiple=True, help="Tasks in the training mixture (default: all).")
@click.option("--variant", "variants", multiple=True,
              type=click.Choice(["unstunted", "myopic", "stunted-skip", "stunted-penalty", "stunted-balance"]),
              help="Variants to train (default: all five).")
@click.option("--seed", "seeds", multiple=True, type=int, help="Seeds (default: the profile's).")
@click.option("--quick", is_flag=True, help="Small data and few steps: a smoke run.")
@path_option("--references", REFERENCES_HELP)
@workers_option
def baselines_train(task_names, variants, seeds, quick, references, workers) -> None:
    """Train reference models into submissions/ref-<variant>-s<seed>/, one model folder per
    task (resumable: a model trained with the same config is skipped)."""
    references, _, _ = _workspace(quick, SUBMISSIONS, references)
    _train(tuple(_all_tasks(task_names)), variants, seeds, quick, references, workers)


def _train(task_names, variants, seeds, quick: bool, submissions: Path, workers: int) -> list[str]:
    _quiet_libraries()
    from benchmark.baselines import VARIANTS, train_baselines, write_random_init

    profile = "quick" if quick else "full"
    with _progress() as progress:
        bars: dict[str, int] = {}

        def on_model(name: str, status: str) -> None:
            if status == "cached":
                console.print(f"[dim]{name}: already trained, skipped[/dim]")
            elif status == "training":
                bars[name] = progress.add_task(f"train {name}", total=None)
            elif status == "done" and name in bars:
                progress.update(bars[name], description=f"[green]trained {name}[/green]")

        def on_step(name: str, step: int, steps: int, loss: float) -> None:
            progress.update(bars[name], completed=step, total=steps,
                            description=f"train {name} loss {loss:6.3f}")

        names = train_baselines(profile, task_names, submissions, tuple(variants) or VARIANTS,
                                tuple(seeds) or None, on_model, on_step, workers, _quiet_libraries)
    names.append(write_random_init(profile, task_names, submissions))
    return names


# ---------------------------------------------------------------------------- evaluate


@main.command()
@click.argument("submission", nargs=-1)
@click.option("--task", "task_names", multiple=True, help="Tasks to evaluate (default: all).")
@click.option("--quick", is_flag=True, help="Smaller evaluation sets (results in runs/quick/).")
@click.option("--force", is_flag=True, help="Recompute cells even when cached.")
@click.option("--shard", default="0/1", show_default=True,
              help="I/N: evaluate only every N-th submission starting at I (spread a run over "
                   "machines with your scheduler; results merge by file).")
@click.option("--submissions", type=click.Path(path_type=Path), default=SUBMISSIONS, help=SUBMISSIONS_HELP)
@path_option("--references", REFERENCES_HELP)
@path_option("--results", RESULTS_HELP)
@workers_option
def evaluate(submission, task_names, quick, force, shard, submissions, references, results, workers) -> None:
    """Evaluate SUBMISSION(s) (names under submissions/ or folders; default: all, and the
    reference baselines).

    Finished cells are cached by model hash, task version and config; a failing
    submission gets one error line and the others still run. Exits non-zero if any
    submission you named explicitly failed.
    """
    try:
        index, count = (int(x) for x in shard.split("/"))
        assert 0 <= index < count
    except (ValueError, AssertionError):
        raise click.BadParameter(f"--shard must be I/N with 0 <= I < N, got {shard!r}") from None
    references, results, _ = _workspace(quick, submissions, references, results)
    failed = _evaluate(submission, tuple(_all_tasks(task_names)), quick, force,
                       _submission_dirs(submissions, references), results, workers, (index, count))
    if submission and failed:
        sys.exit(1)


def _evaluate(submission, task_names, quick, force, submission_dirs: list[Path], results: Path,
              workers: int, shard: tuple[int, int] = (0, 1)) -> list[str]:
    _quiet_libraries()
    from benchmark.evaluate import EvalConfig
    from benchmark.parallel import run_jobs
    from benchmark.runner import evaluate_job
    from benchmark.submissions import find_submissions

    def locate(name: str) -> Path:
        if (Path(name) / "submission.toml").exists():
            return Path(name)
        found = [d / name for d in submission_dirs if (d / name / "submission.toml").exists()]
        return found[0] if found else submission_dirs[0] / name  # missing: one error line

    folders = ([locate(s) for s in submission]
               or [f for d in submission_dirs for f in find_submissions(d)])
    folders = folders[shard[0]::shard[1]]
    cfg = EvalConfig(size="quick" if quick else "full")
    failed = []
    with _progress() as progress:
        overall = progress.add_task("cells", total=len(folders) * len(task_names))
        bars: dict[tuple[str, str], int] = {}

        def on_event(event: tuple) -> None:
            kind, sub, task, detail = event
            if kind == "start":
                bars[sub, task] = progress.add_task(f"{sub} / {task}", total=None)
            elif kind == "stage" and (sub, task) in bars:
                progress.update(bars[sub, task], description=f"{sub} / {task}: {detail}")
            elif kind in ("done", "cached"):
                if kind == "done":
                    progress.update(bars[sub, task], description=f"[green]{sub} / {task} ({detail})[/green]",
                                    total=1, completed=1)
                progress.advance(overall)
            elif kind == "error":
                # User text is escaped (a name like "[/x]" is not markup) and never wrapped.
                console.print(f"[red]error[/red] {escape(sub)} / {escape(task)}: {escape(detail)}",
                              soft_wrap=True)
                failed.append(sub)
                progress.advance(overall, len(task_names) if task == "*" else 1)

        # A slow task's evaluation data is generated (and cached) once, here, before the
        # workers start.
        from benchmark.evaluate import eval_splits
        from tasks import get_task

        for task in map(get_task, task_names):
            if task.disk_cached:
                eval_splits(task, cfg)
        jobs = [{"folder": f, "tasks": list(task_names), "cfg": cfg, "results": results, "force": force}
                for f in folders]
        run_jobs(evaluate_job, jobs, workers, on_event, init=_quiet_libraries)
    return failed


# ---------------------------------------------------------------------------- leaderboard


@main.command()
@click.option("--quick", is_flag=True, help="The quick run's leaderboard (runs/quick/).")
@path_option("--out", OUT_HELP)
@path_option("--results", RESULTS_HELP)
@click.option("--submissions", type=click.Path(path_type=Path), default=SUBMISSIONS, help=SUBMISSIONS_HELP)
@path_option("--references", REFERENCES_HELP)
def leaderboard(quick: bool, out: Path | None, results: Path | None, submissions: Path,
                references: Path | None) -> None:
    """Write leaderboard.md (and its plots) from the stored result files only."""
    references, results, out = _workspace(quick, submissions, references, results, out)
    _leaderboard(out, results, _submission_dirs(submissions, references))


def _leaderboard(out: Path, results: Path, submission_dirs: list[Path]) -> None:
    from benchmark.report import write_leaderboard

    rows = write_leaderboard(results, out, submission_dirs)
    console.print(f"wrote {out} ({rows} rows)")


# ---------------------------------------------------------------------------- run


def run_options(command):
    """The options `experiment` and `run` share."""
    for option in reversed([
        click.option("--quick", is_flag=True, help="One seed, small data, few steps: a smoke run "
                                                   "(minutes), kept apart in runs/quick/."),
        click.option("--task", "task_names", multiple=True, help="Tasks (default: all)."),
        click.option("--submissions", type=click.Path(path_type=Path), default=SUBMISSIONS,
                     help=SUBMISSIONS_HELP),
        path_option("--references", REFERENCES_HELP),
        path_option("--results", RESULTS_HELP),
        path_option("--out", OUT_HELP),
        workers_option,
    ]):
        command = option(command)
    return command


def _run(quick: bool, task_names, submissions: Path, references, results, out, workers: int,
         only_references: bool) -> None:
    names = tuple(_all_tasks(task_names))
    references, results, out = _workspace(quick, submissions, references, results, out)
    start = time.time()
    trained = _train(names, (), (), quick, references, workers)
    dirs = _submission_dirs(submissions, references)
    chosen = tuple(str(references / n) for n in trained) if only_references else ()
    _evaluate(chosen, names, quick, False, dirs, results, workers)
    _leaderboard(out, results, dirs)
    console.print(f"done in {time.time() - start:.0f}s")


@main.command()
@run_options
def experiment(quick: bool, task_names, submissions: Path, references, results, out, workers: int) -> None:
    """The headline experiment alone: train every reference variant and seed, evaluate
    them (and the random-init control), write the leaderboard. Resumable."""
    _run(quick, task_names, submissions, references, results, out, workers, only_references=True)


@main.command()
@run_options
def run(quick: bool, task_names, submissions: Path, references, results, out, workers: int) -> None:
    """Everything on embedded defaults: train the baselines (every variant and seed of the
    profile), evaluate every submission, write the leaderboard. Resumable."""
    _run(quick, task_names, submissions, references, results, out, workers, only_references=False)


if __name__ == "__main__":
    main()
