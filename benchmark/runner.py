"""The evaluation runner: every (submission, task) cell, cached, contained, resumable.

Each cell is independent: its result file is written atomically when it finishes, and a
finished cell whose key (model hash, task version, config hash) is unchanged is skipped.
So a run killed at any moment resumes where it stopped, and a changed model is never
served old results. A failing submission gets an error cell and the others still run.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from benchmark.results import (cell_key, cell_path, git_hash, is_fresh, library_versions,
                               model_hash, write_cell)
from benchmark.safety import SubmissionError
from benchmark.submissions import Submission, read_submission

# on_event(kind, submission, task, detail): kinds are "start", "stage", "done", "cached", "error".
EventFn = Callable[[str, str, str, str], None]


@dataclass
class CellOutcome:
    submission: str
    task: str
    status: str  # "ok", "cached" or "error"
    detail: str = ""


def _error_cell(sub_name: str, task: str, message: str, key: dict | None) -> dict:
    return {"submission": sub_name, "task": task, "status": "error", "error": message,
            "key": key, "run": {"date": dt.date.today().isoformat()}}


def one_line(message: str, limit: int = 300) -> str:
    """An error message as one line of at most ``limit`` characters (no tracebacks)."""
    return " ".join(str(message).split())[:limit]


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
        name, message = safe_name(folder), one_line(err)
        for task in task_names:
            write_cell(cell_path(results_dir, name, task), _error_cell(name, task, message, None))
        on_event("error", name, "*", message)
        return [CellOutcome(name, t, "error", message) for t in task_names]
    return evaluate_submission(sub, task_names, cfg, results_dir, force, on_event)


def evaluate_job(job: dict, emit: Callable[[tuple], None]) -> list[CellOutcome]:
    """`evaluate_folder` as a `benchmark.parallel` job: events go to ``emit`` as tuples."""
    return evaluate_folder(job["folder"], job["tasks"], job["cfg"], job["results"], job["force"],
                           lambda *event: emit(event))


def evaluate_submission(sub: Submission, task_names: list[str], cfg, results_dir: Path,
                        force: bool = False, on_event: EventFn = lambda *a: None) -> list[CellOutcome]:
    """Evaluate a validated submission; each task's cell is cached, errors are contained."""
    from tasks import get_task

    wanted = [t for t in task_names if sub.tasks is None or t in sub.tasks]
    outcomes: list[CellOutcome] = []
    _remove_leftovers(Path(results_dir) / sub.name)
    digests: dict[Path, str] = {}  # model folder -> hash, checked once per folder
    loaded, loaded_path = None, None
    for task_name in wanted:
        task = get_task(task_name)
        path = cell_path(results_dir, sub.name, task_name)
        model_path = sub.model_for(task_name)
        try:
            from benchmark.safety import check_model_folder

            if model_path not in digests:
                check_model_folder(model_path)
                digests[model_path] = model_hash(model_path)
        except (SubmissionError, OSError) as err:
            message = one_line(err if isinstance(err, SubmissionError) else f"cannot read the model folder: {err}")
            write_cell(path, _error_cell(sub.name, task_name, message, None))
            on_event("error", sub.name, task_name, message)
            outcomes.append(CellOutcome(sub.name, task_name, "error", message))
            continue
        key = cell_key(digests[model_path], task.version, cfg.to_dict())
        if not force and is_fresh(path, key):
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
        except SubmissionError as err:
            message = str(err)
        except MemoryError:
            message = "out of memory"
        except Exception as err:  # noqa: BLE001 - a submission must never stop the others
            import torch

            if isinstance(err, torch.OutOfMemoryError):
                message = "out of memory"
            else:
                first = (str(err).strip().splitlines() or [""])[0]
                message = f"{type(err).__name__}: {first}"
        else:
            cell = {
                "submission": sub.name, "task": task_name, "task_version": task.version,
                "status": "ok", "key": key, "config": cfg.to_dict(),
                "seeds": {"data": cfg.seed, "bootstrap": cfg.seed, "probe": cfg.seed,
                          "random_init": cfg.seed},
                "reference": sub.reference, "description": sub.description,
                "authors": sub.authors, "data": result["data"], "metrics": result["metrics"],
                "versions": library_versions(), "git": git_hash(),
                # Everything that differs between two identical runs lives under "run".
                "run": {"date": dt.date.today().isoformat(), "timings": result["timings"],
                        "seconds": round(time.time() - start, 1)},
            }
            write_cell(path, cell, result["examples"])
            on_event("done", sub.name, task_name, f"{time.time() - start:.0f}s")
            outcomes.append(CellOutcome(sub.name, task_name, "ok"))
            continue
        message = one_line(message)
        # The error cell keeps the key for the record, but `is_fresh` only accepts "ok"
        # cells, so the next run retries it.
        write_cell(path, _error_cell(sub.name, task_name, message, key))
        on_event("error", sub.name, task_name, message)
        outcomes.append(CellOutcome(sub.name, task_name, "error", message))
    return outcomes


def _run_cell(loaded, task, cfg, progress) -> dict:
    from benchmark.evaluate import evaluate_cell

    return evaluate_cell(loaded, task, cfg, progress)
