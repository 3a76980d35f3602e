"""Cheap measurements a call takes on its own first rows.

Two questions decide how the rest of the rows should run:

- **Does the model hold the GIL?** A :class:`GilWatch` thread sleeps for a
  millisecond at a time while the calling thread computes, and notes how late
  it wakes. A thread that wakes needs the GIL back: when the calling thread is
  in Python code, it gets it only when the interpreter forces a switch (after
  :func:`sys.getswitchinterval`, 5 ms by default), so nearly every wake is late
  by about that much; when the calling thread is in code that releases the GIL
  (tree walks, BLAS, most of numpy on large arrays), wakes are on time. The
  share of late wakes measures the GIL directly, costs no work (the watcher
  sleeps), and needs no second worker: it is known after the first few dozen
  milliseconds of a call.
- **What does a chunk of rows cost?** :class:`Costs` fits ``per_call +
  per_row * rows`` to two timed chunks, one small and one large, so chunks can
  be sized to make a call's fixed cost negligible.
"""

from __future__ import annotations

import sys
import threading
import time

#: The watcher sleeps this long between wakes.
WATCH_INTERVAL = 0.001
#: A wake this late (or later, see :func:`_late_threshold`) waited for the GIL.
MIN_LATE_SECONDS = 0.0005
#: A verdict needs at least this many wakes.
MIN_WAKES = 5
#: Share of late wakes from which the model is taken to hold the GIL.
GIL_BOUND_SHARE = 0.5
#: A wake later than this many switch intervals waited for a core, not for
#: the GIL (a thread asking for the GIL gets it after one interval).
MAX_GIL_WAIT_INTERVALS = 3


def _late_threshold() -> float:
    # A waiting thread asks for the GIL after one switch interval; half of it
    # separates "waited for a forced switch" from timer jitter.
    return max(MIN_LATE_SECONDS, 0.5 * sys.getswitchinterval())


class GilWatch:
    """A sleeping thread that measures how often the GIL was taken.

    Use as a context manager around the work to watch. The watcher takes the
    GIL for a few microseconds per wake: well under 1% of the watched time.

    >>> with GilWatch() as watch:
    ...     total = sum(i * i for i in range(2_000_000))  # pure Python
    >>> watch.gil_share() > 0.5
    True
    """

    def __init__(self):
        self._lateness: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="skbatch-gil-watch", daemon=True
        )

    def _watch(self):
        clock, sleep, interval = time.perf_counter, time.sleep, WATCH_INTERVAL
        lateness, stopped = self._lateness, self._stop.is_set
        while not stopped():
            started = clock()
            sleep(interval)
            lateness.append(clock() - started - interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        """Stop watching (idempotent); the counts so far stay readable."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()

    @property
    def n_wakes(self) -> int:
        return len(self._lateness)

    def gil_share(self) -> float | None:
        """Share of wakes that waited for the GIL, or None before
        :data:`MIN_WAKES` wakes.

        Waiting for the GIL has a signature: the interpreter forces a switch
        after one switch interval, so late wakes are late by about that much.
        Wakes late by much more waited for a core (other programs keep them
        busy), and do not count as waiting for the GIL.
        """
        lateness = list(self._lateness)
        if len(lateness) < MIN_WAKES:
            return None
        threshold = _late_threshold()
        ceiling = MAX_GIL_WAIT_INTERVALS * sys.getswitchinterval() + threshold
        waited = sum(1 for late in lateness if threshold <= late <= ceiling)
        return waited / len(lateness)


def holds_gil(share: float | None) -> bool | None:
    """Whether a measured :meth:`GilWatch.gil_share` means a GIL-bound model
    (None: not known yet)."""
    if share is None:
        return None
    return share >= GIL_BOUND_SHARE


def timed(fn, *args):
    """``(wall seconds, process CPU seconds)`` that ``fn(*args)`` took."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


class Costs:
    """Serial cost of a chunk of rows: ``per_call + per_row * rows`` seconds.

    >>> costs = Costs.fit((64, 0.0126), (2048, 0.0374))
    >>> round(costs.per_row * 1e6, 1), round(costs.per_call * 1e3, 1)
    (12.5, 11.8)
    >>> costs.rows_for(0.5)
    40000
    """

    def __init__(self, per_call: float, per_row: float):
        self.per_call = per_call
        self.per_row = per_row

    @classmethod
    def fit(cls, small, large) -> Costs:
        """Fit to two ``(rows, seconds)`` points, ``small`` with fewer rows."""
        (rows_a, wall_a), (rows_b, wall_b) = small, large
        average = wall_b / max(rows_b, 1)
        if rows_b <= rows_a:
            return cls(0.0, average)
        slope = (wall_b - wall_a) / (rows_b - rows_a)
        # Noise can make the slope tiny or negative; a row never costs less
        # than a tenth of the large chunk's average.
        per_row = max(slope, 0.1 * average)
        return cls(max(0.0, wall_b - per_row * rows_b), per_row)

    def seconds(self, rows: int) -> float:
        return self.per_call + self.per_row * rows

    def rows_for(self, seconds: float) -> int:
        return max(1, round(seconds / max(self.per_row, 1e-12)))

    def as_tuple(self) -> tuple[float, float]:
        return self.per_call, self.per_row
