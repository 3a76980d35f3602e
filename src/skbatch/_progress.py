"""Progress bars in the parent, fed with completed row counts from the workers.

A :class:`ProgressMonitor` owns one call's bars (:mod:`skbatch._progress_display`),
its queue (:mod:`skbatch._progress_channel`) and the listener thread that moves
the bars as counts arrive. Counts are rows completed, sent once per chunk, never
per row; a worker's bar counts up to the rows it has taken so far (rows go to
whichever worker is free, so its total grows during the call). Everything a
monitor starts is torn down when it exits, on success, error and
``KeyboardInterrupt``; with no progress asked for, it starts nothing.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import uuid

from tqdm.auto import tqdm

from skbatch._progress_channel import ProgressReporter, manager_queue
from skbatch._progress_display import BarSet, output_kind

#: How long teardown waits for the listener thread before giving up on it.
_JOIN_TIMEOUT = 5.0
#: Seconds between two reads of the queue by the listener (bars redraw at
#: most ten times a second anyway).
LISTEN_INTERVAL = 0.1


def _shows_nothing(options) -> bool:
    disable = options.get("disable", False)
    if disable is None:  # tqdm's meaning: disabled unless on a terminal
        return output_kind(tqdm, options.get("file") or sys.stderr) != "terminal"
    return bool(disable)


@contextlib.contextmanager
def single_call_bar(total, desc=None, options=None):
    """A bar for rows computed by one call in the calling thread: yields a
    function to call once the rows are done. No queue, no listener thread:
    nothing reports from elsewhere, and a small input's call may take less
    time than starting a thread."""
    options = options or {}
    if _shows_nothing(options):
        yield lambda: None
        return
    bars = BarSet(
        tqdm, total, desc=desc, per_worker=False, n_workers=0, options=options
    )
    try:
        yield lambda: bars.add(None, total - bars.overall.n, 0)
    finally:
        bars.close()


class ProgressMonitor:
    """Context manager owning the bars, the queue and the listener thread.

    Parameters
    ----------
    total : int
        Rows the overall bar counts up to.
    mode : {None, "overall", "workers"}
        None draws nothing (the reporter is a no-op), "overall" one bar,
        "workers" the overall bar plus one bar per worker.
    n_workers : int
        Number of per-worker bars for ``mode="workers"``.
    cross_process : bool
        Whether reports come from other processes (then a manager queue, for
        this call only, is used).
    caller_works : bool
        Whether the calling thread is one of the workers; then it has a bar
        of its own, else its rows (the probe) count in the overall bar only.
    desc : str
        Label of the overall bar.
    options : dict
        tqdm options from the user (checked by
        :func:`skbatch._progress_display.validate_bar_options`).
    """

    def __init__(
        self,
        total,
        *,
        mode,
        n_workers=1,
        cross_process=False,
        caller_works=False,
        desc=None,
        options=None,
    ):
        self.total = total
        self.options = options or {}
        self.mode = None if _shows_nothing(self.options) else mode
        self.n_workers = n_workers
        self.cross_process = cross_process
        self.caller_works = caller_works
        self.desc = desc
        self.reporter = ProgressReporter()
        self._thread = None
        self._queue = None
        self._bars = None
        self._waiting = False
        self._finished = False
        self._stack = contextlib.ExitStack()
        self._stopping = threading.Event()

    def __enter__(self):
        if self.mode is None:
            return self
        try:
            self._token = uuid.uuid4().hex
            self._queue = (
                self._stack.enter_context(manager_queue())
                if self.cross_process
                else queue.SimpleQueue()
            )
            self._bars = BarSet(
                tqdm,
                self.total,
                desc=self.desc,
                per_worker=self.mode == "workers",
                n_workers=self.n_workers,
                options=self.options,
            )
            self._caller = (os.getpid(), threading.get_ident())
            # Rows done by the calling thread count in the overall bar only,
            # unless it is one of the workers.
            self._names = {self._caller: "caller" if self.caller_works else None}
            self._n_named = 0
            self.reporter = ProgressReporter(self._queue, self._token)
            self._thread = threading.Thread(
                target=self._listen, name="skbatch-progress", daemon=True
            )
            self._thread.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def finish(self) -> None:
        """Mark every row done (the rows were computed some other way, such as
        one call on the whole input); the overall bar ends at ``total``."""
        self._finished = True

    def waiting_for_workers(self) -> None:
        """Say on the overall bar that rows are with workers still starting.

        Cleared by the first report from a worker; without it, a bar resting at
        the first rows for the seconds workers take to start looks stuck.
        """
        if self._bars is not None:
            self._bars.note("waiting for workers")
            self._waiting = True

    def _name(self, key):
        """The worker a report came from, named as in
        ``last_call_.rows_by_worker`` (None: overall bar only)."""
        if key not in self._names:
            if key[0] == "worker":
                self._names[key] = str(key[1])
            else:  # a joblib worker: numbered in the order they report
                self._n_named += 1
                self._names[key] = f"worker-{self._n_named}"
        return self._names[key]

    def _listen(self) -> None:
        # Reads the queue in batches, a few times a second, rather than waking
        # for every message: a woken listener takes the GIL from the workers
        # (from a pure-Python model, for a whole switch interval).
        while True:
            stopping = self._stopping.wait(LISTEN_INTERVAL)
            while True:
                try:
                    message = self._queue.get_nowait()
                except queue.Empty:
                    break
                except Exception:
                    return  # the manager went away; nothing more will arrive
                self._count(*message)
            if stopping:
                return

    def _count(self, token, pid, thread, done, taken):
        if token != self._token:
            return  # a late message from an earlier call on this queue
        name = self._name((pid, thread))
        if self._waiting and name is not None and done:
            self._bars.note("")
            self._waiting = False
        self._bars.add(name, done, taken)

    def __exit__(self, exc_type, exc, tb):
        self.reporter.close()
        try:
            if self._thread is not None:
                # Wakes the listener at once; it counts what is queued, then
                # exits.
                self._stopping.set()
                self._thread.join(_JOIN_TIMEOUT)
        finally:
            try:
                if self._bars is not None:
                    self._bars.close(self.total if self._finished else None)
            finally:
                self._thread = None
                self._queue = None
                self._stack.close()  # the manager, if any
        return False

    @property
    def listening(self) -> bool:
        """Whether the listener thread is running."""
        return self._thread is not None and self._thread.is_alive()
