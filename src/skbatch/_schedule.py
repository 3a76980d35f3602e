"""Handing rows to workers as they become free: the calling thread is one of them.

Rows are not split up front. A :class:`RowCursor` hands out contiguous ranges,
large at first and smaller towards the end (guided scheduling), to whichever
worker asks: the calling thread, worker threads, or, through a dispatcher
thread, worker processes. So a worker that is slow to start (a process
importing scikit-learn) or slow to run never holds rows the others could have
done, and all workers finish at about the same time. The calling thread works
from the first moment: a first call is not slower than serial while worker
processes start.

Outputs are kept by start row and joined once, in order, at the end.
"""

from __future__ import annotations

import functools
import math
import threading
import time

from sklearn import config_context

from skbatch._concat import check_rows
from skbatch._failures import (
    THREAD_LEFT,
    BatchFailed,
    WritesIntoInput,
    lowest,
    note_batch,
    timeout_error,
)
from skbatch._indexing import copy_rows, protected_rows
from skbatch._threadlimits import limit_process_pools, limit_thread_openmp
from skbatch._timeouts import BatchOverran, run_within

# Settings of skbatch._process_run.ProcessRun, kept here where tests set them.
#: Tasks kept queued per worker process, so it never waits for the dispatcher.
TASKS_PER_PROCESS = 2
#: Whether the calling thread takes rows while worker processes run. Always on
#: in use; tests turn it off to make worker processes take every row.
CALLER_TAKES_ROWS = True
#: Whether each worker process's output on the probe rows is compared with the
#: caller's. Always on in use; tests of models that report their process id
#: (which differs by design) turn it off.
CHECK_WORKER_OUTPUTS = True


class RowCursor:
    """Hands out row ranges of ``[start, stop)``, each once, to any thread.

    Without ``fixed_rows``, a claim takes ``remaining / (2 * n_workers)`` rows,
    kept within ``[min_rows, max_rows]``; a remainder smaller than ``min_rows``
    joins the claim before it. With ``fixed_rows`` (a user's ``batch_size``)
    every claim has that many rows, the last one possibly fewer.

    >>> cursor = RowCursor(0, 100, n_workers=2, min_rows=10, max_rows=40)
    >>> [cursor.claim() for _ in range(8)]  # doctest: +NORMALIZE_WHITESPACE
    [(0, 25), (25, 44), (44, 58), (58, 69), (69, 79), (79, 89), (89, 100),
     None]
    >>> cursor = RowCursor(0, 10, n_workers=2, fixed_rows=4)
    >>> [cursor.claim() for _ in range(4)]
    [(0, 4), (4, 8), (8, 10), None]
    """

    def __init__(
        self, start, stop, *, n_workers, min_rows=1, max_rows=None, fixed_rows=None
    ):
        self._next = start
        self._stop = stop
        self._n_workers = max(1, n_workers)
        self._min_rows = max(1, min_rows)
        self._max_rows = max_rows
        self._fixed_rows = fixed_rows
        self._closed = False
        self._aborted = False
        self._failed_row = None
        self._lock = threading.Lock()

    def claim(self):
        """The next ``(start, stop)`` range, or None when none is left."""
        with self._lock:
            remaining = self._stop - self._next
            if remaining <= 0 or self._closed:
                return None
            if self._fixed_rows is not None:
                size = min(self._fixed_rows, remaining)
            else:
                size = math.ceil(remaining / (2 * self._n_workers))
                if self._max_rows is not None:
                    size = min(size, self._max_rows)
                size = max(size, self._min_rows)
                if remaining - size < self._min_rows:
                    size = remaining
            lo = self._next
            self._next += size
            return lo, lo + size

    def close(self) -> None:
        """Hand out nothing more."""
        with self._lock:
            self._closed = True

    def fail_at(self, lo) -> None:
        """The batch starting at ``lo`` failed: hand out nothing more, and
        stop the batches above it (a serial loop would never reach them)."""
        with self._lock:
            self._closed = True
            if self._failed_row is None or lo < self._failed_row:
                self._failed_row = lo

    def abort(self) -> None:
        """Stop everything (an interrupt): no batch goes on."""
        with self._lock:
            self._closed = self._aborted = True

    def stops(self, lo) -> bool:
        """Whether the batch starting at ``lo`` should stop now."""
        with self._lock:
            return self._aborted or (
                self._failed_row is not None and lo > self._failed_row
            )

    @property
    def position(self) -> int:
        """The first row not handed out yet."""
        with self._lock:
            return self._next

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self._closed or self._next >= self._stop


class Outputs:
    """Outputs by start row, from any thread; read back in row order."""

    def __init__(self):
        self._parts = {}
        self._lock = threading.Lock()

    def add(self, start, output, n_rows) -> None:
        with self._lock:
            self._parts[start] = (output, n_rows)

    def get(self, start):
        """The output of the chunk starting at ``start``."""
        with self._lock:
            return self._parts[start][0]

    def in_order(self):
        with self._lock:
            starts = sorted(self._parts)
            return (
                [self._parts[s][0] for s in starts],
                [self._parts[s][1] for s in starts],
            )


class BatchStopped(Exception):
    """A batch stopped before its end: the call was interrupted, or a batch
    below it failed. Its rows are not done."""


def compute_chunk(
    call, X, lo, hi, outputs, report, record, worker, cursor=None, inner=None
):  # fmt: skip
    """Compute the batch of rows ``[lo, hi)`` and keep its output.

    The batch runs in sub-chunks of ``call.sub_rows`` rows (all at once when
    None) and stops between them when ``cursor`` says so (:class:`BatchStopped`).
    With ``call.timeout`` it runs in a helper thread and fails past the limit.
    A failed batch runs again up to ``call.max_retries`` times; its rows count
    (in outputs, progress and ``record``) only once it succeeds. The failure
    that remains is raised as :class:`BatchFailed`, noted with the batch.
    """
    # The caller reports as itself, like its probe rows: one bar for it.
    reported_as = None if worker == "caller" else worker
    record.batches.started(lo)
    report.took(hi - lo, worker=reported_as)
    attempts = 0
    while True:
        attempts += 1
        progress = _AttemptProgress(report, reported_as)
        try:
            parts = run_within(
                call.timeout,
                functools.partial(_batch_parts, call, X, lo, hi, progress, cursor),
                inner,
            )
        except BatchStopped:
            progress.cancel()
            raise
        except BatchOverran:
            progress.cancel()
            error = _thread_timeout(call, record, lo, hi, worker)
        except Exception as exc:
            if attempts > call.max_retries and cursor is not None:
                cursor.fail_at(lo)  # first: no other batch may start now
            progress.cancel()
            if _wrote_into_protected_rows(call, X, lo, hi, exc):
                raise WritesIntoInput(
                    f"{call.label} writes into its input (it failed on "
                    "read-only rows, and ran on a copy of them)"
                ) from exc
            error = exc
        else:
            for start, out, n_rows in parts:
                outputs.add(start, out, n_rows)
            record.add_rows(worker, hi - lo)
            return
        if attempts > call.max_retries or (cursor is not None and cursor.stops(lo)):
            index = record.batches.index(lo)
            note_batch(error, call.label, index, lo, hi, record.n_rows, attempts)
            raise BatchFailed(lo, hi, error)
        record.retries += 1


def _batch_parts(call, X, lo, hi, progress, cursor):
    step = call.sub_rows or hi - lo
    parts = []
    for start in range(lo, hi, step):
        if cursor is not None and cursor.stops(lo):
            raise BatchStopped(f"rows {lo}:{hi} stopped at row {start}")
        stop = min(hi, start + step)
        out = call(protected_rows(X, start, stop))
        check_rows(out, stop - start, call.label)
        parts.append((start, out, stop - start))
        progress(stop - start)
    return parts


def _wrote_into_protected_rows(call, X, lo, hi, exc) -> bool:
    """Whether ``exc`` came from writing into the read-only view that
    :func:`protected_rows` gave: the rows then work on a copy."""
    import numpy as np

    if not (isinstance(X, np.ndarray) and X.flags.writeable):
        return False
    if "read-only" not in str(exc) and "readonly" not in str(exc):
        return False
    try:
        call(copy_rows(X, lo, min(hi, lo + (call.sub_rows or hi - lo))))
    except Exception:
        return False
    return True


class _AttemptProgress:
    """Progress of one attempt at a batch, taken back if the attempt fails (or
    times out: a helper thread still running it then reports nothing more)."""

    def __init__(self, report, worker):
        self._report, self._worker = report, worker
        self._done, self._live = 0, True
        self._lock = threading.Lock()

    def __call__(self, n_rows):
        with self._lock:
            if self._live:
                self._done += n_rows
                self._report(n_rows, worker=self._worker)

    def cancel(self):
        with self._lock:
            self._live = False
            if self._done:
                self._report(-self._done, worker=self._worker)


def _thread_timeout(call, record, lo, hi, worker):
    where = "the calling thread" if worker == "caller" else f"worker {worker}"
    return timeout_error(
        call.label, record.batches.index(lo), lo, hi, record.n_rows, call.timeout,
        where, THREAD_LEFT,
    )  # fmt: skip


def run_in_caller(call, X, cursor, outputs, report, record, inner=None):
    """The calling thread works through the cursor alone."""
    while (claim := cursor.claim()) is not None:
        compute_chunk(call, X, *claim, outputs, report, record, "caller", cursor, inner)


#: After an interrupt, worker threads get this long (in all) to reach the end of
#: their sub-chunk; a thread still inside a native call then ends on its own.
INTERRUPT_JOIN_SECONDS = 1.0


def _join(threads, seconds=None):
    deadline = None if seconds is None else time.monotonic() + seconds
    for thread in threads:
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


def run_in_threads(
    call, X, cursor, outputs, report, record, *, n_threads, inner, config,
    caller_first=None,
):  # fmt: skip
    """The calling thread and ``n_threads - 1`` worker threads share the cursor.

    Every one of them runs with at most ``inner`` native threads.
    ``caller_first``, if given, is what the calling thread does before it
    takes rows from the cursor (the probe, while the workers already work).
    After a batch fails, no batch starts and those above it stop; the failure
    on the lowest rows is raised once the others are over. An interrupt stops
    every batch at its next sub-chunk.
    """
    failures, errors = [], []

    def work(name):
        try:
            with config_context(**config), limit_thread_openmp(inner):
                while (claim := cursor.claim()) is not None:
                    compute_chunk(
                        call, X, *claim, outputs, report, record, name, cursor, inner
                    )
        except BatchFailed as failed:
            cursor.fail_at(failed.lo)
            failures.append(failed)
        except BatchStopped:
            pass
        except BaseException as exc:
            cursor.abort()
            errors.append(exc)

    threads = [
        threading.Thread(
            target=work, args=(f"thread-{i}",), name=f"skbatch-thread-{i}", daemon=True
        )
        for i in range(1, n_threads)
    ]
    started = []
    with limit_process_pools(inner):
        try:
            # Started inside the try: Ctrl-C may land in Thread.start().
            for thread in threads:
                thread.start()
                started.append(thread)
            if caller_first is not None:
                caller_first()
            run_in_caller(call, X, cursor, outputs, report, record, inner)
        except BatchFailed as failed:
            cursor.fail_at(failed.lo)
            failures.append(failed)
        except BatchStopped:
            pass
        except BaseException:
            cursor.abort()
            _join(started, INTERRUPT_JOIN_SECONDS)
            raise
        try:
            # Batches below a failure run to their end: one of them may fail
            # too, and serially would have failed first.
            _join(started)
        except BaseException:
            cursor.abort()
            raise
    if errors:
        raise errors[0]
    if failures:
        raise lowest(failures)
