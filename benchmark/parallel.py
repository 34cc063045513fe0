"""Run independent jobs (train a model, evaluate a submission) on several worker processes.

A 2-core machine trains two small models faster side by side, one torch thread each, than
one at a time on two threads (measured: 1.3x per step from the second thread, 2x from a
second process). Every job runs on exactly one torch thread whatever the worker count, so
the numbers do not depend on ``--workers``.

Jobs talk back through ``emit(message)``; the parent passes each message to ``on_message``
as it arrives (progress bars live in the parent). With one worker the jobs run in this
process, in order, which keeps tracebacks and tests simple.
"""

from __future__ import annotations

import os
import queue
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence

import multiprocessing as mp

from tasks.base import usable_cores

Emit = Callable[[Any], None]


def default_workers() -> int:
    """$MESABENCH_WORKERS, else one worker per CPU core this process may use."""
    if os.environ.get("MESABENCH_WORKERS", "").strip().isdigit():
        return max(1, int(os.environ["MESABENCH_WORKERS"]))
    return usable_cores()


def _one_thread() -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    # numpy/scipy's BLAS (the probes) too: two workers each running a 2-thread BLAS on two
    # cores ran the probe fits four times slower than one thread each.
    threadpool_limits(1)


def _run_job(fn: Callable, job: Any, messages, init: Callable[[], None] | None) -> Any:
    if init:
        init()
    _one_thread()
    return fn(job, messages.put)


def run_jobs(fn: Callable[[Any, Emit], Any], jobs: Sequence[Any], workers: int,
             on_message: Callable[[Any], None] = lambda m: None,
             init: Callable[[], None] | None = None) -> list[Any]:
    """``[fn(job, emit) for job in jobs]`` on up to ``workers`` processes, results in job order.

    ``fn`` and ``init`` (run once per job in the worker, e.g. to silence libraries) must be
    module-level functions: they are pickled by name. An exception in a job is raised here,
    after the other running jobs finish.
    """
    workers = max(1, min(workers, len(jobs)))
    if workers == 1:
        _one_thread()
        return [fn(job, on_message) for job in jobs]
    # "spawn": a fresh interpreter per worker; forking a process that already ran torch
    # can deadlock in its thread pools.
    ctx = mp.get_context("spawn")
    with mp.Manager() as manager, ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        messages = manager.Queue()
        futures = {pool.submit(_run_job, fn, job, messages, init): i for i, job in enumerate(jobs)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(messages, on_message)
        _drain(messages, on_message)
        return [f.result() for f in sorted(futures, key=futures.get)]


def _drain(messages, on_message: Callable[[Any], None]) -> None:
    while True:
        try:
            on_message(messages.get_nowait())
        except queue.Empty:
            return
