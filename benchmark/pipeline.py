"""The run, start to end: train the reference baselines, evaluate submissions, write the
leaderboard. `benchmark.cli` parses options and draws progress; everything it runs is here.

The pipeline prints nothing. It reports what happens as events (`TrainEvent`,
`EvalEvent`) to a callback, so a command line, a notebook or a test can follow a run.

Where a run keeps its files is a `Workspace`: a full run writes its references beside the
submissions (submissions/), its results to results/ and its leaderboard to leaderboard.md;
a smoke run (``quick``) keeps all three apart in runs/quick/, so it never overwrites the
models or numbers of a full run.

Slow imports (torch, transformers, datasets) happen inside the functions that need them,
so importing this module costs nothing.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence, Union

from benchmark.parallel import LOCAL, Backend
from benchmark.variants import VARIANTS
from tasks.base import Task

SUBMISSIONS = Path("submissions")
RESULTS = Path("results")
LEADERBOARD = Path("leaderboard.md")
RUNS = Path("runs")  # the workspaces of the profiles other than "full": runs/<profile>/
VALIDATE = RUNS / "validate"  # validate's own known-answer models
PROFILE_NAMES = ("quick", "full", "long")  # what each trains: `benchmark.baselines.PROFILES`


@dataclass(frozen=True)
class Workspace:
    """The folders and files of one run, and its profile ("quick", "full" or "long")."""

    submissions: Path  # submitted models, one folder each
    references: Path  # where the reference baselines are written (may be `submissions`)
    results: Path  # one result file per (submission, task) cell
    leaderboard: Path  # the leaderboard file (its plots go beside it)
    profile: str = "full"  # the size of data and models

    @property
    def quick(self) -> bool:
        """A smoke run."""
        return self.profile == "quick"

    @property
    def submission_dirs(self) -> list[Path]:
        """The folders searched for submissions: the submissions and the references."""
        if self.references == self.submissions:
            return [self.submissions]
        return [self.submissions, self.references]


def workspace(profile: str = "full", submissions: Path = SUBMISSIONS, references: Path | None = None,
              results: Path | None = None, leaderboard: Path | None = None) -> Workspace:
    """The workspace of a profile: the full run's is the project's own submissions/,
    results/ and leaderboard.md; every other profile is kept apart in runs/<profile>/. A
    folder or file given here overrides it."""
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r} (one of {', '.join(PROFILE_NAMES)})")
    if profile == "full":
        return Workspace(submissions, references or submissions, results or RESULTS, leaderboard or LEADERBOARD)
    home = RUNS / profile
    return Workspace(submissions, references or home / "references", results or home / "results",
                     leaderboard or home / "leaderboard.md", profile)


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True)
class TrainEvent:
    """A reference model's progress. ``kind``: "cached" (already trained with this config),
    "training", "step" (with step, steps and loss) or "done"."""

    kind: str
    model: str  # "<reference>/<task>", e.g. "ref-myopic-s0/rhymes"
    step: int = 0
    steps: int = 0
    loss: float = 0.0


@dataclass(frozen=True)
class EvalEvent:
    """An evaluation's progress. ``kind``: "begin" (``cells``: how many in all), then per
    cell "start", "stage" (``detail``: what it is doing), "done" (``detail``: its time),
    "cached" or "error" (``detail``: the reason, one line)."""

    kind: str
    submission: str = ""
    task: str = ""  # "*": every task of a submission that could not be read
    detail: str = ""
    cells: int = 1  # "begin": cells in all; otherwise the cells this event finishes


Event = Union[TrainEvent, EvalEvent]
EventFn = Callable[[Event], None]


def _ignore(event: Event) -> None:
    pass


# ---------------------------------------------------------------------------- helpers


def task_list(selected: Sequence[str] = ()) -> list[str]:
    """The selected task names, or every registered task; raises ValueError on unknown ones."""
    from tasks import task_names

    names = list(selected) or task_names()
    unknown = [n for n in names if n not in task_names()]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; known: {task_names()}")
    return names


def reference_tasks(names: Sequence[str]) -> list[str]:
    """The tasks among ``names`` that reference models train on (their word-level faces;
    a natural face is for pretrained submissions only)."""
    from tasks import get_task

    return [n for n in names if get_task(n).face == "word"]


def quiet_libraries(transformers: bool = True) -> None:
    """Silence the progress bars and chatter of datasets (and transformers): a front end
    draws its own. Runs in every worker process too."""
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore", category=UserWarning)
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    if transformers:
        import transformers as hf

        hf.utils.logging.disable_progress_bar()
        hf.utils.logging.set_verbosity_error()


def pregenerate(task_names: Iterable[str], make: Callable[[Task], object]) -> None:
    """Call ``make(task)`` once for each slow task (``Task.disk_cached``), here, before the
    worker processes start: its data is then generated and cached once, and the workers
    only read the cache (chess would otherwise run in every worker at the same time).
    Fast tasks are left to each worker: data generated here would be thrown away."""
    from tasks import get_task

    for task in map(get_task, dict.fromkeys(task_names)):
        if task.disk_cached:
            make(task)


def submission_folders(names: Sequence[str], dirs: Sequence[Path]) -> list[Path]:
    """The folders of the named submissions (a folder, or a name under one of ``dirs``),
    or every submission in ``dirs`` when none is named. A name found nowhere is kept (as
    if under the first folder), so that it gets its one-line error like any bad submission."""
    from benchmark.submissions import find_submissions

    if not names:
        return [folder for d in dirs for folder in find_submissions(d)]

    def locate(name: str) -> Path:
        if (Path(name) / "submission.toml").exists():
            return Path(name)
        found = [d / name for d in dirs if (d / name / "submission.toml").exists()]
        return found[0] if found else Path(dirs[0]) / name

    return [locate(name) for name in names]


# ---------------------------------------------------------------------------- the steps


def train(task_names: Sequence[str], ws: Workspace, workers: int, variants: Sequence[str] | None = None,
          seeds: Sequence[int] | None = None, on_event: EventFn = _ignore, standin: bool = False,
          backend: Backend = LOCAL) -> list[str]:
    """Train every (variant, seed, task) reference model not yet trained with this profile's
    config, on up to ``workers`` processes (or ``backend``'s Ray tasks), and write the
    random-init control; with ``standin``, also build the pretrained stand-in's submission
    (`standin_job`) when a task it is scored on is among ``task_names``. Returns the names of
    the reference submissions (the random-init control last). ``variants``: all of
    `VARIANTS` by default."""
    quiet_libraries()
    from benchmark import standin as stand_in
    from benchmark.baselines import PROFILES, monitor_config, plan_training, train_job, write_random_init
    from benchmark.monitor import dev_examples
    from benchmark.parallel import run_jobs
    from benchmark.train import DATA_SEED

    names = tuple(reference_tasks(task_names))
    plan = plan_training(ws.profile, names, ws.references, tuple(variants or VARIANTS),
                         tuple(seeds) if seeds is not None else None)
    jobs = list(plan.jobs)
    if standin and set(task_names) & set(stand_in.TASKS):
        job = standin_job(ws)
        if job["cached"]:
            stand_in.write_toml(job["out"])  # the faces it is scored on may have changed
            plan.cached.append(job["label"])
        else:
            jobs.insert(0, job)  # the longest job: first, so no worker idles at the end
    for label in plan.cached:
        on_event(TrainEvent("cached", label))
    size = PROFILES[ws.profile]["train"].size

    def make(task: Task) -> None:  # the training data, and the dev data the monitor reads
        task.generate("train", task.sizes[size][0], DATA_SEED)
        dev_examples(task, monitor_config(ws.profile, task.name), size)

    pregenerate([t for job in plan.jobs for t in job["cfg"].tasks], make)
    # train_job emits ("training", label), ("step", label, step, steps, loss), ("done", label).
    run_jobs(train_job, jobs, workers, lambda message: on_event(TrainEvent(*message)),
             init=quiet_libraries, backend=backend)
    return plan.names + [write_random_init(ws.profile, names, ws.references)]


def standin_job(ws: Workspace, out: Path | None = None) -> dict:
    """The `benchmark.baselines.train_job` input that builds the pretrained stand-in's
    submission (`benchmark.standin`) into ``out`` (default: ``<references>/standin-gpt2-bpe``),
    with the quick recipe in a quick workspace; ``cached`` when built with it already."""
    from benchmark import standin as stand_in

    cfg = stand_in.QUICK if ws.quick else stand_in.FULL
    folder = Path(out) if out is not None else ws.references / stand_in.NAME
    cached = stand_in.built_with(folder / "model") == cfg.to_dict()
    return {"label": stand_in.NAME, "standin": cfg, "out": folder, "cached": cached}


def build_standin(ws: Workspace, out: Path | None = None, on_event: EventFn = _ignore) -> Path:
    """`mesabench standin build`: the stand-in's submission folder, built here (one torch
    thread) unless it is built with this recipe already. Returns the folder."""
    quiet_libraries()
    from benchmark.baselines import train_job
    from benchmark.parallel import run_jobs

    from benchmark.standin import write_toml

    job = standin_job(ws, out)
    if job["cached"]:
        write_toml(job["out"])
        on_event(TrainEvent("cached", job["label"]))
    else:
        run_jobs(train_job, [job], 1, lambda message: on_event(TrainEvent(*message)))
    return job["out"]


def evaluate(names: Sequence[str], task_names: Sequence[str], ws: Workspace, workers: int,
             force: bool = False, shard: tuple[int, int] = (0, 1), on_event: EventFn = _ignore,
             real_files: Sequence[tuple[str, Path]] = (), backend: Backend = LOCAL) -> list[str]:
    """Evaluate the named submissions (every one in the workspace when none is named) on
    the tasks, one worker job per submission (on ``backend``); ``shard`` (I, N) keeps every N-th submission
    from the I-th; ``real_files`` (task, file) are scored as those tasks' "real" split.
    Finished cells are cached. Returns the names of the submissions that had an error cell.
    Raises OSError or `tasks.base.TaskError` when a real file cannot be used."""
    quiet_libraries()
    from benchmark.evaluate import EvalConfig, eval_splits
    from benchmark.parallel import run_jobs
    from benchmark.runner import evaluate_job

    tasks = list(task_names)
    folders = submission_folders(names, ws.submission_dirs)[shard[0]::shard[1]]
    files = tuple((task, str(path), hashlib.sha256(Path(path).read_bytes()).hexdigest()) for task, path in real_files)
    cfg = EvalConfig(size=ws.profile, real_files=files)
    for task, path, _ in files:
        cfg.task(task)  # a task that reads no files, or a broken file, fails here, before any work
    on_event(EvalEvent("begin", cells=len(folders) * len(tasks)))
    pregenerate(tasks, lambda task: eval_splits(task, cfg))

    def forward(message: tuple) -> None:  # the runner's (kind, submission, task, detail)
        kind, submission, task, detail = message
        on_event(EvalEvent(kind, submission, task, detail, len(tasks) if task == "*" else 1))

    jobs = [{"folder": f, "tasks": tasks, "cfg": cfg, "results": ws.results, "force": force} for f in folders]
    outcomes = run_jobs(evaluate_job, jobs, workers, forward, init=quiet_libraries, backend=backend)
    return list(dict.fromkeys(o.submission for cells in outcomes for o in cells if o.status == "error"))


def leaderboard(ws: Workspace) -> int:
    """Write the workspace's leaderboard from its result files only; returns its number of
    rows. Raises `benchmark.report.WorkspaceMismatch` rather than overwrite the leaderboard
    of another workspace, or write one from results of another profile."""
    from benchmark.report import write_leaderboard

    return write_leaderboard(ws.results, ws.leaderboard, ws.submission_dirs, profile=ws.profile)


@dataclass
class RunSummary:
    """What a whole run did."""

    references: list[str]  # the reference submissions trained (or found trained)
    failed: list[str]  # submissions with an error cell
    rows: int  # rows of the leaderboard
    seconds: float


def run(task_names: Sequence[str], ws: Workspace, workers: int, only_references: bool = False,
        on_event: EventFn = _ignore, backend: Backend = LOCAL) -> RunSummary:
    """Everything, resumable: train every reference of the profile, evaluate them (and every
    other submission unless ``only_references``), write the leaderboard; the jobs run on
    ``backend``."""
    start = time.time()
    # A full run also builds the pretrained stand-in, so the natural faces have a model.
    references = train(task_names, ws, workers, on_event=on_event, standin=not only_references,
                       backend=backend)
    chosen = [str(ws.references / name) for name in references] if only_references else []
    failed = evaluate(chosen, task_names, ws, workers, on_event=on_event, backend=backend)
    rows = leaderboard(ws)
    return RunSummary(references, failed, rows, time.time() - start)


PLANNER_TASK = "rhymes"  # the task whose unstunted reference is the known-answer planner


def validate(ws: Workspace, workers: int, quick: bool = False, breaks: Sequence[str] = (),
             on_event: EventFn = _ignore, progress: Callable[[str], None] = lambda s: None):
    """`mesabench validate`: the known-answer checks (`benchmark.validate`), written to
    ``<results>/validate.json`` (a `benchmark.schema.Validation`) and returned.

    The planner is the full profile's unstunted rhymes reference, whatever ``quick`` says (a
    smoke-run model does not learn the rule): seeds 0-2, or seed 0 with ``quick``; it and
    the random-init model are trained and evaluated here when the workspace lacks them, by
    the same code as a run, so a full run's references and cells are reused as they are.
    ``quick`` also shortens the calibration (one seed per setting)."""
    import datetime as dt
    import json

    from benchmark import validate as checks
    from benchmark.baselines import train_job
    from benchmark.evaluate import EvalConfig
    from benchmark.parallel import run_jobs
    from benchmark.results import cell_path, git_hash, load_cell, write_atomic
    from benchmark.schema import Validation, ValidationCheck
    from benchmark.variants import RANDOM_INIT, reference_name
    from tasks import get_task

    start = time.time()
    seeds = (0,) if quick else (0, 1, 2)
    full = ws if ws.profile == "full" else workspace("full", ws.submissions)

    def planner() -> list:
        progress("planner: train and evaluate the unstunted rhymes reference (cached when present)")
        names = train([PLANNER_TASK], full, workers, variants=["unstunted"], seeds=seeds, on_event=on_event)
        evaluate([str(full.references / n) for n in names], [PLANNER_TASK], full, workers, on_event=on_event)
        cells = {s: load_cell(cell_path(full.results, reference_name("unstunted", s), PLANNER_TASK)) for s in seeds}
        null = load_cell(cell_path(full.results, RANDOM_INIT, PLANNER_TASK))
        ok = {s: c for s, c in cells.items() if c is not None and c.ok}
        found = checks.planner_checks(ok, null if null is not None and null.ok else None)
        found += [checks.Check("planner", f"seed {s}: evaluated", "an ok cell", "missing or error", False)
                  for s in seeds if s not in ok]
        progress("probes: the planner's states, labels shuffled")
        model_dir = full.references / reference_name("unstunted", 0) / f"model-{PLANNER_TASK}"
        found += checks.probe_control_checks(model_dir, get_task(PLANNER_TASK), EvalConfig(), frozenset(breaks))
        return found

    def bottleneck() -> list:
        progress("bottleneck planner: train (cached when present) and patch its decision state")
        jobs = bottleneck_jobs(seeds)
        run_jobs(train_job, [j for j in jobs if not j["cached"]], workers,
                 lambda message: on_event(TrainEvent(*message)), init=quiet_libraries)
        task, cfg, found = get_task(PLANNER_TASK), EvalConfig(), []
        for job in jobs:
            progress(f"bottleneck planner: seed {job['cfg'].seed}, causal checks")
            found += checks.bottleneck_checks(job["cfg"].seed, *checks.measure_bottleneck(job["out"], task, cfg))
        return found

    found = checks.run_checks(quick, frozenset(breaks), progress, planner, bottleneck)
    record = Validation(profile=ws.profile, date=dt.date.today().isoformat(), seconds=round(time.time() - start, 1),
                        checks=[ValidationCheck(c.group, c.name, c.expected, c.measured, c.passed) for c in found],
                        breaks=sorted(breaks), git=git_hash())
    write_atomic(validation_path(ws), json.dumps(record.to_dict(), indent=1, sort_keys=True))
    return record


def bottleneck_jobs(seeds: Sequence[int]) -> list[dict]:
    """`benchmark.baselines.train_job` inputs of validate's bottleneck planners, one per
    seed, in runs/validate/ (``cached`` when trained with this config already): the full
    profile's unstunted rhymes reference, `validate.BOTTLENECK_STEPS` steps, bottlenecked
    at the line break."""
    from dataclasses import replace

    from benchmark import validate as checks
    from benchmark.baselines import reference_config, trained_with
    from benchmark.bottleneck import CONFIG_KEY
    from benchmark.train import build_vocabulary
    from benchmark.models import word_tokenizer, encode_examples
    from tasks import get_task

    task = get_task(PLANNER_TASK)
    example = task.generate("test", 1, 0)[0]
    tokenizer = word_tokenizer(build_vocabulary((PLANNER_TASK,)))
    position = encode_examples(tokenizer, [example], add_eos=False)[0]["decisions"][0]  # "/": the same token in every couplet
    jobs = []
    for seed in seeds:
        cfg = replace(reference_config("full", PLANNER_TASK, "unstunted", seed), steps=checks.BOTTLENECK_STEPS)
        out = VALIDATE / f"bottleneck-s{seed}" / f"model-{PLANNER_TASK}"
        cached = trained_with(out) == cfg.to_dict() and _config_value(out, CONFIG_KEY) == position
        jobs.append({"label": f"bottleneck-s{seed}/{PLANNER_TASK}", "cfg": cfg, "out": out,
                     "bottleneck_at": position, "cached": cached})
    return jobs


def _config_value(model_dir: Path, key: str):
    import json

    try:
        return json.loads((model_dir / "config.json").read_text()).get(key)
    except (OSError, ValueError):
        return None


def validation_path(ws: Workspace) -> Path:
    """Where `validate` stores its checks: beside the result cells (the leaderboard reads it)."""
    from benchmark.report import VALIDATION_FILE

    return ws.results / VALIDATION_FILE


# ---------------------------------------------------------------------------- sample


@dataclass(frozen=True)
class Sampled:
    """One prompt decoded by `sample`: what the model wrote and whether the verifier passes it."""

    prompt: str
    completion: str
    passed: bool
    group: str


def model_folder(spec: str, task: str, dirs: Sequence[Path]) -> Path:
    """The model folder that answers ``task`` for ``spec``: a model folder itself (with a
    config.json), a submission folder, or a submission's name under ``dirs``. Raises
    `benchmark.safety.SubmissionError` (one line) when there is none."""
    from benchmark.safety import SubmissionError
    from benchmark.submissions import read_submission

    path = Path(spec)
    if (path / "config.json").is_file():
        return path
    folder = submission_folders([spec], dirs)[0]
    if not (folder / "submission.toml").is_file():
        raise SubmissionError(f"no model folder or submission {spec!r} (looked in {', '.join(map(str, dirs))})")
    submission = read_submission(folder)
    if submission.tasks is not None and task not in submission.tasks:  # None: every task
        raise SubmissionError(f"submission {submission.name} has no model for task {task} "
                              f"(its tasks: {', '.join(submission.tasks)})")
    return submission.model_for(task)


def sample(spec: str, task_name: str, dirs: Sequence[Path], decoding, n: int) -> tuple[Path, list[Sampled]]:
    """`mesabench sample`: decode the first ``n`` prompts of ``task_name``'s test split (the
    full profile's, data seed 0, as the evaluation scores them) with the model of ``spec``
    under ``decoding`` (`benchmark.decoding.Decoding`), each judged by the task's verifier.
    Raises SubmissionError for a model that cannot be used, KeyError for an unknown task."""
    quiet_libraries()
    from benchmark import decoding as decoders
    from benchmark.evaluate import check_model_sanity
    from benchmark.models import load_model
    from benchmark.safety import SubmissionError
    from tasks import get_task

    task = get_task(task_name)
    folder = model_folder(spec, task.name, dirs)
    loaded = load_model(folder)
    if loaded.masked:
        raise SubmissionError(f"{folder}: amplified and sampled decoding are not defined for masked models "
                              "(they write by mask filling)")
    examples = list(task.generate("test", task.sizes["full"][1], 0))[:n]
    check_model_sanity(loaded, examples)
    completions = task.play(examples, decoders.solver(loaded, task.max_words, decoding))
    return folder, [Sampled(ex["prompt"], c, bool(task.check(ex, c)), task.group(ex))
                    for ex, c in zip(examples, completions)]
