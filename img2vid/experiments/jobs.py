"""Independent jobs of a benchmark run (searches, training runs), in worker processes or in this one.

Where a CPU has more cores than a small network keeps busy, several training runs side by side at a
few threads each finish sooner than the same runs one after the other at all threads (on a 2-core
AMD EPYC with AVX2, two workers at one thread trained 1.3 times as fast as one process at two; on
another 2-core machine they were as fast). :class:`Jobs` runs each
job as ``fn(*args)`` in one of ``workers`` processes (``spawn`` ed, each at ``threads`` intra-op
threads), longest first, or here, one after the other, when ``workers`` is 1 (the same code path, e.g.
on a GPU). A job seeds everything it draws, so its result does not depend on where or in which order
it ran.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import multiprocessing
import os
import queue
import signal
from collections.abc import Callable, Hashable, Iterator
from types import TracebackType
from typing import Any

import torch

__all__ = ["Jobs", "worker_count"]


def worker_count(requested: int, device: torch.device, jobs: int) -> int:
    """The number of worker processes: ``requested`` when >= 1; with 0 (automatic), one per CPU core this
    process may use on a CPU run, capped at ``jobs``, and 1 (jobs run here) on any other device."""
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise ValueError(f"workers must be an integer >= 0 (0: one per CPU core), got {requested!r}")
    if requested >= 1:
        return requested
    if device.type != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, jobs))


def _start_worker(threads: int) -> None:
    """Runs first in every worker: its threads, and Ctrl-C left to the parent (which stops the workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


class Jobs:
    """Jobs submitted with a priority (highest first), run by ``workers`` processes, results as they finish.

    Worker processes are ``spawn`` ed: they import the main module, so a script that uses them keeps its
    work under ``if __name__ == "__main__":`` (``python -m img2vid`` does).

    Examples:
        >>> with Jobs(workers=1, threads=1) as jobs:
        ...     jobs.submit("a", 1.0, pow, 2, 10)
        ...     for key, value in jobs.results():  # more jobs may be submitted while iterating
        ...         print(key, value)
        a 1024

    Leaving the ``with`` block early (an error, Ctrl-C) stops the workers at once.
    """

    def __init__(self, workers: int, threads: int) -> None:
        if workers < 1 or threads < 1:
            raise ValueError(f"Jobs needs workers >= 1 and threads >= 1, got {workers} and {threads}")
        self.workers, self.threads = workers, threads
        self._pending: list[tuple[float, int, Hashable, Callable[..., Any], tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._running = 0
        self._finished: queue.SimpleQueue[tuple[Hashable, Callable[[], Any]]] = queue.SimpleQueue()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._others: set[multiprocessing.process.BaseProcess] = set()

    def __enter__(self) -> Jobs:
        if self.workers > 1:
            self._others = set(multiprocessing.active_children())
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),  # no fork of torch's threads
                initializer=_start_worker, initargs=(self.threads,))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if kind is None:
            pool.shutdown(wait=True)
            return
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in set(multiprocessing.active_children()) - self._others:  # this pool's, still running a job
            worker.terminate()
            worker.join()

    def submit(self, key: Hashable, priority: float, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` (a module-level function and picklable arguments) under ``key``."""
        heapq.heappush(self._pending, (-priority, next(self._order), key, fn, args))

    def _start(self) -> None:
        while self._pending and self._running < self.workers:
            _, _, key, fn, args = heapq.heappop(self._pending)
            self._running += 1
            if self._pool is None:
                value = fn(*args)  # here and now; an error raises as it is
                self._finished.put((key, lambda value=value: value))
            else:
                future = self._pool.submit(fn, *args)
                future.add_done_callback(lambda done, key=key: self._finished.put((key, done.result)))

    def results(self) -> Iterator[tuple[Hashable, Any]]:
        """``(key, result)`` of each job as it finishes, until none is queued or running; a job's error
        is raised here."""
        while self._pending or self._running:
            self._start()
            while True:
                try:
                    key, result = self._finished.get(timeout=0.5)  # a timeout keeps Ctrl-C responsive
                    break
                except queue.Empty:
                    continue
            self._running -= 1
            try:
                value = result()
            except concurrent.futures.process.BrokenProcessPool as error:
                raise RuntimeError(
                    "a worker process of the benchmark died before finishing its job (out of memory, killed, or "
                    "it could not start: worker processes import the main module, so a script that starts them "
                    "keeps its work under `if __name__ == \"__main__\":`); workers=1 runs every job in this "
                    "process") from error
            yield key, value
