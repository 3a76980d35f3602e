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

import atexit
import contextlib
import math
import os
import queue
import re
import tempfile
import threading
import time
import uuid
from concurrent.futures import CancelledError

from sklearn import config_context

from skbatch._concat import check_rows, tail_agrees
from skbatch._errors import WorkerDiedError
from skbatch._indexing import num_rows, protected_rows, take_rows
from skbatch._pool import pool_size
from skbatch._threadlimits import limit_process_pools, limit_thread_openmp
from skbatch._worker import (
    ChunkSkipped,
    ModelNotLoadedError,
    add_note,
    run_process_chunk,
    worker_ready,
)

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
        """Hand out nothing more (a worker failed, or the caller was stopped)."""
        with self._lock:
            self._closed = True

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


def compute_chunk(call, X, lo, hi, outputs, report, record, worker):
    # The caller reports as itself, like its probe rows: one bar for it.
    reported_as = None if worker == "caller" else worker
    report.took(hi - lo, worker=reported_as)
    try:
        out = call(protected_rows(X, lo, hi))
        check_rows(out, hi - lo, call.label)
    except Exception as exc:
        add_note(exc, f"(skbatch: raised by {call.label} on rows {lo}:{hi})")
        raise
    outputs.add(lo, out, hi - lo)
    record.add_rows(worker, hi - lo)
    report(hi - lo, worker=reported_as)


def worker_died(label, broken, rows_lost) -> WorkerDiedError:
    """What to raise when the pool broke: which rows were with workers, the
    exit codes loky saw, and what they usually mean."""
    text = str(broken)
    codes = re.search(r"exit codes of the workers are (\{[^}]*\})", text)
    codes = codes.group(1) if codes else "unknown"
    ranges = ", ".join(f"[{lo}, {hi})" for lo, hi in sorted(rows_lost))
    when = f"while rows {ranges} were with the workers" if ranges else "on start"
    if "SIGKILL" in codes:
        hint = (
            "SIGKILL usually means the system ran out of memory and killed the "
            "worker: lower batch_size or n_jobs"
        )
    elif "SIGSEGV" in codes or "SIGBUS" in codes:
        hint = "a crash in native code (a C extension, BLAS) killed the worker"
    else:
        hint = "the worker exited (os._exit, sys.exit in a worker, a native abort)"
    return WorkerDiedError(
        f"{label}: a worker process died {when} (exit codes: {codes}); "
        f"{hint}. The next call starts fresh workers."
    )


def run_in_caller(call, X, cursor, outputs, report, record):
    """The calling thread works through the cursor alone."""
    while (claim := cursor.claim()) is not None:
        compute_chunk(call, X, *claim, outputs, report, record, "caller")


def run_in_threads(
    call, X, cursor, outputs, report, record, *, n_threads, inner, config,
    caller_first=None,
):  # fmt: skip
    """The calling thread and ``n_threads - 1`` worker threads share the cursor.

    Every one of them runs with at most ``inner`` native threads. The first
    exception stops the others (after their current chunk) and is raised.
    ``caller_first``, if given, is what the calling thread does before it
    takes rows from the cursor (the probe, while the workers already work).
    """
    errors = []

    def work(name):
        try:
            with config_context(**config), limit_thread_openmp(inner):
                while (claim := cursor.claim()) is not None:
                    compute_chunk(call, X, *claim, outputs, report, record, name)
        except BaseException as exc:
            cursor.close()
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=(f"thread-{i}",), daemon=True)
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
            run_in_caller(call, X, cursor, outputs, report, record)
        except BaseException:
            cursor.close()
            raise
        finally:
            for thread in started:
                thread.join()
    if errors:
        raise errors[0]


def _remove(path):
    with contextlib.suppress(OSError):
        os.remove(path)


class ProcessRun:
    """Rows run by the calling thread and by skbatch's worker processes.

    A dispatcher thread keeps :data:`TASKS_PER_PROCESS` tasks queued per worker
    process: every finished task makes room for the next claim. The first
    tasks only load the model, so no rows wait in the queue of a worker that
    is still starting. Rows a worker process failed on are computed by the
    calling thread at the end: the estimator's own error then surfaces there.
    """

    def __init__(
        self, call, X, cursor, outputs, report, record, *,
        executor, n_processes, inner, ref, memmap, config, filters, probe_rows,
        caller_first=None,
    ):  # fmt: skip
        self.call, self.X, self.cursor, self.outputs = call, X, cursor, outputs
        self.report, self.record = report, record
        self.executor, self.n_processes, self.inner = executor, n_processes, inner
        self.ref, self.memmap, self.config, self.filters = ref, memmap, config, filters
        # Each worker process runs the probe rows once per call and must agree
        # with the caller's output for them (rows 0 to probe_stop). When the
        # caller computes its probe while the workers start (``caller_first``),
        # a worker's rows wait, unverified, until that output exists.
        # No probe rows (a plain function, whose rows run once): no check.
        self.probe_rows = probe_rows
        self.probe_stop = None if probe_rows is None else num_rows(probe_rows)
        self.probe_output = None
        self.caller_first = caller_first
        self.token = uuid.uuid4().hex
        # Tasks already sent to a worker cannot be cancelled; they look for
        # this file before they start (a stat per chunk).
        self._stop_file = os.path.join(
            tempfile.gettempdir(), f"skbatch-stop-{self.token}"
        )
        self.trusted, self.distrusted = set(), set()
        self._worker_probes = {}  # pid -> its probe output, not yet compared
        self._unverified = {}  # pid -> [(lo, hi, output, warnings)]
        self._check_lock = threading.Lock()
        self.warnings = []
        self.failed = []  # (lo, hi, exception) a worker process raised
        self.row_errors = []  # (lo, exception) raised by the method on rows
        self.fatal = None  # a dead worker: the pool is broken
        self.rows_lost = []  # the chunks with workers when the pool broke
        self.first_ready = None  # seconds until the first worker was ready
        self._completions = queue.SimpleQueue()
        self._pending = set()  # chunk futures not settled yet
        self._in_flight = 0
        self._count_lock = threading.Lock()
        self._idle = threading.Event()
        self._stop_feeding = False
        self._caller_done = False

    # -- dispatcher side
    def _submit_hello(self):
        future = self.executor.submit(worker_ready, self.ref, self.inner)
        future.add_done_callback(lambda f: self._completions.put((f, None, None)))

    def _feed(self):
        """Claim rows and send them to a worker process, if feeding is on."""
        with self._count_lock:
            # Claiming and counting under one lock: the caller, finding the
            # cursor empty, then sees every range still with a worker.
            claim = None if self._stop_feeding else self.cursor.claim()
            if claim is None:
                return
            self._in_flight += 1
        lo, hi = claim
        try:
            rows = (
                self.memmap.rows(lo, hi) if self.memmap else take_rows(self.X, lo, hi)
            )
            future = self.executor.submit(
                run_process_chunk,
                self.ref,
                (self.call.method, self.call.params, self.call.label),
                rows,
                lo,
                hi,
                self.config,
                self.filters,
                self.inner,
                (self.token, self.probe_rows, self._stop_file),
            )
        except BaseException as exc:  # the pool broke: the caller does the rows
            self._stop_feeding = True
            self.failed.append((lo, hi, exc))
            self._chunk_settled()
            return
        with self._count_lock:
            self._pending.add(future)
        future.add_done_callback(lambda f: self._completions.put((f, lo, hi)))

    def _cancel_pending(self):
        """Stop queued chunks from starting (after a failure or an interrupt:
        no new chunk starts; the ones running finish)."""
        self._stop_feeding = True
        try:
            open(self._stop_file, "x").close()
        except OSError:
            pass  # made already, or no temp dir: queued chunks will run
        with self._count_lock:
            pending = list(self._pending)
        for future in pending:
            future.cancel()

    def _chunk_settled(self):
        with self._count_lock:
            self._in_flight -= 1
            self._wake_caller_if_done()

    def _wake_caller_if_done(self):
        # Under _count_lock. Rows still with workers are waited for; a worker
        # still starting (its first task only loads the model) is not.
        if (
            self._in_flight == 0
            and self._caller_done
            and (self.cursor.exhausted or self._stop_feeding)
        ):
            self._idle.set()

    def _dispatch(self, started):
        from joblib.externals.loky.process_executor import BrokenProcessPool

        while True:
            item = self._completions.get()
            if item is None:
                return
            future, lo, hi = item
            with self._count_lock:
                self._pending.discard(future)
            try:
                result = future.result()
            except BrokenProcessPool as exc:
                self.fatal = exc
                if lo is not None:
                    self.rows_lost.append((lo, hi))
                self._stop_feeding = True
                self.cursor.close()
            except BaseException as exc:
                # Failed rows go back to the caller; stop sending more rows to
                # workers that may all fail the same way (a model that does
                # not load there, say).
                self.failed.append((lo, hi, exc))
                ran = not isinstance(
                    exc, (ModelNotLoadedError, ChunkSkipped, CancelledError)
                )
                if lo is not None and ran:
                    self.row_errors.append((lo, exc))  # the rows ran, and raised
                self._cancel_pending()
                with self._count_lock:
                    self._wake_caller_if_done()
            else:
                if lo is None:
                    pid, loaded = result
                    if self.first_ready is None:
                        self.first_ready = time.perf_counter() - started
                else:
                    pid, loaded, out, caught, probe_out = result
                    self._settle_rows(pid, lo, hi, out, caught, probe_out)
                self.record.model_loads += int(loaded)
                self._feed()
            if lo is not None:
                self._chunk_settled()

    def _settle_rows(self, pid, lo, hi, out, caught, probe_out):
        """Keep a worker's rows if it is trusted, redo them if not, or hold
        them until the caller's probe output exists to compare with."""
        with self._check_lock:
            if probe_out is not None:
                self._worker_probes[pid] = probe_out
            verdict = self._verdict(pid)
            if verdict is None:
                self._unverified.setdefault(pid, []).append((lo, hi, out, caught))
                return
            self._keep_or_redo(verdict, pid, lo, hi, out, caught)

    def _verdict(self, pid):
        """True (trusted), False (distrusted) or None (not known yet)."""
        if not CHECK_WORKER_OUTPUTS or self.probe_rows is None or pid in self.trusted:
            return True
        if pid in self.distrusted:
            return False
        if self.probe_output is None:
            return None
        try:
            agrees = tail_agrees(
                self._worker_probes.pop(pid), self.probe_output, 0, self.probe_stop
            )
        except Exception:  # no probe output from it, or not comparable
            agrees = False
        (self.trusted if agrees else self.distrusted).add(pid)
        if not agrees:
            self.distrust_reason = RuntimeError(
                f"worker process {pid} computed other outputs than the calling "
                "thread for the same rows (a model reading module-level state "
                "set at run time sees it afresh in a new process); its rows "
                "were redone in the calling thread"
            )
        return agrees

    def _keep_or_redo(self, trusted, pid, lo, hi, out, caught):
        if trusted:
            self.outputs.add(lo, out, hi - lo)
            self.record.add_rows(f"process-{pid}", hi - lo)
            self.report(hi - lo, worker=f"process-{pid}")
            self.warnings += caught
        else:
            self.failed.append((lo, hi, self.distrust_reason))
            self._stop_feeding = True

    def _caller_probe_done(self):
        """The caller's probe output exists: judge the workers waiting on it."""
        with self._check_lock:
            self.probe_output = self.outputs.get(0)
            waiting, self._unverified = self._unverified, {}
            for pid, chunks in waiting.items():
                verdict = self._verdict(pid)
                for chunk in chunks:
                    self._keep_or_redo(verdict, pid, *chunk)

    # -- caller side
    def run(self):
        started = time.perf_counter()
        dispatcher = threading.Thread(
            target=self._dispatch, args=(started,), name="skbatch-dispatch",
            daemon=True,
        )  # fmt: skip
        try:
            dispatcher.start()
            # Tasks in flight stay as many as submitted here. A pool grown by
            # an earlier call with more workers would spread the queued tasks
            # over all of its processes: then one task per process asked for,
            # so no more of them work at once than n_jobs allows.
            per_process = TASKS_PER_PROCESS if pool_size() <= self.n_processes else 1
            try:
                for _ in range(self.n_processes * per_process):
                    self._submit_hello()
            except Exception as exc:  # no pool: the caller does every row
                self._stop_feeding = True
                self.failed.append((None, None, exc))
            with limit_process_pools(self.inner):
                if self.caller_first is not None:
                    self.caller_first()
                self._caller_probe_done()
                if CALLER_TAKES_ROWS:
                    run_in_caller(
                        self.call, self.X, self.cursor, self.outputs, self.report,
                        self.record,
                    )  # fmt: skip
                with self._count_lock:
                    self._caller_done = True
                    self._wake_caller_if_done()
                self._idle.wait()
                # Rows left when workers stopped taking them (they failed).
                run_in_caller(
                    self.call, self.X, self.cursor, self.outputs, self.report,
                    self.record,
                )  # fmt: skip
        except BaseException:
            self.cursor.close()
            self._cancel_pending()
            # Chunks still queued with workers start later and must find the
            # stop file: it goes when this process exits.
            atexit.register(_remove, self._stop_file)
            raise
        else:
            _remove(self._stop_file)  # every chunk has settled
        finally:
            self._completions.put(None)
            if dispatcher.ident is not None:
                dispatcher.join()
        if self.fatal is not None:
            raise worker_died(self.call.label, self.fatal, self.rows_lost) from (
                self.fatal
            )
        if self.row_errors and not self.call.repeatable:
            # Rows of a plain function are not redone: its first error (in
            # row order, as a serial loop would meet it) is the call's.
            raise min(self.row_errors, key=lambda error: error[0])[1]
        for lo, hi, _ in self.failed:
            if lo is not None:
                with limit_process_pools(self.inner):
                    compute_chunk(
                        self.call, self.X, lo, hi, self.outputs, self.report,
                        self.record, "caller",
                    )  # fmt: skip
        return self
