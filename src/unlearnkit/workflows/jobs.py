"""Independent jobs of one workflow side by side on this machine's cores: local worker processes.

A benchmark's fine-tunes, sweep runs and evaluations do not depend on one another, and each writes its
result to the cache where the workflow reads it back. On a CPU, two one-thread processes do twice the work of
one (an AdamW step of SmolLM2 on 4×128 tokens: 4.14 s alone, 4.13 and 4.19 s side by side), while two
threads in one process do 1.6 times as much (2.55 s): so the workflow runs its jobs in ``jobs`` processes of
``threads`` torch threads each, started fresh (``spawn``), from ``concurrent.futures``.

A job computes exactly what it computes in a process of its own with that many threads, so the numbers do
not depend on how many jobs run at once. ``jobs=1`` runs every job in this process, in order.

Several machines are not this module's business: an evaluation that needs more goes to vLLM behind the
OpenAI-compatible backend, a fine-tune that needs more to accelerate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context

from unlearnkit.errors import ConfigError


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_jobs(jobs: int | None, threads: int) -> int:
    """``jobs`` (None: one per usable core at ``threads`` threads each), checked."""
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1 (got {threads})")
    if jobs is None:
        return max(1, usable_cores() // threads)
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1 (got {jobs}); 1 runs every job in this process")
    return jobs


_LIMITS: list = []  # this worker's thread-pool limits, kept for its lifetime


def _start_worker(threads: int) -> None:
    """Every thread pool of the worker at ``threads``: torch's, and the BLAS and OpenMP pools that numpy,
    scikit-learn and scipy loaded before this ran (threadpoolctl), and the tokenizers' (not parallel)."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["TQDM_DISABLE"] = "1"  # the parent reports each job as it ends; bars of several workers interleave
    import numpy  # noqa: F401  (its BLAS is loaded, so the limit reaches it)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    _LIMITS.append(threadpool_limits(limits=threads))


class _Inline(Executor):
    """``jobs=1``: each job runs when submitted, in this process."""

    def submit(self, fn, /, *args, **kwargs):
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # handed to the caller by future.result(), as a process pool does
            future.set_exception(exc)
        return future


class JobPool:
    """Submit keyed jobs; ``completed()`` yields (key, result) as they end and lets the caller submit more.

    The first job that fails stops the rest (pending jobs are cancelled, running ones finish) and its error
    is raised: what finished before is in the cache, so the next call continues from there."""

    def __init__(self, jobs: int = 1, threads: int = 1):
        self.jobs = jobs
        if jobs > 1:
            self._executor: Executor = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"),
                                                           initializer=_start_worker, initargs=(threads,))
        else:
            self._executor = _Inline()
        self._pending: dict[Future, object] = {}

    def submit(self, key, fn: Callable, *args) -> None:
        self._pending[self._executor.submit(fn, *args)] = key

    def completed(self) -> Iterator[tuple[object, object]]:
        while self._pending:
            done, _ = wait(list(self._pending), return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: str(self._pending[f])):
                key = self._pending.pop(future)
                try:
                    result = future.result()
                except BaseException:
                    self.close(cancel=True)
                    raise
                yield key, result

    def close(self, cancel: bool = False) -> None:
        for future in list(self._pending):
            if cancel:
                future.cancel()
        self._pending.clear()
        self._executor.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> JobPool:
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(cancel=exc_type is not None)
