"""Executing a batch plan: the only module that talks to joblib.

A call runs in three steps:

1. The first rows (a *probe*) run in the calling thread, and the last of them
   run once more on their own: both must agree, or the method is not row-wise.
   The probe's timing tells whether the remaining rows are worth sending to
   workers.
2. The remaining rows are cut into batches (one per worker by default) and run
   through joblib (see :mod:`skbatch._worker`).
3. Outputs come back in row order and are joined by :mod:`skbatch._concat`.

If any step fails, or the method turns out not to be row-wise, the estimator is
called once on the whole input instead. Bad input then raises exactly the error
the estimator raises on its own (for most bad input, before any worker starts),
and a method that cannot be batched still returns its own result.
"""

from __future__ import annotations

import contextlib
import time
import warnings

from joblib import Parallel, delayed, effective_n_jobs, parallel_config
from joblib.externals.loky.process_executor import TerminatedWorkerError
from sklearn import get_config

from skbatch._batching import chunk_rows_for, plan_batches
from skbatch._concat import check_rows, concat_parts, tail_agrees
from skbatch._errors import NotRowWiseError, SerialFallbackWarning
from skbatch._indexing import (
    copy_rows,
    first_nonfinite_row,
    is_readonly_array,
    make_sliceable,
    num_rows,
    row_nbytes,
    take_rows,
)
from skbatch._progress import ProgressMonitor
from skbatch._worker import (
    MethodCall,
    SharedModel,
    add_note,
    pack_filters,
    reissue_warnings,
    run_batch,
    run_rows,
)

#: Rows run in the calling thread before anything is dispatched. Inputs with
#: fewer than twice this many rows are one call, like serial.
PROBE_ROWS = 64
#: The probe's last rows run a second time on their own, to check row-wise-ness.
TAIL_ROWS = 31
#: Without an explicit ``batch_size``, rows whose estimated serial time is below
#: this stay in the calling thread: dispatching to workers would cost more.
MIN_PARALLEL_SECONDS = 0.2


# ------------------------------------------------------------------- execution
def resolve_n_workers(n_jobs, backend) -> int:
    """Workers joblib would use for ``n_jobs``, honouring ``parallel_config``."""
    with _backend_context(backend):
        return max(1, effective_n_jobs(n_jobs))


def _backend_context(backend):
    if backend is None:
        return contextlib.nullcontext()
    return parallel_config(backend=backend)


def _resolved_backend(parallel):
    # joblib exposes no public way to ask which backend a Parallel resolved to.
    # Without this private attribute we would fall back to the manager queue,
    # which works for threads too.
    return getattr(parallel, "_backend", None)


def _uses_threads(parallel) -> bool:
    return bool(getattr(_resolved_backend(parallel), "uses_threads", False))


def run(
    model,
    method: str,
    X,
    params: dict,
    *,
    n_jobs=None,
    backend=None,
    batch_size=None,
    progress=None,
    verbose=0,
    label=None,
):
    """Return ``getattr(model, method)(X, **params)``, computed in batches.

    Parameters
    ----------
    model : object
        The fitted model.
    method : str
        Name of a row-wise method of ``model``.
    X : array-like
        Input rows.
    params : dict
        Extra keyword arguments passed unchanged to every call.
    n_jobs, backend : see :class:`skbatch.BatchedPredictor`.
    batch_size : int or None
        Rows per batch; None means one batch per worker.
    progress : {None, "overall", "workers"}
        Which bars to draw.
    verbose : int
        Print the execution decision when > 0.
    label : str
        Name shown in progress bars, notes and messages.
    """
    label = label or f"{type(model).__name__}.{method}"
    log = print if verbose else (lambda *args: None)
    call = MethodCall(model, method, params, label)
    n = num_rows(X)
    if not n:
        # None (not splittable) or 0 rows: the estimator decides, serially.
        log(f"[skbatch] {label}: input not split (rows: {n}); calling it once.")
        return call(X)
    n_workers = resolve_n_workers(n_jobs, backend)
    if progress is None and (n_workers == 1 or n < 2 * PROBE_ROWS):
        # Nothing to split or show: exactly the serial call, at its cost.
        log(f"[skbatch] {label}: {n} rows in one call ({n_workers} workers).")
        return call(X)

    X_rows = make_sliceable(X)
    parallel, cross_process = None, False
    if n_workers > 1:
        with _backend_context(backend):
            parallel = Parallel(n_jobs=n_workers)
        cross_process = not _uses_threads(parallel)
    with ProgressMonitor(
        n, mode=progress, n_workers=n_workers, cross_process=cross_process, desc=label
    ) as monitor:
        try:
            return _run_planned(
                call, X_rows, n, parallel, cross_process, batch_size, monitor, log
            )
        except (TerminatedWorkerError, MemoryError):
            raise  # a worker died or memory ran out: one bigger call won't help
        except NotRowWiseError as exc:
            reason = str(exc)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        log(f"[skbatch] {label}: one call on the whole input instead: {reason}")
        try:
            result = call(X)
        except Exception as exc:
            add_note(exc, "(skbatch: raised by one call on the whole input)")
            raise
        monitor.finish()
    warnings.warn(
        SerialFallbackWarning(
            f"{label} ran as one call on the whole input, not in batches: "
            f"{reason}. The result is the estimator's own."
        ),
        stacklevel=4,  # the user's line calling predict, transform, ...
    )
    return result


def _run_planned(call, X_rows, n, parallel, cross_process, batch_size, monitor, log):
    label = call.label
    n_workers = 1 if parallel is None else parallel.n_jobs
    report = monitor.reporter
    if n_workers == 1:
        probe_stop = min(n, chunk_rows_for(n, row_nbytes(X_rows)))
    else:
        probe_stop = min(n, PROBE_ROWS)
    if n - probe_stop < PROBE_ROWS:
        probe_stop = n  # no tiny remainder: small inputs are one call
    tail = _run_tail(call, X_rows, probe_stop) if probe_stop < n else None
    started = time.perf_counter()
    first = call(copy_rows(X_rows, 0, probe_stop))
    probe_seconds = time.perf_counter() - started
    check_rows(first, probe_stop, label)
    if tail is not None:
        _check_row_wise(call, X_rows, tail, first, probe_stop, label)
    report(probe_stop)
    parts, n_rows = [first], [probe_stop]

    rest = n - probe_stop
    estimate = probe_seconds / probe_stop * rest
    go_parallel = (
        rest > 0
        and n_workers > 1
        and (batch_size is not None or estimate >= MIN_PARALLEL_SECONDS)
    )
    worker_warnings = []
    if rest and not go_parallel:
        log(
            f"[skbatch] {label}: {n} rows in-process "
            f"(workers: {n_workers}, estimated serial time {estimate:.3f} s)."
        )
        # Sub-chunks even without a bar: each is copied (see run_rows), and
        # bounded chunks keep that copy small.
        chunk_rows = chunk_rows_for(rest, row_nbytes(X_rows))
        more, more_rows = run_rows(
            call, X_rows, probe_stop, n, chunk_rows, report, "always"
        )
        parts += more
        n_rows += more_rows
    elif go_parallel:
        if batch_size is None:
            batches = plan_batches(probe_stop, n, n_batches=n_workers)
        else:
            batches = plan_batches(probe_stop, n, batch_size=batch_size)
        chunk_rows = chunk_rows_for(max(b.n_rows for b in batches), row_nbytes(X_rows))
        log(
            f"[skbatch] {label}: {n} rows, {probe_stop} in-process then "
            f"{len(batches)} batches of <= {batches[0].n_rows} rows on "
            f"{n_workers} {type(_resolved_backend(parallel)).__name__} workers "
            f"(estimated serial time {estimate:.2f} s)."
        )
        shipped = MethodCall(SharedModel(call.model), call.method, call.params, label)
        if cross_process:
            copy = "never" if is_readonly_array(X_rows) else "readonly"
        else:
            copy = "always"
        # Like sklearn.utils.parallel, carry the scikit-learn config into
        # workers; warning filters go to worker processes only (see run_batch).
        config = get_config()
        filters = pack_filters() if cross_process else None
        monitor.waiting_for_workers()
        outputs = parallel(
            delayed(run_batch)(
                config,
                filters,
                shipped,
                take_rows(X_rows, b.start, b.stop),
                b.start,
                chunk_rows,
                report,
                copy,
            )
            for b in batches
        )
        for batch_parts, batch_rows, batch_warnings in outputs:
            parts += batch_parts
            n_rows += batch_rows
            worker_warnings += batch_warnings
    reissue_warnings(worker_warnings)
    return concat_parts(parts, n_rows)


def _run_tail(call, X_rows, probe_stop):
    """Output for the probe's last rows run alone (on a copy), or None.

    The tail, not the head: a method that draws from a generator reseeded on
    every call, or uses statistics of its input, gives the same first rows
    whatever follows them, but not the same later rows.
    """
    tail_rows = min(TAIL_ROWS, probe_stop - 1)
    if tail_rows < 2:
        return None
    start = probe_stop - tail_rows
    return start, call(copy_rows(X_rows, start, probe_stop))


def _check_row_wise(call, X_rows, tail, first, probe_stop, label):
    """Compare the tail's output with the probe's; try the first non-finite row.

    Raises :class:`NotRowWiseError` if the tail's output differs from the same
    rows' output within the probe, and whatever the estimator raises for a row
    holding NaN or infinity (most estimators reject them), before anything is
    dispatched. Extra calls run on copies of the rows.
    """
    start, tail_output = tail
    if not tail_agrees(tail_output, first, start, probe_stop):
        raise NotRowWiseError(
            f"the output of {label} for a row depends on the other rows given "
            f"with it (rows {start}:{probe_stop} alone differ from the same rows "
            f"within rows 0:{probe_stop})"
        )
    bad_row = first_nonfinite_row(X_rows)
    if bad_row is not None and bad_row >= probe_stop:
        call(copy_rows(X_rows, bad_row, bad_row + 1))
