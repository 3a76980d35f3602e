"""Time limits on batches: the batch runs in a helper thread its worker waits on.

A worker (the calling thread, a worker thread, a worker process's thread)
cannot be interrupted inside an estimator's native code, and a thread cannot be
killed at all. So a batch with a time limit runs in a fresh daemon thread, and
its worker waits for it at most that long: the clock starts when the batch
starts, wherever that is. A batch past its limit is abandoned: a worker process
running it is then terminated by the caller; a thread is left to end on its own
(being a daemon, it never keeps the process from exiting), and what it computes
later is dropped.

Without a limit nothing of this happens: the batch runs in its worker.
"""

from __future__ import annotations

import threading

from sklearn import config_context, get_config

from skbatch._threadlimits import limit_thread_openmp


class BatchOverran(Exception):
    """The batch still ran after ``seconds``; its helper thread was left."""

    def __init__(self, seconds):
        super().__init__(seconds)
        self.seconds = seconds


def run_within(seconds, function, inner=None):
    """``function()``, or :class:`BatchOverran` after ``seconds`` (None: no
    limit, run in this thread). The helper thread gets this thread's
    scikit-learn config and ``inner`` OpenMP threads, as its worker has.

    >>> run_within(5.0, lambda: 1 + 1)
    2
    >>> import time
    >>> run_within(0.01, lambda: time.sleep(1))
    Traceback (most recent call last):
    ...
    skbatch._timeouts.BatchOverran: 0.01
    """
    if seconds is None:
        return function()
    config = get_config()
    box = {}

    def batch():
        try:
            with config_context(**config), limit_thread_openmp(inner):
                box["value"] = function()
        except BaseException as exc:
            box["error"] = exc

    helper = threading.Thread(target=batch, name="skbatch-batch", daemon=True)
    helper.start()
    helper.join(seconds)
    if helper.is_alive():
        raise BatchOverran(seconds)
    if "error" in box:
        raise box.pop("error")
    return box["value"]
