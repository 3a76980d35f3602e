"""Thread budgets: workers times inner BLAS/OpenMP threads never exceed the cores.

joblib caps the native thread pools of the worker *processes* it starts, but not
of worker threads, and a model that already runs OpenMP on every core (KNN) next
to a second worker thread doubles the threads fighting for the cores. Every
skbatch worker, thread or process, runs its rows under a limit of
``cores // n_workers`` native threads, set with threadpoolctl.

Two facts about the native libraries shape the code:

- OpenBLAS and MKL keep one process-wide setting, so the calling thread sets it
  once for a whole call (:func:`limit_process_pools`), not each worker thread:
  a thread restoring it on exit would lift the limit under its neighbours.
  Concurrent calls share it, and the last one restores it.
- OpenMP keeps its setting per thread (``omp_set_num_threads`` changes only the
  calling thread), so each worker thread sets its own
  (:func:`limit_thread_openmp`); setting it in the caller would not reach them.
"""

from __future__ import annotations

import contextlib
import os
import threading

from joblib import cpu_count
from threadpoolctl import ThreadpoolController

_controller = None
_controller_modules = -1
_controller_lock = threading.Lock()


def available_cores() -> int:
    """CPUs this process may use (affinity and cgroup quotas included)."""
    return max(1, cpu_count())


def idle_cpu_seconds() -> float | None:
    """CPU time the whole machine has spent idle since boot, or None where
    the system does not say (``/proc/stat`` is Linux's)."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
        # "cpu user nice system idle iowait ...", in clock ticks.
        return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def inner_threads(n_workers: int) -> int:
    """Native threads each of ``n_workers`` concurrent workers may use."""
    return max(1, available_cores() // max(1, n_workers))


def _current_controller() -> ThreadpoolController:
    # Building a controller scans every loaded library (milliseconds), so it is
    # reused until new modules have been imported, which may have loaded a new
    # native library (unpickling a model imports its modules).
    global _controller, _controller_modules
    import sys

    with _controller_lock:
        if _controller is None or len(sys.modules) != _controller_modules:
            _controller = ThreadpoolController()
            _controller_modules = len(sys.modules)
        return _controller


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limiter = None
_blas_limit = None


@contextlib.contextmanager
def limit_process_pools(n_threads: int | None):
    """Limit every native pool to ``n_threads`` (None: no limit) for the
    calling thread and, for the process-wide BLAS settings, the process.

    Concurrent calls from several threads share one process-wide BLAS limit
    (the lowest asked for); the last one to finish restores the settings
    found by the first, so limits never outlive the calls, whatever order
    they end in.
    """
    global _blas_users, _blas_limiter, _blas_limit
    if n_threads is None:
        yield
        return
    controller = _current_controller()
    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = controller.limit(limits=n_threads, user_api="blas")
            _blas_limit = n_threads
        elif n_threads < _blas_limit:
            controller.limit(limits=n_threads, user_api="blas")
            _blas_limit = n_threads
        _blas_users += 1
    try:
        with limit_thread_openmp(n_threads):
            yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = _blas_limit = None


def limit_thread_openmp(n_threads: int | None):
    """Limit OpenMP to ``n_threads`` in the calling thread only."""
    if n_threads is None:
        return contextlib.nullcontext()
    return _current_controller().limit(limits=n_threads, user_api="openmp")


def native_threads_now() -> dict[str, int]:
    """The thread count each native library would use from the calling thread.

    Used by tests and by ``verbose`` output to show what a worker really gets.
    """
    counts: dict[str, int] = {}
    for pool in ThreadpoolController().info():
        api = pool["user_api"]
        counts[api] = max(counts.get(api, 0), pool["num_threads"])
    return counts
