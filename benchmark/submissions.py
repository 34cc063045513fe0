"""Submissions: ``submissions/<name>/submission.toml``, read and validated.

A submission names a model folder (any Hugging Face causal LM saved with safetensors)
and, optionally, the tasks to run::

    name = "my-model"              # letters, digits, '-', '_', '.'; at most 64
    description = "GPT-2 small fine-tuned on couplets"
    authors = ["Ada Lovelace"]
    model = "model"                # folder, relative to this file's folder, or absolute
    tasks = ["rhymes"]             # optional; default: every task

or, with one model per task (the tasks default to the table's keys)::

    [model]
    rhymes = "model-rhymes"
    chess-mate = "model-chess-mate"

The reference baselines use the same format (with a ``[reference]`` table naming their
training variant and seed).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.safety import SubmissionError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KNOWN_KEYS = {"name", "description", "authors", "model", "tasks", "reference"}


@dataclass
class Submission:
    """A validated submission."""

    name: str
    folder: Path  # the submission's own folder (where submission.toml lives)
    models: dict[str, Path]  # task -> model folder; key "*" is the model for every task
    description: str = ""
    authors: list[str] = field(default_factory=list)
    tasks: list[str] | None = None
    reference: dict | None = None  # {"variant": ..., "seed": ...} for reference baselines

    @property
    def is_reference(self) -> bool:
        return self.reference is not None

    def model_for(self, task: str) -> Path:
        """The model folder that answers ``task``."""
        return self.models.get(task) or self.models["*"]


def read_submission(folder: Path) -> Submission:
    """Read and validate ``folder/submission.toml``; raise SubmissionError with one line."""
    from tasks import task_names

    path = Path(folder) / "submission.toml"
    if not path.is_file():
        raise SubmissionError(f"no submission.toml in {folder}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise SubmissionError(f"{path}: malformed TOML: {err}") from None
    except OSError as err:
        raise SubmissionError(f"{path}: cannot read: {err.strerror or err}") from None
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise SubmissionError(f"{path}: unknown keys {unknown}; allowed: {sorted(KNOWN_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SubmissionError(f"{path}: name must be 1-64 letters, digits, '.', '_' or '-' "
                              f"(starting with a letter or digit), got {name!r}")
    model = data.get("model")
    if isinstance(model, str) and model.strip():
        model = {"*": model}
    elif not (isinstance(model, dict) and model
              and all(isinstance(v, str) and v.strip() for v in model.values())):
        raise SubmissionError(f"{path}: 'model' must name the model folder (or be a table "
                              "of task = folder)")
    bad = sorted(set(model) - set(task_names()) - {"*"})
    if bad:
        raise SubmissionError(f"{path}: the model table names unknown tasks {bad}; known: {task_names()}")
    description = data.get("description", "")
    authors = data.get("authors", [])
    if not isinstance(description, str):
        raise SubmissionError(f"{path}: 'description' must be a string")
    if not isinstance(authors, list) or not all(isinstance(a, str) for a in authors):
        raise SubmissionError(f"{path}: 'authors' must be a list of strings")
    tasks = data.get("tasks")
    if tasks is not None:
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise SubmissionError(f"{path}: 'tasks' must be a list of task names")
        bad = [t for t in tasks if t not in task_names()]
        if bad:
            raise SubmissionError(f"{path}: unknown tasks {bad}; known: {task_names()}")
    reference = data.get("reference")
    if reference is not None and not isinstance(reference, dict):
        raise SubmissionError(f"{path}: 'reference' must be a table")
    if tasks is None and "*" not in model:
        tasks = sorted(model)
    missing = [t for t in tasks or () if t not in model and "*" not in model]
    if missing:
        raise SubmissionError(f"{path}: no model for tasks {missing}")
    models = {task: Path(m) if Path(m).is_absolute() else Path(folder) / m for task, m in model.items()}
    return Submission(name=name, folder=Path(folder), models=models,
                      description=description, authors=authors, tasks=tasks, reference=reference)


def find_submissions(root: Path) -> list[Path]:
    """Every folder under ``root`` that holds a submission.toml, sorted by name."""
    return sorted(p.parent for p in Path(root).glob("*/submission.toml"))


def write_submission_toml(folder: Path, name: str, description: str,
                          models: dict[str, str] | None = None, reference: dict | None = None,
                          tasks: list[str] | None = None) -> None:
    """Write a submission.toml: one model folder ("model") for ``tasks`` (default: every
    task), or one per task (``models``)."""
    lines = [f'name = "{name}"', f'description = "{description}"', 'authors = ["mesabench"]']
    if models is None:
        lines.append('model = "model"')
        if tasks is not None:
            lines.append("tasks = [" + ", ".join(f'"{t}"' for t in tasks) + "]")
    else:
        lines += ["", "[model]"] + [f'{task} = "{folder_name}"' for task, folder_name in models.items()]
    if reference:
        lines.append("\n[reference]")
        lines += [f'{k} = {v!r}'.replace("'", '"') for k, v in reference.items()]
    (Path(folder) / "submission.toml").write_text("\n".join(lines) + "\n")
