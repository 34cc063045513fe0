"""The `mesabench` command line: it parses options, calls `benchmark.pipeline` and prints.

It is the only module that prints. torch and transformers are imported inside the
commands that need them, so `--help` and `tasks list` answer at once.
"""

from __future__ import annotations

import functools
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmark import pipeline
from benchmark.errors import one_line
from benchmark.pipeline import EvalEvent, Event, TrainEvent
from benchmark.validate import BREAKS
from benchmark.variants import VARIANTS

console = Console(stderr=False)
err_console = Console(stderr=True)

REFERENCES_HELP = "Where reference baselines are written [default: submissions/; runs/<profile>/references for another profile]."
RESULTS_HELP = "Result files [default: results/; runs/<profile>/results for another profile]."
OUT_HELP = "The leaderboard file [default: leaderboard.md; runs/<profile>/leaderboard.md for another profile]."
SUBMISSIONS_HELP = "Folder of submissions [default: submissions/]."


def path_option(name: str, help: str):
    return click.option(name, type=click.Path(path_type=Path), default=None, help=help)


def submissions_option(command):
    return click.option("--submissions", type=click.Path(path_type=Path), default=pipeline.SUBMISSIONS,
                        help=SUBMISSIONS_HELP)(command)


def profile_options(quick_help: str):
    """--profile quick|full|long and its shorthand --quick, passed on as ``profile``."""
    def decorate(command):
        @functools.wraps(command)
        def with_profile(*args, quick: bool, profile: str | None, **kwargs):
            if quick and profile not in (None, "quick"):
                raise click.UsageError(f"--quick and --profile {profile} disagree")
            return command(*args, profile="quick" if quick else profile or "full", **kwargs)

        with_profile = click.option("--quick", is_flag=True, help=quick_help + " (= --profile quick).")(with_profile)
        return click.option("--profile", type=click.Choice(pipeline.PROFILE_NAMES), default=None,
                            help="full (default: about 40 min on 2 cores), quick (a smoke run) or long "
                                 "(the budget at which every task is learned); each but full is kept "
                                 "apart in runs/<profile>/.")(with_profile)
    return decorate


def workers_option(command):
    """--workers: processes that train or evaluate side by side (one torch thread each)."""
    from benchmark.parallel import default_workers

    return click.option("--workers", type=click.IntRange(min=1), default=default_workers(),
                        show_default="one per CPU core",
                        help="Models trained / submissions evaluated side by side, one torch "
                             "thread each (results do not depend on it).")(command)


def backend_option(command):
    """--backend local|ray and --ray-address, passed on as ``backend`` (a
    `benchmark.parallel.Backend`). A backend that cannot run (ray not installed, a cluster
    out of reach) ends the command with one error line."""
    from benchmark.parallel import BACKENDS, Backend, BackendError, ray_module

    @functools.wraps(command)
    def with_backend(*args, backend: str, ray_address: str | None, **kwargs):
        if ray_address and backend != "ray":
            raise click.UsageError("--ray-address needs --backend ray")
        try:
            if backend == "ray":
                ray_module()  # before any work: a missing ray is one line, not a traceback
            return command(*args, backend=Backend(backend, ray_address), **kwargs)
        except BackendError as err:
            _fail(err)

    with_backend = click.option("--ray-address", default=None, metavar="ADDR",
                                help="The Ray cluster to join (default: $RAY_ADDRESS, else a Ray "
                                     "started on this machine with --workers CPUs). Every node needs "
                                     "mesabench installed and this folder at the same path.")(with_backend)
    return click.option("--backend", type=click.Choice(BACKENDS), default="local", show_default=True,
                        help="Where the jobs run: worker processes here, or Ray tasks (one CPU each, "
                             "and one GPU where the cluster has GPUs).")(with_backend)


def _fail(message: object) -> NoReturn:
    """One red error line on stderr, exit code 2."""
    err_console.print(f"[red]error:[/red] {escape(one_line(message))}", soft_wrap=True)
    sys.exit(2)


def _tasks(selected: tuple[str, ...]) -> list[str]:
    try:
        return pipeline.task_list(selected)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


def _get_task_or_exit(name: str):
    from tasks import get_task

    try:
        return get_task(name)
    except KeyError as err:
        _fail(err.args[0])


# ---------------------------------------------------------------------------- progress


class ProgressView:
    """Draws a run's events as rich progress bars: one per model or cell, one for all cells.

    Every bar it opens is closed (finished) by the event that ends its model or cell, an
    error included, so no spinner keeps turning after its error line.
    """

    def __init__(self, progress) -> None:
        self.progress = progress
        self.bars: dict[str, int] = {}  # a model's label or "<submission> / <task>" -> bar id
        self.cells: int | None = None  # the bar counting every cell

    def __call__(self, event: Event) -> None:
        if isinstance(event, TrainEvent):
            self._train(event)
        else:
            self._evaluate(event)

    def _close(self, name: str, description: str) -> None:
        if name in self.bars:
            self.progress.update(self.bars[name], description=description, total=1, completed=1)

    def _train(self, event: TrainEvent) -> None:
        name = event.model
        if event.kind == "cached":
            console.print(f"[dim]{name}: already trained, skipped[/dim]")
        elif event.kind == "training":
            self.bars[name] = self.progress.add_task(f"train {name}", total=None)
        elif event.kind == "step" and name in self.bars:
            self.progress.update(self.bars[name], completed=event.step, total=event.steps,
                                 description=f"train {name} loss {event.loss:6.3f}")
        elif event.kind == "done":
            self._close(name, f"[green]trained {name}[/green]")

    def _evaluate(self, event: EvalEvent) -> None:
        # User text is escaped (a name like "[/x]" is not markup) and never wrapped.
        name = f"{escape(event.submission)} / {escape(event.task)}"
        if event.kind == "begin":
            self.cells = self.progress.add_task("cells", total=event.cells)
            return
        if event.kind == "start":
            self.bars[name] = self.progress.add_task(name, total=None)
        elif event.kind == "stage" and name in self.bars:
            self.progress.update(self.bars[name], description=f"{name}: {escape(event.detail)}")
        elif event.kind == "done":
            self._close(name, f"[green]{name} ({escape(event.detail)})[/green]")
        elif event.kind == "error":
            console.print(f"[red]error[/red] {name}: {escape(event.detail)}", soft_wrap=True)
            self._close(name, f"[red]{name}: error[/red]")
        if event.kind in ("done", "cached", "error") and self.cells is not None:
            self.progress.advance(self.cells, event.cells)


@contextmanager
def _progress() -> Iterator[ProgressView]:
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn)

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        yield ProgressView(progress)


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
            table.add_row(name, "?", "", f"[red]cannot load: {escape(one_line(err))}[/red]")
    console.print(table)


@tasks.command("show")
@click.argument("name")
@click.option("--n", default=3, show_default=True, help="Examples to show.")
@click.option("--split", default="test", show_default=True)
@click.option("--seed", default=0, show_default=True)
def tasks_show(name: str, n: int, split: str, seed: int) -> None:
    """Describe task NAME and print a few examples with their decision points."""
    pipeline.quiet_libraries(transformers=False)
    task = _get_task_or_exit(name)
    console.print(f"[bold]{task.name}[/bold] v{task.version}: {task.description}")
    console.print(f"targets: {', '.join(task.target_names)}; sizes: {task.sizes}")
    for ex in task.generate(split, n, seed):
        console.print(f"\n[cyan]prompt[/cyan]     {escape(ex['prompt'])}")
        console.print(f"[cyan]completion[/cyan] {escape(ex['completion'])}")
        for d in ex["decisions"]:
            console.print(f"[cyan]decision[/cyan]   {d['name']} at char {d['offset']}: "
                          f"{escape(repr(d['target']))} (horizon {d['horizon']})")
        console.print(f"[cyan]meta[/cyan]       {escape(ex['meta'])}")
        console.print(f"[cyan]verifier[/cyan]   reference passes: {task.check(ex, ex['completion'])}")


@tasks.command("generate")
@click.argument("name")
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "dev", "test"]))
@click.option("--n", default=None, type=int, help="Number of examples (default: the task's size).")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder for datasets.save_to_disk (default: print a summary only).")
def tasks_generate(name: str, split: str, n: int | None, seed: int, out: Path | None) -> None:
    """Generate a split of task NAME (deterministic for the seed)."""
    pipeline.quiet_libraries(transformers=False)
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
@click.option("--file", "data_file", type=click.Path(path_type=Path), default=None,
              help="A file of real items to verify instead: a Lichess puzzle CSV (chess-mate), "
                   "a couplets JSONL (rhymes-natural).")
@click.option("--lichess", "lichess", type=click.Path(path_type=Path), default=None,
              help="The same as --file, for a Lichess puzzle CSV.")
@click.option("--n", default=200, show_default=True, help="Generated examples to verify otherwise.")
def tasks_check(name: str, data_file: Path | None, lichess: Path | None, n: int) -> None:
    """Verify task data: every reference completion must pass the task's verifier.

    Exits 1 if any fails, 2 if the data cannot be read.
    """
    from tasks.base import TaskError

    pipeline.quiet_libraries(transformers=False)
    task = _get_task_or_exit(name)
    path = data_file or lichess
    try:
        report = task.check_generated(n) if path is None else task.check_file(path)
    except TaskError as err:
        _fail(err)
    except OSError as err:
        _fail(f"cannot read {path}: {err.strerror or err}")
    console.print(f"{report.verified} of {report.total} {report.unit} verified")
    for failure in report.failures[:20]:
        console.print(f"  [red]{escape(failure)}[/red]", soft_wrap=True)
    if len(report.failures) > 20:
        console.print(f"  ... and {len(report.failures) - 20} more")
    sys.exit(0 if report.ok else 1)


# ---------------------------------------------------------------------------- baselines


@main.group()
def baselines() -> None:
    """Train the reference baselines (unstunted, myopic, stunted-*, masked)."""


@baselines.command("train")
@click.option("--task", "task_names", multiple=True, help="Tasks to train models for (default: all).")
@click.option("--variant", "variants", multiple=True, type=click.Choice(VARIANTS),
              help="Variants to train (default: all).")
@click.option("--seed", "seeds", multiple=True, type=int, help="Seeds (default: the profile's).")
@profile_options("Small data and few steps: a smoke run")
@path_option("--references", REFERENCES_HELP)
@workers_option
@backend_option
def baselines_train(task_names, variants, seeds, profile, references, workers, backend) -> None:
    """Train reference models into submissions/ref-<variant>-s<seed>/, one model folder per
    task (resumable: a model trained with the same config is skipped)."""
    ws = pipeline.workspace(profile, references=references)
    with _progress() as view:
        pipeline.train(_tasks(task_names), ws, workers, tuple(variants) or VARIANTS,
                       tuple(seeds) or None, view, backend)


@main.group()
def standin() -> None:
    """The pretrained stand-in: a small GPT-2 with a byte-level BPE tokenizer, trained here
    on English and couplets, so the natural faces have a pretrained-style model to score."""


@standin.command("build")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="The submission folder to write [default: submissions/standin-gpt2-bpe; "
                   "runs/quick/references/standin-gpt2-bpe with --quick].")
@click.option("--quick", is_flag=True, help="The smoke run's stand-in (seconds to build, learns little).")
def standin_build(out: Path | None, quick: bool) -> None:
    """Train the stand-in (deterministic: the same recipe gives the same weights) and write
    it as a submission of the natural faces; kept when already built with this recipe.
    `mesabench evaluate standin-gpt2-bpe` then scores it."""
    ws = pipeline.workspace("quick" if quick else "full")
    with _progress() as view:
        folder = pipeline.build_standin(ws, out, view)
    console.print(f"wrote {folder}")


# ---------------------------------------------------------------------------- evaluate


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        index, count = -1, 0
    if not 0 <= index < count:
        raise click.BadParameter(f"--shard must be I/N with 0 <= I < N, got {text!r}")
    return index, count


@main.command()
@click.argument("submission", nargs=-1)
@click.option("--task", "task_names", multiple=True, help="Tasks to evaluate (default: all).")
@profile_options("Smaller evaluation sets (results in runs/quick/)")
@click.option("--force", is_flag=True, help="Recompute cells even when cached.")
@click.option("--real", "real_files", multiple=True, metavar="TASK=FILE",
              help="Score FILE as TASK's real split (e.g. rhymes-natural=couplets.jsonl; "
                   "`mesabench tasks check TASK --file FILE` validates it first).")
@click.option("--shard", default="0/1", show_default=True,
              help="I/N: evaluate only every N-th submission starting at I (spread a run over "
                   "machines with your scheduler; results merge by file).")
@submissions_option
@path_option("--references", REFERENCES_HELP)
@path_option("--results", RESULTS_HELP)
@workers_option
@backend_option
def evaluate(submission, task_names, profile, force, real_files, shard, submissions, references, results,
             workers, backend) -> None:
    """Evaluate SUBMISSION(s) (names under submissions/ or folders; default: all, and the
    reference baselines).

    Finished cells are cached by model hash, task version and config; a failing
    submission gets one error line and the others still run. Exits non-zero if any
    submission you named explicitly failed.
    """
    from tasks.base import TaskError

    shard_range = _shard(shard)
    ws = pipeline.workspace(profile, submissions, references, results)
    names = _tasks(task_names)
    files = []
    for spec in real_files:
        task, _, path = spec.partition("=")
        if not path:
            raise click.BadParameter(f"--real takes TASK=FILE, got {spec!r}")
        files.append((_tasks((task,))[0], Path(path)))
    try:
        with _progress() as view:
            failed = pipeline.evaluate(submission, names, ws, workers, force, shard_range, view, files, backend)
    except TaskError as err:
        _fail(err)
    except OSError as err:
        _fail(f"cannot read {err.filename or 'a real file'}: {err.strerror or err}")
    if submission and failed:
        sys.exit(1)


# ---------------------------------------------------------------------------- sample


def _amplify(text: str) -> tuple[int, int, float]:
    """W,D,λ as given to --amplify: two positive integers and a number in [0, 1]."""
    parts = text.split(",")
    try:
        width, depth, lam = int(parts[0]), int(parts[1]), float(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        _fail(f"--amplify takes W,D,λ (beam width, beam depth, mixing weight), e.g. 4,2,0.5; got {text!r}")
    if width < 1 or depth < 1 or not 0 <= lam <= 1:
        _fail(f"--amplify W,D,λ needs W >= 1, D >= 1 and 0 <= λ <= 1; got {text!r}")
    return width, depth, lam


@main.command()
@click.argument("model")
@click.option("--amplify", "amplify", required=True, metavar="W,D,λ",
              help="Sample from p_λ = (1-λ)p + λq, q from a beam search of width W and depth D "
                   "(λ = 0: plain sampling from p).")
@click.option("--task", "task_name", default="rhymes", show_default=True, help="The task whose test prompts are decoded.")
@click.option("--n", default=10, show_default=True, type=click.IntRange(min=1), help="Test prompts to decode.")
@click.option("--seed", default=0, show_default=True, help="Sampling seed.")
@click.option("--temperature", default=1.0, show_default=True, type=float, help="Sampling temperature on p_λ.")
@click.option("--greedy", is_flag=True, help="Take the argmax of p_λ instead of sampling.")
@submissions_option
@path_option("--references", REFERENCES_HELP)
def sample(model: str, amplify: str, task_name: str, n: int, seed: int, temperature: float, greedy: bool,
           submissions: Path, references: Path | None) -> None:
    """Decode a task's test prompts with MODEL (a submission's name or folder, or a model
    folder) from the amplified distribution, and show whether each passes the verifier."""
    width, depth, lam = _amplify(amplify)
    if not temperature > 0:
        _fail(f"--temperature must be positive, got {temperature}")
    from benchmark.evaluate import rate_of
    from benchmark.safety import SubmissionError

    _get_task_or_exit(task_name)
    try:
        from benchmark.decoding import Decoding

        decoding = Decoding(width, depth, lam, greedy, temperature, seed)
        ws = pipeline.workspace("full", submissions, references)
        folder, rows = pipeline.sample(model, task_name, ws.submission_dirs, decoding, n)
    except (SubmissionError, ValueError, OSError) as err:
        _fail(err)
    how = "greedy on" if greedy else f"sampled (seed {seed}, temperature {temperature:g}) from"
    console.print(f"[bold]{escape(task_name)}[/bold] with {escape(str(folder))}: {how} p_λ, "
                  f"W={width}, D={depth}, λ={lam:g}")
    table = Table(show_lines=False)
    for column in ("#", "group", "prompt", "completion", "passes"):
        table.add_column(column, overflow="fold")
    for i, row in enumerate(rows):
        table.add_row(str(i), escape(row.group), escape(row.prompt[-60:]), escape(row.completion),
                      "[green]yes[/green]" if row.passed else "[red]no[/red]")
    console.print(table)
    rate = rate_of(sum(r.passed for r in rows), len(rows))
    console.print(f"{rate['k']}/{rate['n']} pass: {rate['value']:.3f} [{rate['lo']:.3f}, {rate['hi']:.3f}] (Wilson 95%)")


# ---------------------------------------------------------------------------- leaderboard


@contextmanager
def _workspace_checked() -> Iterator[None]:
    """Turn the report's refusal to mix workspaces into one error line (exit 2)."""
    from benchmark.report import WorkspaceMismatch

    try:
        yield
    except WorkspaceMismatch as err:
        _fail(err)


@main.command()
@profile_options("The quick run's leaderboard (runs/quick/)")
@path_option("--out", OUT_HELP)
@path_option("--results", RESULTS_HELP)
@submissions_option
@path_option("--references", REFERENCES_HELP)
def leaderboard(profile: str, out: Path | None, results: Path | None, submissions: Path,
                references: Path | None) -> None:
    """Write leaderboard.md (and its plots) from the stored result files only."""
    ws = pipeline.workspace(profile, submissions, references, results, out)
    with _workspace_checked():
        rows = pipeline.leaderboard(ws)
    console.print(f"wrote {ws.leaderboard} ({rows} rows)")


# ---------------------------------------------------------------------------- run


def run_options(command):
    """The options `experiment` and `run` share."""
    for option in reversed([
        profile_options("One seed, small data, few steps: a smoke run (minutes), kept apart in runs/quick/"),
        click.option("--task", "task_names", multiple=True, help="Tasks (default: all)."),
        submissions_option,
        path_option("--references", REFERENCES_HELP),
        path_option("--results", RESULTS_HELP),
        path_option("--out", OUT_HELP),
        workers_option,
        backend_option,
    ]):
        command = option(command)
    return command


def _run(profile: str, task_names, submissions: Path, references, results, out, workers: int,
         backend, only_references: bool) -> None:
    ws = pipeline.workspace(profile, submissions, references, results, out)
    names = _tasks(task_names)
    with _workspace_checked(), _progress() as view:
        summary = pipeline.run(names, ws, workers, only_references, view, backend)
    console.print(f"wrote {ws.leaderboard} ({summary.rows} rows)")
    console.print(f"done in {summary.seconds:.0f}s")


@main.command()
@run_options
def experiment(profile: str, task_names, submissions: Path, references, results, out, workers: int,
               backend) -> None:
    """The headline experiment alone: train every reference variant and seed, evaluate
    them (and the random-init control), write the leaderboard. Resumable."""
    _run(profile, task_names, submissions, references, results, out, workers, backend, only_references=True)


@main.command()
@run_options
def run(profile: str, task_names, submissions: Path, references, results, out, workers: int, backend) -> None:
    """Everything on embedded defaults: train the baselines (every variant and seed of the
    profile), evaluate every submission, write the leaderboard. Resumable."""
    _run(profile, task_names, submissions, references, results, out, workers, backend, only_references=False)


# ---------------------------------------------------------------------------- validate


@main.command()
@click.option("--quick", is_flag=True, help="One planner seed and one calibration seed per setting (minutes).")
@click.option("--break", "breaks", multiple=True, type=click.Choice(BREAKS),
              help="Break a check on purpose (to see validate fail): train the calibration's myopic "
                   "models with ordinary gradients, or feed the planner probes other examples' states.")
@click.option("--submissions", type=click.Path(path_type=Path), default=pipeline.SUBMISSIONS, help=SUBMISSIONS_HELP)
@workers_option
def validate(quick: bool, breaks: tuple[str, ...], submissions: Path, workers: int) -> None:
    """Check the instrument against known answers: a planner reference that must show its
    plan (decoded and causally used), the random-init model and a control position that
    must show none, a myopic/vanilla calibration pair, null probes and a planted gain.
    Prints expected against measured; exits 1 when any known answer is missed."""
    ws = pipeline.workspace("quick" if quick else "full", submissions)
    with _progress() as view:
        stage = view.progress.add_task("validate", total=None)
        record = pipeline.validate(ws, workers, quick, breaks, view,
                                   lambda text: view.progress.update(stage, description=f"validate: {escape(text)}"))
        view.progress.update(stage, description="validate: done", total=1, completed=1)
    table = Table("", "group", "known answer", "expected", "measured")
    for c in record.checks:
        verdict = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "finding"}[c.passed]
        table.add_row(verdict, c.group, escape(c.name),
                      escape(c.expected), escape(c.measured))
    console.print(table)
    console.print(f"wrote {pipeline.validation_path(ws)} ({record.seconds:.0f}s)")
    console.print(f"validate: {record.held} of {record.known} known answers hold", soft_wrap=True)
    if record.held < record.known:
        sys.exit(1)


if __name__ == "__main__":
    main()
