"""What a call reports when its rows fail: which failure, and where it was.

Workers run batches at the same time, so several may fail, in any order. The
caller gets the failure a serial loop over the rows would have met first: the
one on the lowest rows. Every batch below it must therefore have finished (or
failed) before the call raises; batches above it are stopped. The error raised
is the estimator's own exception (same type, same message), with a PEP 678
note naming the batch and its rows.
"""

from __future__ import annotations

import bisect
import threading

from skbatch._errors import BatchTimeoutError, WorkerDiedError

#: Every note skbatch adds to an exception starts with this.
NOTE_PREFIX = "skbatch:"
#: What a timeout message says happened to a thread past its limit.
THREAD_LEFT = (
    "a thread cannot be stopped: it ends in the background and its output is dropped"
)


class WritesIntoInput(Exception):
    """The method failed on read-only rows, and ran on a copy of them: it
    writes into its input. Batches cannot protect the user's rows then; one
    call on the whole input changes them once, as serially."""


class BatchFailed(Exception):
    """Rows ``[lo, hi)`` raised ``error``: carried up to the engine, which
    raises ``error`` itself. Never reaches the user."""

    def __init__(self, lo, hi, error):
        super().__init__(lo, hi, error)
        self.lo, self.hi, self.error = lo, hi, error


class BatchNumbers:
    """Numbers the batches of one call in row order, from any thread.

    Batches start at known rows (the probe at 0, then each chunk handed out);
    a batch's index is how many batches start before it.

    >>> numbers = BatchNumbers()
    >>> for start in (0, 64, 300, 128):
    ...     numbers.started(start)
    >>> numbers.index(300)
    3
    """

    def __init__(self):
        self._starts = []
        self._lock = threading.Lock()

    def __getstate__(self):  # a call report travels with a pickled estimator
        return {"_starts": list(self._starts)}

    def __setstate__(self, state):
        self._starts = state["_starts"]
        self._lock = threading.Lock()

    def started(self, lo: int) -> None:
        with self._lock:
            at = bisect.bisect_left(self._starts, lo)
            if at == len(self._starts) or self._starts[at] != lo:
                self._starts.insert(at, lo)

    def index(self, lo: int) -> int:
        with self._lock:
            return bisect.bisect_left(self._starts, lo)


def lowest(failures):
    """The :class:`BatchFailed` on the lowest rows, or None."""
    return min(failures, key=lambda failure: failure.lo, default=None)


def add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):  # Python >= 3.11
        exc.add_note(note)


def has_note(exc: BaseException) -> bool:
    return any(
        str(note).startswith(NOTE_PREFIX) for note in getattr(exc, "__notes__", ())
    )


def note_batch(exc, label, index, lo, hi, n_rows, attempts=1):
    """Say on ``exc`` which batch raised it (once: a retried or re-raised
    error keeps its first note)."""
    if has_note(exc):
        return
    where = "" if index is None else f"batch {index}, "
    tries = f", after {attempts} attempts" if attempts > 1 else ""
    add_note(
        exc,
        f"{NOTE_PREFIX} raised by {label} on {where}rows [{lo}, {hi}) of "
        f"{n_rows}{tries}",
    )


def check_failure_options(timeout, max_retries):
    """Raise a clear error for a bad ``timeout`` or ``max_retries``; return the
    timeout to use: None for no limit (``inf``, or past what a thread can wait
    for, counts as none).

    >>> check_failure_options(2, 0), check_failure_options(float("inf"), 1)
    (2.0, None)
    """
    from numbers import Integral, Real

    if isinstance(timeout, bool) or (
        timeout is not None and not (isinstance(timeout, Real) and timeout > 0)
    ):
        raise ValueError(
            "timeout must be a positive number of seconds, or None (or inf) for "
            f"no limit; got {timeout!r}."
        )
    if (
        isinstance(max_retries, bool)
        or not isinstance(max_retries, Integral)
        or max_retries < 0
    ):
        raise ValueError(
            f"max_retries must be a non-negative int; got {max_retries!r}."
        )
    if timeout is None or timeout >= threading.TIMEOUT_MAX:
        return None
    return float(timeout)


def timeout_error(label, index, lo, hi, n_rows, seconds, where, stopped):
    """The :class:`BatchTimeoutError` for a batch that ran past ``seconds``."""
    batch = "a batch" if index is None else f"batch {index}"
    return BatchTimeoutError(
        f"{label}: {batch} (rows [{lo}, {hi}) of {n_rows}) ran longer than "
        f"timeout={seconds:g} s in {where}; {stopped}. Raise timeout if the "
        "batch is slow rather than stuck, or lower batch_size."
    )


def worker_died(
    label, codes, rows_lost, running=(), batch_of=None, retries=True
) -> WorkerDiedError:  # fmt: skip
    """What to raise when a worker process died: the batch it was running
    (``running``: ``(pid, lo, hi)`` read from its marker), the other rows
    lost with it, the exit ``codes`` (as loky writes them: ``{SIGKILL(-9)}``)
    and what they usually mean. ``batch_of(lo)`` gives a batch's index;
    ``retries``: whether ``max_retries`` would have run the rows again."""
    if running:
        what = "; ".join(
            f"process {pid} died running batch "
            f"{batch_of(lo) if batch_of else '?'} (rows [{lo}, {hi}))"
            for pid, lo, hi in running
        )
        others = sorted(set(rows_lost) - {(lo, hi) for _, lo, hi in running})
        also = ", ".join(f"[{lo}, {hi})" for lo, hi in others)
        when = what + (f"; rows {also} were lost with the pool" if also else "")
    else:
        ranges = ", ".join(f"[{lo}, {hi})" for lo, hi in sorted(rows_lost))
        when = (
            f"a worker process died while rows {ranges} were with the workers"
            if ranges
            else "a worker process died on start"
        )
    if "SIGKILL" in codes:
        hint = (
            "SIGKILL usually means the system ran out of memory and killed the "
            "worker: lower batch_size or n_jobs"
        )
    elif "SIGSEGV" in codes or "SIGBUS" in codes:
        hint = "a crash in native code (a C extension, BLAS) killed the worker"
    elif "unknown" in codes:
        hint = (
            "the worker was gone before its exit code could be read: killed "
            "(SIGKILL, often for memory: lower batch_size or n_jobs), crashed in "
            "native code, or exited"
        )
    else:
        hint = "the worker exited (os._exit, sys.exit in a worker, a native abort)"
    retry = "Set max_retries to run lost batches again. " if retries else ""
    return WorkerDiedError(
        f"{label}: {when} (exit codes: {codes}); {hint}. {retry}The next call "
        "starts fresh workers."
    )
