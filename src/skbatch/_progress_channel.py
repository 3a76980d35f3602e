"""How workers' row counts reach the parent's progress listener.

Workers never draw: after each sub-chunk they call a :class:`ProgressReporter`,
which puts ``(call token, pid, thread, rows done, rows taken)`` on a queue read
by the parent. Workers that share the parent's memory (its threads) use a plain
in-memory queue. Other processes (joblib's process backends, dask workers) use
a queue served by a manager process that lives exactly as long as the call:
:func:`manager_queue` starts it and shuts it down, whatever happens, so no
queue server outlives a call, even after a worker was killed holding a handle.
Messages carry their call's token, so a late message from an earlier call on a
reused queue is ignored.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import threading


class ProgressReporter:
    """What workers call after each sub-chunk: ``reporter(n_rows)``.

    Picklable when its queue is a manager queue: it travels with the address
    and key of the manager, so a worker of any kind (a loky or multiprocessing
    child, a dask worker) reaches it. Reporting never raises: a broken channel
    only stops the bars, never the computation.
    """

    def __init__(self, channel=None, token=None):
        self._channel = channel
        self._token = token

    def __getstate__(self):
        # The channel travels as bytes so that a worker which cannot reach the
        # manager (a remote backend) loses its bars, not its task.
        return {"channel": _dump_channel(self._channel), "token": self._token}

    def __setstate__(self, state):
        self._token = state["token"]
        try:
            self._channel = _load_channel(state["channel"])
        except Exception:
            self._channel = None

    def __call__(self, n_rows: int, worker=None) -> None:
        """Count ``n_rows`` done by ``worker`` (a name; None: the calling
        process and thread)."""
        self._put(worker, n_rows, 0)

    def took(self, n_rows: int, worker=None) -> None:
        """Count ``n_rows`` as taken by ``worker``, to be done next: a worker's
        bar counts up to the rows it has taken."""
        self._put(worker, 0, n_rows)

    def _put(self, worker, done, taken):
        if self._channel is None:
            return
        if worker is None:
            key = (os.getpid(), threading.get_ident())
        else:
            key = ("worker", worker)
        try:
            self._channel.put((self._token, *key, done, taken))
        except Exception:
            self._channel = None

    def close(self) -> None:
        """Stop reporting; late calls from still-running threads are dropped."""
        self._channel = None


def _dump_channel(channel) -> bytes:
    from multiprocessing.managers import BaseProxy

    if isinstance(channel, BaseProxy):
        # A proxy pickled outside of process spawning leaves its key behind,
        # and the receiving process would use its own (a dask worker's
        # differs): send the key along.
        return pickle.dumps(
            (
                "proxy",
                channel._token,
                channel._serializer,
                bytes(channel._authkey),
                getattr(channel, "_exposed_", None),
            )
        )
    return pickle.dumps(("plain", channel))


def _load_channel(blob: bytes):
    from multiprocessing.managers import AutoProxy

    kind, *rest = pickle.loads(blob)
    if kind == "plain":
        return rest[0]
    token, serializer, authkey, exposed = rest
    return AutoProxy(token, serializer, authkey=authkey, exposed=exposed)


@contextlib.contextmanager
def manager_queue():
    """A queue other processes can put to, served by a manager process that is
    shut down when the block exits (on success, error or interrupt)."""
    # loky's spawn context: no ``__main__`` guard needed, no fork after OpenMP.
    from joblib.externals.loky.backend.context import get_context

    manager = get_context("loky").Manager()
    try:
        yield manager.Queue()
    finally:
        manager.shutdown()
