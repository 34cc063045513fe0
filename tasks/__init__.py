"""The mesabench task suite: one module (chess: one package) per task family, and a
registry by name. Nothing here imports `benchmark`: a task is data and a verifier."""

from __future__ import annotations

from importlib import import_module

from tasks.base import Task

# name -> "module:Class". Imported lazily so that listing tasks stays instant and one
# broken task module never hides the others.
REGISTRY: dict[str, str] = {
    "rhymes": "tasks.rhymes:RhymesTask",
    "chess-mate": "tasks.chess:ChessMateTask",
    "constrained": "tasks.constrained:ConstrainedTask",
    "rhymes-natural": "tasks.rhymes_natural:NaturalRhymesTask",
    "constrained-natural": "tasks.constrained_natural:NaturalConstrainedTask",
    "chess-mate-natural": "tasks.chess.natural:NaturalChessMateTask",
}


def task_names() -> list[str]:
    """Names of every registered task, in registry order."""
    return list(REGISTRY)


def get_task(name: str) -> Task:
    """Instantiate a registered task by name (raises KeyError with the known names)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(import_module(module), cls)()
