"""Rows run by skbatch's worker processes and the calling thread, together.

A :class:`ProcessRun` feeds claims from a :class:`skbatch._schedule.RowCursor`
to the worker processes of :mod:`skbatch._pool` through a dispatcher thread,
while the calling thread takes claims too. It also owns what can go wrong
across processes: outputs a worker computes differently (checked on the probe
rows), a batch that raises (the lowest one is the call's failure), a batch
past its timeout (its worker is killed), a worker that dies (the pool breaks:
:class:`WorkerDiedError`, or the batches run again with ``max_retries``), and
an interrupt (every worker is killed).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import queue
import re
import threading
import time
import uuid
from concurrent.futures import CancelledError

from skbatch import _schedule
from skbatch._concat import tail_agrees
from skbatch._dead_workers import marked_batch, process_alive, remove_marks
from skbatch._failures import (
    BatchFailed,
    lowest,
    note_batch,
    timeout_error,
    worker_died,
)
from skbatch._indexing import num_rows, take_rows
from skbatch._pool import get_executor, kill_workers, pool_size, temp_folder
from skbatch._schedule import BatchStopped, compute_chunk, run_in_caller
from skbatch._threadlimits import limit_process_pools
from skbatch._worker import (
    ChunkSkipped,
    ModelNotLoadedError,
    WorkerOverran,
    run_process_chunk,
    worker_ready,
)


def loky_exit_codes(broken) -> str:
    """The exit codes loky's broken-pool message names: ``{SIGKILL(-9)}``."""
    codes = re.search(r"exit codes of the workers are (\{[^}]*\})", str(broken))
    return codes.group(1) if codes else "unknown"


def _remove(path):
    with contextlib.suppress(OSError):
        os.remove(path)


def _remove_markers(stop_file):
    """Remove the markers workers wrote as they started batches."""
    remove_marks(f"{stop_file}.run")


def _remove_call_files(stop_file):
    _remove(stop_file)
    _remove_markers(stop_file)


class _StopFiles:
    """Stop files (and batch markers) of calls that ended, kept while tasks
    they sent may still start (after a failure or an interrupt), then
    removed: by the next call, once those tasks have settled, or at exit.

    A call's file is listed here before it can exist, so an interrupt at any
    point (a second Ctrl-C during cleanup) leaves nothing behind at exit.
    """

    def __init__(self):
        self._kept = {}  # stop file -> tasks that may still read it
        self._lock = threading.Lock()
        atexit.register(self.remove_all)

    def keep(self, stop_file, tasks=None):
        """Keep ``stop_file`` until ``tasks`` settle (None: its call runs)."""
        with self._lock:
            self._kept[stop_file] = None if tasks is None else list(tasks)

    def settled(self, stop_file):
        """Every task of ``stop_file``'s call has settled: remove it now."""
        with self._lock:
            self._kept.pop(stop_file, None)
        _remove_call_files(stop_file)

    def sweep(self):
        """Remove the files whose calls' tasks have all settled since."""
        with self._lock:
            done = [
                path
                for path, tasks in self._kept.items()
                if tasks is not None and all(task.done() for task in tasks)
            ]
            for path in done:
                del self._kept[path]
        for path in done:
            _remove_call_files(path)

    def remove_all(self):
        with self._lock:
            paths, self._kept = list(self._kept), {}
        for path in paths:
            _remove_call_files(path)


_stop_files = _StopFiles()


class ProcessRun:
    """Rows run by the calling thread and by skbatch's worker processes.

    A dispatcher thread keeps ``_schedule.TASKS_PER_PROCESS`` tasks queued per
    worker process: every finished task makes room for the next claim. The first
    tasks only load the model, so no rows wait in the queue of a worker that
    is still starting.

    Failures: rows a worker could not run (the model did not load there, its
    outputs disagreed with the caller's) are computed by the calling thread at
    the end. A batch that raised stops the call: no batch starts after it, the
    batches above it stop (tasks read the stop file, which holds the lowest
    failed row), the ones below finish, and the failure on the lowest rows is
    raised. A batch past ``call.timeout`` has its worker process killed. A
    dead worker breaks the pool: :class:`WorkerDiedError`, unless
    ``call.max_retries`` lets its batches run again in a fresh pool. An
    interrupt kills the workers.
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
        # Tasks already sent to a worker cannot be cancelled; they read this
        # file before they start and between sub-chunks (a stat each).
        self._stop_file = os.path.join(temp_folder(), f"skbatch-stop-{self.token}")
        _stop_files.sweep()  # earlier calls' files, once their tasks settled
        _stop_files.keep(self._stop_file)  # removed at exit, whatever happens
        self.trusted, self.distrusted = set(), set()
        self._worker_probes = {}  # pid -> its probe output, not yet compared
        self._unverified = {}  # pid -> [(lo, hi, output, warnings)]
        self._check_lock = threading.Lock()
        self.warnings = []
        self.failed = []  # (lo, hi, exception): a worker could not run rows
        self.redo = []  # (lo, hi) not run by a worker: the caller runs them
        self.failures = []  # BatchFailed: rows that raised, or ran too long
        self.fatal = None  # a dead worker: the pool is broken
        self.rows_lost = []  # the chunks with workers when the pool broke
        self.first_ready = None  # seconds until the first worker was ready
        self._attempts = {}  # start row -> attempts so far
        self._killed = set()  # pids killed here (a batch past its timeout)
        self._completions = queue.SimpleQueue()
        self._pending = set()  # chunk futures not settled yet
        self._in_flight = {}  # start row -> stop row, with a worker
        self._count_lock = threading.Lock()
        self._idle = threading.Event()
        self._stop_feeding = False
        self._caller_done = False
        self._failed_row = None

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
            self._in_flight[claim[0]] = claim[1]
        self.record.batches.started(claim[0])
        self._submit_chunk(*claim)

    def _submit_chunk(self, lo, hi):
        """Send rows ``[lo, hi)`` (already counted in flight) to a worker."""
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
                (self.call.sub_rows, self.call.timeout),
            )
        except BaseException as exc:  # the pool broke: the caller does the rows
            self._stop_feeding = True
            self.failed.append((lo, hi, exc))
            self.redo.append((lo, hi))
            self._chunk_settled(lo)
            return
        future.skbatch_lo = lo
        with self._count_lock:
            self._pending.add(future)
        future.add_done_callback(lambda f: self._completions.put((f, lo, hi)))

    def _stop_at(self, row):
        """No new batch; tasks above ``row`` (all, if -1) stop (after a
        failure or an interrupt)."""
        with self._count_lock:
            self._stop_feeding = True
            if self._failed_row is not None and row >= self._failed_row:
                return
            self._failed_row = row
            pending = list(self._pending)
        partial = f"{self._stop_file}.{row}.part"
        try:
            with open(partial, "w") as f:
                f.write(str(row))
            os.replace(partial, self._stop_file)
        except OSError:  # no room: queued chunks will run, and be dropped
            _remove(partial)
        for future in pending:
            if row < 0 or future.skbatch_lo > row:
                future.cancel()

    def _chunk_settled(self, lo):
        with self._count_lock:
            self._in_flight.pop(lo, None)
            self._wake_caller_if_done()

    def _wake_caller_if_done(self):
        # Under _count_lock. Rows still with workers are waited for (after a
        # failure, only those below it); a worker still starting (its first
        # task only loads the model) is not.
        if self._failed_row is not None:
            waiting = any(lo < self._failed_row for lo in self._in_flight)
        else:
            waiting = bool(self._in_flight)
        if (
            not waiting
            and self._caller_done
            and (self.cursor.exhausted or self._stop_feeding)
        ):
            self._idle.set()

    def _retry(self, lo, hi, charged=True) -> bool:
        """Send ``[lo, hi)`` to a worker again if ``call.max_retries`` allows
        (``charged``: this attempt counts); a broken pool is replaced first."""
        if charged:
            attempts = self._attempts.get(lo, 1)
            if attempts > self.call.max_retries:
                return False
            self._attempts[lo] = attempts + 1
        if self._failed_row is not None and lo > self._failed_row:
            return False
        self.record.retries += int(charged)
        self.executor = get_executor(self.n_processes)
        self._submit_chunk(lo, hi)
        return True

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
                if self._broken(exc, lo, hi):
                    continue  # sent again: still in flight
            except WorkerOverran as exc:
                if self._overran(exc, lo, hi):
                    continue
            except (ModelNotLoadedError, ChunkSkipped, CancelledError) as exc:
                # None of the rows ran: the caller does them if they count.
                if lo is not None:
                    self.redo.append((lo, hi))
                if isinstance(exc, ModelNotLoadedError) or lo is None:
                    # Workers may all fail the same way: no more rows to them.
                    self.failed.append((lo, hi, exc))
                    self._stop_feeding = True
                    with self._count_lock:
                        self._wake_caller_if_done()
            except BaseException as exc:
                if lo is None:  # a worker failed while starting
                    self.failed.append((lo, hi, exc))
                    self._stop_feeding = True
                    with self._count_lock:
                        self._wake_caller_if_done()
                elif not self._retry(lo, hi):
                    self._failure(lo, hi, exc)
                else:
                    continue  # still in flight
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
                self._chunk_settled(lo)

    def _failure(self, lo, hi, exc):
        attempts = self._attempts.get(lo, 1)
        index = self.record.batches.index(lo)
        note_batch(exc, self.call.label, index, lo, hi, self.record.n_rows, attempts)
        self.failures.append(BatchFailed(lo, hi, exc))
        self.cursor.fail_at(lo)
        self._stop_at(lo)

    def _overran(self, overran, lo, hi) -> bool:
        """A worker process's batch ran past the timeout: kill the workers.
        Returns whether the batch was sent again.

        loky's pool does not survive a lost worker (it ends the others, in
        its own time), so all of them go now: none outlives the error."""
        self._killed.add(overran.pid)
        kill_workers()
        if self._retry(lo, hi):
            return True
        where = f"worker process {overran.pid}"
        index, rows = self.record.batches.index(lo), (lo, hi)
        if overran.probe:  # the rows every worker process checks first
            index, rows = 0, (0, self.probe_stop)
            where += " (which runs them again, to check its outputs)"
        error = timeout_error(
            self.call.label, index, *rows, self.record.n_rows, self.call.timeout,
            where, "the worker processes were killed (the next call starts fresh ones)",
        )  # fmt: skip
        self._failure(lo, hi, error)
        return False

    def _broken(self, exc, lo, hi) -> bool:
        """The pool broke: a worker died, or was killed here for a timeout.
        Returns whether the batch was sent again."""
        if lo is None:
            return False
        if self._killed:
            # Lost with the worker killed here: not a failure of these rows.
            if self._retry(lo, hi, charged=False):
                return True
            self.redo.append((lo, hi))
            return False
        if self._retry(lo, hi):
            return True
        self.fatal = exc
        self.rows_lost.append((lo, hi))
        self._stop_feeding = True
        self.cursor.close()
        return False

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
        if (
            not _schedule.CHECK_WORKER_OUTPUTS
            or self.probe_rows is None
            or pid in self.trusted
        ):
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
            for start, part, n_rows in out:
                self.outputs.add(start, part, n_rows)
            self.record.add_rows(f"process-{pid}", hi - lo)
            self.report(hi - lo, worker=f"process-{pid}")
            self.warnings += caught
        else:
            self.failed.append((lo, hi, self.distrust_reason))
            self.redo.append((lo, hi))
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
            per_process = (
                _schedule.TASKS_PER_PROCESS if pool_size() <= self.n_processes else 1
            )
            try:
                for _ in range(self.n_processes * per_process):
                    self._submit_hello()
            except Exception as exc:  # no pool: the caller does every row
                self._stop_feeding = True
                self.failed.append((None, None, exc))
            with limit_process_pools(self.inner):
                self._caller_rows(first=True)
                with self._count_lock:
                    self._caller_done = True
                    self._wake_caller_if_done()
                self._idle.wait()
                if not self.failures:
                    # Rows left when workers stopped taking them (they failed).
                    self._caller_rows(first=False)
        except BaseException as exc:
            self.cursor.abort()
            self._stop_at(-1)
            _stop_files.keep(self._stop_file, self._pending_tasks())
            if not isinstance(exc, Exception):
                kill_workers()  # an interrupt: nothing may go on computing
            raise
        finally:
            self._completions.put(None)
            if dispatcher.ident is not None:
                dispatcher.join()
        running = self._running_on_dead_workers()
        if self.failures or self.fatal is not None:
            # Tasks still with workers may start later and must find the
            # stop file: it goes once they have settled.
            _stop_files.keep(self._stop_file, self._pending_tasks())
            _remove_markers(self._stop_file)
        else:
            _stop_files.settled(self._stop_file)  # every chunk has settled
        if self.fatal is not None:
            raise worker_died(
                self.call.label, loky_exit_codes(self.fatal), self.rows_lost, running,
                self.record.batches.index,
            ) from self.fatal  # fmt: skip
        first_failure = lowest(self.failures)
        with limit_process_pools(self.inner):
            # Rows no worker ran: below a failure they may fail first (a
            # serial loop meets them before it); with no failure, they count.
            for lo, hi in sorted(set(self.redo)):
                if first_failure is None or lo < first_failure.lo:
                    compute_chunk(
                        self.call, self.X, lo, hi, self.outputs, self.report,
                        self.record, "caller", None, self.inner,
                    )  # fmt: skip
        if first_failure is not None:
            raise first_failure
        return self

    def _pending_tasks(self):
        with self._count_lock:
            return list(self._pending)

    def _running_on_dead_workers(self):
        """``(pid, lo, hi)`` for each worker that is gone, from the marker it
        wrote when it started its last batch (none when the pool is fine)."""
        if self.fatal is None:
            return []
        found = []
        for path in glob.glob(glob.escape(self._stop_file) + ".run.*"):
            pid = int(path.rsplit(".", 1)[1])
            marked = marked_batch(f"{self._stop_file}.run", pid)
            if not process_alive(pid) and marked in self.rows_lost:
                found.append((pid, *marked))
        return sorted(found, key=lambda item: item[1])

    def _caller_rows(self, first):
        """The calling thread's share: the probe (first time), then rows from
        the cursor. Its failure is the call's like a worker's."""
        try:
            if first:
                if self.caller_first is not None:
                    self.caller_first()
                self._caller_probe_done()
                if not _schedule.CALLER_TAKES_ROWS or self.call.timeout is not None:
                    return  # (with a timeout, batches go where they can be killed)
            run_in_caller(
                self.call, self.X, self.cursor, self.outputs, self.report,
                self.record, self.inner,
            )  # fmt: skip
        except BatchFailed as failed:
            self.failures.append(failed)
            self.cursor.fail_at(failed.lo)
            self._stop_at(failed.lo)
        except BatchStopped:
            pass
