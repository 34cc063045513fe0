"""The evaluation runner: every (submission, task) cell, cached, contained, resumable.

Each cell is independent: its result file is written atomically when it finishes, and a
finished cell whose key (model hash, task version, config hash) is unchanged is skipped.
So a run killed at any moment resumes where it stopped, and a changed model is never
served old results. A failing submission gets an error cell and the others still run.
Cells are `benchmark.schema.Cell` records: the runner never spells a key of the file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from benchmark.errors import error_line, one_line
from benchmark.monitor import monitor_log
from benchmark.results import (cell_key, cell_path, check_finite, git_hash, is_fresh, library_versions,
                               load_cell, model_hash, train_log, write_cell)
from benchmark.safety import SubmissionError
from benchmark.schema import (ERROR, OK, Cell, Data, Key, Metrics, Reference, Run, SchemaError, Seeds,
                              TrainingMonitor)
from benchmark.submissions import Submission, read_submission

# on_event(kind, submission, task, detail): kinds are "start", "stage", "done", "cached", "error".
EventFn = Callable[[str, str, str, str], None]


@dataclass
class CellOutcome:
    submission: str
    task: str
    status: str  # "ok", "cached" or "error"
    detail: str = ""


def _error_cell(sub_name: str, task: str, message: str, key: Key | None, cfg,
                reference: Reference | None = None) -> Cell:
    # The config says which profile (full or quick) the failed run belonged to, and the
    # reference record which baseline failed: the leaderboard puts the row where it belongs.
    return Cell(submission=sub_name, task=task, status=ERROR, error=message, key=key,
                config=cfg.to_dict(), reference=reference, run=Run(date=dt.date.today().isoformat()))


def _error_cells(name: str, task_names: list[str], message: str, cfg, results_dir: Path,
                 on_event: EventFn) -> list[CellOutcome]:
    """The same error for every task of a submission that cannot be evaluated at all."""
    message = one_line(message)
    for task in task_names:
        write_cell(cell_path(results_dir, name, task), _error_cell(name, task, message, None, cfg))
    on_event("error", name, "*", message)
    return [CellOutcome(name, t, "error", message) for t in task_names]


def _ok_cell(sub: Submission, reference: Reference | None, task, key: Key, cfg, result: dict,
             seconds: float, monitor: TrainingMonitor | None = None) -> Cell:
    """The finished cell; `evaluate_cell`'s plain dicts are checked against the schema here.
    ``monitor``: the model's training monitor, carried so the report needs no model folder;
    for the same reason a reference's record gains its model's training diagnostics
    (train_log.json's summary figures)."""
    if reference is not None:
        reference = dataclasses.replace(reference, training=_training_diagnostics(sub.model_for(task.name)))
    return Cell(
        submission=sub.name, task=task.name, task_version=task.version, status=OK, key=key,
        config=cfg.to_dict(),
        seeds=Seeds(data=cfg.seed, bootstrap=cfg.seed, probe=cfg.seed, random_init=cfg.seed),
        reference=reference, description=sub.description, authors=list(sub.authors),
        data=Data.from_dict(result["data"], "data"),
        metrics=Metrics.from_dict(result["metrics"], "metrics"),
        versions=library_versions(), git=git_hash(),
        run=Run(date=dt.date.today().isoformat(), timings=result["timings"], seconds=round(seconds, 1)),
        monitor=monitor,
    )


def _training_monitor(model_path: Path) -> TrainingMonitor | None:
    """The model folder's monitor log as a record, without the seconds it took (they differ
    between two identical runs); a log that does not fit fails the cell."""
    log = monitor_log(model_path)
    if log is None:
        return None
    timeless = {k: v for k, v in log.items() if k != "seconds"}
    timeless["points"] = [{k: v for k, v in p.items() if k != "seconds"} for p in log.get("points", [])]
    return TrainingMonitor.from_dict(timeless, "train_log.json monitor")


def _refresh_monitor(path: Path, monitor: TrainingMonitor | None) -> None:
    """Give a cached cell its model's current monitor log. train_log.json is not part of the
    model's hash, so a model retrained to the same weights (training is deterministic) keeps
    its cell; its new log is copied in, not recomputed."""
    cell = load_cell(path)
    if cell is not None and cell.monitor != monitor:
        write_cell(path, dataclasses.replace(cell, monitor=monitor))


def _training_diagnostics(model_dir: Path) -> dict[str, float] | None:
    """The summary figures of a model folder's train_log.json; None when it records none."""
    from benchmark.train import training_summary

    return training_summary(train_log(model_dir) or {}) or None


def safe_name(folder: Path) -> str:
    """A results-folder name for a submission whose own name could not be read.

    The folder's name may be anything (``..``, ``<b>``): keep only characters that are
    safe in a path and in the leaderboard, so an error cell never lands outside results/.
    """
    # abspath folds "x/.." into a real folder name without following symlinks.
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(os.path.abspath(folder)).name).lstrip(".")
    return name[:64] or "unnamed"


def _remove_leftovers(folder: Path) -> None:
    """Delete temporary files a killed run left in a submission's results folder.

    `results.write_atomic` writes ``.<file>.<random>.tmp`` and renames; a run killed in
    between leaves the temporary file, which nothing reads. One run per results folder
    is assumed (shards split submissions, so they never share a folder).
    """
    for tmp in Path(folder).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def evaluate_folder(folder: Path, task_names: list[str], cfg, results_dir: Path,
                    force: bool = False, on_event: EventFn = lambda *a: None) -> list[CellOutcome]:
    """Evaluate one submission folder on the given tasks; never raises for a bad submission."""
    try:
        sub = read_submission(folder)
    except SubmissionError as err:
        return _error_cells(safe_name(folder), task_names, str(err), cfg, results_dir, on_event)
    return evaluate_submission(sub, task_names, cfg, results_dir, force, on_event)


def evaluate_job(job: dict, emit: Callable[[tuple], None]) -> list[CellOutcome]:
    """`evaluate_folder` as a `benchmark.parallel` job: events go to ``emit`` as tuples."""
    return evaluate_folder(job["folder"], job["tasks"], job["cfg"], job["results"], job["force"],
                           lambda *event: emit(event))


def evaluate_submission(sub: Submission, task_names: list[str], cfg, results_dir: Path,
                        force: bool = False, on_event: EventFn = lambda *a: None) -> list[CellOutcome]:
    """Evaluate a validated submission; each task's cell is cached, errors are contained."""
    from tasks.base import TaskError

    wanted = [t for t in task_names if sub.tasks is None or t in sub.tasks]
    outcomes: list[CellOutcome] = []
    _remove_leftovers(Path(results_dir) / sub.name)
    try:
        reference = None if sub.reference is None else Reference.from_dict(sub.reference, "[reference]")
    except SchemaError as err:
        return _error_cells(sub.name, wanted, f"submission.toml: {err}", cfg, results_dir, on_event)
    digests: dict[Path, str] = {}  # model folder -> hash, checked once per folder
    loaded, loaded_path = None, None
    for task_name in wanted:
        path = cell_path(results_dir, sub.name, task_name)

        def failed(message: str) -> None:
            write_cell(path, _error_cell(sub.name, task_name, message, None, cfg, reference))
            on_event("error", sub.name, task_name, message)
            outcomes.append(CellOutcome(sub.name, task_name, "error", message))

        try:
            task = cfg.task(task_name)
        except (TaskError, OSError) as err:  # a broken real file: this cell fails, in one line
            failed(one_line(err))
            continue
        model_path = sub.model_for(task_name)
        try:
            from benchmark.safety import check_model_folder

            if model_path not in digests:
                check_model_folder(model_path)
                digests[model_path] = model_hash(model_path)
        except (SubmissionError, OSError) as err:
            failed(one_line(err if isinstance(err, SubmissionError) else f"cannot read the model folder: {err}"))
            continue
        key = cell_key(digests[model_path], task.version, cfg.to_dict())
        if not force and is_fresh(path, key):
            try:
                _refresh_monitor(path, _training_monitor(model_path))
            except SchemaError as err:
                failed(f"train_log.json: {one_line(err)}")
                continue
            on_event("cached", sub.name, task_name, "")
            outcomes.append(CellOutcome(sub.name, task_name, "cached"))
            continue
        on_event("start", sub.name, task_name, "")
        start = time.time()
        try:
            if loaded_path != model_path:
                from benchmark.models import load_model

                on_event("stage", sub.name, task_name, "loading model")
                loaded, loaded_path = load_model(model_path), model_path
            result = _run_cell(loaded, task, cfg, lambda s: on_event("stage", sub.name, task_name, s))
            # A metric that does not fit the schema fails this cell, in one line, not the run.
            cell = _ok_cell(sub, reference, task, key, cfg, result, time.time() - start,
                            _training_monitor(model_path))
            check_finite(cell)
        except SubmissionError as err:
            message = str(err)
        except MemoryError:
            message = "out of memory"
        except Exception as err:  # noqa: BLE001 - a submission must never stop the others
            import torch

            if isinstance(err, torch.OutOfMemoryError):
                message = "out of memory"
            else:
                message = error_line(err)
        else:
            write_cell(path, cell, result["examples"])
            on_event("done", sub.name, task_name, f"{time.time() - start:.0f}s")
            outcomes.append(CellOutcome(sub.name, task_name, "ok"))
            continue
        message = one_line(message)
        # The error cell keeps the key for the record, but `is_fresh` only accepts "ok"
        # cells, so the next run retries it.
        write_cell(path, _error_cell(sub.name, task_name, message, key, cfg, reference))
        on_event("error", sub.name, task_name, message)
        outcomes.append(CellOutcome(sub.name, task_name, "error", message))
    return outcomes


def _run_cell(loaded, task, cfg, progress) -> dict:
    from benchmark.evaluate import evaluate_cell

    return evaluate_cell(loaded, task, cfg, progress)
