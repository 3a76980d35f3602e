"""Which workers a call may use, and the record of what a call did.

:func:`resolve_workers` turns ``n_jobs`` and ``backend`` (or a surrounding
``joblib.parallel_config``) into a number of workers and a *kind*:

- ``"auto"``: no backend was asked for; skbatch measures the model on the first
  rows and picks the calling thread alone, threads or processes itself.
- ``"threads"`` (``backend="threading"``), ``"processes"`` (``"loky"``),
  ``"serial"`` (``"sequential"``): that kind of worker, run by skbatch.
- ``"joblib"``: any other joblib backend (``"multiprocessing"``, dask, ray,
  custom ones), run through ``joblib.Parallel`` as it is.

:class:`CallReport` is what a call did and why; see
:attr:`skbatch.BatchedPredictor.last_call_`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from joblib import effective_n_jobs, parallel_config
from joblib.parallel import (
    LokyBackend,
    SequentialBackend,
    ThreadingBackend,
    get_active_backend,
)

from skbatch._failures import BatchNumbers

_KIND_OF_BACKEND = {
    "loky": "processes",
    "threading": "threads",
    "sequential": "serial",
}


def _context_config():
    """Settings of the innermost ``parallel_config`` (None outside of one).

    joblib has no public accessor telling "no backend was set" apart from "the
    default backend was set explicitly"; without this one, skbatch would
    treat a surrounding ``parallel_config`` as absent and choose itself.
    """
    from joblib import parallel

    config = getattr(parallel._backend, "config", None)
    if not isinstance(config, dict):
        return None
    return config


def _context_sets(config, key) -> bool:
    from joblib.parallel import default_parallel_config

    return config is not None and config.get(key) is not default_parallel_config[key]


def resolve_workers(n_jobs, backend) -> tuple[str, int]:
    """``(kind, n_workers)`` for ``n_jobs`` and ``backend``.

    ``n_jobs=None`` means the ``n_jobs`` of a surrounding ``parallel_config``
    if it sets one, else one worker per core. Raises joblib's own error for an
    unknown backend name, and a clear one for ``n_jobs=0``.
    """
    if n_jobs is not None and not isinstance(n_jobs, bool) and n_jobs == 0:
        raise ValueError(
            "n_jobs=0 means no worker at all: pass a positive number of workers "
            "(the calling thread counts as one), -1 for one per core, or None "
            "(a surrounding joblib.parallel_config's n_jobs, else one per core)."
        )
    config = _context_config()
    if n_jobs is None and not _context_sets(config, "n_jobs"):
        n_jobs = -1
    if backend is not None:
        context = parallel_config(backend=backend)
        kind = (
            _KIND_OF_BACKEND.get(backend, "joblib")
            if isinstance(backend, str)
            else "joblib"
        )
    elif _context_sets(config, "backend"):
        context = contextlib.nullcontext()
        active = get_active_backend()[0]
        if isinstance(active, SequentialBackend):
            kind = "serial"
        elif type(active) is ThreadingBackend:
            kind = "threads"
        elif type(active) is LokyBackend:
            kind = "processes"
        else:
            kind = "joblib"
    else:
        context = contextlib.nullcontext()
        kind = "auto"
    with context:
        n_workers = max(1, effective_n_jobs(n_jobs))
    if kind == "serial":
        n_workers = 1
    return kind, n_workers


@dataclass
class CallReport:
    """What one batched call did, and why.

    Attributes
    ----------
    method : str
        The method called, as ``"Estimator.method"``.
    n_rows : int or None
        Rows in the input (None when the input could not be split).
    path : str
        How the rows ran: ``"direct"`` (one plain call: input too small or
        nothing to split), ``"in-process"`` (the calling thread, in chunks),
        ``"threads"``, ``"processes"``, ``"joblib"`` (another joblib backend),
        or ``"whole-input fallback"`` (one plain call after batching failed or
        the method proved not row-wise).
    reasons : list of str
        Why this path, in the order the decisions were taken.
    n_workers : int
        Workers allowed, the calling thread included (1 for a direct call on
        an input too small to split, whatever ``n_jobs`` says).
    inner_threads : int or None
        Native (BLAS/OpenMP) threads each worker was limited to; None when
        not limited (the calling thread alone keeps the library defaults).
    chunk_rows : int or None
        Largest chunk handed to a worker.
    rows_by_worker : dict
        Rows each worker computed: ``"caller"``, ``"thread-1"``, ...,
        ``"process-<pid>"``.
    serial_rows_per_second : float or None
        Serial speed measured on the first rows in the calling thread (in
        this call or, see ``measured``, an earlier one).
    gil_share : float or None
        Share of a watcher thread's wakes that had to wait for the GIL while
        the calling thread ran the model alone: near 1 for a model that holds
        the GIL (pure Python), near 0 for one that releases it.
    measured : str or None
        Where the measurements came from: ``"this call"``, or
        ``"recalled"`` from an earlier call of the same model's method.
    observed_speedup : float or None
        Speed of the rows after the measurements over the serial speed
        measured on the first, small chunks; None when that part was too
        short to judge. For a model that runs faster per row on large chunks
        (KNN's OpenMP loops), this overstates the gain over one serial call.
    model_pickles : int
        Times the model was serialized in this call (0 or 1).
    model_loads : int
        Worker processes that had to load the model in this call (0 when they
        kept it from an earlier call).
    rows_transfer : str or None
        How worker processes got their rows: ``"memmap"`` (they map the
        input's own file: no copy) or ``"pickled"`` (each row sent once).
    seconds : float
        Wall time of the call.
    retries : int
        Batches run again after they failed (see ``max_retries``).
    phase_seconds : dict
        Wall time of each phase: ``"probe"``, ``"calibration"``, ``"rest"``
        (the other rows), ``"join"`` (joining the outputs). Phases a call
        skipped are absent; a call that recalled its measurements runs its
        probe while the workers start, inside ``"rest"``.
    """

    method: str
    n_rows: int | None
    path: str = "direct"
    reasons: list = field(default_factory=list)
    n_workers: int = 1
    inner_threads: int | None = None
    chunk_rows: int | None = None
    rows_by_worker: dict = field(default_factory=dict)
    serial_rows_per_second: float | None = None
    gil_share: float | None = None
    measured: str | None = None
    observed_speedup: float | None = None
    model_pickles: int = 0
    model_loads: int = 0
    rows_transfer: str | None = None
    seconds: float = 0.0
    phase_seconds: dict = field(default_factory=dict)
    retries: int = 0
    #: The call's batches by start row, for error notes (see _failures).
    batches: BatchNumbers = field(
        default_factory=BatchNumbers, repr=False, compare=False
    )

    def add_rows(self, worker: str, n_rows: int) -> None:
        self.rows_by_worker[worker] = self.rows_by_worker.get(worker, 0) + int(n_rows)

    def summary(self) -> str:
        """One line: the path, the workers and the reasons."""
        workers = ", ".join(f"{k}: {v}" for k, v in self.rows_by_worker.items())
        text = f"[skbatch] {self.method}: {self.n_rows} rows, {self.path}"
        if self.path in ("threads", "processes", "joblib"):
            text += f" ({self.n_workers} workers"
            if self.inner_threads is not None:
                text += f" x {self.inner_threads} native threads"
            text += ")"
        if workers:
            text += f"; rows by worker: {workers}"
        if self.reasons:
            text += "; " + "; ".join(self.reasons)
        return text + f"; {self.seconds:.3f} s."
