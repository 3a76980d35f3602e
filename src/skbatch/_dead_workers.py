"""Dead workers in joblib's ``"multiprocessing"`` pool: noticed, not waited on.

A ``multiprocessing.Pool`` whose worker dies (killed for memory, a segfault,
``os._exit``) starts a new worker but loses the task the dead one held, and
joblib then waits for that task's result forever. skbatch's own pool (loky)
reports such a death itself; for the multiprocessing pool, a
:class:`DeadWorkerWatch` looks at the pool's worker processes (20 times a
second) while a call runs. A worker gone with an exit code other than 0 or
SIGTERM (the pool stops its own workers with those) ends the call: the watch
raises :class:`PoolWorkerDied` in the calling thread, where joblib meets it
the way it meets Ctrl-C, terminating its pool. The engine turns it into
:class:`skbatch.WorkerDiedError`, naming the batch from the marker the worker
wrote when it started it (:func:`mark_batch`).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import signal
import threading
import time

#: Seconds between two looks at the pool's workers.
WATCH_INTERVAL = 0.05


class PoolWorkerDied(Exception):
    """Raised in the calling thread, from the watch, when a worker died."""


def mark_batch(prefix, lo: int, hi: int) -> None:
    """In a worker process: say that this process now runs rows ``[lo, hi)``
    (a file ``<prefix>.<pid>``), should it die in them."""
    if prefix is None:
        return
    with contextlib.suppress(OSError):
        with open(f"{prefix}.{os.getpid()}", "w") as f:
            f.write(f"{lo} {hi}")


def marked_batch(prefix, pid: int):
    """``(lo, hi)`` that process ``pid`` marked last, or None."""
    try:
        with open(f"{prefix}.{pid}") as f:
            lo, hi = (int(part) for part in f.read().split())
    except (OSError, ValueError):
        return None
    return lo, hi


def unmark_batch(prefix) -> None:
    """In a worker process: this process's batch is over (done or failed)."""
    if prefix is not None:
        with contextlib.suppress(OSError):
            os.remove(f"{prefix}.{os.getpid()}")


def marking_processes(prefix) -> list[int]:
    """The pids that have a mark under ``prefix``."""
    found = []
    for path in glob.glob(glob.escape(prefix) + ".*"):
        with contextlib.suppress(ValueError):
            found.append(int(path.rsplit(".", 1)[1]))
    return found


def remove_marks(prefix) -> None:
    for path in glob.glob(glob.escape(prefix) + ".*"):
        with contextlib.suppress(OSError):
            os.remove(path)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (dead, not reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, not ours to signal
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True  # no /proc: it exists


def _set_async_exc(thread_id: int, exc_class) -> None:
    """Have ``exc_class`` raised in thread ``thread_id`` at its next Python
    instruction (None: cancel one not raised yet), as Ctrl-C is."""
    function = ctypes.pythonapi.PyThreadState_SetAsyncExc
    function.argtypes = (ctypes.c_ulong, ctypes.c_void_p)
    function(thread_id, None if exc_class is None else id(exc_class))


def multiprocessing_pool(backend):
    """A function returning the ``multiprocessing.Pool`` of joblib's
    multiprocessing ``backend``, which keeps it as ``_pool`` from the start
    of a call (None before). Not public: without it, nothing is watched, as in
    joblib."""
    return lambda: getattr(backend, "_pool", None)


class DeadWorkerWatch:
    """While the ``with`` block runs, a thread watches the workers of the
    ``multiprocessing.Pool`` that ``get_pool()`` returns (``n_processes`` of
    them; None: none yet). When one dies, the thread that entered the block
    gets :class:`PoolWorkerDied`, and :attr:`dead` holds ``(pid, exit code)``
    (either None where not known).

    A worker is dead when it exited with a code other than 0 or SIGTERM (the
    pool's own ways to stop it), or, while the pool runs, when it has a mark
    under ``marks`` (a batch started, not over) and is gone, or when the pool
    had to replace one (it keeps ``n_processes``): a worker can die before
    the watch has seen it. The pool's worker list and state are not public
    either (``_pool``, ``_state``). A death noticed only as the block ends is
    ignored: every result has arrived then, and none was lost.
    """

    def __init__(self, get_pool, n_processes: int, marks=None):
        self.dead = None
        self._get_pool = get_pool
        self._n_processes = n_processes
        self._marks = marks
        self._caller = threading.get_ident()
        self._seen = {}
        self._lock = threading.Lock()
        self._closing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="skbatch-pool-watch", daemon=True
        )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            with self._lock:
                self._closing = True
            self._stop.set()
            self._thread.join()
            _set_async_exc(self._caller, None)  # one sent but not raised yet
        except PoolWorkerDied:
            pass  # raised just now: after the results, which all arrived
        return False

    def _watch(self):
        while not self._stop.wait(WATCH_INTERVAL):
            dead = self._look()
            if dead is not None:
                with self._lock:
                    if not self._closing:
                        self.dead = dead
                        _free_pool(self._get_pool())
                        _set_async_exc(self._caller, PoolWorkerDied)
                return

    def _look(self):
        """``(pid, exit code)`` of a dead worker, or None."""
        pool = self._get_pool()
        if pool is None:
            return None
        running = getattr(pool, "_state", None) == "RUN"
        for process in list(getattr(pool, "_pool", None) or ()):
            self._seen.setdefault(process.pid, process)
        for pid, process in self._seen.items():
            code = process.exitcode
            if code is not None and code not in (0, -signal.SIGTERM):
                return pid, code
        if not running:
            return None  # stopping its workers: SIGTERM, or 0
        if self._marks is not None:
            for pid in marking_processes(self._marks):
                if not process_alive(pid):  # (the marks are this call's own)
                    seen = self._seen.get(pid)
                    if seen is None:
                        return pid, None
                    with contextlib.suppress(Exception):
                        seen.join(0.5)  # its exit code, once reaped
                    return pid, seen.exitcode
        if len(self._seen) > self._n_processes and not getattr(
            pool, "_maxtasksperchild", None
        ):
            # The pool replaced a worker that exited between two looks (not
            # one it retired after its maxtasksperchild tasks).
            gone = [p for p in self._seen.values() if p.exitcode is not None]
            return (gone[0].pid, gone[0].exitcode) if gone else (None, None)
        return None


def _free_pool(pool, wait: float = 2.0) -> None:
    """Make ``pool`` (a ``multiprocessing.Pool`` that lost a worker) able to
    terminate: its workers are killed now, and the lock on its task queue is
    released if a dead one held it.

    An idle worker holds that lock while it waits for a task, and the pool's
    ``terminate`` takes it first: a worker killed while waiting (or while
    receiving a large batch) would make ``terminate``, hence joblib, wait
    forever. With every worker dead, nobody else can hold the lock.
    """
    workers = list(getattr(pool, "_pool", None) or ())
    for process in workers:
        with contextlib.suppress(Exception):
            process.kill()
    deadline = time.monotonic() + wait
    for process in workers:
        with contextlib.suppress(Exception):
            process.join(max(0.0, deadline - time.monotonic()))
    lock = getattr(getattr(pool, "_inqueue", None), "_rlock", None)
    if lock is not None and not lock.acquire(False):
        with contextlib.suppress(ValueError):
            lock.release()
    elif lock is not None:
        lock.release()


def exit_code_text(code) -> str:
    """An exit code as loky writes it: ``SIGKILL(-9)``, ``EXIT(3)``, or
    ``unknown`` (None).

    >>> exit_code_text(-9), exit_code_text(3)
    ('SIGKILL(-9)', 'EXIT(3)')
    """
    if code is None:
        return "unknown"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{signal.Signals(-code).name}({code})"
    return f"EXIT({code})"
