"""Progress bars in the parent, fed with completed row counts from the workers.

Workers never draw: after each sub-chunk they put ``(call, worker, rows)`` on a
queue, and a listener thread in the parent moves the bars. Thread backends share
a plain in-memory queue; process backends get a queue served by a manager
process that is started once, on first use, with loky's spawn context (no
``__main__`` guard needed, no fork after OpenMP). Manager queues are reused from
call to call, not created per call: workers that die without releasing their
handle (a terminated pool) would otherwise leave one behind each time. Messages
carry their call's token, so a late message from an earlier call is ignored.
Everything a monitor starts is torn down when it exits: on success, on error
and on ``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import threading
import uuid

from tqdm.auto import tqdm

#: How long teardown waits for the listener thread before giving up on it.
_JOIN_TIMEOUT = 5.0

_manager = None
_free_queues: list = []
_manager_lock = threading.Lock()


def _acquire_manager_queue():
    """A queue served by the process-wide manager (started on first use)."""
    global _manager
    with _manager_lock:
        if _manager is None or not _manager._process.is_alive():
            from joblib.externals.loky.backend.context import get_context

            _manager = get_context("loky").Manager()
            _free_queues.clear()  # they belonged to the manager that died
        if _free_queues:
            return _free_queues.pop()
        return _manager.Queue()


def _release_manager_queue(channel) -> None:
    with _manager_lock:
        _free_queues.append(channel)


def _forget_manager_after_fork():
    # A forked child (gunicorn --preload, celery prefork, a fork pool) must not
    # use or even query its parent's manager: start its own when it needs one.
    global _manager, _free_queues, _manager_lock
    _manager = None
    _free_queues = []
    _manager_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_manager_after_fork)


@contextlib.contextmanager
def single_call_bar(total, desc=None):
    """A bar for rows computed by one call in the calling thread: yields a
    function to call once the rows are done. No queue, no listener thread:
    there is nothing to report from elsewhere, and a small input's call may
    take less time than starting a thread."""
    bar = tqdm(total=total, desc=desc, unit="rows")
    try:
        yield lambda: bar.update(total - bar.n)
    finally:
        bar.close()


class ProgressReporter:
    """What workers call after each sub-chunk: ``reporter(n_rows)``.

    Picklable when its queue is (a manager queue). Reporting never raises:
    a broken channel only stops the bars, never the computation.
    """

    def __init__(self, channel=None, token=None):
        self._channel = channel
        self._token = token

    def __getstate__(self):
        # The channel travels as bytes so that a worker which cannot reach the
        # manager (a remote backend) loses its bars, not its task.
        return {"channel": pickle.dumps(self._channel), "token": self._token}

    def __setstate__(self, state):
        self._token = state["token"]
        try:
            self._channel = pickle.loads(state["channel"])
        except Exception:
            self._channel = None

    def __call__(self, n_rows: int, worker=None) -> None:
        """Count ``n_rows`` done by ``worker`` (a name; None: the calling
        process and thread)."""
        if self._channel is None:
            return
        if worker is None:
            key = (os.getpid(), threading.get_ident())
        else:
            key = ("worker", worker)
        try:
            self._channel.put((self._token, *key, n_rows))
        except Exception:
            self._channel = None

    def close(self) -> None:
        """Stop reporting; late calls from still-running threads are dropped."""
        self._channel = None


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
        Whether reports come from other processes (then a manager queue is used).
    caller_works : bool
        Whether the calling thread is one of the workers; then it has a bar
        of its own, else its rows (the probe) count in the overall bar only.
    desc : str
        Label of the overall bar.
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
    ):
        self.total = total
        self.mode = mode
        self.n_workers = n_workers
        self.cross_process = cross_process
        self.caller_works = caller_works
        self.desc = desc
        self.reporter = ProgressReporter()
        self._thread = None
        self._queue = None
        self._bars = []
        self._waiting = False
        self._finished = False

    def __enter__(self):
        if self.mode is None:
            return self
        self._token = uuid.uuid4().hex
        self._queue = (
            _acquire_manager_queue() if self.cross_process else queue.SimpleQueue()
        )
        # Bars are created here, in the caller's thread: notebook widgets must
        # not be displayed from the listener thread.
        self._overall = tqdm(total=self.total, desc=self.desc, unit="rows")
        self._bars = [self._overall]
        self._worker_bars = {}
        self._free_bars = []
        if self.mode == "workers":
            self._free_bars = [
                tqdm(desc=f"  worker {i}", unit="rows", position=i + 1, leave=False)
                for i in range(self.n_workers)
            ]
            self._bars.extend(self._free_bars)
            self._free_bars.reverse()
        self._caller_key = (os.getpid(), threading.get_ident())
        if not self.caller_works:
            # Rows done by the calling thread count only in the overall bar.
            self._worker_bars[self._caller_key] = None
        self.reporter = ProgressReporter(self._queue, self._token)
        self._thread = threading.Thread(
            target=self._listen, name="skbatch-progress", daemon=True
        )
        self._thread.start()
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
        if self.mode is not None:
            self._overall.set_postfix_str("waiting for workers")
            self._waiting = True

    def _listen(self) -> None:
        while True:
            try:
                message = self._queue.get()
            except Exception:
                return  # the manager went away; nothing more will arrive
            token, pid, thread, n_rows = message
            if token != self._token:
                continue  # a late message from an earlier call on this queue
            if pid is None:
                return
            self._overall.update(n_rows)
            key = (pid, thread)
            if self._waiting and self._worker_bars.get(key, True) is not None:
                self._overall.set_postfix_str("", refresh=False)
                self._waiting = False
            if key not in self._worker_bars:
                bar = self._free_bars.pop() if self._free_bars else None
                if bar is not None:
                    # Named as in last_call_.rows_by_worker.
                    name = key[1] if key[0] == "worker" else "caller"
                    if key == self._caller_key or key[0] == "worker":
                        bar.set_description(f"  {name}", refresh=False)
                self._worker_bars[key] = bar
            bar = self._worker_bars[key]
            if bar is not None:
                bar.update(n_rows)

    def __exit__(self, exc_type, exc, tb):
        self.reporter.close()
        try:
            if self._thread is not None:
                try:
                    self._queue.put((self._token, None, None, 0))
                except Exception:
                    pass  # listener exits on its own when the queue is gone
                self._thread.join(_JOIN_TIMEOUT)
                if self.cross_process and not self._thread.is_alive():
                    _release_manager_queue(self._queue)
                if self._finished and self._overall.n < self.total:
                    self._overall.update(self.total - self._overall.n)
        finally:
            for bar in reversed(self._bars):
                bar.close()
            self._thread = None
            self._queue = None
        return False

    @property
    def listening(self) -> bool:
        """Whether the listener thread is running."""
        return self._thread is not None and self._thread.is_alive()
