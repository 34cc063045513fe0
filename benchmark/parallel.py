"""Run independent jobs (train a model, evaluate a submission) on several worker processes.

A 2-core machine trains two small models faster side by side, one torch thread each, than
one at a time on two threads (measured: 1.3x per step from the second thread, 2x from a
second process). Every job runs on exactly one torch thread whatever the worker count, so
the numbers do not depend on ``--workers``.

Jobs talk back through ``emit(message)``; the parent passes each message to ``on_message``
as it arrives (progress bars live in the parent). With one worker the jobs run in this
process, in order, which keeps tracebacks and tests simple.

Past one machine the same jobs run as Ray tasks (``Backend("ray")``): on a Ray started for
the run, or on a cluster. Jobs write their own results, by paths relative to the working
directory, so a cluster needs a shared filesystem mounted at the same path on every node;
ray is imported only there.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import multiprocessing as mp

from benchmark.errors import one_line
from tasks.base import cache_dir, usable_cores

Emit = Callable[[Any], None]
BACKENDS = ("local", "ray")
RAY_MISSING = "--backend ray needs ray: pip install 'mesabench[ray]'"
POLL = 0.2  # seconds between looks at the message queue
CONNECT_TIMEOUT = 10  # seconds: ray.init retries an unreachable address for minutes


@dataclass(frozen=True)
class Backend:
    """Where jobs run: ``"local"`` worker processes on this machine, or ``"ray"`` tasks on a
    Ray started for the run, or on the cluster at ``address`` (default: $RAY_ADDRESS)."""

    name: str = "local"
    address: str | None = None


LOCAL = Backend()


class BackendError(RuntimeError):
    """The backend cannot run here (ray missing, cluster unreachable); one readable line."""


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
             init: Callable[[], None] | None = None, backend: Backend = LOCAL) -> list[Any]:
    """``[fn(job, emit) for job in jobs]`` on up to ``workers`` processes (or Ray tasks, see
    `Backend`), results in job order.

    ``fn`` and ``init`` (run once per job in the worker, e.g. to silence libraries) must be
    module-level functions: they are pickled by name. An exception in a job is raised here,
    after the other running jobs finish. Raises `BackendError` when Ray cannot run.
    """
    if backend.name == "ray":
        return _ray_jobs(fn, jobs, workers, on_message, init, backend.address)
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
            done, pending = wait(pending, timeout=POLL, return_when=FIRST_COMPLETED)
            _drain(messages, on_message)
        _drain(messages, on_message)
        return [f.result() for f in sorted(futures, key=futures.get)]


def _drain(messages, on_message: Callable[[Any], None]) -> None:
    while True:
        try:
            on_message(messages.get_nowait())
        except queue.Empty:
            return


# ---------------------------------------------------------------------------- Ray


def ray_module():
    """The ``ray`` package; raises `BackendError` (`RAY_MISSING`) when it is not installed."""
    try:
        import ray
    except ImportError:
        raise BackendError(RAY_MISSING) from None
    return ray


def _connect(ray, workers: int, address: str | None) -> None:
    """Join the cluster at ``address``, or start a Ray of ``workers`` CPUs on this machine;
    once per process (a run's training and evaluation share it, Ray stops at exit)."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = {"logging_level": logging.ERROR, "include_dashboard": False}
    try:
        if address:
            _check_reachable(address)
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=workers, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise BackendError(f"cannot start or reach {where}: {one_line(err)}") from None


def _check_reachable(address: str) -> None:
    """Raise `ConnectionError` at once when nothing listens at a "host:port" address
    (with or without ``ray://``); "auto" and other forms are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as err:
        raise ConnectionError(f"nothing answers at {host}:{port} ({err.strerror or err})") from None


def _ray_jobs(fn: Callable[[Any, Emit], Any], jobs: Sequence[Any], workers: int,
              on_message: Callable[[Any], None], init: Callable[[], None] | None,
              address: str | None) -> list[Any]:
    """`run_jobs` on Ray: a task per job with one CPU (and one GPU when the cluster has
    GPUs: a task that asks for none would share every GPU with the others)."""
    if not jobs:
        return []  # everything cached: no need to start Ray
    ray = ray_module()
    from ray.exceptions import RayTaskError
    from ray.util.queue import Queue

    _connect(ray, workers, address)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_cpus=1, num_gpus=gpus)(_run_ray_job)
    messages = Queue()
    try:
        refs = [task.remote(fn, job, messages, init, os.getcwd(), str(cache_dir().resolve())) for job in jobs]
        pending = refs
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL)
            _drain_ray(messages, on_message)
        _drain_ray(messages, on_message)
        try:
            return [ray.get(ref) for ref in refs]  # the first failure in job order, as locally
        except RayTaskError as err:
            raise err.cause from err
    finally:
        messages.shutdown()


def _run_ray_job(fn: Callable, job: Any, messages, init: Callable[[], None] | None, cwd: str,
                 cache: str) -> Any:
    # Run where the parent would: its relative paths (the workspace) and its data cache,
    # which on another node exist only through a shared filesystem.
    if not os.path.isdir(cwd):
        raise BackendError(f"{cwd} does not exist on this node: --backend ray on a cluster needs "
                           "a shared filesystem mounted at the same path on every node")
    os.chdir(cwd)
    os.environ["MESABENCH_CACHE"] = cache
    return _run_job(fn, job, messages, init)


def _drain_ray(messages, on_message: Callable[[Any], None]) -> None:
    waiting = messages.qsize()
    if waiting:
        for message in messages.get_nowait_batch(waiting):
            on_message(message)
