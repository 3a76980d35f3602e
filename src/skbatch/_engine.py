"""Executing a batch plan: the only module that talks to joblib.

A call runs in three steps:

1. The first rows (a *probe*) run in the calling thread. If they fail, the whole
   input goes to the estimator in one serial call, so bad input gets exactly the
   estimator's own error, before any worker starts. The probe's timing also tells
   whether the remaining rows are worth sending to workers.
2. The remaining rows are cut into batches (one per worker by default) and run
   through joblib. The model is serialized once per call, not once per batch, and
   unpickled at most once per worker process.
3. Outputs come back in row order and are joined by :mod:`skbatch._concat`.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
import warnings
from collections import OrderedDict

from joblib import effective_n_jobs, parallel_config
from sklearn.utils.parallel import Parallel, delayed

try:  # joblib >= 1.6 depends on cloudpickle; older releases vendor it
    import cloudpickle
except ImportError:  # pragma: no cover
    from joblib.externals import cloudpickle

from skbatch._batching import chunk_rows_for, iter_chunks, plan_batches
from skbatch._concat import check_rows, concat_parts
from skbatch._indexing import (
    first_nonfinite_row,
    is_pandas,
    is_readonly_array,
    make_sliceable,
    num_rows,
    row_nbytes,
    take_rows,
)
from skbatch._progress import ProgressMonitor

#: Rows run in the calling thread before anything is dispatched.
PROBE_ROWS = 64
#: Without an explicit ``batch_size``, rows whose estimated serial time is below
#: this stay in the calling thread: dispatching to workers would cost more.
MIN_PARALLEL_SECONDS = 0.2


# ---------------------------------------------------------------- model payload
_WORKER_MODELS: OrderedDict[str, object] = OrderedDict()
_WORKER_MODELS_LOCK = threading.Lock()


def _restore_model(token: str, data: bytes):
    """Unpickle a shipped model, at most once per worker process and call."""
    with _WORKER_MODELS_LOCK:
        model = _WORKER_MODELS.get(token)
        if model is None:
            model = cloudpickle.loads(data)
            # Keep only the newest model: an idle worker should not hold
            # an old call's model in memory.
            _WORKER_MODELS.clear()
            _WORKER_MODELS[token] = model
    return model


class SharedModel:
    """A fitted model shipped to workers as one payload per call.

    Pickling serializes the model the first time only; every further task that
    carries this payload reuses the same bytes, and each worker process unpickles
    them once. In-process and thread execution never pickles it at all.
    """

    def __init__(self, model):
        self.model = model
        self.token = uuid.uuid4().hex
        self._data = None
        self._lock = threading.Lock()

    def __reduce__(self):
        with self._lock:
            if self._data is None:
                self._data = cloudpickle.dumps(self.model)
        return _restore_model, (self.token, self._data)


class MethodCall:
    """``model.<method>(rows, **params)``, picklable with a shared model."""

    def __init__(self, model, method: str, params: dict, label: str):
        self.model = model
        self.method = method
        self.params = params
        self.label = label

    def __call__(self, X_rows):
        model = self.model.model if isinstance(self.model, SharedModel) else self.model
        return getattr(model, self.method)(X_rows, **self.params)


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):  # Python >= 3.11
        exc.add_note(note)


def _run_rows(call, X, start, stop, chunk_rows, report, copy_readonly, offset=0):
    """Run ``call`` over rows ``[start, stop)`` of ``X`` in sub-chunks.

    Returns the per-chunk outputs and their row counts. Runs in a worker and in
    the calling thread alike; ``offset`` is where ``X`` starts in the user's
    input, for error notes.
    """
    parts, n_rows = [], []
    lo = hi = start
    try:
        for lo, hi in iter_chunks(start, stop, chunk_rows):
            rows = take_rows(X, lo, hi)
            if copy_readonly and is_readonly_array(rows):
                # joblib memory-maps large inputs read-only in worker processes;
                # the serial call would have received a writeable array.
                rows = rows.copy()
            out = call(rows)
            check_rows(out, hi - lo, call.label)
            parts.append(out)
            n_rows.append(hi - lo)
            report(hi - lo)
    except Exception as exc:
        _add_note(
            exc,
            f"(skbatch: raised by {call.label} on rows {offset + lo}:{offset + hi})",
        )
        raise
    return parts, n_rows


def _run_batch(call, X_batch, offset, chunk_rows, report, copy_readonly, in_process):
    """Worker entry point: a batch arrives already sliced; it starts at ``offset``.

    Returns ``(parts, n_rows, warnings)``. A worker process records its warnings
    and sends them back, so that the caller sees each one once, under its own
    filters; threads leave that to the caller's recording (see
    :func:`_relayed_warnings`).
    """
    n = num_rows(X_batch)
    if in_process:
        parts, n_rows = _run_rows(
            call, X_batch, 0, n, chunk_rows, report, copy_readonly, offset
        )
        return parts, n_rows, []
    with warnings.catch_warnings(record=True) as caught:
        parts, n_rows = _run_rows(
            call, X_batch, 0, n, chunk_rows, report, copy_readonly, offset
        )
    return parts, n_rows, [_portable_warning(w) for w in caught]


def _portable_warning(w):
    # The message object itself may not pickle; its text and class do.
    return str(w.message), w.category, w.filename, w.lineno


@contextlib.contextmanager
def _relayed_warnings():
    """Show each distinct warning of a batched call once, as one call would.

    Without this, a warning the estimator raises once per call (a feature-name
    mismatch, say) would appear once per sub-chunk, and warnings from worker
    processes would bypass the caller's ``catch_warnings``. Warnings raised in
    this process (and its threads) are recorded here; worker processes append
    theirs to the yielded list. On exit, each distinct one is re-issued once.
    """
    from_workers = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield from_workers
    finally:
        seen = set()
        for item in [*map(_portable_warning, caught), *from_workers]:
            if item not in seen:
                seen.add(item)
                message, category, filename, lineno = item
                warnings.warn_explicit(message, category, filename, lineno)


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
    if n_workers == 1 and progress is None:
        log(f"[skbatch] {label}: {n} rows in-process (n_jobs resolves to 1).")
        return call(X)

    X_rows = make_sliceable(X)
    copy_readonly = not is_readonly_array(X_rows)
    parallel = None
    if n_workers > 1:
        with _backend_context(backend):
            parallel = Parallel(n_jobs=n_workers)
    cross_process = parallel is not None and not _uses_threads(parallel)
    with (
        _relayed_warnings() as worker_warnings,
        ProgressMonitor(
            n,
            mode=progress,
            n_workers=n_workers,
            cross_process=cross_process,
            desc=label,
        ) as monitor,
    ):
        report = monitor.reporter
        if n_workers == 1:
            probe_stop = min(n, chunk_rows_for(n, row_nbytes(X_rows)))
        else:
            probe_stop = min(n, PROBE_ROWS, batch_size or n)
        started = time.perf_counter()
        try:
            first = call(take_rows(X_rows, 0, probe_stop))
            check_rows(first, probe_stop, label)
            probe_seconds = time.perf_counter() - started
            # Also try the first row holding NaN or infinity, if any: an estimator
            # that rejects them then fails here rather than in a worker.
            bad_row = first_nonfinite_row(X_rows)
            if bad_row is not None and bad_row >= probe_stop:
                call(take_rows(X_rows, bad_row, bad_row + 1))
        except Exception:
            log(
                f"[skbatch] {label}: the first {probe_stop} rows failed; calling the "
                "estimator once on the whole input so it reports its own error."
            )
            result = call(X)
            report(n)
            return result
        report(probe_stop)
        parts, n_rows = [first], [probe_stop]

        rest = n - probe_stop
        estimate = probe_seconds / probe_stop * rest
        go_parallel = (
            rest > 0
            and n_workers > 1
            and (batch_size is not None or estimate >= MIN_PARALLEL_SECONDS)
        )
        if rest and not go_parallel:
            log(
                f"[skbatch] {label}: {n} rows in-process "
                f"(workers: {n_workers}, estimated serial time {estimate:.3f} s)."
            )
            chunk_rows = chunk_rows_for(rest, row_nbytes(X_rows))
            if progress is None:
                chunk_rows = rest
            more, more_rows = _run_rows(
                call, X_rows, probe_stop, n, chunk_rows, report, False
            )
            parts += more
            n_rows += more_rows
        elif go_parallel:
            if batch_size is None:
                batches = plan_batches(probe_stop, n, n_batches=n_workers)
            else:
                batches = plan_batches(probe_stop, n, batch_size=batch_size)
            chunk_rows = chunk_rows_for(
                max(b.n_rows for b in batches), row_nbytes(X_rows)
            )
            log(
                f"[skbatch] {label}: {n} rows, {probe_stop} in-process then "
                f"{len(batches)} batches of <= {batches[0].n_rows} rows on "
                f"{n_workers} {type(_resolved_backend(parallel)).__name__} workers "
                f"(estimated serial time {estimate:.2f} s)."
            )
            shipped = MethodCall(SharedModel(model), method, params, label)
            outputs = parallel(
                delayed(_run_batch)(
                    shipped,
                    take_rows(X_rows, b.start, b.stop),
                    b.start,
                    chunk_rows,
                    report,
                    copy_readonly,
                    not cross_process,
                )
                for b in batches
            )
            for batch_parts, batch_rows, batch_warnings in outputs:
                parts += batch_parts
                n_rows += batch_rows
                worker_warnings += batch_warnings
    return concat_parts(parts, n_rows, keep_index=is_pandas(X))
