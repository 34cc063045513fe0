"""A seed's puzzle stream: chunks of games, cached on disk, computed on a process pool.

The stream is a pure function of (seed, engine, game number) (see tasks/chess/generate.py),
so cutting it into chunks changes nothing: any chunk size and any number of processes give
the same puzzles in the same order, and an interrupted run resumes from the cached chunks.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

from tasks.chess.generate import chunk_puzzles

CHUNK_GAMES = 40  # games per unit of work and of cache; any value gives the same stream


def _chunk_job(args: tuple) -> list[dict]:
    return chunk_puzzles(*args)


def _read_chunk(path: Path) -> list[dict] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]
    except (OSError, ValueError):
        return None


def _write_chunk(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
    os.replace(tmp, path)  # atomic: an interrupted run never leaves half a chunk


def puzzle_stream(seed: int, engine: str = "python", workers: int = 1, folder: Path | None = None,
                  chunk_games: int = CHUNK_GAMES) -> Iterator[dict]:
    """The puzzle records of a seed, in game order, without end (close it when done).

    Chunks of ``chunk_games`` games are read from ``folder`` when cached there, otherwise
    computed (by ``workers`` processes, a few chunks ahead) and written there.
    """
    pool = None
    pending: dict[int, Future] = {}
    index = 0

    def path_of(i: int) -> Path | None:
        return folder / f"games-{i * chunk_games:07d}-{(i + 1) * chunk_games:07d}.jsonl" if folder else None

    def job(i: int) -> tuple:
        return seed, i * chunk_games, (i + 1) * chunk_games, engine

    try:
        while True:
            path = path_of(index)
            records = _read_chunk(path) if path and path.exists() else None
            if records is None:
                if workers > 1:
                    if pool is None:
                        # "spawn": a fresh interpreter per process. Forking a process that
                        # already runs threads (torch's, in the harness) can deadlock.
                        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
                    for ahead in range(index, index + workers):  # one chunk per process in flight
                        ahead_path = path_of(ahead)
                        if ahead not in pending and not (ahead_path and ahead_path.exists()):
                            pending[ahead] = pool.submit(_chunk_job, job(ahead))
                    records = pending.pop(index).result()
                else:
                    records = chunk_puzzles(*job(index))
                if path:
                    _write_chunk(path, records)
            yield from records
            index += 1
    finally:
        if pool is not None:
            _close(pool, pending, path_of)


def _close(pool: ProcessPoolExecutor, pending: dict[int, Future],
           path_of: Callable[[int], Path | None]) -> None:
    """Cancel the chunks not started yet; finish and cache the ones being computed (the
    next split of the same seed reads the same stream, so they are rarely wasted)."""
    for i, future in sorted(pending.items()):
        path = path_of(i)
        if not future.cancel() and future.exception() is None and path:
            _write_chunk(path, future.result())
    pool.shutdown()
